"""The GCP backend under the offline planner: the real wiring of every role, least-privilege IAM, and what GCP cannot express."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pipeline_gcp import batching, naming, observability, sizing, storage, triggers
from pipeline_gcp.backend import GcpBackend

from pipeline import planner
from pipeline.errors import SpecError
from pipeline.plan import Plan, PlannedResource
from pipeline.planner import plan
from pipeline.runtime.logs import JsonLogger
from pipeline.spec.load import load_spec

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "stacks" / "transactions" / "pipeline.yaml"
PROJECT = "demo-project-1"
HANDLER = "def handle(records, context):\n    return []\n"

FUNCTION = "gcp:cloudfunctionsv2/function:Function"
SUBSCRIPTION = "gcp:pubsub/subscription:Subscription"
TOPIC = "gcp:pubsub/topic:Topic"
BUCKET = "gcp:storage/bucket:Bucket"
NOTIFICATION = "gcp:storage/notification:Notification"
BUCKET_MEMBER = "gcp:storage/bucketIAMMember:BucketIAMMember"
PROJECT_MEMBER = "gcp:projects/iAMMember:IAMMember"
RUN_INVOKER = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
TOPIC_MEMBER = "gcp:pubsub/topicIAMMember:TopicIAMMember"
ACCOUNT = "gcp:serviceaccount/account:Account"
CUSTOM_ROLE = "gcp:projects/iAMCustomRole:IAMCustomRole"
ALERT = "gcp:monitoring/alertPolicy:AlertPolicy"
CHANNEL = "gcp:monitoring/notificationChannel:NotificationChannel"
LOG_METRIC = "gcp:logging/metric:Metric"
PUBSUB_AGENT = f"serviceAccount:service-{naming.MOCK_PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
GCS_AGENT = f"serviceAccount:service-{naming.MOCK_PROJECT_NUMBER}@gs-project-accounts.iam.gserviceaccount.com"

# Every trigger kind: a stream stage, object stages from a stage and from uploads, a schedule over accumulated
# outputs, a plain schedule, and an HTTP stage that persists.
FULL = f"""
name: full
stream: {{retention_hours: 48}}
uploads: {{name: drops}}
stages:
  - name: ingest
    handler: h.py:handle
    trigger: {{stream: {{batch_size: 200, max_batching_window_s: 5}}}}
    timeout_s: 120
    retries: 2
    max_event_age_s: 7200
  - name: clean
    handler: h.py:handle
    trigger: {{objects: {{from: ingest}}}}
  - name: files
    handler: h.py:handle
    trigger: {{objects: {{from: drops}}}}
    memory_mb: 4096
  - name: daily
    handler: h.py:handle
    trigger: {{schedule: "*/10 * * * *", from: clean}}
    memory_mb: 1024
  - name: tick
    handler: h.py:handle
    trigger: {{schedule: "rate(5 minutes)"}}
  - name: api
    handler: h.py:handle
    trigger: {{http: {{persist: true}}}}
workload:
  records_per_second: 400
  record_bytes: 500
  stages:
    daily: {{ms_per_record: 0.001, ms_per_invocation: 1000}}
alerts:
  emails: [ops@example.com, oncall@example.com]
  webhook: https://hooks.example.com/T000/secret-token
clouds:
  gcp:
    project: {PROJECT}
    region: us-east1
    http_invokers: ["serviceAccount:app@other-project.iam.gserviceaccount.com", "group:analysts@example.com"]
