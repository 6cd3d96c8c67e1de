"""Offline plans of the Azure backend: real wiring, not just resource counts."""

from __future__ import annotations

import hashlib
import json
import re
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import pytest
from pipeline_azure import checks, iam, naming, ncrontab, observability, sizing
from pipeline_azure.backend import AzureBackend

from pipeline.errors import SpecError
from pipeline.plan import Plan, PlannedResource
from pipeline.planner import plan
from pipeline.spec.load import load_spec
from pipeline.spec.schedule import parse_schedule

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "stacks" / "transactions" / "pipeline.yaml"
SUB = naming.MOCK_SUBSCRIPTION
RA = "azure-native:authorization:RoleAssignment"


def write_spec(tmp_path: Path, body: str) -> Path:
    (tmp_path / "h.py").write_text("def handle(records, context):\n    return records\n")
    path = tmp_path / "pipeline.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def plan_of(path: Path, stack: str | None = None) -> Plan:
    return plan(load_spec(str(path), stack), "azure")


def role_def(guid: str) -> str:
    return f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{guid}"


def assignments(p: Plan, role: str | None = None) -> list[dict[str, Any]]:
    return [r.inputs for r in p.of_type(RA) if role is None or r.role == role]


def container_id(p: Plan, container: str) -> str:
    matches = [r for r in p.of_type("azure-native:storage:BlobContainer") if r.inputs["containerName"] == container]
    assert len(matches) == 1, container
    account = matches[0].inputs["accountName"]
    rg = matches[0].inputs["resourceGroupName"]
    return f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Storage/storageAccounts/{account}/blobServices/default/containers/{container}"


def blob_writer(p: Plan) -> str:
    """The id of the stack's custom blob-writer role (iam.blob_writer), what every write grant assigns."""
    (writer,) = [r for r in p.of_type("azure-native:authorization:RoleDefinition") if r.name.endswith("-blob-writer-role")]
    return f"{writer.inputs['scope']}/providers/Microsoft.Authorization/roleDefinitions/{naming.mock_uuid(writer.name)}"  # the mock engine's id


def settings(app: PlannedResource) -> dict[str, Any]:
    return {s["name"]: s["value"] for s in app.inputs["siteConfig"]["appSettings"]}


@pytest.fixture(scope="module")
def example() -> Plan:
    return plan(load_spec(str(EXAMPLE), "dev"), "azure")


# ---- platform and storage ---------------------------------------------------------------------
def test_storage_accounts_are_hardened_zone_redundant_and_named_within_limits(example: Plan) -> None:
    accounts = {r.role + "/" + r.name.rsplit("-", 1)[-1]: r for r in example.of_type("azure-native:storage:StorageAccount")}
    assert set(accounts) == {"platform/data", "platform/artifacts", "preprocess-function/host", "score-function/host", "calibrate-function/host",
                             "raw-archive/host"}
    for account in accounts.values():
        i = account.inputs
        assert re.fullmatch(r"[a-z0-9]{3,24}", i["accountName"])
        assert i["kind"] == "StorageV2" and i["sku"] == {"name": "Standard_ZRS"}  # multi-zone, like S3 and GCS
        assert i["enableHttpsTrafficOnly"] is True and i["minimumTlsVersion"] == "TLS1_2"
        assert i["allowBlobPublicAccess"] is False and i["defaultToOAuthAuthentication"] is True
    # Only the artifacts account (code packages and models, uploaded by Pulumi's storage.Blob with the
    # account key: pulumi-azure-native#2015) keeps shared keys; data and every host account have none.
    keyed = sorted(name for name, account in accounts.items() if account.inputs["allowSharedKeyAccess"])
    assert keyed == ["platform/artifacts"]
    names = [a.inputs["accountName"] for a in accounts.values()]
    assert len(set(names)) == len(names)


def test_globally_unique_names_carry_the_stacks_random_suffix(example: Plan) -> None:
    (suffix,) = example.of_type(naming.RANDOM_ID)
    assert suffix.inputs["byteLength"] == naming.SUFFIX_BYTES
    hex_ = hashlib.sha256(suffix.name.encode()).digest()[: naming.SUFFIX_BYTES].hex()  # the mock engine's stand-in
    named = [r.inputs["accountName"] for r in example.of_type("azure-native:storage:StorageAccount")]
    named += [example.one("azure-native:eventhub:Namespace").inputs["namespaceName"]]
    named += [r.inputs["name"] for r in example.of_type("azure-native:web:WebApp")]
    assert all(n.endswith(hex_) for n in named), named
    # and the suffix resource is what those names wait for (drawn once, kept in the stack state)
    account = next(r for r in example.of_type("azure-native:storage:StorageAccount") if r.name.endswith("-data"))
    assert suffix.urn in account.dependencies


def test_storage_names_stay_within_azure_limits() -> None:
    suffix = "0123abcd"
    a = naming.storage_account_name("a-very-long-pipeline", "dat", suffix)
    assert re.fullmatch(r"[a-z0-9]{3,24}", a) and a.endswith(suffix)
    h1 = naming.host_account_name("a-very-long-pipeline", "a-very-long-stage-nm", suffix)
    h2 = naming.host_account_name("a-very-long-pipeline", "another-stage", suffix)
    assert re.fullmatch(r"[a-z0-9]{3,24}", h1) and h1 != h2
    ns = naming.namespace_name("a-very-long-pipeline", "production-stack", suffix)
    assert 6 <= len(ns) <= 50 and ns[0].isalpha() and ns[-1].isalnum()
    app = naming.function_app_name("a-very-long-pipeline", "production-stack", "a-very-long-stage-nm", suffix)
    assert len(app) <= 60 and not app.endswith("-") and "a-very-long-stage-nm" in app
    assert len(naming.host_id("a-very-long-pipeline", "production-stack", "a-very-long-stage-nm")) <= 32


# The review's pair (S1): with a 4-hex stage hash both stages got host account 'txnscoringh420a668f9ef6'.
REVIEW_PAIR = """
    name: txn-scoring
    uploads: {}
    stages:
      - {name: tag-parse, handler: "h.py:handle", trigger: {objects: {from: uploads}}}
      - {name: agg9, handler: "h.py:handle", trigger: {objects: {from: tag-parse}}}
    workload:
      uploads: {files_per_hour: 2, records_per_file: 100}
    clouds:
      azure: {location: eastus}
"""
# Two stage names whose 8-hex hashes in pipeline txn-scoring agree (found by a birthday search over 's<hex>' names).
HASH_TWINS = ("s1daca", "s23933")


def test_the_reviewers_stage_pair_gets_two_host_accounts_each_with_its_own_queue(tmp_path: Path) -> None:
    p = plan_of(write_spec(tmp_path, REVIEW_PAIR))
    hosts = {r.role.removesuffix("-function"): r.inputs["accountName"] for r in p.of_type("azure-native:storage:StorageAccount")
             if r.name.endswith("-host")}
    assert set(hosts) == {"tag-parse", "agg9"} and hosts["tag-parse"] != hosts["agg9"], hosts
    assert all(len(name) == naming.STORAGE_ACCOUNT_MAX for name in hosts.values())
    queues = {(r.inputs["accountName"], r.inputs["queueName"]) for r in p.of_type("azure-native:storage:Queue")}
    assert {(hosts["tag-parse"], "objects"), (hosts["agg9"], "objects")} <= queues


def test_host_account_hash_spends_the_24_characters_on_telling_stages_apart() -> None:
    suffix = "0123abcd"
    name = naming.host_account_name("txn-scoring", "tag-parse", suffix)
    assert name == "txnscorh" + hashlib.sha256(b"txn-scoring/tag-parse").hexdigest()[:8] + suffix
    # 8 hex digits: no two of 2,000 stage names of one pipeline share an account (4 digits: ~1 in 50 at 50 stages)
    names = {naming.host_account_name("p", f"stage-{i}", suffix) for i in range(2000)}
    assert len(names) == 2000


