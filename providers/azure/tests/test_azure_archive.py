"""The raw archive on Azure: Capture or an archiver function, chosen by cost; its wiring, sizing and pricing."""

from __future__ import annotations

import dataclasses
import json
import math
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import pytest
from pipeline_azure import archive_choice, iam, naming, observability, pricing, sizing
from pipeline_azure.backend import AzureBackend

from pipeline.cost import CostEstimate, Price, PriceSheet, load_price_sheet
from pipeline.plan import Plan
from pipeline.planner import plan
from pipeline.sizing import SECONDS_PER_MONTH
from pipeline.spec.load import load_spec
from pipeline.spec.model import PipelineSpec

REPO = Path(__file__).resolve().parents[3]
TRANSACTIONS = REPO / "stacks" / "transactions" / "pipeline.yaml"
SCORING = REPO / "stacks" / "stream-scoring" / "pipeline.yaml"
EASTUS = load_price_sheet(pricing.PRICES, "Azure", "eastus")
SUB = naming.MOCK_SUBSCRIPTION
RA = "azure-native:authorization:RoleAssignment"

# Three stream stages at 20 MB/s: 38 TU carry the ingress and the stages' egress (3 x 20 MB/s x 1.25 / 2 MB/s);
# a fourth consumer group for an archiver function would need 50 TU, more than a Standard namespace has.
BIG = """
    name: big
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
# Two stream stages at 5 MB/s: 7 TU for ingress and their egress; the archiver's third consumer group needs 10.
EGRESS = """
    name: egress
    stages:
      - {name: one, handler: "h.py:handle", trigger: {stream: {batch_size: 1000, max_batching_window_s: 5}}}
      - {name: two, handler: "h.py:handle", trigger: {stream: {batch_size: 1000, max_batching_window_s: 5}}}
    workload:
      records_per_second: 5000
      record_bytes: 1000
      stages:
        one: {ms_per_record: 0.01, ms_per_invocation: 20}
        two: {ms_per_record: 0.01, ms_per_invocation: 20}
"""


def write_spec(tmp_path: Path, body: str) -> Path:
    (tmp_path / "h.py").write_text("def handle(records, context):\n    return records\n")
    path = tmp_path / "pipeline.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def spec_of(path: Path, stack: str | None = None) -> PipelineSpec:
    return load_spec(str(path), stack).spec


def role_def(guid: str) -> str:
    return f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{guid}"


def settings(p: Plan, role: str) -> dict[str, Any]:
    return {s["name"]: s["value"] for s in p.one("azure-native:web:WebApp", role).inputs["siteConfig"]["appSettings"]}


def archive_of(spec: PipelineSpec) -> sizing.RawArchive:
    return archive_choice.plan_archive(spec, sizing.size_stream(spec).partitions)


def archive_total(est: CostEstimate) -> float:
    """The estimate's own lines of the raw archive."""
    return sum(x.monthly_usd for x in est.lines
               if x.role in ("raw-archive", "raw-bucket") or (x.role == "observability" and "raw archiver" in x.item))


@pytest.fixture(scope="module")
def example() -> Plan:
    return plan(load_spec(str(TRANSACTIONS), "dev"), "azure")


# ---- the choice ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "stack"), [(TRANSACTIONS, "dev"), (TRANSACTIONS, "prod"), (SCORING, "dev"), (SCORING, "prod")])
def test_bundled_stacks_archive_with_the_function_where_capture_costs_73_per_tu(path: Path, stack: str) -> None:
    archive = archive_of(spec_of(path, stack))
    assert archive.kind == "function"
    costs = pricing.archive_costs(spec_of(path, stack), archive, archive.archiver.partitions, EASTUS)
    assert costs["capture"] >= 73.0 * archive.capture_units  # $0.10 per TU-hour, whatever the volume
    saving = costs["capture"] - costs["function"]
    assert saving > archive_choice.CAPTURE_TOLERANCE_USD and saving > archive_choice.CAPTURE_TOLERANCE_SHARE * costs["capture"]
    first, verdict = archive.reasoning[:2]
    assert f"${costs['capture']:,.2f}" in first and f"${costs['function']:,.2f}" in first
    assert verdict == f"=> archiver function: Capture would cost ${saving:,.2f} a month more ({saving / costs['capture']:.0%} of its bill)"


