"""The GCP backend under the offline planner: real wiring, least-privilege IAM, and what GCP cannot express."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import textwrap
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pipeline_gcp import naming, triggers
from pipeline_gcp.backend import GcpBackend

from pipeline.errors import SpecError
from pipeline.plan import Plan, PlannedResource
from pipeline.planner import plan
from pipeline.spec.load import load_spec
from pipeline.spec.schedule import parse_schedule

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "stacks" / "transactions" / "pipeline.yaml"
PROJECT = "demo-project-1"
HANDLER = "def handle(records, context):\n    return []\n"

FUNCTION = "gcp:cloudfunctionsv2/function:Function"
SUBSCRIPTION = "gcp:pubsub/subscription:Subscription"
TOPIC = "gcp:pubsub/topic:Topic"
BUCKET = "gcp:storage/bucket:Bucket"
BUCKET_MEMBER = "gcp:storage/bucketIAMMember:BucketIAMMember"
PROJECT_MEMBER = "gcp:projects/iAMMember:IAMMember"
RUN_INVOKER = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
TOPIC_MEMBER = "gcp:pubsub/topicIAMMember:TopicIAMMember"
SUB_MEMBER = "gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember"
ACCOUNT = "gcp:serviceaccount/account:Account"
JOB = "gcp:cloudscheduler/job:Job"
ALERT = "gcp:monitoring/alertPolicy:AlertPolicy"
PUBSUB_AGENT = f"serviceAccount:service-{naming.MOCK_PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
GCS_AGENT = f"serviceAccount:service-{naming.MOCK_PROJECT_NUMBER}@gs-project-accounts.iam.gserviceaccount.com"

# Three chained object stages after a stream stage, plus a schedule stage.
CHAIN = f"""
name: chain
stages:
  - name: ingest
    handler: h.py:handle
    trigger: {{stream: {{batch_size: 10}}}}
    timeout_s: 120
    retries: 8
  - name: clean
    handler: h.py:handle
    trigger: {{objects: {{from: ingest}}}}
  - name: enrich
    handler: h.py:handle
    trigger: {{objects: {{from: clean}}}}
    memory_mb: 700
  - name: score
    handler: h.py:handle
    trigger: {{objects: {{from: enrich}}}}
    model: model.json
  - name: report
    handler: h.py:handle
    trigger: {{schedule: "rate(5 minutes)"}}
    retries: 10
    timeout_s: 900
storage:
  raw_days: 3
  intermediate_days: 2
  final_days: 90
  dead_letter_days: 10
clouds:
  gcp:
    project: {PROJECT}
    region: europe-west4
tags:
  team: data