"""


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[..., Path]:
    counter = [0]

    def write(text: str = FULL) -> Path:
        counter[0] += 1
        folder = tmp_path / f"spec{counter[0]}"
        folder.mkdir()
        (folder / "h.py").write_text(HANDLER, encoding="utf-8")
        path = folder / "pipeline.yaml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


def load_full_spec() -> Any:
    import tempfile

    folder = Path(tempfile.mkdtemp())
    (folder / "h.py").write_text(HANDLER, encoding="utf-8")
    (folder / "pipeline.yaml").write_text(textwrap.dedent(FULL), encoding="utf-8")
    return load_spec(folder / "pipeline.yaml", None).spec


@pytest.fixture
def full(write_spec: Callable[..., Path]) -> Plan:
    return plan(load_spec(write_spec(), None), "gcp")


@pytest.fixture(scope="module")
def example() -> Plan:
    return plan(load_spec(EXAMPLE, "dev"), "gcp")


def of(p: Plan, type_: str, role: str | None = None) -> list[PlannedResource]:
    return [r for r in p.cloud_resources if r.type == type_ and (role is None or r.role == role)]


def one(p: Plan, type_: str, role: str, name_suffix: str | None = None) -> PlannedResource:
    found = [r for r in of(p, type_, role) if name_suffix is None or r.name.endswith(name_suffix)]
    assert len(found) == 1, [r.name for r in found]
    return found[0]


def email(p: Plan, role: str, suffix: str) -> str:
    return f"{one(p, ACCOUNT, role, suffix).inputs['accountId']}@{PROJECT}.iam.gserviceaccount.com"


def uri(p: Plan, stage: str) -> str:
    return f"https://{one(p, FUNCTION, f'{stage}-function').inputs['name']}-{naming.MOCK_PROJECT_NUMBER}.us-east1.run.app"


def service(p: Plan, stage: str) -> str:
    return f"projects/{PROJECT}/locations/us-east1/services/{one(p, FUNCTION, f'{stage}-function').inputs['name']}"


def depends(p: Plan, resource: PlannedResource, other: PlannedResource) -> bool:
    return other.urn in resource.dependencies


def delivery_wiring(p: Plan, stage: str, bucket: str, prefix: str, owner: str | None = None) -> PlannedResource:
    """Notification on `bucket`/`prefix` -> events topic -> push subscription -> the stage's function, with dead letters.
    The notification and its topic belong to the first stage reading `bucket`/`prefix` (`owner`), shared by the others."""
    role = f"{stage}-trigger"
    events = one(p, TOPIC, f"{owner or stage}-trigger", "-events")
    note = one(p, NOTIFICATION, f"{owner or stage}-trigger")
    assert note.inputs["bucket"] == bucket and note.inputs["objectNamePrefix"] == prefix
    assert note.inputs["eventTypes"] == ["OBJECT_FINALIZE"] and note.inputs["payloadFormat"] == "JSON_API_V1"
    assert note.inputs["topic"] == f"projects/{PROJECT}/topics/{events.physical_name}"
    # The GCS agent may publish to this topic only, and the notification waits for that grant.
    publisher = one(p, TOPIC_MEMBER, f"{owner or stage}-trigger", "-gcs-agent-publisher")
    assert publisher.inputs["member"] == GCS_AGENT and publisher.inputs["topic"] == note.inputs["topic"]
    assert depends(p, note, publisher)
    push = one(p, SUBSCRIPTION, role, f"{stage}-trigger")
    assert push.inputs["topic"] == note.inputs["topic"]
    config = push.inputs["pushConfig"]
    assert config["pushEndpoint"] == uri(p, stage)
    assert config["oidcToken"] == {"serviceAccountEmail": email(p, role, "-push-sa"), "audience": uri(p, stage)}
    dlq = one(p, TOPIC, f"{stage}-dead-letter")
    assert push.inputs["deadLetterPolicy"]["deadLetterTopic"] == f"projects/{PROJECT}/topics/{dlq.physical_name}"
    assert push.inputs["retryPolicy"] == {"minimumBackoff": "10s", "maximumBackoff": "600s"}
    invoker = one(p, RUN_INVOKER, role, "-push-invoker")
    assert invoker.inputs["name"] == service(p, stage) and invoker.inputs["member"] == f"serviceAccount:{email(p, role, '-push-sa')}"
    return push


# ---- stream stages are batched -------------------------------------------------------------------


def test_stream_stage_reads_the_raw_archive_s_files_through_one_subscription(full: Plan) -> None:
    """Archived stream: the archive's Cloud Storage subscription writes the Avro files the stage reads; no second one."""
    raw = one(full, BUCKET, "raw-bucket")
    topic = one(full, TOPIC, "stream")
    subs = [s for s in of(full, SUBSCRIPTION) if "cloudStorageConfig" in s.inputs]
    assert [s.role for s in subs] == ["raw-archive"]  # the old design had a second one in ingest-trigger
    [sub] = subs
    assert sub.inputs["topic"] == f"projects/{PROJECT}/topics/{topic.physical_name}"
    files = batching.sources(load_full_spec()).get("ingest")
    assert files is not None and files.archive
    config = sub.inputs["cloudStorageConfig"]
    assert config == {"bucket": raw.physical_name, "filenamePrefix": "raw/", "filenameDatetimeFormat": "YYYY-MM-DD/hh_mm_ssZ",
                      "filenameSuffix": ".avro", "maxBytes": files.files.max_bytes, "maxDuration": "60s", "avroConfig": {"writeMetadata": True}}
    assert sub.inputs["ackDeadlineSeconds"] >= 60 and "pushConfig" not in sub.inputs
    # The stage reads the archive's files under raw/ only, and is told so.
    sa = f"serviceAccount:{email(full, 'ingest-identity', '-sa')}"
    [reader] = [m for m in of(full, BUCKET_MEMBER, "ingest-trigger") if m.inputs["member"] == sa]
    assert reader.inputs["role"] == "roles/storage.objectViewer" and reader.inputs["bucket"] == raw.physical_name
    assert reader.inputs["condition"]["expression"] == f'resource.name.startsWith("projects/_/buckets/{raw.physical_name}/objects/raw/")'
    assert one(full, FUNCTION, "ingest-function").inputs["serviceConfig"]["environmentVariables"]["PIPELINE_BATCH_PREFIX"] == "raw/"
    delivery_wiring(full, "ingest", raw.physical_name, "raw/")
    assert not of(full, BUCKET, "ingest-trigger")


