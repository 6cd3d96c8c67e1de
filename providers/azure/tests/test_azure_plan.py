"""Offline plans of the Azure backend: real wiring, not just resource counts."""

from __future__ import annotations

import hashlib
import re
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import pytest
from pipeline_azure import iam, naming, sizing, triggers

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


def settings(app: PlannedResource) -> dict[str, Any]:
    return {s["name"]: s["value"] for s in app.inputs["siteConfig"]["appSettings"]}


@pytest.fixture(scope="module")
def example() -> Plan:
    return plan(load_spec(str(EXAMPLE), "dev"), "azure")


# ---- platform and storage ---------------------------------------------------------------------
def test_storage_accounts_are_hardened_and_named_within_limits(example: Plan) -> None:
    accounts = {r.name.rsplit("-", 1)[-1]: r for r in example.of_type("azure-native:storage:StorageAccount")}
    assert set(accounts) == {"data", "functions"}
    for account in accounts.values():
        i = account.inputs
        assert re.fullmatch(r"[a-z0-9]{3,24}", i["accountName"])
        assert i["kind"] == "StorageV2" and i["sku"] == {"name": "Standard_LRS"}
        assert i["enableHttpsTrafficOnly"] is True and i["minimumTlsVersion"] == "TLS1_2"
        assert i["allowBlobPublicAccess"] is False and i["defaultToOAuthAuthentication"] is True
    assert accounts["data"].inputs["allowSharedKeyAccess"] is False
    # Pulumi's storage.Blob uploads with the account key (pulumi-azure-native#2015), so only the
    # functions account (packages, models, host state) keeps it.
    assert accounts["functions"].inputs["allowSharedKeyAccess"] is True


def test_storage_names_are_deterministic_and_unique_per_stack() -> None:
    a = naming.storage_account_name("a-very-long-pipeline", "production-stack", "dat")
    assert a == naming.storage_account_name("a-very-long-pipeline", "production-stack", "dat")
    assert a != naming.storage_account_name("a-very-long-pipeline", "staging", "dat")
    assert re.fullmatch(r"[a-z0-9]{3,24}", a)
    ns = naming.namespace_name("a-very-long-pipeline", "production-stack")
    assert 6 <= len(ns) <= 50 and ns[0].isalpha() and ns[-1].isalnum()
    app = naming.function_app_name("a-very-long-pipeline", "production-stack", "a-very-long-stage-nm")
    assert len(app) <= 60 and not app.endswith("-")
    assert len(naming.host_id(app, "a-very-long-stage-nm")) <= 32


def test_explicit_provider_and_resource_group(example: Plan) -> None:
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
    assert rules == {"raw/": 7, "out-preprocess/": 7, "out-score/": 30, "out-calibrate/": 30, "dead-letter/": 14}
    assert all(re.fullmatch(r"[A-Za-z0-9]+", r["name"]) for r in policy.inputs["policy"]["rules"])
    # The single policy is made last but waits for every data container.
    data_containers = {r.urn for r in containers.values() if r.inputs["containerName"] != "artifacts"}
    assert data_containers <= set(policy.dependencies)


@pytest.mark.usefixtures("example")
def test_lifecycle_policy_is_unique(example: Plan) -> None:
    assert len(example.of_type("azure-native:storage:ManagementPolicy")) == 1


# ---- stream -----------------------------------------------------------------------------------
def test_event_hubs_namespace_hub_and_capture(example: Plan) -> None:
    ns = example.one("azure-native:eventhub:Namespace").inputs
    assert ns["sku"] == {"name": "Standard", "tier": "Standard", "capacity": example.sizing["units"]}
    assert ns["disableLocalAuth"] is True and ns["minimumTlsVersion"] == "1.2"
    assert ns["identity"] == {"type": "SystemAssigned"}
    hub = example.one("azure-native:eventhub:EventHub")
    assert hub.role == "stream"
    assert hub.inputs["partitionCount"] == example.sizing["partitions"] == 4
    assert hub.inputs["retentionDescription"] == {"cleanupPolicy": "Delete", "retentionTimeInHours": 24}
    capture = hub.inputs["captureDescription"]
    assert capture["enabled"] is True
    dest = capture["destination"]
    assert dest["name"] == "EventHubArchive.AzureBlockBlob" and dest["blobContainer"] == "raw"
    assert dest["identity"] == {"type": "SystemAssigned"}
    assert dest["archiveNameFormat"].startswith("raw/{Namespace}/{EventHub}/{PartitionId}/")
    assert dest["storageAccountResourceId"].endswith(container_id(example, "raw").split("/blobServices")[0].rsplit("/", 1)[-1])
    # Capture's identity may write the raw container (and only under raw/) before the hub exists.
    (write,) = assignments(example, "raw-archive")
    assert write["roleDefinitionId"] == role_def(iam.STORAGE_BLOB_DATA_CONTRIBUTOR)
    assert write["scope"] == container_id(example, "raw")
    assert "StringStartsWith 'raw/'" in write["condition"] and write["conditionVersion"] == "2.0"
    archive_urns = {r.urn for r in example.resources if r.role == "raw-archive" and r.custom}
    assert archive_urns & set(hub.dependencies)