"""


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[..., Path]:
    counter = [0]

    def write(text: str = CHAIN, handler: str = HANDLER) -> Path:
        counter[0] += 1
        folder = tmp_path / f"spec{counter[0]}"
        folder.mkdir()
        (folder / "h.py").write_text(handler, encoding="utf-8")
        (folder / "model.json").write_text('{"w": [1, 2]}', encoding="utf-8")
        (folder / "stacks").mkdir()
        for stack in ("dev", "production-eu"):
            (folder / "stacks" / f"{stack}.yaml").write_text(f"tags: {{env: {stack}}}\n", encoding="utf-8")
        path = folder / "pipeline.yaml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


def gcp_plan(path: Path, stack: str = "dev") -> Plan:
    return plan(load_spec(path, stack), "gcp")


@pytest.fixture(scope="module")
def example() -> Plan:
    return plan(load_spec(EXAMPLE, "dev"), "gcp")


@pytest.fixture
def chain(write_spec: Callable[..., Path]) -> Plan:
    return gcp_plan(write_spec())


# ---- helpers -------------------------------------------------------------------------------

def of(p: Plan, type_: str, role: str | None = None) -> list[PlannedResource]:
    return [r for r in p.cloud_resources if r.type == type_ and (role is None or r.role == role)]


def one(p: Plan, type_: str, role: str, name_suffix: str | None = None) -> PlannedResource:
    found = [r for r in of(p, type_, role) if name_suffix is None or r.name.endswith(name_suffix)]
    assert len(found) == 1, [r.name for r in found]
    return found[0]


def function(p: Plan, stage: str) -> PlannedResource:
    return one(p, FUNCTION, f"{stage}-function")


def bucket_name(p: Plan, key: str) -> str:
    return one(p, BUCKET, f"{key}-bucket").physical_name


def sa_email(p: Plan, role: str, suffix: str) -> str:
    account = one(p, ACCOUNT, role, suffix)
    return f"{account.inputs['accountId']}@{PROJECT if p.pipeline == 'chain' else 'txn-scoring-demo'}.iam.gserviceaccount.com"


def run_uri(p: Plan, stage: str) -> str:
    fn = function(p, stage)
    return f"https://{fn.inputs['name']}-{naming.MOCK_PROJECT_NUMBER}.{fn.inputs['location']}.run.app"


def service_path(p: Plan, stage: str) -> str:
    fn = function(p, stage)
    project = PROJECT if p.pipeline == "chain" else "txn-scoring-demo"
    return f"projects/{project}/locations/{fn.inputs['location']}/services/{fn.inputs['name']}"


def topic_id(p: Plan, resource: PlannedResource) -> str:
    project = PROJECT if p.pipeline == "chain" else "txn-scoring-demo"
    return f"projects/{project}/topics/{resource.physical_name}"


def prefix_condition(bucket: str, prefix: str) -> str:
    return f'resource.name.startsWith("projects/_/buckets/{bucket}/objects/{prefix}")'


def members(p: Plan, email: str) -> list[PlannedResource]:
    return [r for r in p.cloud_resources if r.inputs.get("member") == f"serviceAccount:{email}"]


# ---- the example ---------------------------------------------------------------------------

def test_example_plans_every_resource_with_a_known_id(example: Plan) -> None:
    assert example.cloud == "gcp" and example.location == "us-central1"
    unknown = [r.type for r in example.cloud_resources if r.physical_name.endswith("-id")]
    assert unknown == []
    assert len(of(example, FUNCTION)) == 3


def test_provider_labels_and_apis(example: Plan) -> None:
    provider = next(r for r in example.resources if r.type == "pulumi:providers:gcp")
    assert provider.inputs["project"] == "txn-scoring-demo" and provider.inputs["region"] == "us-central1"
    labels = json.loads(provider.inputs["defaultLabels"]) if isinstance(provider.inputs["defaultLabels"], str) else provider.inputs["defaultLabels"]
    assert labels == {"team": "risk-ml", "cost-center": "4711", "env": "dev", "pipeline": "txn-scoring", "stack": "dev",
                      "managed-by": "pipeline-deployer"}
    services = {r.inputs["service"]: r for r in of(example, "gcp:projects/service:Service")}
    assert {"pubsub.googleapis.com", "cloudfunctions.googleapis.com", "run.googleapis.com", "eventarc.googleapis.com",
            "cloudscheduler.googleapis.com", "cloudbuild.googleapis.com", "storage.googleapis.com"} <= set(services)
    assert all(r.inputs["disableOnDestroy"] is False for r in services.values())
    # every cloud resource goes through an explicit provider (the planner keeps only the URN's head, so no more can be checked)
    assert all(r.provider for r in example.cloud_resources)


def test_stream_topic_retention(example: Plan) -> None:
    topic = one(example, TOPIC, "stream")
    assert topic.inputs["messageRetentionDuration"] == f"{24 * 3600}s"


def test_sizing_is_serverless_and_explains(write_spec: Callable[..., Path], example: Plan) -> None:
    assert example.sizing["units"] == 0 and example.sizing["mode"] == "serverless"
    assert example.sizing["capacity_bytes_per_second"] == 200_000_000  # us-central1 is a large region
    text = "\n".join(example.sizing["reasoning"])
    assert "batch_size 500 acts as 1" in text and "5 delivery attempts" in text
    fixed = write_spec(CHAIN.replace("name: chain\n", "name: chain\nstream: {partitions: 8}\n"))
    sizing = GcpBackend(load_spec(fixed).spec, "dev", fixed.parent).size_stream()
    assert sizing.capacity_bytes_per_second == pytest.approx(50_000_000)  # europe-west4: the smaller quota
    assert any("partitions = 8 has no effect on Pub/Sub" in line for line in sizing.reasoning)
    assert any("retries 10 -> 5" in line for line in sizing.reasoning)


# ---- buckets and archive -------------------------------------------------------------------

def test_buckets_are_private_regional_and_expire(chain: Plan) -> None:
    expected = {"raw": 3, "ingest": 2, "clean": 2, "enrich": 2, "score": 90, "report": 90, "dead-letter": 10, "artifacts": None}
    for key, days in expected.items():
        b = one(chain, BUCKET, f"{key}-bucket")
        assert b.inputs["uniformBucketLevelAccess"] is True
        assert b.inputs["publicAccessPrevention"] == "enforced"
        assert b.inputs["forceDestroy"] is False
        assert b.inputs["location"] == "europe-west4"
        assert b.inputs["labels"] == {"bucket-role": key}
        deletes = [rule["condition"]["age"] for rule in b.inputs["lifecycleRules"] if rule["action"]["type"] == "Delete"]
        assert deletes == ([] if days is None else [days]), key
        assert len(b.physical_name) <= 63 and re.fullmatch(r"[a-z0-9][a-z0-9-]*[a-z0-9]", b.physical_name)


def test_raw_archive_is_a_cloud_storage_subscription_with_minimal_agent_roles(chain: Plan) -> None:
    raw = bucket_name(chain, "raw")
    sub = one(chain, SUBSCRIPTION, "raw-archive")
    assert sub.inputs["topic"] == topic_id(chain, one(chain, TOPIC, "stream"))
    config = sub.inputs["cloudStorageConfig"]
    assert config["bucket"] == raw and config["filenamePrefix"] == "raw/"
    assert config["maxDuration"] == "300s" and config["maxBytes"] == 64 * 1024 * 1024
    assert sub.inputs["ackDeadlineSeconds"] >= 300
    grants = {(r.inputs["bucket"], r.inputs["role"]) for r in of(chain, BUCKET_MEMBER, "raw-archive")}
    assert grants == {(raw, "roles/storage.objectCreator"), (raw, "roles/storage.legacyBucketReader")}
    assert all(r.inputs["member"] == PUBSUB_AGENT for r in of(chain, BUCKET_MEMBER, "raw-archive"))
    assert {u for u in sub.dependencies if "BucketIAMMember" in u} == {r.urn for r in of(chain, BUCKET_MEMBER, "raw-archive")}


# ---- identities and grants -----------------------------------------------------------------

def test_stage_identities_get_exact_bucket_grants(chain: Plan) -> None:
    for stage, source in (("clean", "ingest"), ("enrich", "clean"), ("score", "enrich")):
        email = sa_email(chain, f"{stage}-identity", "identity-sa")
        got = {(r.inputs["bucket"], r.inputs["role"], r.inputs["condition"]["expression"]) for r in members(chain, email) if r.type == BUCKET_MEMBER}
        expected = {
            (bucket_name(chain, stage), "roles/storage.objectUser", prefix_condition(bucket_name(chain, stage), f"{stage}/")),
            (bucket_name(chain, "dead-letter"), "roles/storage.objectUser", prefix_condition(bucket_name(chain, "dead-letter"), f"{stage}/")),
            (bucket_name(chain, source), "roles/storage.objectViewer", prefix_condition(bucket_name(chain, source), f"{source}/")),
        }
        if stage == "score":
            key = one(chain, "gcp:storage/bucketObject:BucketObject", "model-1").inputs["name"]
            artifacts = bucket_name(chain, "artifacts")
            expected.add((artifacts, "roles/storage.objectViewer", f'resource.name == "projects/_/buckets/{artifacts}/objects/{key}"'))
        assert got == expected, stage


def test_stream_stage_runtime_identity_has_no_pubsub_role(chain: Plan) -> None:
    email = sa_email(chain, "ingest-identity", "identity-sa")
    roles = {(r.type, r.inputs["role"]) for r in members(chain, email)}
    assert roles == {(BUCKET_MEMBER, "roles/storage.objectUser"), (TOPIC_MEMBER, "roles/pubsub.publisher")}
    dlq_publish = next(r for r in members(chain, email) if r.type == TOPIC_MEMBER)
    assert dlq_publish.inputs["topic"] == topic_id(chain, one(chain, TOPIC, "ingest-dead-letter"))


def test_project_level_roles_only_where_nothing_narrower_exists(chain: Plan) -> None:
    project_roles = sorted((r.inputs["role"], r.inputs["member"]) for r in of(chain, PROJECT_MEMBER))
    trigger_sas = sorted(f"serviceAccount:{sa_email(chain, f'{s}-identity', '-events-sa')}" for s in ("clean", "enrich", "score"))
    assert project_roles == sorted([("roles/pubsub.publisher", GCS_AGENT)] + [("roles/eventarc.eventReceiver", m) for m in trigger_sas])


def test_service_account_ids_fit_gcp_rules(write_spec: Callable[..., Path]) -> None:
    long = CHAIN.replace("name: chain", "name: a-very-long-pipeline").replace("ingest", "ingest-from-kafka-xx")
    p = gcp_plan(write_spec(long), stack="production-eu")
    ids = [r.inputs["accountId"] for r in of(p, ACCOUNT)]
    assert len(ids) == len(set(ids))
    for account_id in ids:
        assert 6 <= len(account_id) <= 30 and re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])", account_id), account_id
    assert naming.service_account_id("a-very-long-pipeline", "production-eu", "ingest") == \
        naming.service_account_id("a-very-long-pipeline", "production-eu", "ingest")
    assert naming.service_account_id("abc", "d", "ef") == "abc-d-ef"
    for fn in of(p, FUNCTION):
        assert len(fn.inputs["name"]) <= 63


# ---- functions -----------------------------------------------------------------------------

def test_functions_are_gen2_python_internal_and_bounded(chain: Plan) -> None:
    for stage in ("ingest", "clean", "enrich", "score", "report"):
        fn = function(chain, stage)
        service = fn.inputs["serviceConfig"]
        assert fn.inputs["buildConfig"]["runtime"] == "python312"
        # main.py re-exports the runtime shim: Eventarc delivers CloudEvents, push and Scheduler plain HTTP.
        assert fn.inputs["buildConfig"]["entryPoint"] == ("cloud_event" if stage in ("clean", "enrich", "score") else "http")
        assert service["serviceAccountEmail"] == sa_email(chain, f"{stage}-identity", "identity-sa")
        assert service["ingressSettings"] == "ALLOW_INTERNAL_ONLY"
        assert service["allTrafficOnLatestRevision"] is True
        assert 1 <= service["maxInstanceCount"] <= 100
        assert service["environmentVariables"]["PIPELINE_STAGE"] == stage
        assert service["environmentVariables"]["PIPELINE_DEAD_LETTER_TOPIC"] == topic_id(chain, one(chain, TOPIC, f"{stage}-dead-letter"))
        # IAM first: the function waits for its identity's grants
        grants = {r.urn for r in members(chain, service["serviceAccountEmail"]) if r.role == f"{stage}-identity"}
        assert grants and grants <= set(fn.dependencies)
    enrich = function(chain, "enrich").inputs["serviceConfig"]
    assert enrich["availableMemory"] == "700Mi" and enrich["availableCpu"] == "0.583"  # next tier up (1 GiB)
    assert function(chain, "report").inputs["serviceConfig"]["timeoutSeconds"] == 900
    assert function(chain, "clean").inputs["serviceConfig"]["environmentVariables"]["PIPELINE_INPUT_BUCKET"] == bucket_name(chain, "ingest")


def test_source_object_name_carries_content_hash(write_spec: Callable[..., Path], chain: Plan) -> None:
    fn = function(chain, "ingest")
    obj = one(chain, "gcp:storage/bucketObject:BucketObject", "ingest-function")
    assert re.fullmatch(r"ingest/[0-9a-f]{16}\.zip", obj.inputs["name"])
    assert fn.inputs["buildConfig"]["source"]["storageSource"] == {"bucket": one(chain, BUCKET, "platform").physical_name,
                                                                   "object": obj.inputs["name"]}
    changed = gcp_plan(write_spec(handler=HANDLER + "# changed\n"))
    assert one(changed, "gcp:storage/bucketObject:BucketObject", "ingest-function").inputs["name"] != obj.inputs["name"]
    again = gcp_plan(write_spec())
    assert one(again, "gcp:storage/bucketObject:BucketObject", "ingest-function").inputs["name"] == obj.inputs["name"]


# ---- stream trigger ------------------------------------------------------------------------

def test_push_subscription_wires_topic_function_oidc_and_dead_letters(chain: Plan) -> None:
    sub = one(chain, SUBSCRIPTION, "ingest-trigger")
    uri = run_uri(chain, "ingest")
    pusher = sa_email(chain, "ingest-trigger", "-push-sa")
    assert sub.inputs["topic"] == topic_id(chain, one(chain, TOPIC, "stream"))
    assert sub.inputs["pushConfig"] == {"pushEndpoint": uri, "oidcToken": {"serviceAccountEmail": pusher, "audience": uri}}
    dlq = one(chain, TOPIC, "ingest-dead-letter")
    assert sub.inputs["deadLetterPolicy"] == {"deadLetterTopic": topic_id(chain, dlq), "maxDeliveryAttempts": 9}  # retries 8 + 1
    assert sub.inputs["retryPolicy"] == {"minimumBackoff": "10s", "maximumBackoff": "600s"}
    assert sub.inputs["ackDeadlineSeconds"] == 150  # timeout 120 + 30
    assert sub.inputs["expirationPolicy"] == {"ttl": ""}
    # the push identity may invoke this one function's service, and nothing else
    invoker = one(chain, RUN_INVOKER, "ingest-trigger")
    assert (invoker.inputs["name"], invoker.inputs["role"], invoker.inputs["member"]) == \
        (service_path(chain, "ingest"), "roles/run.invoker", f"serviceAccount:{pusher}")
    assert [r.type for r in members(chain, pusher)] == [RUN_INVOKER]
    assert invoker.urn in sub.dependencies


def test_pubsub_agent_can_dead_letter_and_mint_tokens(chain: Plan) -> None:
    sub = one(chain, SUBSCRIPTION, "ingest-trigger")
    dlq = one(chain, TOPIC, "ingest-dead-letter")
    agent = [r for r in of(chain, TOPIC_MEMBER, "ingest-trigger") + of(chain, SUB_MEMBER, "ingest-trigger") if r.inputs["member"] == PUBSUB_AGENT]
    assert {(r.type, r.inputs.get("topic") or r.inputs.get("subscription"), r.inputs["role"]) for r in agent} == {
        (TOPIC_MEMBER, topic_id(chain, dlq), "roles/pubsub.publisher"),
        (SUB_MEMBER, sub.physical_name, "roles/pubsub.subscriber"),
    }
    token = one(chain, "gcp:serviceaccount/iAMMember:IAMMember", "ingest-trigger")
    assert token.inputs["role"] == "roles/iam.serviceAccountTokenCreator" and token.inputs["member"] == PUBSUB_AGENT
    assert token.inputs["serviceAccountId"].endswith(sa_email(chain, "ingest-trigger", "-push-sa"))


def test_dead_letter_topic_has_a_retaining_subscription(chain: Plan) -> None:
    for stage in ("ingest", "clean", "report"):
        topic = one(chain, TOPIC, f"{stage}-dead-letter")
        hold = one(chain, SUBSCRIPTION, f"{stage}-dead-letter")
        assert hold.inputs["topic"] == topic_id(chain, topic)
        assert hold.inputs["messageRetentionDuration"] == f"{10 * 86400}s"
        assert hold.inputs["expirationPolicy"] == {"ttl": ""}
        assert "pushConfig" not in hold.inputs


# ---- object triggers -----------------------------------------------------------------------

def test_eventarc_storage_triggers_name_the_source_bucket_and_own_identity(chain: Plan) -> None:
    for stage, source in (("clean", "ingest"), ("enrich", "clean"), ("score", "enrich")):
        fn = function(chain, stage)
        trigger_sa = sa_email(chain, f"{stage}-identity", "-events-sa")
        assert fn.inputs["eventTrigger"] == {
            "eventType": "google.cloud.storage.object.v1.finalized",
            "eventFilters": [{"attribute": "bucket", "value": bucket_name(chain, source)}],
            "retryPolicy": "RETRY_POLICY_RETRY",
            "serviceAccountEmail": trigger_sa,
            "triggerRegion": "europe-west4",
        }
        invoker = one(chain, RUN_INVOKER, f"{stage}-trigger")
        assert (invoker.inputs["name"], invoker.inputs["member"]) == (service_path(chain, stage), f"serviceAccount:{trigger_sa}")
        assert sorted(r.inputs["role"] for r in members(chain, trigger_sa)) == ["roles/eventarc.eventReceiver", "roles/run.invoker"]
        gcs = one(chain, PROJECT_MEMBER, "platform")
        assert gcs.urn in fn.dependencies  # the trigger is created only once the GCS agent can publish
    for stage in ("ingest", "report"):
        assert "eventTrigger" not in function(chain, stage).inputs  # push / scheduler invoke them over HTTPS


# ---- schedule ------------------------------------------------------------------------------

def test_scheduler_job_targets_the_function_with_oidc(chain: Plan) -> None:
    job = one(chain, JOB, "report-trigger")
    uri = run_uri(chain, "report")
    caller = sa_email(chain, "report-trigger", "-scheduler-sa")
    assert job.inputs["schedule"] == "*/5 * * * *"
    assert job.inputs["timeZone"] == "UTC" and job.inputs["region"] == "europe-west4"
    target = job.inputs["httpTarget"]
    assert target["uri"] == uri and target["httpMethod"] == "POST"
    assert target["oidcToken"] == {"serviceAccountEmail": caller, "audience": uri}
    assert json.loads(base64.b64decode(target["body"]))["stage"] == "report"
    assert job.inputs["retryConfig"]["retryCount"] == 5  # retries 10, clamped to Scheduler's maximum
    assert job.inputs["attemptDeadline"] == "930s"
    invoker = one(chain, RUN_INVOKER, "report-trigger")
    assert (invoker.inputs["name"], invoker.inputs["member"]) == (service_path(chain, "report"), f"serviceAccount:{caller}")
    assert [r.type for r in members(chain, caller)] == [RUN_INVOKER]


@pytest.mark.parametrize(("text", "cron"), [
    ("rate(1 minute)", "* * * * *"),
    ("rate(5 minutes)", "*/5 * * * *"),
    ("rate(30 minutes)", "*/30 * * * *"),
    ("rate(60 minutes)", "0 * * * *"),
    ("rate(1 hour)", "0 * * * *"),
    ("rate(6 hours)", "0 */6 * * *"),
    ("rate(1 day)", "0 0 * * *"),
    ("0 6 * * *", "0 6 * * *"),
    ("15 2 * JAN-MAR MON-FRI", "15 2 * 1-3 1-5"),
    ("0 0 * * 7", "0 0 * * 0"),
    ("0 0 * * 5-7", "0 0 * * 5-6,0"),
])
def test_gcp_cron(text: str, cron: str) -> None:
    assert triggers.gcp_cron(parse_schedule(text)) == cron


@pytest.mark.parametrize("text", ["rate(7 minutes)", "rate(45 minutes)", "rate(5 hours)", "rate(2 days)"])
def test_inexpressible_rates(text: str) -> None:
    with pytest.raises(ValueError, match="cannot be written as unix-cron"):
        triggers.gcp_cron(parse_schedule(text))


# ---- check() -------------------------------------------------------------------------------

def _problems(path: Path) -> list[tuple[tuple[str | int, ...], str, str]]:
    loaded = load_spec(path)
    return GcpBackend(loaded.spec, "dev", path.parent).check()


def test_check_accepts_the_example_and_the_chain(write_spec: Callable[..., Path]) -> None:
    assert _problems(EXAMPLE) == []
    assert _problems(write_spec()) == []  # a 900 s schedule stage is an HTTP function: fine


def test_missing_project_is_reported_on_its_field(write_spec: Callable[..., Path]) -> None:
    path = write_spec(CHAIN.replace(f"    project: {PROJECT}\n", ""))
    problems = _problems(path)
    assert [p[0] for p in problems] == [("clouds", "gcp", "project")]
    with pytest.raises(SpecError) as err:
        gcp_plan(path)
    assert err.value.problems[0].path == "clouds.gcp.project" and err.value.problems[0].message.startswith("GCP: ")


def test_event_driven_timeout_above_540_is_reported(write_spec: Callable[..., Path]) -> None:
    path = write_spec(CHAIN.replace("    timeout_s: 120\n", "    timeout_s: 600\n").replace("    memory_mb: 700\n", "    timeout_s: 541\n"))
    problems = _problems(path)
    assert [p[0] for p in problems] == [("stages", 0, "timeout_s"), ("stages", 2, "timeout_s")]
    assert "540" in problems[0][1]


def test_inexpressible_rate_is_reported(write_spec: Callable[..., Path]) -> None:
    path = write_spec(CHAIN.replace("rate(5 minutes)", "rate(7 minutes)"))
    problems = _problems(path)
    assert [p[0] for p in problems] == [("stages", 4, "trigger", "schedule")]
    assert "rate(7 minutes)" in problems[0][1] and "divides an hour" in problems[0][2]
    with pytest.raises(SpecError, match="unix-cron"):
        gcp_plan(path)


def test_reserved_environment_is_reported(write_spec: Callable[..., Path]) -> None:
    path = write_spec(CHAIN.replace("    retries: 8\n", "    retries: 8\n    environment: {PORT: '1'}\n"))
    assert [p[0] for p in _problems(path)] == [("stages", 0, "environment", "PORT")]


# ---- observability and mocks ---------------------------------------------------------------

def test_alerts_watch_every_dead_letter_subscription_and_function(chain: Plan) -> None:
    filters = [c["conditionThreshold"]["filter"] for a in of(chain, ALERT) for c in a.inputs["conditions"] if "conditionThreshold" in c]
    channel = one(chain, "gcp:monitoring/notificationChannel:NotificationChannel", "observability")
    for stage in ("ingest", "clean", "enrich", "score", "report"):
        hold = one(chain, SUBSCRIPTION, f"{stage}-dead-letter").physical_name
        assert any(f'subscription_id = "{hold}"' in f and "num_undelivered_messages" in f for f in filters), stage
        name = function(chain, stage).inputs["name"]
        assert any(f'service_name = "{name}"' in f and "5xx" in f for f in filters), stage
    push = one(chain, SUBSCRIPTION, "ingest-trigger").physical_name
    assert any(push in f and "oldest_unacked_message_age" in f for f in filters)
    logs = [c["conditionMatchedLog"]["filter"] for a in of(chain, ALERT) for c in a.inputs["conditions"] if "conditionMatchedLog" in c]
    assert logs == [f'resource.type = "cloud_scheduler_job" AND resource.labels.job_id = "{one(chain, JOB, "report-trigger").physical_name}" AND severity >= ERROR']
    assert all(a.inputs["notificationChannels"] == [channel.physical_name] for a in of(chain, ALERT))


def test_plans_are_deterministic(write_spec: Callable[..., Path]) -> None:
    path = write_spec()
    first, second = gcp_plan(path), gcp_plan(path)
    def strip(p: Plan) -> list[tuple[str, str, Any]]:
        return [(r.urn, r.physical_name, r.inputs) for r in p.resources]
    assert strip(first) == strip(second)


def test_mock_resource_ids_look_like_gcp() -> None:
    rid, out = naming.mock_resource("gcp:pubsub/topic:Topic", "x-stream", {}, "p-123456", "us-central1")
    assert rid == f"projects/p-123456/topics/{out['name']}" and out["name"].startswith("x-stream-")
    rid, out = naming.mock_resource("gcp:serviceaccount/account:Account", "sa", {"accountId": "abcdef"}, "p-123456", "us-central1")
    assert out["email"] == "abcdef@p-123456.iam.gserviceaccount.com" and out["member"] == "serviceAccount:abcdef@p-123456.iam.gserviceaccount.com"
    rid, out = naming.mock_resource(FUNCTION, "f", {"name": "fn", "location": "us-east1", "serviceConfig": {}}, "p-123456", "us-central1")
    assert rid == "projects/p-123456/locations/us-east1/functions/fn"
    assert out["url"] == "https://us-east1-p-123456.cloudfunctions.net/fn"
    assert out["serviceConfig"]["uri"].startswith("https://fn-") and out["serviceConfig"]["service"].endswith("/services/fn")
    assert naming.mock_call("gcp:storage/getProjectServiceAccount:getProjectServiceAccount", {})["emailAddress"] == GCS_AGENT.split(":", 1)[1]


def test_source_object_is_named_by_the_package_hash(chain: Plan) -> None:
    for obj in [r for r in chain.of_type("gcp:storage/bucketObject:BucketObject") if r.role.endswith("-function")]:
        stage = obj.role.removesuffix("-function")
        package = Path(obj.inputs["source"]["asset"])
        assert obj.inputs["name"] == f"{stage}/{hashlib.sha256(package.read_bytes()).hexdigest()[:16]}.zip"
        with zipfile.ZipFile(package) as archive:
            names = set(archive.namelist())
            assert {"main.py", "requirements.txt", "pipeline/runtime/invoke.py", "pipeline_gcp/runtime.py"} <= names
            assert "functions-framework" in archive.read("requirements.txt").decode()