TWO_STREAM_STAGES = f"""
name: twin
stream: {{archive: ARCHIVE}}
stages:
  - {{name: fast, handler: h.py:handle, trigger: {{stream: {{batch_size: 100, max_batching_window_s: 2}}}}, max_event_age_s: 7200}}
  - {{name: fast-copy, handler: h.py:handle, trigger: {{stream: {{batch_size: 100, max_batching_window_s: 2}}}}}}
  - {{name: slow, handler: h.py:handle, trigger: {{stream: {{batch_size: 5000, max_batching_window_s: 120}}}}}}
workload: {{records_per_second: 200, record_bytes: 400}}
clouds: {{gcp: {{project: {PROJECT}, region: us-east1}}}}
"""


@pytest.mark.parametrize("archive", [True, False])
def test_stream_stages_with_different_batches_get_their_own_files_and_equal_ones_share(write_spec: Callable[..., Path], archive: bool) -> None:
    loaded = load_spec(write_spec(TWO_STREAM_STAGES.replace("ARCHIVE", str(archive).lower())), None)
    p = plan(loaded, "gcp")
    subs = {s.role: s.inputs["cloudStorageConfig"] for s in of(p, SUBSCRIPTION) if "cloudStorageConfig" in s.inputs}
    record = 400 + batching.AVRO_METADATA_BYTES
    fast_bytes, slow_bytes = 100 * record, 5000 * record
    if archive:
        # fast and fast-copy read the archive's files (sized for them); slow gets its own larger ones.
        assert subs["raw-archive"]["maxBytes"] == fast_bytes and subs["raw-archive"]["filenamePrefix"] == "raw/"
        assert set(subs) == {"raw-archive", "slow-trigger"}
    else:
        assert set(subs) == {"fast-trigger", "slow-trigger"}
        fast_bucket = one(p, BUCKET, "fast-trigger").physical_name
        assert subs["fast-trigger"] == {**subs["fast-trigger"], "bucket": fast_bucket, "filenamePrefix": "fast/", "maxBytes": fast_bytes}
        # The shared batch bucket outlives the longest event age of the stages that read it, and their dead letters (14 days).
        assert {"action": {"type": "Delete"}, "condition": {"age": max(batching.retention_days(7200), 14)}} in one(p, BUCKET, "fast-trigger").inputs["lifecycleRules"]
        env = one(p, FUNCTION, "fast-copy-function").inputs["serviceConfig"]["environmentVariables"]
        assert env["PIPELINE_BATCH_PREFIX"] == "fast/"
        delivery_wiring(p, "fast-copy", fast_bucket, "fast/", owner="fast")
    assert subs["slow-trigger"]["maxBytes"] == slow_bytes and subs["slow-trigger"]["maxDuration"] == "120s"
    sized = p.sizing["stages"]
    assert sized["fast"]["records_per_invocation"] == sized["fast-copy"]["records_per_invocation"] == 100
    assert sized["slow"]["records_per_invocation"] == pytest.approx(5000)