def test_one_consumer_group_per_stream_stage(example: Plan) -> None:
    (group,) = example.of_type("azure-native:eventhub:ConsumerGroup")
    assert group.role == "preprocess-trigger" and group.inputs["consumerGroupName"] == "preprocess"
    assert group.inputs["eventHubName"] == "records"


def test_sizing_follows_per_tu_limits(tmp_path: Path) -> None:
    prod = plan(load_spec(str(EXAMPLE), "prod"), "azure")
    # 1,500 events/s x 1.25 / 1,000 per TU = 2 TU; bytes are 1.05 MB/s x 1.25 = 2 TU.
    assert prod.sizing["units"] == 2 and prod.sizing["partitions"] == 4
    assert prod.one("azure-native:eventhub:Namespace").inputs["sku"]["capacity"] == 2
    assert prod.one("azure-native:eventhub:EventHub").inputs["retentionDescription"]["retentionTimeInHours"] == 168
    assert any("1,000 events/s per TU" in line for line in prod.sizing["reasoning"])
    big = write_spec(tmp_path, """
        name: big
        workload: {records_per_second: 30000, record_bytes: 500}
        stages:
          - {name: one, handler: "h.py:handle", trigger: {stream: {}}}
    """)
    sized = sizing.size_stream(load_spec(str(big)).spec)
    assert sized.units == 38 and sized.partitions == 32  # 30,000 x 1.25 / 1,000 = 37.5 -> 38; partitions capped at 32


# ---- identities and grants --------------------------------------------------------------------
def test_stream_stage_grants(example: Plan) -> None:
    grants = assignments(example, "preprocess-identity")
    hub = example.one("azure-native:eventhub:EventHub")
    hub_id = (f"/subscriptions/{SUB}/resourceGroups/rg-txn-scoring-dev/providers/Microsoft.EventHub/namespaces/"
              f"{hub.inputs['namespaceName']}/eventhubs/records")
    receive = [g for g in grants if g["roleDefinitionId"] == role_def(iam.EVENT_HUBS_DATA_RECEIVER)]
    assert [g["scope"] for g in receive] == [hub_id]
    writes = {g["scope"]: g for g in grants if g["roleDefinitionId"] == role_def(iam.STORAGE_BLOB_DATA_CONTRIBUTOR)}
    assert set(writes) == {container_id(example, "out-preprocess"), container_id(example, "dead-letter")}
    for g in writes.values():
        assert "StringStartsWith 'preprocess/'" in g["condition"]
        for action in iam.BLOB_WRITE_ACTIONS:
            assert f"ActionMatches{{'{action}'}}" in g["condition"]
    assert all(g["principalType"] == "ServicePrincipal" for g in grants)


def test_object_stage_grants_read_source_prefix_and_exact_model(example: Plan) -> None:
    grants = assignments(example, "score-identity")
    reads = [g for g in grants if g["roleDefinitionId"] == role_def(iam.STORAGE_BLOB_DATA_READER)]
    by_scope = {g["scope"]: g["condition"] for g in reads}
    assert "StringStartsWith 'preprocess/'" in by_scope[container_id(example, "out-preprocess")]
    model = by_scope[container_id(example, "artifacts")]
    assert re.search(r"StringEquals 'models/[0-9a-f]{16}/fraud-model.json'", model)
    assert not any(g["roleDefinitionId"] == role_def(iam.EVENT_HUBS_DATA_RECEIVER) for g in grants)
    # No stage identity ever gets an account-wide data role.
    for g in assignments(example):
        if g["roleDefinitionId"] in {role_def(iam.STORAGE_BLOB_DATA_CONTRIBUTOR), role_def(iam.STORAGE_BLOB_DATA_READER),
                                     role_def(iam.STORAGE_BLOB_DATA_OWNER)}:
            assert "/blobServices/default/containers/" in g["scope"]


def test_function_host_roles_are_container_scoped(example: Plan) -> None:
    grants = assignments(example, "score-function")
    owner = sorted(g["scope"].rsplit("/", 1)[-1] for g in grants if g["roleDefinitionId"] == role_def(iam.STORAGE_BLOB_DATA_OWNER))
    assert owner == ["azure-webjobs-eventhub", "azure-webjobs-hosts", "azure-webjobs-secrets"]
    deploy = [g for g in grants if g["roleDefinitionId"] == role_def(iam.STORAGE_BLOB_DATA_CONTRIBUTOR)]
    assert [g["scope"].rsplit("/", 1)[-1] for g in deploy] == ["deploy-score"]
    telemetry = [g for g in grants if g["roleDefinitionId"] == role_def(iam.MONITORING_METRICS_PUBLISHER)]
    assert len(telemetry) == 1 and telemetry[0]["scope"].endswith("/Microsoft.Insights/components/appi-txn-scoring-dev")