def test_equal_generated_names_are_refused_at_the_stage(tmp_path: Path) -> None:
    a, b = HASH_TWINS
    assert naming.host_account_name("txn-scoring", a, "0" * 8) == naming.host_account_name("txn-scoring", b, "0" * 8)
    text = _problems(tmp_path, REVIEW_PAIR.replace("tag-parse", a).replace("agg9", b))
    assert f"stages[1].name: Azure: the storage account of stage '{b}' would be named 'txnscorh" in text, text
    assert f"like the one of stage '{a}'" in text and f"rename stage '{b}'" in text
    assert "pipeline.yaml:6:" in text  # the second stage's line: the one to rename


def test_explicit_provider_and_resource_group(example: Plan) -> None:
    assert [r.type for r in example.resources if r.type.startswith("pulumi:providers:")] == ["pulumi:providers:azure-native",
                                                                                            "pulumi:providers:random"]
    providers = [r for r in example.resources if r.type == "pulumi:providers:azure-native"]
    assert len(providers) == 1 and providers[0].inputs["location"] == "eastus"
    assert example.one("azure-native:resources:ResourceGroup").inputs["resourceGroupName"] == "rg-txn-scoring-dev"
    # Every resource names a provider explicitly (the planner keeps only the URN head of the reference).
    assert all(r.provider for r in example.cloud_resources)


def test_buckets_are_private_containers_with_one_lifecycle_rule_each(example: Plan) -> None:
    containers = {r.inputs["containerName"]: r for r in example.of_type("azure-native:storage:BlobContainer") if r.role_kind == "Bucket"}
    assert set(containers) == {"raw", "out-preprocess", "out-score", "out-calibrate", "dead-letter", "artifacts"}
    assert all(c.inputs["publicAccess"] == "None" for c in containers.values())
    policy = example.one("azure-native:storage:ManagementPolicy")
    assert policy.inputs["managementPolicyName"] == "default"
    rules = {r["definition"]["filters"]["prefixMatch"][0]: r["definition"]["actions"]["baseBlob"]["delete"]["daysAfterModificationGreaterThan"]
             for r in policy.inputs["policy"]["rules"]}
    # dev overlay: raw 7, intermediate 7, final 30, dead letters 14; artifacts are kept.
    # (a stage's rule covers its outputs only: `_state/` never expires, see the window test below)
    assert rules == {"raw/": 7, "out-preprocess/preprocess/": 7, "out-score/score/": 30, "out-calibrate/calibrate/": 30, "dead-letter/": 14}
    assert all(re.fullmatch(r"[A-Za-z0-9]+", r["name"]) for r in policy.inputs["policy"]["rules"])
    # The single policy is made last but waits for every data container.
    data_containers = {r.urn for r in containers.values() if r.inputs["containerName"] != "artifacts"}
    assert data_containers <= set(policy.dependencies)


@pytest.mark.usefixtures("example")
def test_lifecycle_policy_is_unique(example: Plan) -> None:
    assert len(example.of_type("azure-native:storage:ManagementPolicy")) == 1


# ---- stream -----------------------------------------------------------------------------------
def test_event_hubs_namespace_and_hub(example: Plan) -> None:
    ns = example.one("azure-native:eventhub:Namespace").inputs
    assert ns["sku"] == {"name": "Standard", "tier": "Standard", "capacity": example.sizing["stream"]["units"]}
    assert ns["disableLocalAuth"] is True and ns["minimumTlsVersion"] == "1.2"
    assert "identity" not in ns  # the example archives with the function: no Capture, no namespace identity
    hub = example.one("azure-native:eventhub:EventHub")
    assert hub.role == "stream"
    assert hub.inputs["partitionCount"] == example.sizing["stream"]["partitions"] == 2
    assert hub.inputs["retentionDescription"] == {"cleanupPolicy": "Delete", "retentionTimeInHours": 24}
    assert "captureDescription" not in hub.inputs


# Three stream stages at 20 MB/s: 38 TU carry the ingress and the stages' egress (3 x 20 MB/s x 1.25 / 2 MB/s);
# a fourth consumer group for an archiver function would need 50 TU, more than a Standard namespace has.
CAPTURED = """
    name: big
    stream: {retention_hours: 24}
    stages:
      - {name: one, handler: "h.py:handle", trigger: {stream: {batch_size: 1000, max_batching_window_s: 5}}}
      - {name: two, handler: "h.py:handle", trigger: {stream: {batch_size: 1000, max_batching_window_s: 5}}}
      - {name: three, handler: "h.py:handle", trigger: {stream: {batch_size: 1000, max_batching_window_s: 5}}}
    workload:
      records_per_second: 20000
      record_bytes: 1000
      stages:
        one: {ms_per_record: 0.01, ms_per_invocation: 20}
        two: {ms_per_record: 0.01, ms_per_invocation: 20}
        three: {ms_per_record: 0.01, ms_per_invocation: 20}
"""


def test_capture_archives_where_the_archiver_function_cannot_run(tmp_path: Path) -> None:
    p = plan_of(write_spec(tmp_path, CAPTURED))
    reasoning = p.sizing["stream"]["reasoning"]
    assert p.sizing["stream"]["units"] == 38
    assert any(line.startswith("=> Capture: the archiver function cannot run here: its consumer group would need 50 TU") for line in reasoning)
    ns = p.one("azure-native:eventhub:Namespace").inputs
    assert ns["identity"] == {"type": "SystemAssigned"} and ns["sku"]["capacity"] == 38
    hub = p.one("azure-native:eventhub:EventHub")
    capture = hub.inputs["captureDescription"]
    assert capture["enabled"] is True
    dest = capture["destination"]
    assert dest["name"] == "EventHubArchive.AzureBlockBlob" and dest["blobContainer"] == "raw"
    assert dest["identity"] == {"type": "SystemAssigned"}
    assert dest["archiveNameFormat"].startswith("raw/{Namespace}/{EventHub}/{PartitionId}/")
    assert dest["storageAccountResourceId"].endswith(container_id(p, "raw").split("/blobServices")[0].rsplit("/", 1)[-1])
    # Capture's identity may write the raw container (and only under raw/) before the hub exists.
    (write,) = assignments(p, "raw-archive")
    assert write["roleDefinitionId"] == role_def(iam.STORAGE_BLOB_DATA_CONTRIBUTOR)
    assert write["scope"] == container_id(p, "raw")
    assert "StringStartsWith 'raw/'" in write["condition"] and write["conditionVersion"] == "2.0"
    archive_urns = {r.urn for r in p.resources if r.role == "raw-archive" and r.custom}
    assert archive_urns & set(hub.dependencies)
    # nothing of the function is built: no app, identity or consumer group of its own
    assert not [r for r in p.resources if r.role == "raw-archive" and r.type != RA and r.custom]
    assert sorted(g.inputs["consumerGroupName"] for g in p.of_type("azure-native:eventhub:ConsumerGroup")) == ["one", "three", "two"]


def test_one_consumer_group_per_stream_stage_and_one_for_the_archiver(example: Plan) -> None:
    groups = {g.role: g.inputs for g in example.of_type("azure-native:eventhub:ConsumerGroup")}
    assert {role: g["consumerGroupName"] for role, g in groups.items()} == {"preprocess-trigger": "preprocess", "raw-archive": "raw_archive"}
    assert {g["eventHubName"] for g in groups.values()} == {"records"}


def test_sizing_follows_per_tu_limits(tmp_path: Path) -> None:
    prod = plan(load_spec(str(EXAMPLE), "prod"), "azure")
    # 1,500 events/s x 1.25 / 1,000 per TU = 2 TU; bytes are 1.05 MB/s x 1.25 = 2 TU; 2 partitions carry the stage.
    assert prod.sizing["stream"]["units"] == 2 and prod.sizing["stream"]["partitions"] == 2
    assert prod.one("azure-native:eventhub:Namespace").inputs["sku"]["capacity"] == 2
    assert prod.one("azure-native:eventhub:EventHub").inputs["retentionDescription"]["retentionTimeInHours"] == 168
    assert any("1,000 events/s per TU" in line for line in prod.sizing["stream"]["reasoning"])
    big = write_spec(tmp_path, """
        name: big
        workload: {records_per_second: 30000, record_bytes: 500}
        stages:
          - {name: one, handler: "h.py:handle", trigger: {stream: {}}}
    """)
    sized = sizing.size_stream(load_spec(str(big)).spec)
    assert sized.units == 38 and sized.partitions == 32  # 30,000 x 1.25 / 1,000 = 37.5 -> 38; partitions capped at 32
    assert sized.capacity_records_per_second == 32_000  # a partition takes ~1 TU of ingress