def test_stream_stage_sizing_honours_the_window_and_states_latency(full: Plan) -> None:
    sized = full.sizing["stages"]["ingest"]
    assert sized["records_per_invocation"] == 200  # 400 rec/s fill 200 records in 0.5 s, inside the 5 s window
    assert sized["invocations_per_month"] == pytest.approx(400 / 200 * 730 * 3600)
    assert sized["latency_max_s"] == pytest.approx(199 / 400 + sizing.NOTIFY_MAX_S)
    assert any("honoured" in line for line in sized["reasoning"])
    assert any("no partitions" in line.lower() for line in full.sizing["stream"]["reasoning"])


# ---- object events: our own push subscriptions, no Eventarc ----------------------------------------------


def test_object_stages_from_a_stage_and_from_uploads_are_wired_through_notifications(full: Plan) -> None:
    ingest_out = one(full, BUCKET, "ingest-bucket").physical_name
    drops = one(full, BUCKET, "drops-bucket").physical_name
    delivery_wiring(full, "clean", ingest_out, "ingest/")
    push = delivery_wiring(full, "files", drops, "drops/")
    assert push.inputs["deadLetterPolicy"]["maxDeliveryAttempts"] == triggers.delivery_attempts(3)
    assert all("eventTrigger" not in f.inputs for f in of(full, FUNCTION))
    assert not [m for m in of(full, PROJECT_MEMBER) if m.inputs["role"] in ("roles/eventarc.eventReceiver", "roles/pubsub.publisher")]


def test_gcs_agent_comes_from_the_data_source_that_creates_it(full: Plan) -> None:
    members = {m.inputs["member"] for m in of(full, TOPIC_MEMBER) if m.name.endswith("-gcs-agent-publisher")}
    assert members == {GCS_AGENT}  # what gcp.storage.get_project_service_account answered (naming.mock_call)


# ---- producers, HTTP, schedules over accumulated outputs ----------------------------------------------------


def test_producers_can_only_publish_or_upload_under_the_landing_prefix(full: Plan) -> None:
    stream_sa = f"serviceAccount:{email(full, 'stream-producer', '-sa')}"
    [publish] = [m for m in of(full, TOPIC_MEMBER, "stream-producer")]
    assert publish.inputs == {**publish.inputs, "role": "roles/pubsub.publisher", "member": stream_sa,
                              "topic": f"projects/{PROJECT}/topics/{one(full, TOPIC, 'stream').physical_name}"}
    [upload] = of(full, BUCKET_MEMBER, "drops-producer")
    drops = one(full, BUCKET, "drops-bucket").physical_name
    assert upload.inputs["role"] == "roles/storage.objectCreator" and upload.inputs["bucket"] == drops
    assert upload.inputs["condition"]["expression"] == f'resource.name.startsWith("projects/_/buckets/{drops}/objects/drops/")'


def test_http_stage_is_authenticated_only(full: Plan) -> None:
    fn = one(full, FUNCTION, "api-function")
    assert fn.inputs["serviceConfig"]["ingressSettings"] == "ALLOW_ALL"
    others = [f for f in of(full, FUNCTION) if f.role != "api-function"]
    assert {f.inputs["serviceConfig"]["ingressSettings"] for f in others} == {"ALLOW_INTERNAL_ONLY"}
    invokers = {m.inputs["member"] for m in of(full, RUN_INVOKER, "api-trigger")}
    assert invokers == {f"serviceAccount:{email(full, 'api-trigger', '-caller-sa')}", "serviceAccount:app@other-project.iam.gserviceaccount.com",
                        "group:analysts@example.com"}
    assert all(m.inputs["name"] == service(full, "api") for m in of(full, RUN_INVOKER, "api-trigger"))
    everything = json.dumps([r.inputs for r in full.cloud_resources])
    assert "allUsers" not in everything and "allAuthenticatedUsers" not in everything