# ---- functions --------------------------------------------------------------------------------
def test_one_flex_app_per_stage_with_identity_based_settings(example: Plan) -> None:
    apps = {r.role: r for r in example.of_type("azure-native:web:WebApp")}
    assert set(apps) == {"preprocess-function", "score-function", "calibrate-function"}
    plans = example.of_type("azure-native:web:AppServicePlan")
    assert len(plans) == 3 and all(p.inputs["sku"] == {"name": "FC1", "tier": "FlexConsumption"} for p in plans)
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
    # preprocess 512, score 512 (dev overlay), calibrate 256 -> 512
    assert memory == {"preprocess-function": 512, "score-function": 512, "calibrate-function": 512}
    calibrate = example.one("azure-native:web:WebApp", "calibrate-function")
    assert calibrate.inputs["tags"]["memory-mb"] == "256 requested, 512 instance"


def test_stream_stage_batch_and_retry_settings(example: Plan) -> None:
    s = settings(example.one("azure-native:web:WebApp", "preprocess-function"))
    host = "AzureFunctionsJobHost__extensions__eventHubs__"
    assert s[f"{host}maxEventBatchSize"] == "500" and s["PIPELINE_BATCH_SIZE"] == "500"
    assert s[f"{host}maxWaitTime"] == "00:00:05" and s[f"{host}minEventBatchSize"] == "500"
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
        assert ext["type"] == "Microsoft.Web/sites/extensions" and ext["name"].endswith("/onedeploy")
        assert template["variables"]["packageSha256"] == blob.inputs["metadata"]["sha256"]
        assert release.inputs["properties"]["parameters"]["packageUri"]["value"].endswith(f"/deploy-{stage}/released-package.zip")
        app = example.one("azure-native:web:WebApp", role)
        assert {app.urn, blob.urn} <= set(release.dependencies)
    group = example.one("azure-native:eventhub:ConsumerGroup")
    assert group.urn in example.one("azure-native:resources:Deployment", "preprocess-function").dependencies


# ---- object and schedule triggers -------------------------------------------------------------
def test_event_grid_subscription_filters_container_and_prefix(example: Plan) -> None:
    (topic,) = example.of_type("azure-native:eventgrid:SystemTopic")
    assert topic.inputs["topicType"] == "Microsoft.Storage.StorageAccounts" and topic.inputs["identity"] == {"type": "SystemAssigned"}
    sub = example.one("azure-native:eventgrid:SystemTopicEventSubscription")
    i = sub.inputs
    assert i["filter"]["includedEventTypes"] == ["Microsoft.Storage.BlobCreated"]
    assert i["filter"]["subjectBeginsWith"] == "/blobServices/default/containers/out-preprocess/blobs/preprocess/"
    assert i["destination"]["endpointType"] == "AzureFunction"
    assert i["destination"]["resourceId"].endswith("/Microsoft.Web/sites/" + example.one("azure-native:web:WebApp", "score-function").inputs["name"]
                                                   + "/functions/stage")
    assert i["retryPolicy"] == {"maxDeliveryAttempts": 4, "eventTimeToLiveInMinutes": 60}
    dl = i["deadLetterWithResourceIdentity"]
    assert dl["identity"] == {"type": "SystemAssigned"}
    assert dl["deadLetterDestination"]["blobContainerName"] == "dead-letter"
    assert dl["deadLetterDestination"]["endpointType"] == "StorageBlob"
    # the topic's identity may write dead letters; the function is deployed before the subscription
    topic_grants = [g for g in example.of_type(RA) if g.role == "platform"]
    assert [(g.inputs["roleDefinitionId"], g.inputs["scope"]) for g in topic_grants] == [
        (role_def(iam.STORAGE_BLOB_DATA_CONTRIBUTOR), container_id(example, "dead-letter"))]
    release = example.one("azure-native:resources:Deployment", "score-function")
    assert {release.urn, topic_grants[0].urn} <= set(sub.dependencies)


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
    assert subs["clean-trigger"]["retryPolicy"] == {"maxDeliveryAttempts": 1, "eventTimeToLiveInMinutes": 1440}
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
    # alerts: errors for every stage, Event Grid dead letters for object stages
    alerts = {r.name for r in p.of_type("azure-native:monitor:MetricAlert")}
    assert {"chain-observability-clean-dead-letters", "chain-observability-report-dead-letters"} <= alerts
    assert len(p.of_type("azure-native:monitor:ScheduledQueryRule")) == 6 + 3  # errors x6, runtime dead letters for non-object stages x3


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
    assert triggers.ncrontab(parse_schedule(text)) == expected


def test_mock_ids_are_realistic(example: Plan) -> None:
    app = example.one("azure-native:web:WebApp", "score-function")
    assert app.physical_name == app.inputs["name"]
    for r in example.cloud_resources:
        assert r.physical_name, r.urn
