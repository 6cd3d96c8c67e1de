"""Every bundled stack's plan, on every cloud, scanned by the real checkov CLI.

Each stack (`stacks/*/pipeline.yaml`) is planned with each of its overlays on each installed
cloud and converted by `pipeline.scan`: one Terraform plan JSON per stack for AWS and GCP, one ARM
template per stack and overlay for Azure (ARM names repeat across overlays). checkov scans all the
files of one cloud in one run, the first time a test of that cloud needs them (so `-k aws` plans and
scans AWS alone). Any failed check not in tests/checkov_skips.yaml fails the test; skips marked
TODO(fix) are known defects, printed as warnings on every run until fixed.

A scan that cannot fail proves nothing, so the same run also scans small, deliberately insecure
programs planned under the mock engine, and expects checkov to flag them: the conversion carries
the settings (and the connections between resources) that checks read.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from bundled import bundled_plans, bundled_stacks
from checkov_runner import Finding, ScanResult, scan

from pipeline.backend import Backend, backend_names
from pipeline.plan import Plan
from pipeline.planner import plan
from pipeline.program import Orchestrator
from pipeline.scan import ScanDocument, scan_document, scan_documents
from pipeline.spec.load import load_spec

REPO = Path(__file__).resolve().parents[1]
SKIPS_FILE = REPO / "tests" / "checkov_skips.yaml"
EXAMPLE = REPO / "stacks" / "transactions" / "pipeline.yaml"
CLOUDS = backend_names()
INSECURE = "insecure"  # key of the deliberately insecure scans


class KnownDefectWarning(UserWarning):
    """A failed check on the skip list as TODO(fix): a real defect whose fix is in progress."""


STACKS = sorted(bundled_stacks())
CASES = [(name, cloud) for name in STACKS for cloud in CLOUDS]


def load_skips() -> dict[str, dict[str, str]]:
    data = yaml.safe_load(SKIPS_FILE.read_text(encoding="utf-8")) or {}
    assert isinstance(data, dict), f"{SKIPS_FILE}: expected a mapping of cloud -> {{check id: justification}}"
    return {cloud: dict(checks or {}) for cloud, checks in data.items()}


def todo_prefix(cloud: str) -> str:
    return f"TODO(fix): known defect, being fixed in the {cloud} backend"


# ---- deliberately insecure programs ----------------------------------------------------------------


def insecure_aws() -> None:
    import pulumi_aws as aws

    aws.s3.Bucket("bare-bucket")  # no public access block, no lifecycle, no encryption configuration
    opened = aws.s3.Bucket("open-bucket")
    aws.s3.BucketPublicAccessBlock("open-access", bucket=opened.id, block_public_acls=False, block_public_policy=False,
                                   ignore_public_acls=False, restrict_public_buckets=False)
    aws.sqs.Queue("plain-queue", sqs_managed_sse_enabled=False)


def insecure_gcp() -> None:
    import pulumi_gcp as gcp

    bucket = gcp.storage.Bucket("open-bucket", location="US", uniform_bucket_level_access=False, public_access_prevention="inherited")
    gcp.storage.BucketIAMMember("public-read", bucket=bucket.name, role="roles/storage.objectViewer", member="allUsers")
    topic = gcp.pubsub.Topic("open-topic")
    gcp.pubsub.TopicIAMMember("public-publish", topic=topic.id, role="roles/pubsub.publisher", member="allUsers")


def insecure_azure() -> None:
    from pulumi_azure_native import storage

    account = storage.StorageAccount(
        "insecure-account", account_name="insecureaccount", resource_group_name="rg-insecure", kind="StorageV2",
        sku={"name": "Standard_LRS"}, enable_https_traffic_only=False, minimum_tls_version="TLS1_0",
        allow_blob_public_access=True, public_network_access="Enabled",
    )
    storage.BlobContainer("insecure-container", account_name=account.name, resource_group_name="rg-insecure",
                          container_name="public", public_access=storage.PublicAccess.CONTAINER)


# cloud -> (program, {scanner resource id: check ids that must fail on it})
INSECURE_PROGRAMS: dict[str, tuple[Callable[[], None], dict[str, set[str]]]] = {
    "aws": (insecure_aws, {
        "aws_s3_bucket.insecure_bare_bucket": {"CKV2_AWS_6", "CKV2_AWS_61"},  # connected checks: nothing attached
        "aws_s3_bucket.insecure_open_bucket": {"CKV2_AWS_6"},  # attached, but blocks nothing
        "aws_s3_bucket_public_access_block.insecure_open_access": {"CKV_AWS_53", "CKV_AWS_54", "CKV_AWS_55", "CKV_AWS_56"},
        "aws_sqs_queue.insecure_plain_queue": {"CKV_AWS_27"},
    }),
    "gcp": (insecure_gcp, {
        "google_storage_bucket.insecure_open_bucket": {"CKV_GCP_29", "CKV_GCP_114"},
        "google_storage_bucket_iam_member.insecure_public_read": {"CKV_GCP_28"},
        "google_pubsub_topic_iam_member.insecure_public_publish": {"CKV_GCP_99"},
    }),
    "azure": (insecure_azure, {
        # supportsHttpsTrafficOnly is azure-native's enableHttpsTrafficOnly renamed: this fails only if the rename is applied.
        "Microsoft.Storage/storageAccounts.insecureaccount": {"CKV_AZURE_3", "CKV_AZURE_44", "CKV_AZURE_59"},
        "Microsoft.Storage/storageAccounts/blobServices/containers.insecureaccount/default/public": {"CKV_AZURE_34"},
    }),
}


def plan_insecure(cloud: str) -> Plan:
    """The program's resources alone, planned under the mock engine like any stack."""
    build = INSECURE_PROGRAMS[cloud][0]

    def program(backend: Backend) -> Orchestrator:
        orchestrator = Orchestrator(backend)
        build()
        return orchestrator

    return plan(load_spec(EXAMPLE, "dev"), cloud, program=program)