@pytest.mark.parametrize(("member", "message"), [("allUsers", "public"), ("allAuthenticatedUsers", "public"), ("bob@example.com", "not an IAM principal")])
def test_http_invokers_are_checked(write_spec: Callable[..., Path], member: str, message: str) -> None:
    text = FULL.replace('"group:analysts@example.com"', f'"{member}"')
    with pytest.raises(SpecError, match=message) as info:
        plan(load_spec(write_spec(text), None), "gcp")
    assert "http_invokers" in str(info.value)


def test_schedule_from_lists_the_source_bucket_reads_its_prefix_and_keeps_its_watermark(full: Plan) -> None:
    [custom] = of(full, CUSTOM_ROLE)
    assert custom.inputs["permissions"] == ["storage.objects.list"]
    sa = f"serviceAccount:{email(full, 'daily-identity', '-sa')}"
    grants = [m for m in of(full, BUCKET_MEMBER, "daily-identity") if m.inputs["member"] == sa]
    source = one(full, BUCKET, "clean-bucket").physical_name
    own = one(full, BUCKET, "daily-bucket").physical_name
    lister = [m for m in grants if m.inputs["role"] == f"projects/{PROJECT}/roles/{custom.inputs['roleId']}"]
    assert [(m.inputs["bucket"], m.inputs.get("condition")) for m in lister] == [(source, None)]
    conditions = {(m.inputs["role"], m.inputs["bucket"], m.inputs["condition"]["expression"]) for m in grants if m.inputs.get("condition")}
    assert ("roles/storage.objectViewer", source, f'resource.name.startsWith("projects/_/buckets/{source}/objects/clean/")') in conditions
    assert ("roles/storage.objectViewer", own, f'resource.name.startsWith("projects/_/buckets/{own}/objects/_state/daily/")') in conditions
    assert ("roles/storage.objectUser", own, f'resource.name.startsWith("projects/_/buckets/{own}/objects/_state/daily/")') in conditions


# ---- build identity (issue 10 item 3) --------------------------------------------------------------------------


def test_functions_build_as_our_build_account_with_only_build_rights(full: Plan) -> None:
    builder = one(full, ACCOUNT, "platform", "-build-sa")
    name = f"projects/{PROJECT}/serviceAccounts/{builder.inputs['accountId']}@{PROJECT}.iam.gserviceaccount.com"
    assert {f.inputs["buildConfig"]["serviceAccount"] for f in of(full, FUNCTION)} == {name}
    member = f"serviceAccount:{builder.inputs['accountId']}@{PROJECT}.iam.gserviceaccount.com"
    project_roles = {m.inputs["role"]: m.inputs.get("condition") for m in of(full, PROJECT_MEMBER) if m.inputs["member"] == member}
    # Cloud Functions copies the source into its own gcf-v2-sources-* bucket and builds from there: read those only.
    assert project_roles == {"roles/logging.logWriter": None, "roles/artifactregistry.writer": None,
                             "roles/storage.objectViewer": {"title": "Cloud Functions source copies",
                                                            "description": "read the gcf-v2-sources buckets Cloud Functions builds from",
                                                            "expression": 'resource.name.startsWith("projects/_/buckets/gcf-v2-sources-")'}}
    sources = one(full, BUCKET, "platform")
    [read] = [m for m in of(full, BUCKET_MEMBER) if m.inputs["member"] == member]
    assert (read.inputs["role"], read.inputs["bucket"]) == ("roles/storage.objectViewer", sources.physical_name)
    for fn in of(full, FUNCTION):
        assert all(b.urn in fn.dependencies for b in of(full, PROJECT_MEMBER) if b.inputs["member"] == member)


# ---- capacity ----------------------------------------------------------------------------------------------


def test_prod_example_plans_and_carries_its_load() -> None:
    p = plan(load_spec(EXAMPLE, "prod"), "gcp")
    for name, sized in p.sizing["stages"].items():
        assert sized["capacity_records_per_second"] >= sized["demand_records_per_second"], name
        fn = one(p, FUNCTION, f"{name}-function")
        assert fn.inputs["serviceConfig"]["maxInstanceCount"] == sized["settings"]["max_instance_count"]
        assert fn.inputs["serviceConfig"]["minInstanceCount"] == 0


def test_big_memory_serves_one_request_per_vcpu(full: Plan) -> None:
    fn = one(full, FUNCTION, "files-function").inputs
    assert fn["serviceConfig"]["maxInstanceRequestConcurrency"] == 2  # 4 GiB -> 2 vCPU
    assert fn["serviceConfig"]["environmentVariables"]["WORKERS"] == "2"