def test_partitions_are_kept_from_the_last_deploy(tmp_path: Path) -> None:
    """Event Hubs Standard cannot change partitions: a workload change must not replace the hub."""
    spec = load_spec(str(EXAMPLE), "prod").spec
    fresh = sizing.size_stream(spec)
    kept = sizing.size_stream(spec, {"stream_sizing": {"units": 1, "partitions": 6, "mode": "standard"}})
    assert fresh.partitions == 2 and kept.partitions == 6
    assert any("kept from this stack's event hub" in line for line in kept.reasoning)
    backend = AzureBackend(spec, "prod", EXAMPLE.parent)
    backend.previous_outputs = {"stream_sizing": {"units": 2, "partitions": 6}}
    assert backend.sizing().stream is not None and backend.sizing().stream.partitions == 6
    assert backend.sizing().stages["preprocess"].concurrency == 6
    # An explicit, different count is refused with the reason, not silently applied.
    pinned = spec.model_copy(update={"stream": spec.stream.model_copy(update={"partitions": 8})})
    problems = checks.problems(pinned, "prod", {"stream_sizing": {"partitions": 6}})
    assert any(path == ("stream", "partitions") and "cannot change" in message for path, message, _ in problems)


# ---- identities and grants --------------------------------------------------------------------
def test_stream_stage_grants(example: Plan) -> None:
    grants = assignments(example, "preprocess-identity")
    hub = example.one("azure-native:eventhub:EventHub")
    hub_id = (f"/subscriptions/{SUB}/resourceGroups/rg-txn-scoring-dev/providers/Microsoft.EventHub/namespaces/"
              f"{hub.inputs['namespaceName']}/eventhubs/records")
    receive = [g for g in grants if g["roleDefinitionId"] == role_def(iam.EVENT_HUBS_DATA_RECEIVER)]
    assert [g["scope"] for g in receive] == [hub_id]
    writes = {g["scope"]: g for g in grants if g["roleDefinitionId"] == blob_writer(example)}
    assert set(writes) == {container_id(example, "out-preprocess"), container_id(example, "dead-letter")}
    for g in writes.values():
        assert "StringStartsWith 'preprocess/'" in g["condition"]
        for action in iam.BLOB_WRITE_ACTIONS:
            assert f"ActionMatches{{'{action}'}}" in g["condition"]
    assert all(g["principalType"] == "ServicePrincipal" for g in grants)


def test_stage_writes_use_a_custom_role_that_cannot_manage_containers(example: Plan) -> None:
    """Review S3: Storage Blob Data Contributor also grants containers/delete|write|read (control plane, beyond any ABAC
    condition), so any stage could delete the shared dead-letter container. Writes get the blob data actions only."""
    (writer,) = [r for r in example.of_type("azure-native:authorization:RoleDefinition") if r.name.endswith("-blob-writer-role")]
    assert writer.role == "platform" and writer.provider  # one for the stack, outliving any stage
    assert writer.inputs["permissions"] == [{"dataActions": list(iam.BLOB_WRITE_ACTIONS)}]  # no (control-plane) actions
    assert all(a.startswith("Microsoft.Storage/storageAccounts/blobServices/containers/blobs/") for a in iam.BLOB_WRITE_ACTIONS)
    assert writer.inputs["assignableScopes"] == [f"/subscriptions/{SUB}/resourceGroups/rg-txn-scoring-dev"]
    dead = container_id(example, "dead-letter")
    apps = {"preprocess-identity", "score-identity", "calibrate-identity", "raw-archive"}
    on_data = [r for r in example.of_type(RA) if r.role in apps and "/containers/" in r.inputs["scope"] and "txnscoringdat" in r.inputs["scope"]]
    assert on_data and all(r.inputs["roleDefinitionId"] != role_def(iam.STORAGE_BLOB_DATA_CONTRIBUTOR) for r in on_data)
    dead_letters = [r.inputs for r in on_data if r.inputs["scope"] == dead]
    assert {r.inputs["principalId"] for r in on_data if r.inputs["scope"] == dead} == {
        naming.mock_uuid(i.name, "principal") for i in example.of_type("azure-native:managedidentity:UserAssignedIdentity") if i.role in apps}
    for grant in dead_letters:  # the same ABAC condition as before: only under the stage's own prefix
        assert grant["roleDefinitionId"] == blob_writer(example) and "StringStartsWith" in grant["condition"]


def test_object_stage_grants_read_source_prefix_and_exact_model(example: Plan) -> None:
    grants = assignments(example, "score-identity")
    reads = [g for g in grants if g["roleDefinitionId"] == role_def(iam.STORAGE_BLOB_DATA_READER)]
    by_scope = {g["scope"]: g["condition"] for g in reads}
    assert "StringStartsWith 'preprocess/'" in by_scope[container_id(example, "out-preprocess")]
    model = by_scope[container_id(example, "artifacts")]
    assert re.search(r"StringEquals 'models/[0-9a-f]{16}/fraud-model.json'", model)
    assert not any(g["roleDefinitionId"] == role_def(iam.EVENT_HUBS_DATA_RECEIVER) for g in grants)
    # No identity gets an account-wide data role, except each app on its own host-storage account.
    hosts = {r.inputs["accountName"] for r in example.of_type("azure-native:storage:StorageAccount") if r.name.endswith("-host")}
    for g in assignments(example):
        if g["roleDefinitionId"] in {role_def(iam.STORAGE_BLOB_DATA_CONTRIBUTOR), role_def(iam.STORAGE_BLOB_DATA_READER),
                                     role_def(iam.STORAGE_BLOB_DATA_OWNER)}:
            assert "/blobServices/default/containers/" in g["scope"] or g["scope"].rsplit("/", 1)[-1] in hosts


def test_each_app_has_its_own_host_storage(example: Plan) -> None:
    """Stage isolation: an app's identity owns its own host account only (keys, leases, checkpoints of no other app)."""
    owners = [r for r in example.of_type(RA) if r.inputs["roleDefinitionId"] == role_def(iam.STORAGE_BLOB_DATA_OWNER)]
    assert sorted(r.role for r in owners) == ["calibrate-function", "preprocess-function", "raw-archive", "score-function"]
    identities = {r.role: r for r in example.of_type("azure-native:managedidentity:UserAssignedIdentity")}
    for owner in owners:
        stage = owner.role.removesuffix("-function")
        host = example.one("azure-native:storage:StorageAccount", owner.role)
        assert owner.inputs["scope"].endswith(f"/storageAccounts/{host.inputs['accountName']}")
        identity_role = "raw-archive" if owner.role == "raw-archive" else f"{stage}-identity"  # the archiver's identity is in its role
        principal = naming.mock_uuid(identities[identity_role].name, "principal")
        assert owner.inputs["principalId"] == principal
        app = example.one("azure-native:web:WebApp", owner.role)
        assert settings(app)["AzureWebJobsStorage__accountName"] == host.inputs["accountName"]
        # no other stage's identity has any role on this account; an object stage's queue roles are on its own queues only
        on_account = [r for r in example.of_type(RA) if host.inputs["accountName"] in r.inputs["scope"]]
        assert owner in on_account
        for other in on_account:
            if other is not owner:
                assert other.role in (f"{stage}-function", f"{stage}-trigger") and "/queueServices/default/queues/" in other.inputs["scope"]
    grants = assignments(example, "score-function")
    deploy = [g for g in grants if g["roleDefinitionId"] == role_def(iam.STORAGE_BLOB_DATA_CONTRIBUTOR)]
    assert [g["scope"].rsplit("/", 1)[-1] for g in deploy] == ["deploy-score"]
    telemetry = [g for g in grants if g["roleDefinitionId"] == role_def(iam.MONITORING_METRICS_PUBLISHER)]
    assert len(telemetry) == 1 and telemetry[0]["scope"].endswith("/Microsoft.Insights/components/appi-txn-scoring-dev")