# ---- one checkov run per cloud, made when a test of that cloud first needs it ----------------------------


class Scans:
    """(stack name or 'insecure', cloud) -> checkov's result for that file, scanned one cloud at a time.

    Each cloud's files (every bundled stack and its insecure program) go to checkov together, the first
    time a test of that cloud asks, so `-k aws` plans and scans AWS alone and a cloud that cannot plan
    fails only its own tests."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.results: dict[tuple[str, str], ScanResult] = {}
        self.errors: dict[str, Exception] = {}  # a cloud that failed to plan or scan fails each of its tests with this

    def __getitem__(self, key: tuple[str, str]) -> ScanResult:
        cloud = key[1]
        if cloud in self.errors:
            raise self.errors[cloud]
        if not any(scanned == cloud for _, scanned in self.results):
            try:
                self.results.update(self._scan(cloud))
            except Exception as exc:
                self.errors[cloud] = exc
                raise
        return self.results[key]

    def _scan(self, cloud: str) -> dict[tuple[str, str], ScanResult]:
        documents: list[tuple[tuple[str, str], ScanDocument, Path]] = []
        for name in STACKS:
            for index, document in enumerate(scan_documents(bundled_plans(name, cloud), namespace=name)):
                documents.append(((name, cloud), document, self.folder / f"{name}-{cloud}-{index}.json"))
        if cloud in INSECURE_PROGRAMS:
            documents.append(((INSECURE, cloud), scan_document([plan_insecure(cloud)], namespace=INSECURE), self.folder / f"{INSECURE}-{cloud}.json"))
        merged: dict[tuple[str, str], ScanResult] = {}
        for (key, _, _), result in zip(documents, scan([(document, path) for _, document, path in documents]), strict=True):
            merged[key] = merged[key].merge(result) if key in merged else result
        return merged


@pytest.fixture(scope="session")
def scans(tmp_path_factory: pytest.TempPathFactory) -> Scans:
    return Scans(tmp_path_factory.mktemp("checkov"))


def unexpected(findings: list[Finding], skips: dict[str, str]) -> list[Finding]:
    return [f for f in findings if f.check_id not in skips]


@pytest.mark.parametrize(("stack", "cloud"), CASES)
def test_bundled_stack_has_no_unexpected_findings(scans: Scans, stack: str, cloud: str) -> None:
    skips = load_skips().get(cloud, {})
    result = scans[(stack, cloud)]
    assert result.passed, f"checkov passed no check on {stack} for {cloud}: the conversion lost the resources"
    known = sorted({f.check_id for f in result.failed if skips.get(f.check_id, "").startswith("TODO(fix)")})
    for check_id in known:
        resources = sorted({f.resource for f in result.failed if f.check_id == check_id})
        warnings.warn(KnownDefectWarning(f"{stack} on {cloud}: {check_id} fails on {len(resources)} resources "
                                         f"(e.g. {resources[0]}): {skips[check_id]}"), stacklevel=1)
    found = unexpected(result.failed, skips)
    listing = "\n".join(f.describe() for f in sorted(found, key=lambda f: (f.check_id, f.resource)))
    assert not found, (f"checkov found {len(found)} problems in stack {stack} on {cloud} (file {result.path}):\n{listing}\n"
                       f"Fix the {cloud} backend, or, only if the check does not apply or contradicts a documented design "
                       f"decision, add it to {SKIPS_FILE.name} with a one-line justification.")


@pytest.mark.parametrize("cloud", CLOUDS)
def test_every_skip_is_still_needed(scans: Scans, cloud: str) -> None:
    """A skip that no longer fails anywhere hides nothing today and would hide a regression tomorrow."""
    skips = load_skips().get(cloud, {})
    failing = {f.check_id for name in STACKS for f in scans[(name, cloud)].failed}
    stale = sorted(set(skips) - failing)
    assert not stale, f"{SKIPS_FILE.name}: {cloud} skips {', '.join(stale)}, which no bundled stack fails any more: remove them"


def test_skip_list_is_well_formed() -> None:
    skips = load_skips()
    assert set(skips) <= set(CLOUDS), f"{SKIPS_FILE.name} names clouds with no backend: {sorted(set(skips) - set(CLOUDS))}"
    for cloud, checks in skips.items():
        for check_id, reason in checks.items():
            assert isinstance(reason, str) and reason.strip() and "\n" not in reason.strip(), f"{cloud} {check_id}: one line of justification"
            assert check_id.startswith("CKV"), f"{cloud} {check_id}: not a checkov check id"
            if reason.startswith("TODO"):
                assert reason.startswith(todo_prefix(cloud)), f"{cloud} {check_id}: a known defect reads {todo_prefix(cloud)!r}: ..."


@pytest.mark.parametrize("cloud", sorted(INSECURE_PROGRAMS))
def test_insecure_resources_are_flagged(scans: Scans, cloud: str) -> None:
    """checkov flags what the insecure program got wrong, the gate would reject it, and the same checks pass on the
    bundled stacks' own resources (so the conversion carries settings and connections, not just resource types)."""
    if cloud not in CLOUDS:
        pytest.skip(f"no {cloud} backend installed")
    expected = INSECURE_PROGRAMS[cloud][1]
    result = scans[(INSECURE, cloud)]
    failed: dict[str, set[str]] = {}
    for finding in result.failed:
        failed.setdefault(finding.resource, set()).add(finding.check_id)
    for resource, checks in expected.items():
        missing = checks - failed.get(resource, set())
        assert not missing, f"checkov did not flag {resource} with {sorted(missing)} (flagged: {sorted(failed.get(resource, set()))})"
    skips = load_skips().get(cloud, {})
    wanted = set().union(*expected.values())
    assert not wanted & set(skips), f"checks the insecure program must fail are skipped for {cloud}: {sorted(wanted & set(skips))}"
    caught = {(f.resource, f.check_id) for f in unexpected(result.failed, skips)}
    assert all((r, c) in caught for r, checks in expected.items() for c in checks)
    for name in STACKS:
        bundled = scans[(name, cloud)]
        exercised = {f.check_id for f in bundled.passed} & wanted
        assert exercised, f"none of {sorted(wanted)} ran on stack {name} for {cloud}"
        assert not {f.check_id for f in bundled.failed} & wanted