# ---- alerts (issue 10 items 7 and 11) ---------------------------------------------------------------------------


def test_every_alert_policy_notifies_every_channel_and_the_webhook_is_secret(write_spec: Callable[..., Path]) -> None:
    loaded = load_spec(write_spec(), None)
    full = plan(loaded, "gcp")
    channels = of(full, CHANNEL, "observability")
    kinds = sorted(c.inputs["type"] for c in channels)
    assert kinds == ["email", "email", "pubsub", "webhook_tokenauth"]
    assert {c.inputs["labels"]["email_address"] for c in channels if c.inputs["type"] == "email"} == {"ops@example.com", "oncall@example.com"}
    [hook] = [c for c in channels if c.inputs["type"] == "webhook_tokenauth"]
    assert hook.inputs["labels"] == "[secret]" or hook.inputs["labels"].get("url") == "[secret]"
    assert "secret-token" not in json.dumps([r.inputs for r in full.resources])
    names = sorted(c.physical_name for c in channels)
    policies = of(full, ALERT, "observability")
    assert sorted(p.name.rsplit("observability-", 1)[1] for p in policies) == sorted(observability.alert_policies(loaded.spec))
    for policy in policies:
        assert sorted(policy.inputs["notificationChannels"]) == names


def ingested(line: str, service_name: str) -> dict[str, Any]:
    """A runtime stderr line as Cloud Run's logging agent stores it: the JSON becomes jsonPayload, `severity` and `time` move out."""
    payload = json.loads(line)
    severity = payload.pop("severity")
    payload.pop("time")
    return {"resource": {"type": "cloud_run_revision", "labels": {"service_name": service_name}}, "severity": severity, "jsonPayload": payload}


def matches(log_filter: str, entry: dict[str, Any]) -> bool:
    """Evaluate the subset of the Logging query language the dead-letter filter uses: AND/OR, parentheses, `a.b="x"`,
    `a.b>N`, and `field=("x" OR "y")`."""
    import re

    tokens = re.findall(r'\(|\)|AND|OR|[\w.]+(?:=|>)\((?:"[^"]*"(?: OR )?)+\)|[\w.]+(?:=|>)(?:"[^"]*"|\d+)', log_filter)

    def value(path: str) -> Any:
        node: Any = entry
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return node

    def atom(token: str) -> bool:
        field, op, rest = re.match(r"([\w.]+)(=|>)(.*)", token).groups()  # type: ignore[union-attr]
        actual = value(field)
        if rest.startswith("("):
            return actual in re.findall(r'"([^"]*)"', rest)
        if op == ">":
            return isinstance(actual, (int, float)) and actual > float(rest)
        return actual == rest.strip('"')

    pos = 0

    def expr() -> bool:
        nonlocal pos
        result = term()
        while pos < len(tokens) and tokens[pos] == "OR":
            pos += 1
            result = term() or result
        return result

    def term() -> bool:
        nonlocal pos
        result = factor()
        while pos < len(tokens) and tokens[pos] == "AND":
            pos += 1
            result = factor() and result
        return result

    def factor() -> bool:
        nonlocal pos
        token = tokens[pos]
        pos += 1
        if token == "(":
            result = expr()
            pos += 1  # ")"
            return result
        return atom(token)

    result = expr()
    assert pos == len(tokens), tokens[pos:]
    return result