# ---- functions --------------------------------------------------------------------------------
def test_one_flex_app_per_stage_with_identity_based_settings(example: Plan) -> None:
    apps = {r.role: r for r in example.of_type("azure-native:web:WebApp")}
    assert set(apps) == {"preprocess-function", "score-function", "calibrate-function", "raw-archive"}
    plans = example.of_type("azure-native:web:AppServicePlan")
    assert len(plans) == 4 and all(p.inputs["sku"] == {"name": "FC1", "tier": "FlexConsumption"} for p in plans)
    identities = {r.role: r for r in example.of_type("azure-native:managedidentity:UserAssignedIdentity")}
    for stage in ("preprocess", "score", "calibrate"):
        app = apps[f"{stage}-function"]
        i = app.inputs
        assert i["kind"] == "functionapp,linux" and i["httpsOnly"] is True
        assert len(i["name"]) <= 60
        uami = identities[f"{stage}-identity"]
        assert i["identity"]["type"] == "UserAssigned" and len(i["identity"]["userAssignedIdentities"]) == 1
        assert i["identity"]["userAssignedIdentities"][0].endswith(f"/userAssignedIdentities/{uami.inputs['resourceName']}")
        cfg = i["functionAppConfig"]
        assert cfg["runtime"] == {"name": "python", "version": "3.12"}
        storage = cfg["deployment"]["storage"]
        assert storage["type"] == "blobContainer" and storage["value"].endswith(f"/deploy-{stage}")
        assert storage["authentication"]["type"] == "UserAssignedIdentity"
        s = settings(app)
        assert s["AzureWebJobsStorage__credential"] == "managedidentity"
        assert s["AzureWebJobsStorage__accountName"].isalnum()
        assert re.fullmatch(r"[0-9a-f-]{36}", s["AzureWebJobsStorage__clientId"])
        assert s["APPLICATIONINSIGHTS_CONNECTION_STRING"].startswith("InstrumentationKey=")
        assert s["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == f"ClientId={s['AzureWebJobsStorage__clientId']};Authorization=AAD"
        assert len(s["AzureFunctionsWebHost__hostid"]) <= 32
        assert s["PIPELINE_STAGE"] == stage
        for forbidden in ("FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE", "AzureWebJobsStorage"):
            assert forbidden not in s
        # Every role assignment of the stage exists before its app starts.
        stage_grants = {r.urn for r in example.of_type(RA) if r.role in (f"{stage}-identity", f"{stage}-function")}
        assert stage_grants <= set(app.dependencies)
    host_ids = [settings(a)["AzureFunctionsWebHost__hostid"] for a in apps.values()]
    assert len(set(host_ids)) == len(host_ids)


def test_memory_rounds_up_to_flex_sizes(example: Plan) -> None:
    memory = {r.role: r.inputs["functionAppConfig"]["scaleAndConcurrency"]["instanceMemoryMB"] for r in example.of_type("azure-native:web:WebApp")}
    # preprocess 512, score 512 (dev overlay), calibrate 256 -> 512; the raw archiver's size comes from its sizing
    assert memory == {"preprocess-function": 512, "score-function": 512, "calibrate-function": 512, "raw-archive": 512}
    calibrate = example.one("azure-native:web:WebApp", "calibrate-function")
    assert calibrate.inputs["tags"]["memory-mb"] == "256 requested, 512 instance"


def test_stream_stage_batch_and_retry_settings(example: Plan) -> None:
    s = settings(example.one("azure-native:web:WebApp", "preprocess-function"))
    host = "AzureFunctionsJobHost__extensions__eventHubs__"
    assert s[f"{host}maxEventBatchSize"] == "500" and s["PIPELINE_BATCH_SIZE"] == "500"
    # minEventBatchSize must be below maxEventBatchSize; it turns on maxWaitTime (the batching window)
    assert s[f"{host}maxWaitTime"] == "00:00:05" and s[f"{host}minEventBatchSize"] == "499"
    assert s[f"{host}initialOffsetOptions__type"] == "fromEnd"
    assert s["PIPELINE_MAX_RETRIES"] == "3"
    assert s["PIPELINE_CONSUMER_GROUP"] == "preprocess" and s["PIPELINE_EVENT_HUB"] == "records"
    assert s["EventHubConnection__fullyQualifiedNamespace"].endswith(".servicebus.windows.net")
    assert s["EventHubConnection__credential"] == "managedidentity"
    assert s["CURRENCY"] == "USD"
    assert s["PIPELINE_DEAD_LETTER_BUCKET"] == "dead-letter" and s["PIPELINE_DEAD_LETTER_PREFIX"] == "preprocess/"


def test_code_is_uploaded_then_released_with_one_deploy(example: Plan) -> None:
    for stage in ("preprocess", "score", "calibrate"):
        role = f"{stage}-function"
        blob = example.one("azure-native:storage:Blob", role)
        assert blob.inputs["blobName"] == "released-package.zip" and blob.inputs["containerName"] == f"deploy-{stage}"
        assert re.fullmatch(r"[0-9a-f]{64}", blob.inputs["metadata"]["sha256"])
        package = Path(blob.inputs["source"]["asset"])
        assert blob.inputs["metadata"]["sha256"] == hashlib.sha256(package.read_bytes()).hexdigest()
        with zipfile.ZipFile(package) as archive:
            assert {"function_app.py", "host.json", "requirements.txt", "pipeline_azure/runtime.py", "pipeline/runtime/invoke.py"} <= set(archive.namelist())
            assert "build_app()" in archive.read("function_app.py").decode()
        release = example.one("azure-native:resources:Deployment", role)
        template = release.inputs["properties"]["template"]
        (ext,) = template["resources"]
        assert ext["type"] == "Microsoft.Web/sites/extensions" and ext["name"] == "[concat(parameters('site'), '/onedeploy')]"
        assert release.inputs["properties"]["parameters"]["site"]["value"] == example.one("azure-native:web:WebApp", role).inputs["name"]
        assert template["variables"]["packageSha256"] == blob.inputs["metadata"]["sha256"]
        assert release.inputs["properties"]["parameters"]["packageUri"]["value"].endswith(f"/deploy-{stage}/released-package.zip")
        app = example.one("azure-native:web:WebApp", role)
        assert {app.urn, blob.urn} <= set(release.dependencies)
    group = example.one("azure-native:eventhub:ConsumerGroup", "preprocess-trigger")
    assert group.urn in example.one("azure-native:resources:Deployment", "preprocess-function").dependencies


# ---- object and schedule triggers -------------------------------------------------------------
def queue_id(p: Plan, stage: str, name: str) -> str:
    host = p.one("azure-native:storage:StorageAccount", f"{stage}-function").inputs
    return (f"/subscriptions/{SUB}/resourceGroups/{host['resourceGroupName']}/providers/Microsoft.Storage/storageAccounts/"
            f"{host['accountName']}/queueServices/default/queues/{name}")


def test_event_grid_writes_object_events_to_the_stages_queue(example: Plan) -> None:
    """BlobCreated -> Event Grid -> the stage's own queue (identity-based delivery) -> the queue-triggered function."""
    (topic,) = example.of_type("azure-native:eventgrid:SystemTopic")
    assert topic.inputs["topicType"] == "Microsoft.Storage.StorageAccounts" and topic.inputs["identity"] == {"type": "SystemAssigned"}
    topic_principal = naming.mock_uuid(topic.name, "principal")
    host = example.one("azure-native:storage:StorageAccount", "score-function").inputs["accountName"]
    queues = {r.inputs["queueName"]: r for r in example.of_type("azure-native:storage:Queue")}
    assert set(queues) == {"objects", "objects-poison"} and {q.inputs["accountName"] for q in queues.values()} == {host}
    work = queue_id(example, "score", "objects")

    sub = example.one("azure-native:eventgrid:SystemTopicEventSubscription")
    i = sub.inputs
    assert "destination" not in i  # delivered with the topic's identity, not as an anonymous endpoint
    delivery = i["deliveryWithResourceIdentity"]
    assert delivery["identity"] == {"type": "SystemAssigned"}
    assert delivery["destination"] == {"endpointType": "StorageQueue", "queueName": "objects", "queueMessageTimeToLiveInSeconds": -1,
                                       "resourceId": work.split("/queueServices/")[0]}
    assert i["filter"]["includedEventTypes"] == ["Microsoft.Storage.BlobCreated"]
    assert i["filter"]["subjectBeginsWith"] == "/blobServices/default/containers/out-preprocess/blobs/preprocess/"
    assert i["retryPolicy"] == {"maxDeliveryAttempts": 30, "eventTimeToLiveInMinutes": 1440}  # writing to a queue: Event Grid's maximum
    dl = i["deadLetterWithResourceIdentity"]
    assert dl["identity"] == {"type": "SystemAssigned"}
    assert dl["deadLetterDestination"]["blobContainerName"] == "dead-letter" and dl["deadLetterDestination"]["endpointType"] == "StorageBlob"

    # The topic's identity: dead letters (platform) and Message Sender on exactly this queue (the stage's trigger role).
    topic_grants = {(g.role, g.inputs["roleDefinitionId"], g.inputs["scope"]) for g in example.of_type(RA) if g.inputs["principalId"] == topic_principal}
    assert topic_grants == {("platform", role_def(iam.STORAGE_BLOB_DATA_CONTRIBUTOR), container_id(example, "dead-letter")),
                            ("score-trigger", role_def(iam.STORAGE_QUEUE_DATA_MESSAGE_SENDER), work)}
    sender = next(g for g in example.of_type(RA) if g.role == "score-trigger")
    assert sender.inputs["principalType"] == "ServicePrincipal"
    assert {sender.urn, queues["objects"].urn} <= set(sub.dependencies)


def test_object_stage_consumes_its_queue_with_exact_rights(example: Plan) -> None:
    work, poison = queue_id(example, "score", "objects"), queue_id(example, "score", "objects-poison")
    identity = example.one("azure-native:managedidentity:UserAssignedIdentity", "score-identity")
    principal = naming.mock_uuid(identity.name, "principal")
    (consumer,) = [r for r in example.of_type("azure-native:authorization:RoleDefinition") if r.role == "score-function"]
    # AssignableScopes take a resource group at the narrowest (role-definitions#assignablescopes); the assignment names the queue.
    rg = f"/subscriptions/{SUB}/resourceGroups/rg-txn-scoring-dev"
    assert consumer.inputs["roleType"] == "CustomRole" and consumer.inputs["assignableScopes"] == [rg] and consumer.inputs["scope"] == rg
    (perms,) = consumer.inputs["permissions"]
    assert perms == {"actions": ["Microsoft.Storage/storageAccounts/queueServices/queues/read"],
                     "dataActions": ["Microsoft.Storage/storageAccounts/queueServices/queues/messages/read",
                                     "Microsoft.Storage/storageAccounts/queueServices/queues/messages/process/action",
                                     "Microsoft.Storage/storageAccounts/queueServices/queues/messages/write"]}
    on_queues = {(g.inputs["roleDefinitionId"], g.inputs["scope"]) for g in example.of_type(RA)
                 if g.inputs["principalId"] == principal and "/queueServices/" in g.inputs["scope"]}
    consumer_id = f"{rg}/providers/Microsoft.Authorization/roleDefinitions/{consumer.inputs.get('roleDefinitionId') or naming.mock_uuid(consumer.name)}"
    assert on_queues == {(consumer_id, work), (role_def(iam.STORAGE_QUEUE_DATA_MESSAGE_SENDER), poison)}
    app = example.one("azure-native:web:WebApp", "score-function")
    queue_grants = {g.urn for g in example.of_type(RA) if g.role == "score-function" and "/queueServices/" in g.inputs["scope"]}
    assert len(queue_grants) == 2 and queue_grants <= set(app.dependencies)  # the trigger starts with its rights
    s = settings(app)
    host = example.one("azure-native:storage:StorageAccount", "score-function").inputs["accountName"]
    assert s["ObjectQueue__queueServiceUri"] == f"https://{host}.queue.core.windows.net/"
    assert s["ObjectQueue__credential"] == "managedidentity" and s["ObjectQueue__clientId"] == naming.mock_uuid(identity.name, "client")
    assert s["PIPELINE_OBJECT_QUEUE"] == "objects" and s["PIPELINE_MAX_DEQUEUE_COUNT"] == "4"  # retries 3 + the first attempt
    # host.json: one message per instance at a time, maxDequeueCount from retries, a fixed delay between attempts
    blob = example.one("azure-native:storage:Blob", "score-function")
    with zipfile.ZipFile(Path(blob.inputs["source"]["asset"])) as archive:
        host_json = json.loads(archive.read("host.json"))
    assert host_json["extensions"]["queues"] == {"batchSize": 1, "newBatchThreshold": 0, "maxDequeueCount": 4, "visibilityTimeout": "00:05:00",
                                                 "maxPollingInterval": "00:00:02", "messageEncoding": "none"}
    with zipfile.ZipFile(Path(example.one("azure-native:storage:Blob", "preprocess-function").inputs["source"]["asset"])) as archive:
        assert "extensions" not in json.loads(archive.read("host.json"))


CHAINED = """
    name: chain
    stream: {archive: false}
    stages:
      - {name: ingest, handler: "h.py:handle", trigger: {stream: {batch_size: 50, max_batching_window_s: 0, starting_position: earliest}}}
      - {name: clean, handler: "h.py:handle", trigger: {objects: {from: ingest}}, retries: 0, max_event_age_s: 86400, memory_mb: 2049}
      - {name: ab, handler: "h.py:handle", trigger: {objects: {from: clean}}, memory_mb: 4096}
      - {name: report, handler: "h.py:handle", trigger: {objects: {from: ab}}}
      - {name: nightly, handler: "h.py:handle", trigger: {schedule: "30 2 * * MON-FRI"}}
      - {name: often, handler: "h.py:handle", trigger: {schedule: "rate(15 minutes)"}}
"""


def test_chained_object_stages(tmp_path: Path) -> None:
    p = plan_of(write_spec(tmp_path, CHAINED))
    assert len(p.of_type("azure-native:eventgrid:SystemTopic")) == 1
    subs = {r.role: r.inputs for r in p.of_type("azure-native:eventgrid:SystemTopicEventSubscription")}
    assert {k: v["filter"]["subjectBeginsWith"] for k, v in subs.items()} == {
        "clean-trigger": "/blobServices/default/containers/out-ingest/blobs/ingest/",
        "ab-trigger": "/blobServices/default/containers/out-clean/blobs/clean/",
        "report-trigger": "/blobServices/default/containers/out-ab/blobs/ab/",
    }
    # retries 0 and a day's max age: one attempt (maxDequeueCount 1), no retry delay to spread
    clean = settings(p.one("azure-native:web:WebApp", "clean-function"))
    assert clean["PIPELINE_MAX_DEQUEUE_COUNT"] == "1"
    assert {s["queueName"] for s in (v["deliveryWithResourceIdentity"]["destination"] for v in subs.values())} == {"objects"}
    assert len({v["deliveryWithResourceIdentity"]["destination"]["resourceId"] for v in subs.values()}) == 3  # each stage its own account
    # no archive: no Capture, no namespace identity, no raw container
    hub = p.one("azure-native:eventhub:EventHub")
    assert "captureDescription" not in hub.inputs
    assert "identity" not in p.one("azure-native:eventhub:Namespace").inputs
    assert not [r for r in p.of_type("azure-native:storage:BlobContainer") if r.inputs["containerName"] == "raw"]
    memory = {r.role: r.inputs["functionAppConfig"]["scaleAndConcurrency"]["instanceMemoryMB"] for r in p.of_type("azure-native:web:WebApp")}
    assert memory["clean-function"] == 4096 and memory["ab-function"] == 4096 and memory["ingest-function"] == 512
    ingest = settings(p.one("azure-native:web:WebApp", "ingest-function"))
    assert ingest["AzureFunctionsJobHost__extensions__eventHubs__initialOffsetOptions__type"] == "fromStart"
    assert "AzureFunctionsJobHost__extensions__eventHubs__maxWaitTime" not in ingest
    # schedules become NCRONTAB app settings; no event subscription or consumer group for them
    assert settings(p.one("azure-native:web:WebApp", "nightly-function"))["PIPELINE_SCHEDULE"] == "0 30 2 * * 1,2,3,4,5"
    assert settings(p.one("azure-native:web:WebApp", "often-function"))["PIPELINE_SCHEDULE"] == "0 */15 * * * *"
    assert [g.inputs["consumerGroupName"] for g in p.of_type("azure-native:eventhub:ConsumerGroup")] == ["ingest"]
    # each object stage reads exactly its source prefix
    ab_reads = [g["scope"] for g in assignments(p, "ab-identity") if g["roleDefinitionId"] == role_def(iam.STORAGE_BLOB_DATA_READER)]
    assert ab_reads == [container_id(p, "out-clean")]
    # alerts: errors and runtime dead letters for every stage, Event Grid dead letters for object stages
    alerts = {r.name for r in p.of_type("azure-native:monitor:MetricAlert")}
    assert {"chain-observability-clean-undelivered", "chain-observability-report-undelivered"} <= alerts
    # errors, dead letters and poison messages: one log search rule each over every app (each rule is billed, whatever it watches)
    assert {r.inputs["ruleName"].removeprefix("chain-observability-") for r in p.of_type("azure-native:monitor:ScheduledQueryRule")} == {
        "errors", "dead-letters", "poison"}


def test_plans_are_deterministic(tmp_path: Path) -> None:
    path = write_spec(tmp_path, CHAINED)
    first, second = plan_of(path), plan_of(path)
    assert [(r.urn, r.physical_name) for r in first.resources] == [(r.urn, r.physical_name) for r in second.resources]


# ---- checks -----------------------------------------------------------------------------------
def _problems(tmp_path: Path, body: str) -> str:
    with pytest.raises(SpecError) as err:
        plan_of(write_spec(tmp_path, body))
    return str(err.value)


def test_check_rejects_memory_above_flex(tmp_path: Path) -> None:
    text = _problems(tmp_path, """
        name: big
        stages:
          - {name: one, handler: "h.py:handle", trigger: {stream: {}}, memory_mb: 8192}
    """)
    assert "4096" in text and "memory_mb" in text


def test_check_rejects_workload_above_standard_namespace(tmp_path: Path) -> None:
    text = _problems(tmp_path, """
        name: big
        workload: {records_per_second: 100000}
        stages:
          - {name: one, handler: "h.py:handle", trigger: {stream: {}}}
    """)
    assert "throughput units" in text


def test_check_rejects_too_many_partitions(tmp_path: Path) -> None:
    text = _problems(tmp_path, """
        name: big
        stream: {partitions: 64}
        stages:
          - {name: one, handler: "h.py:handle", trigger: {stream: {}}}
    """)
    assert "32" in text


def test_check_rejects_schedules_ncrontab_cannot_express(tmp_path: Path) -> None:
    text = _problems(tmp_path, """
        name: sched
        stages:
          - {name: uneven, handler: "h.py:handle", trigger: {schedule: "rate(7 minutes)"}}
          - {name: both, handler: "h.py:handle", trigger: {schedule: "0 0 1 * MON"}}
    """)
    assert "rate(7 minutes)" in text and "day-of-week" in text


def test_check_retention_and_consumer_groups() -> None:
    from pipeline_azure import checks

    from pipeline.spec.model import PipelineSpec

    base = {"name": "p1x", "stages": [{"name": f"s{i}", "handler": "h.py:handle", "trigger": {"stream": {}}} for i in range(20)]}
    spec = PipelineSpec.model_validate(base)
    found = checks.problems(spec, "dev")
    assert any("consumer groups" in message for _, message, _ in found)
    # retention above Standard's 7 days (the core caps at 168 today; the backend does not rely on it)
    wide = spec.model_copy(update={"stream": spec.stream.model_copy(update={"retention_hours": 169})})
    assert any(path == ("stream", "retention_hours") for path, _, _ in checks.problems(wide, "dev"))


@pytest.mark.parametrize(("text", "expected"), [
    ("*/5 * * * *", "0 */5 * * * *"),
    ("0 6 * * *", "0 0 6 * * *"),
    ("0 0 * * 7", "0 0 0 * * 0"),
    ("0 0 1 JAN,JUL *", "0 0 0 1 1,7 *"),
    ("5/20 * * * *", "0 5,25,45 * * * *"),
    ("rate(1 minute)", "0 * * * * *"),
    ("rate(2 hours)", "0 0 */2 * * *"),
    ("rate(1 day)", "0 0 0 * * *"),
    ("rate(7 days)", "0 0 0 * * 0"),
])
def test_ncrontab_translation(text: str, expected: str) -> None:
    assert ncrontab.ncrontab(parse_schedule(text)) == expected


def test_mock_ids_are_realistic(example: Plan) -> None:
    app = example.one("azure-native:web:WebApp", "score-function")
    assert app.physical_name == app.inputs["name"]
    for r in example.cloud_resources:
        assert r.physical_name, r.urn


# ---- issue 10: alerts, destroy, network, soft delete --------------------------------------------
def test_metric_alerts_use_the_provider_property_names(example: Plan) -> None:
    """`criteria` is a union-typed input: a plain dict reached the provider as all_of/odata_type/metric_name."""
    throttled = next(r for r in example.of_type("azure-native:monitor:MetricAlert") if r.name.endswith("stream-throttled"))
    criteria = throttled.inputs["criteria"]
    assert criteria["odataType"] == "Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria"
    (criterion,) = criteria["allOf"]
    assert criterion["metricName"] == "ThrottledRequests" and criterion["metricNamespace"] == "Microsoft.EventHub/namespaces"
    assert criterion["criterionType"] == "StaticThresholdCriterion" and criterion["timeAggregation"] == "Total"
    assert criterion["dimensions"] == [{"name": "EntityName", "operator": "Include", "values": ["records"]}]
    group = example.one("azure-native:monitor:ActionGroup")
    assert throttled.inputs["actions"] == [{"actionGroupId": group.physical_name if group.physical_name.startswith("/") else
                                            throttled.inputs["actions"][0]["actionGroupId"]}]
    assert throttled.inputs["actions"][0]["actionGroupId"].endswith(f"/actionGroups/{group.inputs['actionGroupName']}")
    rule = next(r for r in example.of_type("azure-native:monitor:ScheduledQueryRule") if r.name.endswith("-dead-letters"))
    (condition,) = rule.inputs["criteria"]["allOf"]
    assert condition["timeAggregation"] == "Count" and condition["failingPeriods"] == {"minFailingPeriodsToAlert": 1, "numberOfEvaluationPeriods": 1}
    apps = [example.one("azure-native:web:WebApp", f"{s}-function").inputs["name"] for s in ("preprocess", "score", "calibrate")]
    assert condition["query"] == observability.dead_letter_query(*apps, example.one("azure-native:web:WebApp", "raw-archive").inputs["name"])
    assert rule.inputs["actions"]["actionGroups"][0].endswith(f"/actionGroups/{group.inputs['actionGroupName']}")


def test_every_stage_alerts_on_dead_letters_and_object_stages_on_undelivered_events(example: Plan) -> None:
    rules = {r.name.removeprefix("txn-scoring-observability-"): r for r in example.of_type("azure-native:monitor:ScheduledQueryRule")}
    assert set(rules) == {"errors", "dead-letters", "poison"}  # one rule each over every app (was one per app: $1.50 each)
    app = example.one("azure-native:web:WebApp", "score-function").inputs["name"]
    (condition,) = rules["poison"].inputs["criteria"]["allOf"]
    assert condition["query"] == observability.poison_query("objects-poison", app)
    # the line the queue extension logs when it moves a message (QueueProcessor.CopyMessageToPoisonQueueAsync)
    line = "Message has reached MaxDequeueCount of 4. Moving message to queue 'objects-poison'."
    assert observability.POISON_MARKER in line and "objects-poison" in line
    metric = {r.name.removeprefix("txn-scoring-observability-"): r for r in example.of_type("azure-native:monitor:MetricAlert")}
    assert set(metric) == {"stream-throttled", "score-undelivered"}
    (criterion,) = metric["score-undelivered"].inputs["criteria"]["allOf"]
    assert criterion["metricName"] == "DeadLetteredCount"
    assert criterion["dimensions"] == [{"name": "EventSubscriptionName", "operator": "Include", "values": ["SCORE-OBJECTS", "score-objects"]}]
    topic = example.one("azure-native:eventgrid:SystemTopic")
    assert metric["score-undelivered"].inputs["scopes"][0].endswith(f"/systemTopics/{topic.inputs['systemTopicName']}")


ALERTS = """
    name: alerting
    stream: {archive: false}
    stages:
      - {name: one, handler: "h.py:handle", trigger: {stream: {}}}
    alerts:
      emails: [oncall@example.com, data-team@example.org]
      webhook: https://hooks.example.com/services/T000/B000/XXXX
"""


def test_alert_receivers_are_the_specs_emails_and_webhook(tmp_path: Path) -> None:
    p = plan_of(write_spec(tmp_path, ALERTS))
    group = p.one("azure-native:monitor:ActionGroup").inputs
    assert group["emailReceivers"] == [
        {"emailAddress": "oncall@example.com", "name": "email-0", "useCommonAlertSchema": True},
        {"emailAddress": "data-team@example.org", "name": "email-1", "useCommonAlertSchema": True},
    ]
    (hook,) = group["webhookReceivers"]
    assert hook["name"] == "webhook" and hook["useCommonAlertSchema"] is True
    assert hook["serviceUri"] == "[secret]"  # the URL often carries a token: kept as a secret in the state


def _retained(spec_path: Path, delete_data: bool, monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """Resource name -> retainOnDelete, as registered with the engine (plans do not keep resource options)."""
    from pipeline import planner

    seen: dict[str, bool] = {}
    original = planner._RecordingMonitor.RegisterResource

    def record(self: Any, request: Any) -> Any:
        seen[f"{request.type}::{request.name}"] = bool(request.retainOnDelete)
        return original(self, request)

    monkeypatch.setattr(planner._RecordingMonitor, "RegisterResource", record)
    loaded = load_spec(str(spec_path), "dev")

    class Deleting(AzureBackend):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            self.delete_data = delete_data

    monkeypatch.setattr(planner, "backend_class", lambda name: Deleting)
    plan(loaded, "azure")
    return seen


def test_data_survives_destroy_unless_delete_data(monkeypatch: pytest.MonkeyPatch) -> None:
    kept = _retained(EXAMPLE, False, monkeypatch)
    data = {k for k, v in kept.items() if v}
    # The group too: deleting a resource group deletes every account in it, retained or not.
    assert "azure-native:resources:ResourceGroup::txn-scoring-platform-rg" in data
    assert "azure-native:storage:StorageAccount::txn-scoring-platform-data" in data
    assert "azure-native:storage:BlobServiceProperties::txn-scoring-platform-data-soft-delete" in data
    assert "azure-native:storage:ManagementPolicy::txn-scoring-platform-data-lifecycle" in data
    for bucket in ("raw", "preprocess", "score", "calibrate", "dead-letter"):
        assert f"azure-native:storage:BlobContainer::txn-scoring-{bucket}-bucket" in data
    # Deploy artifacts and everything else go: the artifacts container and account, apps, host accounts, the stream.
    assert not kept["azure-native:storage:BlobContainer::txn-scoring-artifacts-bucket"]
    assert not kept["azure-native:storage:StorageAccount::txn-scoring-platform-artifacts"]
    assert not kept["azure-native:eventhub:Namespace::txn-scoring-stream-namespace"]
    assert not kept["azure-native:storage:StorageAccount::txn-scoring-score-function-host"]
    deleting = _retained(EXAMPLE, True, monkeypatch)
    assert not any(deleting.values())


def test_data_account_has_blob_and_container_soft_delete(example: Plan) -> None:
    (props,) = example.of_type("azure-native:storage:BlobServiceProperties")
    data = next(r for r in example.of_type("azure-native:storage:StorageAccount") if r.name.endswith("-data"))
    assert props.inputs["accountName"] == data.inputs["accountName"] and props.inputs["blobServicesName"] == "default"
    assert props.inputs["deleteRetentionPolicy"] == {"days": 7, "enabled": True}
    assert props.inputs["containerDeleteRetentionPolicy"] == {"days": 7, "enabled": True}


def closed_to_inbound(app: PlannedResource) -> bool:
    site = app.inputs["siteConfig"]
    return (app.inputs["publicNetworkAccess"] == "Disabled" and site["publicNetworkAccess"] == "Disabled"
            and site["ipSecurityRestrictionsDefaultAction"] == "Deny" and "ipSecurityRestrictions" not in site
            and site["scmIpSecurityRestrictionsUseMain"] is True and site["scmIpSecurityRestrictionsDefaultAction"] == "Deny")


def test_apps_without_an_http_trigger_take_no_inbound_traffic(example: Plan) -> None:
    """Event Hubs and queue triggers poll, timers fire in the host: no app of the example has a public endpoint."""
    apps = example.of_type("azure-native:web:WebApp")
    assert len(apps) == 4 and all(closed_to_inbound(app) for app in apps)  # the three stages and the raw archiver
    basic = {(r.type, r.role) for r in example.of_type("azure-native:web:WebAppScmAllowed") + example.of_type("azure-native:web:WebAppFtpAllowed")
             if r.inputs["allow"] is False}
    assert len(basic) == 8
    # Deployment still works: One Deploy is an ARM deployment (control plane), not a call to the app's SCM endpoint.
    for release in example.of_type("azure-native:resources:Deployment"):
        (ext,) = release.inputs["properties"]["template"]["resources"]
        assert ext["type"] == "Microsoft.Web/sites/extensions"


def test_stage_scale_limits_come_from_the_sizing(example: Plan) -> None:
    for stage, sized in example.sizing["stages"].items():
        app = example.one("azure-native:web:WebApp", f"{stage}-function")
        assert app.inputs["functionAppConfig"]["scaleAndConcurrency"]["maximumInstanceCount"] == sized["settings"]["maximumInstanceCount"]
        # East US refuses a maximum below 40 (flex-consumption-plan#considerations): never plan less there
        assert sized["settings"]["maximumInstanceCount"] == 40
    assert example.sizing["stages"]["preprocess"]["settings"]["instances"] == example.sizing["stream"]["partitions"]
    assert example.sizing["stages"]["calibrate"]["settings"]["instances"] == 1


# ---- issue 11: uploads, HTTP, schedules over accumulated outputs --------------------------------
SOURCES = """
    name: feeds
    uploads: {}
    stages:
      - {name: ingest, handler: "h.py:handle", trigger: {objects: {from: uploads}}}
      - {name: daily, handler: "h.py:handle", trigger: {schedule: "0 6 * * *", from: ingest}, timeout_s: 900, memory_mb: 4096}
      - {name: lookup, handler: "h.py:handle", trigger: {http: {}}, timeout_s: 30}
      - {name: keep, handler: "h.py:handle", trigger: {http: {persist: true}}}
    workload:
      uploads: {files_per_hour: 2, records_per_file: 5000}
      http: {requests_per_second: 5, rows_per_request: 20}
      stages: {daily: {ms_per_record: 0.01}}
    clouds:
      azure: {http_invokers: [6f0a7c3e-1d2b-4c5d-8e9f-a0b1c2d3e4f5, "sp:0b5d6a1c-2e3f-4a5b-8c7d-9e0f1a2b3c4d"]}
"""


def test_uploads_landing_container_triggers_the_object_stage(tmp_path: Path) -> None:
    p = plan_of(write_spec(tmp_path, SOURCES))
    assert not p.of_type("azure-native:eventhub:Namespace")  # no stream
    landing = container_id(p, "in-uploads")
    sub = p.one("azure-native:eventgrid:SystemTopicEventSubscription", "ingest-trigger").inputs
    assert sub["filter"]["subjectBeginsWith"] == "/blobServices/default/containers/in-uploads/blobs/uploads/"
    assert sub["deliveryWithResourceIdentity"]["destination"]["resourceId"] == queue_id(p, "ingest", "objects").split("/queueServices/")[0]
    # only the HTTP stages have a public endpoint (authenticated by a function key)
    apps = {r.role.removesuffix("-function"): r for r in p.of_type("azure-native:web:WebApp")}
    assert {s for s, app in apps.items() if closed_to_inbound(app)} == {"ingest", "daily"}
    for stage in ("lookup", "keep"):
        assert apps[stage].inputs["publicNetworkAccess"] == "Enabled" and apps[stage].inputs["siteConfig"]["publicNetworkAccess"] == "Enabled"
    (write,) = assignments(p, "uploads-producer")
    creator = p.one("azure-native:authorization:RoleDefinition", "uploads-producer")
    assert write["scope"] == landing and write["roleDefinitionId"].endswith("/roleDefinitions/" + naming.mock_uuid(creator.name))
    assert creator.inputs["permissions"] == [{"dataActions": ["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action"]}]
    assert write["condition"] == iam.path_condition(iam.BLOB_CREATE_ACTIONS, "StringStartsWith", "uploads/")
    producer = p.one("azure-native:managedidentity:UserAssignedIdentity", "uploads-producer")
    assert write["principalId"] == naming.mock_uuid(producer.name, "principal")
    reads = [g for g in assignments(p, "ingest-identity") if g["roleDefinitionId"] == role_def(iam.STORAGE_BLOB_DATA_READER)]
    assert [g["scope"] for g in reads] == [landing] and "StringStartsWith 'uploads/'" in reads[0]["condition"]
    policy = p.one("azure-native:storage:ManagementPolicy").inputs["policy"]["rules"]
    assert {"in-uploads/"} <= {r["definition"]["filters"]["prefixMatch"][0] for r in policy}


def test_stream_producer_may_only_send_to_the_hub(example: Plan) -> None:
    (send,) = assignments(example, "stream-producer")
    hub = example.one("azure-native:eventhub:EventHub")
    assert send["roleDefinitionId"] == role_def(iam.EVENT_HUBS_DATA_SENDER)
    assert send["scope"].endswith(f"/namespaces/{hub.inputs['namespaceName']}/eventhubs/records") and "condition" not in send


def test_schedule_over_accumulated_outputs_lists_exactly_the_source_prefix(tmp_path: Path) -> None:
    p = plan_of(write_spec(tmp_path, SOURCES))
    grants = assignments(p, "daily-identity")
    source, own = container_id(p, "out-ingest"), container_id(p, "out-daily")
    lists = [g for g in grants if g["scope"] == source and "Blob.List" in (g.get("condition") or "")]
    assert len(lists) == 1 and lists[0]["roleDefinitionId"] == role_def(iam.STORAGE_BLOB_DATA_READER)
    condition = lists[0]["condition"]
    # the documented "read or list blobs ... with a path" form (storage-auth-abac-examples), scoped to ingest/
    assert condition == (
        "((!(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read'} AND NOT SubOperationMatches{'Blob.List'})) "
        "OR (@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path] StringStartsWith 'ingest/')) AND "
        "((!(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read'} AND SubOperationMatches{'Blob.List'})) "
        "OR (@Request[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:prefix] StringStartsWith 'ingest/'))")
    state = [g for g in grants if g["scope"] == own and "_state/daily/" in (g.get("condition") or "")]
    assert {g["roleDefinitionId"] for g in state} == {role_def(iam.STORAGE_BLOB_DATA_READER), blob_writer(p)}
    s = settings(p.one("azure-native:web:WebApp", "daily-function"))
    assert s["PIPELINE_STATE_PREFIX"] == "_state/daily/" and s["PIPELINE_INPUT_PREFIX"] == "ingest/" and s["PIPELINE_SCHEDULE"] == "0 0 6 * * *"


def test_lifecycle_rules_expire_a_window_stages_outputs_but_never_its_watermark(tmp_path: Path) -> None:
    """Review S2: a window's watermark and lease live in its own container (`_state/<stage>/`), rewritten only when
    a run has new data; a rule over the whole container deleted them after a quiet spell, and the next run read the
    whole source again (duplicates). The rule must match the outputs and not the state (prefixMatch is
    `<container>/<blob prefix>`)."""
    p = plan_of(write_spec(tmp_path, """
        name: quiet
        uploads: {name: in}
        stages:
          - {name: win, handler: "h.py:handle", trigger: {schedule: "rate(1 hour)", from: in}}
          - {name: chain, handler: "h.py:handle", trigger: {objects: {from: win}}}
          - {name: poll, handler: "h.py:handle", trigger: {http: {from: in}}}
        workload:
          uploads: {files_per_hour: 2, records_per_file: 100}
          http: {requests_per_second: 1, rows_per_request: 10}
    """))
    prefixes = [prefix for rule in p.one("azure-native:storage:ManagementPolicy").inputs["policy"]["rules"]
                for prefix in rule["definition"]["filters"]["prefixMatch"]]
    for stage in ("win", "poll"):
        s = settings(p.one("azure-native:web:WebApp", f"{stage}-function"))
        state = f"{s['PIPELINE_STATE_BUCKET']}/{s['PIPELINE_STATE_PREFIX']}watermark.json"
        assert state.startswith(f"out-{stage}/_state/{stage}/")
        assert not [prefix for prefix in prefixes if state.startswith(prefix)], (state, prefixes)
    win = settings(p.one("azure-native:web:WebApp", "win-function"))
    output = f"{win['PIPELINE_OUTPUT_BUCKET']}/{win['PIPELINE_OUTPUT_PREFIX']}batch.jsonl"
    assert [prefix for prefix in prefixes if output.startswith(prefix)] == ["out-win/win/"]
    # containers without state still expire whole: the uploads and the dead letters (under each stage's prefix)
    assert {"in-in/", "dead-letter/"} <= set(prefixes)


def test_http_stage_needs_an_entra_token_and_a_function_key_only_its_callers_can_read(tmp_path: Path) -> None:
    p = plan_of(write_spec(tmp_path, SOURCES))
    app = p.one("azure-native:web:WebApp", "lookup-function")
    site = app.inputs["siteConfig"]
    assert site["ipSecurityRestrictionsDefaultAction"] == "Allow"  # callers come from anywhere, with a token and a key
    assert "PIPELINE_OUTPUT_BUCKET" not in settings(app)  # no persist: answers only
    assert settings(p.one("azure-native:web:WebApp", "keep-function"))["PIPELINE_OUTPUT_BUCKET"] == "out-keep"
    role = p.one("azure-native:authorization:RoleDefinition", "lookup-trigger").inputs
    assert role["permissions"] == [{"actions": ["Microsoft.Web/sites/functions/listkeys/action", "Microsoft.Web/sites/functions/read"]}]
    rg = f"/subscriptions/{SUB}/resourceGroups/rg-feeds-default"
    app_id = f"{rg}/providers/Microsoft.Web/sites/{app.inputs['name']}"
    assert role["assignableScopes"] == [rg] and role["scope"] == rg
    granted = {g["principalId"]: g for g in assignments(p, "lookup-trigger")}
    caller = p.one("azure-native:managedidentity:UserAssignedIdentity", "lookup-trigger")
    assert set(granted) == {naming.mock_uuid(caller.name, "principal"), "6f0a7c3e-1d2b-4c5d-8e9f-a0b1c2d3e4f5",
                            "0b5d6a1c-2e3f-4a5b-8c7d-9e0f1a2b3c4d"}
    assert all(g["scope"] == app_id and g["roleDefinitionId"].startswith(rg + "/providers/Microsoft.Authorization/roleDefinitions/")
               for g in granted.values())
    assert "principalType" not in granted["6f0a7c3e-1d2b-4c5d-8e9f-a0b1c2d3e4f5"]  # untyped: ARM looks the principal up
    assert granted["0b5d6a1c-2e3f-4a5b-8c7d-9e0f1a2b3c4d"]["principalType"] == "ServicePrincipal"
    assert granted[naming.mock_uuid(caller.name, "principal")]["principalType"] == "ServicePrincipal"


def test_http_invokers_must_be_object_ids(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        plan_of(write_spec(tmp_path, SOURCES.replace("6f0a7c3e-1d2b-4c5d-8e9f-a0b1c2d3e4f5", "alice@example.com")))
    text = str(err.value)
    assert "http_invokers[0]" in text and "not an Entra ID principal" in text


def test_unknown_location_lists_the_regions(tmp_path: Path) -> None:
    text = _problems(tmp_path, ALERTS + "    clouds: {azure: {location: mars}}\n")
    assert "location" in text and "'mars' is not an Azure region" in text and "westeurope" in text