def test_large_volume_keeps_capture_when_the_archivers_reads_would_exceed_the_namespace(tmp_path: Path) -> None:
    spec = spec_of(write_spec(tmp_path, BIG))
    archive = archive_of(spec)
    assert (archive.kind, archive.capture_units, archive.archiver_units) == ("capture", 38, 50)
    assert archive.reasoning[-1].startswith("=> Capture: the archiver function cannot run here: its consumer group would need 50 TU")
    # The stream keeps the TUs Capture needs (Capture reads no egress).
    backend = AzureBackend(spec, "dev", tmp_path)
    assert backend.sizing().stream is not None and backend.sizing().stream.units == 38


def test_capture_is_kept_when_the_function_would_save_little(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule, with a price sheet where Capture costs about what the function does: the managed service stays."""
    spec = spec_of(SCORING, "dev")
    cheap = PriceSheet("Azure", "eastus", {**EASTUS.prices, "eventhubs_standard_capture": Price(0.005, "TU-hour", "test", "2026-12-01")})
    monkeypatch.setattr(archive_choice, "_prices", lambda location: (cheap, ""))
    archive = archive_of(spec)
    costs = pricing.archive_costs(spec, archive, archive.archiver.partitions, cheap)
    assert costs["capture"] > costs["function"] and costs["capture"] - costs["function"] <= archive_choice.CAPTURE_TOLERANCE_USD
    assert archive.kind == "capture" and "too little to give up the managed, zero-code service" in archive.reasoning[-1]
    # and a Capture that costs less than the function is never replaced
    free = PriceSheet("Azure", "eastus", {**EASTUS.prices, "eventhubs_standard_capture": Price(0.0, "TU-hour", "test", "2026-12-01")})
    monkeypatch.setattr(archive_choice, "_prices", lambda location: (free, ""))
    assert archive_of(spec).kind == "capture" and archive_of(spec).reasoning[-1] == "=> Capture: an archiver function would not cost less"


def test_a_location_without_prices_decides_with_east_us_prices(tmp_path: Path) -> None:
    spec = spec_of(write_spec(tmp_path, """
        name: japan
        stages:
          - {name: one, handler: "h.py:handle", trigger: {stream: {}}}
        workload: {records_per_second: 10, record_bytes: 300}
        clouds: {azure: {location: japaneast}}
    """))
    archive = archive_of(spec)
    assert archive.kind == "function" and "(eastus prices: japaneast has no price sheet)" in archive.reasoning[0]


def test_the_archivers_reads_count_against_egress_and_add_the_tus_they_need(tmp_path: Path) -> None:
    spec = spec_of(write_spec(tmp_path, EGRESS))
    archive = archive_of(spec)
    assert (archive.kind, archive.capture_units, archive.archiver_units) == ("function", 7, 10)
    backend = AzureBackend(spec, "dev", tmp_path)
    stream = backend.sizing().stream
    assert stream is not None and stream.units == 10 and stream.partitions == sizing.size_stream(spec).partitions  # never a partition more
    assert any("3 consumer group(s) (the stages' and the raw archiver's)" in line and "10 TU with the raw archiver" in line
               for line in stream.reasoning)
    est = backend.estimate_cost(False)
    tus = {x.role: x.quantity for x in est.lines if "throughput units" in x.item}
    assert tus == {"stream": 7 * 730, "raw-archive": 3 * 730}  # what the namespace bills: 10 TU
    assert "+3 TU for its reads" in archive.reasoning[0]


# ---- sizing ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [1, 150, 1500, 50_000])
def test_archiver_batches_do_not_scale_per_record(tmp_path: Path, rate: int) -> None:
    """Batches of whatever a partition receives in 5 minutes, up to what memory holds: invocations follow the
    partitions and the volume, never the records one by one."""
    spec = spec_of(write_spec(tmp_path, f"""
        name: rates
        stages:
          - {{name: one, handler: "h.py:handle", trigger: {{stream: {{batch_size: 500, max_batching_window_s: 5}}}}}}
        workload: {{records_per_second: {rate}, record_bytes: 200}}
    """))
    partitions = sizing.size_stream(spec).partitions
    archiver = sizing.size_archiver(spec, partitions)
    per_partition = rate / partitions
    assert archiver.records_per_invocation >= min(archiver.max_events, per_partition * sizing.ARCHIVER_WAIT_S) * 0.999
    records = rate * SECONDS_PER_MONTH
    assert archiver.invocations_per_month <= max(partitions * SECONDS_PER_MONTH / sizing.ARCHIVER_WAIT_S, records / archiver.max_events) * 1.001
    if rate >= 150:
        assert archiver.records_per_invocation >= 10_000


def test_archiver_instance_size_batch_cap_and_timing() -> None:
    # 512 MB ~ 0.25 vCPU: a quarter of it for one batch at 2 KB + 5 x the body per event
    assert sizing.archiver_max_events(700, 512) == math.floor(512 * 2**20 * 0.25 / (2048 + 5 * 700)) == 24_192
    assert sizing.archiver_invocation_ms(1000, 1024, 512) == pytest.approx(150 + 1000 * (200 + 100) / 1000 / 0.25)
    assert sizing.archiver_invocation_ms(1000, 1024, 2048) == pytest.approx(150 + 1000 * 300 / 1000)
    # transactions prod: 750 events/s of 700 B a partition need more than one 512 MB instance per partition: 2,048 MB
    prod = sizing.size_archiver(spec_of(TRANSACTIONS, "prod"), 2)
    assert prod.memory_mb == 2048 and prod.needed <= 2 and prod.capacity_records_per_second >= 1500 * 1.25
    dev = sizing.size_archiver(spec_of(TRANSACTIONS, "dev"), 2)
    assert dev.memory_mb == 512 and dev.records_per_invocation == 75 * 300


# ---- wiring --------------------------------------------------------------------------------------------


def test_archiver_identity_holds_exactly_its_rights(example: Plan) -> None:
    identity = example.one("azure-native:managedidentity:UserAssignedIdentity", "raw-archive")
    assert identity.inputs["resourceName"] == "id-txn-scoring-dev-raw"
    principal = naming.mock_uuid(identity.name, "principal")
    (definition,) = [r for r in example.of_type("azure-native:authorization:RoleDefinition") if r.name.endswith("-blob-writer-role")]
    writer = naming.mock_uuid(definition.name)  # the mock engine's id for a new custom role
    mine = [r.inputs for r in example.of_type(RA) if r.inputs["principalId"] == principal]
    assert all(r.role == "raw-archive" for r in example.of_type(RA) if r.inputs["principalId"] == principal)
    hub = example.one("azure-native:eventhub:EventHub")
    ns = example.one("azure-native:eventhub:Namespace").inputs
    hub_id = (f"/subscriptions/{SUB}/resourceGroups/rg-txn-scoring-dev/providers/Microsoft.EventHub/namespaces/{ns['namespaceName']}"
              f"/eventhubs/{hub.inputs['eventHubName']}")
    by_role: dict[str, list[dict[str, Any]]] = {}
    for grant in mine:
        by_role.setdefault(grant["roleDefinitionId"].rsplit("/", 1)[-1], []).append(grant)
    assert sorted((guid, len(grants)) for guid, grants in by_role.items()) == sorted([
        (iam.EVENT_HUBS_DATA_RECEIVER, 1), (iam.STORAGE_BLOB_DATA_CONTRIBUTOR, 1), (writer, 2), (iam.STORAGE_BLOB_DATA_OWNER, 1),
        (iam.MONITORING_METRICS_PUBLISHER, 1)])
    assert by_role[iam.EVENT_HUBS_DATA_RECEIVER][0]["scope"] == hub_id  # the hub, not the namespace
    # raw and dead letters through the stack's blob-writer custom role (no container management); the deployment
    # container through the built-in role
    contributor = {g["scope"].rsplit("/", 1)[-1]: g for g in by_role[writer] + by_role[iam.STORAGE_BLOB_DATA_CONTRIBUTOR]}
    assert set(contributor) == {"raw", "dead-letter", "deploy-raw"}
    assert [g["scope"].rsplit("/", 1)[-1] for g in by_role[iam.STORAGE_BLOB_DATA_CONTRIBUTOR]] == ["deploy-raw"]
    for container in ("raw", "dead-letter"):  # every blob data action narrowed to raw/ (ABAC)
        condition = contributor[container]["condition"]
        assert condition == iam.path_condition(iam.BLOB_WRITE_ACTIONS, "StringStartsWith", "raw/")
        assert contributor[container]["conditionVersion"] == "2.0"
    assert "txnscoringdat" in contributor["raw"]["scope"] and "txnscoringart" in contributor["deploy-raw"]["scope"]
    host = example.one("azure-native:storage:StorageAccount", "raw-archive").inputs
    assert by_role[iam.STORAGE_BLOB_DATA_OWNER][0]["scope"].endswith(f"/storageAccounts/{host['accountName']}")
    assert host["allowSharedKeyAccess"] is False
    # the namespace has no identity: nothing writes the archive but the function
    assert "identity" not in ns and "captureDescription" not in hub.inputs


def test_archiver_app_reads_its_consumer_group_in_large_batches(example: Plan) -> None:
    archive = archive_of(spec_of(TRANSACTIONS, "dev"))
    app = example.one("azure-native:web:WebApp", "raw-archive")
    i = app.inputs
    assert i["publicNetworkAccess"] == "Disabled" and i["siteConfig"]["ipSecurityRestrictionsDefaultAction"] == "Deny"
    assert i["siteConfig"]["scmIpSecurityRestrictionsUseMain"] is True
    scale = i["functionAppConfig"]["scaleAndConcurrency"]
    # one instance per partition at most (the trigger's scaling); the cap is the lowest Flex accepts in East US
    assert scale == {"instanceMemoryMB": archive.archiver.memory_mb, "maximumInstanceCount": 40}
    s = settings(example, "raw-archive")
    host = "AzureFunctionsJobHost__extensions__eventHubs__"
    assert s["PIPELINE_CONSUMER_GROUP"] == "raw_archive" and s["PIPELINE_EVENT_HUB"] == "records"
    assert s["EventHubConnection__credential"] == "managedidentity" and s["EventHubConnection__clientId"] == s["AZURE_CLIENT_ID"]
    assert s["EventHubConnection__fullyQualifiedNamespace"].endswith(".servicebus.windows.net")
    assert s[f"{host}maxEventBatchSize"] == str(archive.archiver.max_events) == "24192"
    assert s[f"{host}minEventBatchSize"] == str(archive.archiver.max_events - 1)  # turns maxWaitTime on
    assert s[f"{host}maxWaitTime"] == "00:05:00" and s[f"{host}batchCheckpointFrequency"] == "1"
    assert s[f"{host}initialOffsetOptions__type"] == "fromStart"
    assert (s["PIPELINE_RAW_BUCKET"], s["PIPELINE_RAW_PREFIX"]) == ("raw", "raw/")
    assert (s["PIPELINE_DEAD_LETTER_BUCKET"], s["PIPELINE_DEAD_LETTER_PREFIX"]) == ("dead-letter", "raw/")
    assert s["PIPELINE_MAX_RETRIES"] == str(sizing.ARCHIVER_RETRIES)
    assert s["AzureWebJobsStorage__accountName"] == example.one("azure-native:storage:StorageAccount", "raw-archive").inputs["accountName"]
    hostids = {v["AzureFunctionsWebHost__hostid"] for v in (settings(example, r.role) for r in example.of_type("azure-native:web:WebApp"))}
    assert len(hostids) == 4
    # every role assignment of the archiver exists before its app starts
    assert {r.urn for r in example.of_type(RA) if r.role == "raw-archive"} <= set(app.dependencies)
    group = example.one("azure-native:eventhub:ConsumerGroup", "raw-archive")
    assert group.inputs["consumerGroupName"] == "raw_archive"
    release = example.one("azure-native:resources:Deployment", "raw-archive")
    assert {group.urn, app.urn} <= set(release.dependencies)


def test_archiver_package_holds_the_runtime_and_no_user_code(example: Plan) -> None:
    blob = example.one("azure-native:storage:Blob", "raw-archive")
    assert blob.inputs["containerName"] == "deploy-raw" and blob.inputs["blobName"] == "released-package.zip"
    with zipfile.ZipFile(Path(blob.inputs["source"]["asset"])) as archive:
        names = set(archive.namelist())
        assert {"function_app.py", "host.json", "requirements.txt", "pipeline_azure/archive.py", "pipeline_azure/runtime.py",
                "pipeline/runtime/invoke.py"} <= names
        assert not [n for n in names if n.startswith("handlers/")]
        assert "from pipeline_azure.archive import build_app" in archive.read("function_app.py").decode()
        assert json.loads(archive.read("host.json"))["functionTimeout"] == "00:10:00"


def test_archiver_alerts_like_a_stage(example: Plan) -> None:
    """The archiver's failures and dead letters raise the pipeline's shared rules, which name the app in their results."""
    app = example.one("azure-native:web:WebApp", "raw-archive").inputs["name"]
    stages = [example.one("azure-native:web:WebApp", f"{s}-function").inputs["name"] for s in ("preprocess", "score", "calibrate")]
    rules = {r.name.removeprefix("txn-scoring-observability-"): r for r in example.of_type("azure-native:monitor:ScheduledQueryRule")}
    (dead,) = rules["dead-letters"].inputs["criteria"]["allOf"]
    assert dead["query"] == observability.dead_letter_query(*stages, app)
    (errors,) = rules["errors"].inputs["criteria"]["allOf"]
    assert errors["query"] == (f"AppRequests | where AppRoleName in~ ({', '.join(repr(a) for a in [*stages, app])}) and Success == false "
                               "| project TimeGenerated, AppRoleName, Name, ResultCode")
    group = example.one("azure-native:monitor:ActionGroup")
    assert rules["errors"].inputs["actions"]["actionGroups"][0].endswith(group.inputs["actionGroupName"])


def test_stream_reasoning_states_the_choice(example: Plan) -> None:
    reasoning = example.sizing["stream"]["reasoning"]
    assert any(line.startswith("raw archive: Event Hubs Capture bills 1 TU x 730 h, $") for line in reasoning)
    assert any(line.startswith("=> archiver function: Capture would cost $") for line in reasoning)


# ---- pricing -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [None, BIG, EGRESS])
def test_the_comparison_is_the_estimates_own_lines(tmp_path: Path, body: str | None) -> None:
    spec = spec_of(write_spec(tmp_path, body)) if body else spec_of(TRANSACTIONS, "dev")
    backend = AzureBackend(spec, "dev", tmp_path)
    archive = backend.raw_archive()
    costs = pricing.archive_costs(spec, archive, archive.archiver.partitions, EASTUS)
    est = backend.estimate_cost(False)
    assert archive_total(est) == pytest.approx(costs[archive.kind])
    assert archive.reasoning and all(line in est.assumptions for line in archive.reasoning)
    kinds = {x.item for x in est.lines if x.role == "raw-archive"}
    assert ("Event Hubs Capture" in kinds) == (archive.kind == "capture")
    assert ("Flex Consumption on-demand executions" in kinds) == (archive.kind == "function")


def test_archiver_lines_follow_flex_billing(tmp_path: Path) -> None:
    """stream-scoring dev: 10 events/s of 300 B on 2 partitions -> 1,500 events a batch, 17,520 batches a month."""
    spec = spec_of(SCORING, "dev")
    est = AzureBackend(spec, "dev", tmp_path).estimate_cost(False)
    lines = {(x.role, x.item): x for x in est.lines}
    invocations = 10 / 1500 * SECONDS_PER_MONTH
    assert invocations == pytest.approx(17_520)
    duration_s = (150 + 1500 * (200 + 300 / 1024 * 100) / 1000 / 0.25) / 1000  # 1.53 s: billed 1.6 s (100 ms rounding)
    billed = max(invocations * duration_s, min(invocations * 1.6, 2 * SECONDS_PER_MONTH))  # up to one instance per partition
    assert lines[("raw-archive", "Flex Consumption on-demand execution time")].quantity == pytest.approx(0.5 * billed)
    assert lines[("raw-archive", "Flex Consumption on-demand executions")].monthly_usd == pytest.approx(invocations * 0.40 / 1e6)
    host_ops = invocations + 2 * SECONDS_PER_MONTH / 10  # a checkpoint per batch, a lease renewal per partition every 10 s
    assert lines[("raw-archive", "Host storage operations (checkpoints, partition leases)")].quantity == pytest.approx(host_ops)
    assert lines[("raw-bucket", "Blob write operations (one gzip blob per archiver batch)")].quantity == pytest.approx(invocations)
    assert lines[("observability", "Log Analytics ingestion (telemetry of the raw archiver)")].quantity == pytest.approx(invocations * 1500 / 1024**3)
    # its failures raise the pipeline's shared errors and dead-letter rules: no rule of its own
    assert not [x for x in est.lines if "raw archiver" in x.item and "alert" in x.item]
    stored = lines[("raw-bucket", "Blob Hot ZRS storage (gzip JSON-lines blobs, 4:1)")]
    assert stored.quantity == pytest.approx(10 * SECONDS_PER_MONTH * 301 / 4 / 1024**3 * 3 / (730 / 24))  # kept 3 days (dev)
    assert ("raw-archive", "Event Hubs Capture") not in lines


def test_free_grants_are_drawn_once_across_the_archiver_and_the_stages(tmp_path: Path) -> None:
    spec = spec_of(SCORING, "dev")
    paid, free = (AzureBackend(spec, "dev", tmp_path).estimate_cost(f) for f in (False, True))
    executions = [x for x in free.lines if x.item == "Flex Consumption on-demand executions"]
    total = sum(x.quantity for x in executions)
    assert next(x for x in executions if x.role == "raw-archive").monthly_usd == 0  # the archiver's 17,520 come first
    assert sum(x.monthly_usd for x in executions) == pytest.approx((total - pricing.FLEX_FREE_EXECUTIONS) * 0.40 / 1e6)
    assert archive_total(free) < archive_total(paid)


def test_archiver_sizing_dataclass_round_trip() -> None:
    archive = archive_of(spec_of(SCORING, "dev"))
    assert dataclasses.replace(archive, kind="capture").units == archive.capture_units
    assert archive.units == archive.archiver_units