def test_dead_letter_metric_filter_matches_the_runtime_s_real_lines(full: Plan, capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.runtime.context import Context
    from pipeline.runtime.invoke import Settings, StageRunner
    from pipeline.runtime.records import Record
    from pipeline.runtime.store import LocalStore

    [metric] = of(full, LOG_METRIC, "observability")
    fn = one(full, FUNCTION, "ingest-function").inputs["name"]
    assert metric.inputs["labelExtractors"] == {"stage": "EXTRACT(jsonPayload.stage)"}

    def poison(records: Any, context: Any) -> Iterator[Any]:
        for record in records:
            if record.data == b"bad":
                raise ValueError("bad record")
            yield {"ok": True}

    import sys
    import tempfile

    log = JsonLogger(stream=sys.stdout, pipeline="full", stage="ingest")
    settings = Settings("ingest", "stream", "h.py:handle", "out", "ingest/", "dead", "ingest/")
    runner = StageRunner(settings, poison, LocalStore(tempfile.mkdtemp(), durable=False), Context("ingest", logger=log, env={}), log)
    runner.run_stream([Record(b"good", record_id="1"), Record(b"bad", record_id="2")], "batch/a")
    runner.run_stream([Record(b"good", record_id="3")], "batch/b")
    runner.dead_letter_all("batch/c", [b"x"], [{}], RuntimeError("gave up"))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    verdicts = [matches(metric.inputs["filter"], ingested(line, fn)) for line in lines]
    assert verdicts == [True, False, True], lines  # poison batch, clean batch, an input given up on
    assert not matches(metric.inputs["filter"], ingested(lines[0], "someone-elses-service"))
    other = json.loads(lines[0])
    other["pipeline"] = "another-pipeline"
    assert not matches(metric.inputs["filter"], ingested(json.dumps(other), fn))
    [policy] = [p for p in of(full, ALERT, "observability") if p.name.endswith("runtime-dead-letters")]
    condition = policy.inputs["conditions"][0]["conditionThreshold"]
    assert f'metric.type="logging.googleapis.com/user/{metric.inputs["name"]}"' in condition["filter"]
    assert condition["aggregations"][0]["groupByFields"] == ["metric.label.stage"]


# ---- destroy and soft delete (issue 10 items 12 and 15) ---------------------------------------------------------


def _retained(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    seen: dict[str, bool] = {}
    register = planner._RecordingMonitor.RegisterResource

    def recording(self: Any, request: Any) -> Any:
        seen[f"{request.type}::{request.name}"] = bool(request.retainOnDelete)
        return register(self, request)

    monkeypatch.setattr(planner._RecordingMonitor, "RegisterResource", recording)
    return seen


DATA_ROLES = {"raw-bucket", "drops-bucket", "ingest-bucket", "clean-bucket", "files-bucket", "daily-bucket", "tick-bucket", "api-bucket",
              "dead-letter-bucket"}


@pytest.mark.parametrize("delete_data", [False, True])
def test_data_buckets_survive_destroy_unless_delete_data(write_spec: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, delete_data: bool) -> None:
    seen = _retained(monkeypatch)
    original = GcpBackend.__init__

    def init(self: GcpBackend, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.delete_data = delete_data

    monkeypatch.setattr(GcpBackend, "__init__", init)
    p = plan(load_spec(write_spec(), None), "gcp")
    buckets = of(p, BUCKET)
    assert {b.role for b in buckets} >= DATA_ROLES
    for b in buckets:
        data = b.role in DATA_ROLES
        keep = data and not delete_data
        assert seen[f"{b.type}::{b.name}"] is keep, b.role
        assert b.inputs["forceDestroy"] is (not keep), b.role
        assert b.inputs["softDeletePolicy"] == {"retentionDurationSeconds": storage.SOFT_DELETE_DATA_S if data else 0}, b.role


# ---- what GCP cannot express ----------------------------------------------------------------------------------------


def test_unknown_region_lists_known_regions(write_spec: Callable[..., Path]) -> None:
    with pytest.raises(SpecError) as info:
        plan(load_spec(write_spec(FULL.replace("us-east1", "us-east7")), None), "gcp")
    text = str(info.value)
    assert "clouds.gcp.region" in text and "us-central1" in text and "europe-west1" in text


def test_push_fed_stage_timeout_is_bounded_by_the_ack_deadline(write_spec: Callable[..., Path]) -> None:
    with pytest.raises(SpecError, match="ack deadline"):
        plan(load_spec(write_spec(FULL.replace("timeout_s: 120", "timeout_s: 600")), None), "gcp")


def test_every_function_is_http_and_scaled_to_zero(example: Plan) -> None:
    for fn in of(example, FUNCTION):
        assert fn.inputs["buildConfig"]["entryPoint"] == "http" and fn.inputs["buildConfig"]["runtime"] == "python312"
        assert fn.inputs["serviceConfig"]["minInstanceCount"] == 0
        env = fn.inputs["serviceConfig"]["environmentVariables"]
        assert env["PIPELINE_RETRIES"] and env["PIPELINE_MAX_EVENT_AGE_S"]
