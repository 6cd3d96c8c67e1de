"""The AWS plan's wiring for sources, HTTP, schedules over outputs, alerts, destroy and naming: each
test reads the planned inputs and checks the exact resource, prefix, principal or setting."""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pipeline_aws import environment, storage, triggers
from pipeline_aws.backend import AwsBackend
from pipeline_aws.observability import DEAD_LETTER_PATTERN

from pipeline import planner
from pipeline.errors import SpecError
from pipeline.plan import Plan, PlannedResource
from pipeline.planner import SECRET_MASK, plan
from pipeline.spec.load import load_spec

EXAMPLE = Path(__file__).parents[3] / "stacks" / "transactions" / "pipeline.yaml"
ACCOUNT = "123456789012"
INVOKER = "arn:aws:iam::210987654321:role/analytics-caller"


def write_spec(tmp_path: Path, body: str) -> Path:
    (tmp_path / "h.py").write_text("def handle(records, context):\n    return []\n")
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(textwrap.dedent(body))
    return spec


def one(p: Plan, type_: str, role: str) -> PlannedResource:
    return p.one(type_, role)


def arn_of(p: Plan, type_: str, role: str) -> str:
    name = one(p, type_, role).physical_name
    return {
        "aws:s3/bucket:Bucket": f"arn:aws:s3:::{name}",
        "aws:lambda/function:Function": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}",
        "aws:kinesis/stream:Stream": f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/{name}",
    }[type_]


def statements(resource: PlannedResource) -> list[dict[str, Any]]:
    return list(json.loads(resource.inputs["policy"])["Statement"])


def role_statements(p: Plan, role_key: str) -> list[dict[str, Any]]:
    iam_role = one(p, "aws:iam/role:Role", role_key).physical_name
    return [s for rp in p.of_type("aws:iam/rolePolicy:RolePolicy") if rp.inputs["role"] == iam_role for s in statements(rp)]


FULL = """
    name: wiring
    stream: {archive: true}
    uploads: {}
    stages:
      - {name: ingest, handler: "h.py:handle", trigger: {stream: {batch_size: 200, max_batching_window_s: 2}}}
      - {name: files, handler: "h.py:handle", trigger: {objects: {from: uploads}}}
      - {name: nightly, handler: "h.py:handle", trigger: {schedule: "rate(1 hour)", from: ingest}, timeout_s: 900}
      - {name: lookup, handler: "h.py:handle", trigger: {http: {}}}
    workload: {records_per_second: 10}
    alerts: {emails: [ops@example.com, oncall@example.com], webhook: "https://hooks.example.com/T000/B000/secret-token"}
    clouds: {aws: {http_invokers: [INVOKER]}}
""".replace("INVOKER", INVOKER)


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    return plan(load_spec(write_spec(tmp_path_factory.mktemp("full"), FULL)), "aws")


# ---- issue 11: sources ---------------------------------------------------------------------------


def test_uploads_bucket_notifies_its_stage_and_triggers_it(full: Plan) -> None:
    uploads = one(full, "aws:s3/bucket:Bucket", "uploads-bucket").physical_name
    [notification] = full.of_type("aws:s3/bucketNotification:BucketNotification")
    assert notification.role == "files-trigger" and notification.inputs["bucket"] == uploads
    assert notification.inputs["lambdaFunctions"] == [{"lambdaFunctionArn": arn_of(full, "aws:lambda/function:Function", "files-function"),
                                                      "events": ["s3:ObjectCreated:*"], "filterPrefix": "uploads/"}]
    rules = one(full, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "uploads-bucket").inputs["rules"]
    assert [r["expiration"]["days"] for r in rules if "days" in r.get("expiration", {})] == [30]  # storage.uploads_days default


def test_producers_may_only_write_their_source(full: Plan) -> None:
    uploads_arn = arn_of(full, "aws:s3/bucket:Bucket", "uploads-bucket")
    [upload_policy] = [p for p in full.of_type("aws:iam/policy:Policy") if p.role == "uploads-producer"]
    assert [(s["Action"], s["Resource"]) for s in statements(upload_policy)] == [(["s3:PutObject"], [f"{uploads_arn}/uploads/*"])]
    [stream_policy] = [p for p in full.of_type("aws:iam/policy:Policy") if p.role == "stream-producer"]
    stream_arn = arn_of(full, "aws:kinesis/stream:Stream", "stream")
    assert [(s["Resource"]) for s in statements(stream_policy)] == [[stream_arn]]
    assert set(statements(stream_policy)[0]["Action"]) == {"kinesis:PutRecord", "kinesis:PutRecords", "kinesis:ListShards",
                                                           "kinesis:DescribeStreamSummary"}
    outputs = {p.role: p for p in full.of_type("aws:iam/policy:Policy")}
    assert {"uploads-producer", "stream-producer"} <= set(outputs)


# ---- issue 11: schedule over accumulated outputs ----------------------------------------------------


def test_schedule_from_lists_exactly_the_source_prefix_and_keeps_its_watermark(full: Plan) -> None:
    ingest_arn = arn_of(full, "aws:s3/bucket:Bucket", "ingest-bucket")
    own_arn = arn_of(full, "aws:s3/bucket:Bucket", "nightly-bucket")
    found = {(tuple(s["Action"]), tuple(s["Resource"]), json.dumps(s.get("Condition", {}), sort_keys=True)) for s in role_statements(full, "nightly-identity")}
    assert (("s3:ListBucket",), (ingest_arn,), json.dumps({"StringLike": {"s3:prefix": ["ingest/*"]}})) in found
    assert (("s3:GetObject",), (f"{ingest_arn}/ingest/*",), "{}") in found
    assert (("s3:GetObject",), (f"{own_arn}/_state/nightly/*",), "{}") in found
    assert (("s3:PutObject",), (f"{own_arn}/_state/nightly/*",), "{}") in found
    # Listing the state prefix turns a missing watermark into 404 (no ListBucket: S3 answers 403).
    assert (("s3:ListBucket",), (own_arn,), json.dumps({"StringLike": {"s3:prefix": ["_state/nightly/*"]}})) in found
    # Nothing else of the source bucket is listable.
    lists = [s for s in role_statements(full, "nightly-identity") if s["Action"] == ["s3:ListBucket"]]
    assert len(lists) == 2
    env = one(full, "aws:lambda/function:Function", "nightly-function").inputs["environment"]["variables"]
    assert env["PIPELINE_STATE_PREFIX"] == "_state/nightly/" and env["PIPELINE_INPUT_PREFIX"] == "ingest/"


def test_scheduler_passes_the_scheduled_time(full: Plan) -> None:
    target = one(full, "aws:scheduler/schedule:Schedule", "nightly-trigger").inputs["target"]
    assert json.loads(target["input"]) == {"scheduled_time": "<aws.scheduler.scheduled-time>"}


# ---- issue 11: HTTP ------------------------------------------------------------------------------------


def test_http_stage_is_a_function_url_with_iam_auth_never_public(full: Plan) -> None:
    url = one(full, "aws:lambda/functionUrl:FunctionUrl", "lookup-trigger").inputs
    function_name = one(full, "aws:lambda/function:Function", "lookup-function").physical_name
    assert url["authorizationType"] == "AWS_IAM" and url["functionName"] == function_name
    assert not [u for u in full.of_type("aws:lambda/functionUrl:FunctionUrl") if u.inputs["authorizationType"] == "NONE"]
    assert not [p for p in full.of_type("aws:lambda/permission:Permission") if p.inputs["principal"] in {"*", "lambda.amazonaws.com"}]


def test_http_caller_policy_names_exactly_the_function_with_both_actions(full: Plan) -> None:
    function_arn = arn_of(full, "aws:lambda/function:Function", "lookup-function")
    [caller] = [p for p in full.of_type("aws:iam/policy:Policy") if p.role == "lookup-trigger"]
    assert [(s["Action"], s["Resource"], s.get("Condition")) for s in statements(caller)] == [
        (["lambda:InvokeFunctionUrl"], [function_arn], {"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}}),
        (["lambda:InvokeFunction"], [function_arn], None),
    ]


def test_http_invokers_get_exact_resource_permissions(full: Plan) -> None:
    function_name = one(full, "aws:lambda/function:Function", "lookup-function").physical_name
    permissions = [p.inputs for p in full.of_type("aws:lambda/permission:Permission") if p.role == "lookup-trigger"]
    assert sorted((p["action"], p["principal"], p["function"], p.get("functionUrlAuthType"), p.get("invokedViaFunctionUrl")) for p in permissions) == [
        ("lambda:InvokeFunction", INVOKER, function_name, None, True),
        ("lambda:InvokeFunctionUrl", INVOKER, function_name, "AWS_IAM", None),
    ]


def test_http_stage_without_persist_has_no_bucket_and_reserves_nothing(full: Plan) -> None:
    assert not [b for b in full.of_type("aws:s3/bucket:Bucket") if b.role == "lookup-bucket"]
    fn = one(full, "aws:lambda/function:Function", "lookup-function").inputs
    assert "PIPELINE_OUTPUT_BUCKET" not in fn["environment"]["variables"]
    assert fn["reservedConcurrentExecutions"] == -1
    assert full.sizing["stages"]["lookup"]["blocking"] == pytest.approx(0.0, abs=1e-9)  # the unreserved pool refuses nothing


# ---- issue 10: alerts ------------------------------------------------------------------------------------


def test_alarm_topic_uses_a_customer_key_cloudwatch_may_use(full: Plan) -> None:
    topic = one(full, "aws:sns/topic:Topic", "observability")
    key = one(full, "aws:kms/key:Key", "observability")
    assert topic.inputs["kmsMasterKeyId"].startswith(f"arn:aws:kms:us-east-1:{ACCOUNT}:key/")
    assert topic.inputs["kmsMasterKeyId"] != "alias/aws/sns"
    assert key.inputs["enableKeyRotation"] is True
    alarms = f"arn:aws:cloudwatch:us-east-1:{ACCOUNT}:alarm:wiring-default-*"
    by_sid = {s["Sid"]: s for s in statements(key)}
    assert by_sid["AccountAdministersTheKey"]["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    cloudwatch = by_sid["CloudWatchAlarmsPublish"]
    assert cloudwatch["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert set(cloudwatch["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    assert cloudwatch["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}, "ArnLike": {"aws:SourceArn": alarms}}
    [publish] = statements(one(full, "aws:sns/topicPolicy:TopicPolicy", "observability"))
    assert publish["Action"] == "sns:Publish" and publish["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert publish["Condition"]["ArnLike"]["aws:SourceArn"] == alarms
    # Every alarm is named inside that pattern and notifies the topic.
    topic_arn = f"arn:aws:sns:us-east-1:{ACCOUNT}:{topic.physical_name}"
    for alarm in full.of_type("aws:cloudwatch/metricAlarm:MetricAlarm"):
        assert alarm.inputs["name"].startswith("wiring-default-") and alarm.inputs["alarmActions"] == [topic_arn]


def test_alert_targets_are_subscribed_and_the_webhook_is_secret(full: Plan) -> None:
    subscriptions: dict[str, list[Any]] = {s.inputs["protocol"]: [] for s in full.of_type("aws:sns/topicSubscription:TopicSubscription")}
    for s in full.of_type("aws:sns/topicSubscription:TopicSubscription"):
        subscriptions[s.inputs["protocol"]].append(s.inputs["endpoint"])
    assert sorted(subscriptions["email"]) == ["oncall@example.com", "ops@example.com"]
    assert subscriptions["https"] == [SECRET_MASK]
    assert "secret-token" not in full.to_json()


def test_runtime_dead_letters_alarm_through_a_log_metric_filter(full: Plan) -> None:
    for stage in ("ingest", "files", "nightly", "lookup"):
        log_group = one(full, "aws:cloudwatch/logGroup:LogGroup", f"{stage}-function").inputs["name"]
        [metric_filter] = [f for f in full.of_type("aws:cloudwatch/logMetricFilter:LogMetricFilter") if f.inputs["logGroupName"] == log_group]
        assert metric_filter.inputs["pattern"] == DEAD_LETTER_PATTERN
        transformation = metric_filter.inputs["metricTransformation"]
        assert transformation["value"] == "$.dead_letters" and transformation["dimensions"] == {"Stage": "$.stage"}
        [alarm] = [a.inputs for a in full.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
                   if a.inputs.get("metricName") == transformation["name"] and a.inputs["dimensions"] == {"Stage": stage}]
        assert alarm["namespace"] == transformation["namespace"] and alarm["statistic"] == "Sum" and alarm["threshold"] == 0


# ---- issue 10: capacity ----------------------------------------------------------------------------------


def test_no_function_reserves_concurrency_by_default(full: Plan) -> None:
    """A reservation fails the first deploy on a new account (quota 10, and Lambda keeps 100 unreserved): every function,
    the raw archiver's too, leaves it unreserved (-1 also removes a reservation an earlier plan made); the stream stage's
    concurrency is what its mapping runs, shards x ParallelizationFactor."""
    for fn in full.of_type("aws:lambda/function:Function"):
        assert fn.inputs["reservedConcurrentExecutions"] == -1, fn.role
    for stage, sized in full.sizing["stages"].items():
        assert "reserved_concurrency" not in sized["settings"], stage
    esm = one(full, "aws:lambda/eventSourceMapping:EventSourceMapping", "ingest-trigger").inputs
    assert full.sizing["stages"]["ingest"]["concurrency"] == full.sizing["stream"]["units"] * esm["parallelizationFactor"]


def test_parallelization_factor_rises_when_one_batch_per_shard_is_not_enough(tmp_path: Path) -> None:
    """2,000 rec/s on 3 shards at 20 ms per record: one batch per shard carries ~100 rec/s per shard x 3, far
    too little; the sizing raises ParallelizationFactor (and shards) until the stage carries its demand."""
    spec = write_spec(tmp_path, """
        name: heavy
        stream: {archive: false}
        stages: [{name: work, handler: "h.py:handle", trigger: {stream: {batch_size: 100, max_batching_window_s: 1}}, timeout_s: 60}]
        workload: {records_per_second: 2000, record_bytes: 200, stages: {work: {ms_per_record: 20, ms_per_invocation: 50}}}
    """)
    p = plan(load_spec(spec), "aws")
    sized = p.sizing["stages"]["work"]
    esm = one(p, "aws:lambda/eventSourceMapping:EventSourceMapping", "work-trigger").inputs
    assert esm["parallelizationFactor"] == sized["settings"]["parallelization_factor"] > 1
    assert sized["capacity_records_per_second"] >= 2000
    assert sized["concurrency"] == p.sizing["stream"]["units"] * esm["parallelizationFactor"]


def test_a_stage_shards_x_10_cannot_carry_raises_the_shard_count(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, """
        name: heavier
        stream: {archive: false}
        stages: [{name: work, handler: "h.py:handle", trigger: {stream: {batch_size: 10, max_batching_window_s: 0}}, timeout_s: 60}]
        workload: {records_per_second: 500, record_bytes: 200, stages: {work: {ms_per_record: 100, ms_per_invocation: 50}}}
    """)
    p = plan(load_spec(spec), "aws")
    # Throughput alone needs 1 shard; 500 rec/s x 1.25 x 1.05 s per batch of 10 = 66 concurrent batches -> 7 shards x 10.
    assert p.sizing["stream"]["units"] == 7
    assert any("raised to 7 shard(s)" in line for line in p.sizing["stream"]["reasoning"])
    assert one(p, "aws:kinesis/stream:Stream", "stream").inputs["shardCount"] == 7


def test_on_demand_above_its_initial_capacity_is_provisioned_and_says_why(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, """
        name: busy
        stream: {archive: false}
        stages: [{name: work, handler: "h.py:handle", trigger: {stream: {}}}]
        workload: {records_per_second: 5000, record_bytes: 1000}
        clouds: {aws: {stream_mode: on_demand}}
    """)
    p = plan(load_spec(spec), "aws")
    stream = one(p, "aws:kinesis/stream:Stream", "stream").inputs
    assert stream["streamModeDetails"] == {"streamMode": "PROVISIONED"} and stream["shardCount"] == p.sizing["stream"]["units"] == 7
    assert any("starts at 4.00 MiB/s" in line for line in p.sizing["stream"]["reasoning"])
    assert any("warm throughput" in line for line in p.sizing["stream"]["reasoning"])


@pytest.fixture
def redeployed(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Plan as `pipeline deploy` does: the backend gets the stack's last outputs (and destroy flags)."""
    state: dict[str, Any] = {"previous": {}, "delete_data": False}

    class Deployed(AwsBackend):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.previous_outputs = state["previous"]
            self.delete_data = state["delete_data"]

    monkeypatch.setattr(planner, "backend_class", lambda name: Deployed)
    yield state


def test_shards_move_at_most_2x_from_the_last_deploy(redeployed: dict[str, Any]) -> None:
    """Prod needs 2 shards; a stack last deployed with 12 steps down to 6, one deployed with 1 goes to 2 at once."""
    redeployed["previous"] = {"stream_sizing": {"units": 12, "partitions": 12, "mode": "provisioned"}}
    p = plan(load_spec(EXAMPLE, "prod"), "aws")
    assert one(p, "aws:kinesis/stream:Stream", "stream").inputs["shardCount"] == p.sizing["stream"]["units"] == 6
    assert any("at most 2x" in line and "continues to 2" in line for line in p.sizing["stream"]["reasoning"])
    redeployed["previous"] = {"stream_sizing": {"units": 1, "partitions": 1, "mode": "provisioned"}}
    assert plan(load_spec(EXAMPLE, "prod"), "aws").sizing["stream"]["units"] == 2


# ---- issue 10: archive, versioning, destroy, names -------------------------------------------------------


def test_raw_archive_appends_a_newline_to_every_record(tmp_path: Path) -> None:
    trickle = plan(load_spec(write_spec(tmp_path, FULL.replace("records_per_second: 10", "records_per_second: 0.2"))), "aws")
    processing = one(trickle, "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream", "raw-archive").inputs[
        "extendedS3Configuration"]["processingConfiguration"]
    assert processing == {"enabled": True, "processors": [{"type": "AppendDelimiterToRecord"}]}


def test_every_data_bucket_is_versioned_and_still_expires(full: Plan) -> None:
    """Data of record is protected from deletion: the landing, raw-archive and dead-letter buckets as well as every
    stage's outputs keep a replaced or deleted object for a week (the week GCS and Azure soft delete keep)."""
    versioned = {v.role for v in full.of_type("aws:s3/bucketVersioning:BucketVersioning")}
    assert versioned == {"uploads-bucket", "raw-bucket", "dead-letter-bucket", "ingest-bucket", "files-bucket", "nightly-bucket"}
    assert storage.NONCURRENT_DAYS == 7
    for role in versioned:
        assert one(full, "aws:s3/bucketVersioning:BucketVersioning", role).inputs["versioningConfiguration"] == {"status": "Enabled"}
        rules = {r["id"]: r for r in one(full, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", role).inputs["rules"]}
        days = [r["expiration"]["days"] for r in rules.values() if "days" in r.get("expiration", {})]
        assert len(days) == 1  # current versions still expire after the retention
        assert rules[f"noncurrent-after-{storage.NONCURRENT_DAYS}-days"]["noncurrentVersionExpiration"] == {"noncurrentDays": storage.NONCURRENT_DAYS}
        assert rules["remove-expired-delete-markers"]["expiration"] == {"expiredObjectDeleteMarker": True}


def test_a_window_stage_expires_only_its_outputs_never_its_watermark(full: Plan) -> None:
    """`nightly` keeps `_state/nightly/watermark.json` and the lease in its own bucket; an idle window does not
    rewrite them, so a bucket-wide expiry would lose the watermark and the next run would read every kept source
    object again. Its retention covers `nightly/` only; the other buckets, and the other rules, stay bucket-wide."""
    def rules(role: str) -> dict[str, dict[str, Any]]:
        return {r["id"]: r for r in one(full, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", role).inputs["rules"]}

    nightly = rules("nightly-bucket")
    [expiry] = [r for r in nightly.values() if "days" in r.get("expiration", {})]
    assert expiry["filter"] == {"prefix": "nightly/"}
    assert not "_state/nightly/watermark.json".startswith(expiry["filter"]["prefix"])
    for rule_id, rule in nightly.items():
        if rule is not expiry:
            assert rule.get("filter", {}) == {}, rule_id  # abort-multipart, noncurrent, delete markers: everything
    for role in ("uploads-bucket", "ingest-bucket", "files-bucket", "dead-letter-bucket", "raw-bucket"):
        [other] = [r for r in rules(role).values() if "days" in r.get("expiration", {})]
        assert other.get("filter", {}) == {}, role


def test_a_govcloud_plan_builds_every_arn_in_the_aws_us_gov_partition(tmp_path: Path) -> None:
    """In us-gov-west-1 the mocks return aws-us-gov ARNs, as AWS would; no input the plan builds may still say
    `arn:aws:` (CreateKey refuses a key policy whose root principal is in another partition, and an alarm
    `aws:SourceArn` of the wrong partition never matches)."""
    spec = write_spec(tmp_path, """
        name: gov-claims
        uploads: {}
        stages:
          - {name: process, handler: "h.py:handle", trigger: {objects: {from: uploads}}}
          - {name: nightly, handler: "h.py:handle", trigger: {schedule: "rate(1 hour)", from: process}, timeout_s: 900, memory_mb: 4096}
          - {name: lookup, handler: "h.py:handle", trigger: {http: {}}}
        alerts: {emails: [ops@example.com]}
        clouds:
          aws:
            region: us-gov-west-1
            producers: [{principal: "222233334444", sources: [uploads]}]
            http_invokers: ["arn:aws-us-gov:iam::210987654321:role/caller"]
        workload: {records_per_second: 1}
    """)
    p = plan(load_spec(spec), "aws")
    text = json.dumps([r.inputs for r in p.resources])
    assert "arn:aws-us-gov:" in text
    assert re.findall(r"arn:aws:[^\"]*", text) == []
    key = json.loads(one(p, "aws:kms/key:Key", "observability").inputs["policy"])
    [admin] = [s for s in key["Statement"] if s["Sid"] == "AccountAdministersTheKey"]
    assert admin["Principal"] == {"AWS": f"arn:aws-us-gov:iam::{ACCOUNT}:root"}
    [publish] = [s for s in key["Statement"] if s["Sid"] == "CloudWatchAlarmsPublish"]
    assert publish["Condition"]["ArnLike"]["aws:SourceArn"].startswith(f"arn:aws-us-gov:cloudwatch:us-gov-west-1:{ACCOUNT}:alarm:")

    # An invoker of the commercial partition cannot be granted anything in GovCloud: a located error.
    spec.write_text(spec.read_text().replace("arn:aws-us-gov:iam::210987654321", "arn:aws:iam::210987654321"))
    with pytest.raises(SpecError) as caught:
        plan(load_spec(spec), "aws")
    assert [(p.path, "aws-us-gov" in p.message) for p in caught.value.problems] == [("clouds.aws.http_invokers[0]", True)]


def _retained(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """Record each registration's retainOnDelete (the plan itself keeps inputs only)."""
    seen: dict[str, bool] = {}
    register = planner._RecordingMonitor.RegisterResource

    def recording(self: Any, request: Any) -> Any:
        seen[f"{request.type}::{request.name}"] = bool(request.retainOnDelete)
        return register(self, request)

    monkeypatch.setattr(planner._RecordingMonitor, "RegisterResource", recording)
    return seen


def test_data_buckets_survive_destroy_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _retained(monkeypatch)
    p = plan(load_spec(EXAMPLE, "dev"), "aws")
    for b in p.of_type("aws:s3/bucket:Bucket"):
        data = b.role != "artifacts-bucket"
        assert b.inputs["forceDestroy"] is False
        assert seen[f"{b.type}::{b.name}"] is data, b.role
        # Its protections and expiry stay with it.
        for side in p.by_role()[b.role]:
            assert seen[f"{side.type}::{side.name}"] is data, side.name


def test_delete_data_makes_buckets_deletable_with_their_objects(monkeypatch: pytest.MonkeyPatch, redeployed: dict[str, Any]) -> None:
    seen = _retained(monkeypatch)
    redeployed["delete_data"] = True
    p = plan(load_spec(EXAMPLE, "dev"), "aws")
    for b in p.of_type("aws:s3/bucket:Bucket"):
        assert b.inputs["forceDestroy"] is (b.role != "artifacts-bucket")
        assert seen[f"{b.type}::{b.name}"] is False


def test_long_names_keep_every_bucket_role_in_its_name() -> None:
    keys = ["raw", "dead-letter", "artifacts", "uploads", "preprocessing-stage1", "preprocessing-stage2"]
    prefixes = [storage.bucket_prefix("a-very-long-pipeline", "production-east", key) for key in keys]
    assert len(set(prefixes)) == len(keys)
    for key, prefix in zip(keys, prefixes, strict=True):
        assert len(prefix) <= storage.BUCKET_PREFIX_MAX and prefix.endswith(f"-{key}-") and prefix == prefix.lower()
    # Two long stacks of one pipeline stay apart, and short names are left alone.
    assert storage.bucket_prefix("a-very-long-pipeline", "production-east", "raw") != storage.bucket_prefix("a-very-long-pipeline", "production-west", "raw")
    assert storage.bucket_prefix("txn-scoring", "dev", "raw") == "txn-scoring-dev-raw-"


def test_planned_bucket_names_are_at_most_63_characters(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, """
        name: a-very-long-pipeline
        stages:
          - {name: preprocessing-stage1, handler: "h.py:handle", trigger: {stream: {}}}
          - {name: preprocessing-stage2, handler: "h.py:handle", trigger: {objects: {from: preprocessing-stage1}}}
    """)
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "production-east.yaml").write_text("tags: {env: prod}\n")
    p = plan(load_spec(spec, "production-east"), "aws")
    names = {b.role: b.physical_name for b in p.of_type("aws:s3/bucket:Bucket")}
    assert all(len(name) <= 63 for name in names.values())
    assert all(f"-{role.removesuffix('-bucket')}-" in name for role, name in names.items())


# ---- issue 10: checks ---------------------------------------------------------------------------------


def test_environment_over_4_kb_with_the_pipelines_own_variables_is_located(tmp_path: Path) -> None:
    """The spec allows 4,000 characters; with PIPELINE_* variables on top, 3,900 no longer fit."""
    spec = write_spec(tmp_path, """
        name: envs
        stages:
          - name: first
            handler: "h.py:handle"
            trigger: {stream: {}}
            environment:
              BIG: "BIG_VALUE"
    """.replace("BIG_VALUE", "x" * 3900))
    with pytest.raises(SpecError) as caught:
        plan(load_spec(spec), "aws")
    [problem] = caught.value.problems
    assert problem.path == "stages[0].environment" and problem.line == 8  # the mapping under `environment:`
    assert "4 KB" in problem.message and "PIPELINE_" in problem.message


def test_environment_names_lambda_refuses_are_located_errors(tmp_path: Path) -> None:
    """Lambda's CreateFunction takes keys matching [a-zA-Z]([a-zA-Z0-9_])+ and refuses its reserved names; the spec
    (shared by every cloud) allows `X` and `_DEBUG`. Each is an error at its own key, with the valid form."""
    spec = write_spec(tmp_path, """
        name: envtest
        uploads: {}
        stages:
          - name: process
            handler: "h.py:handle"
            trigger: {objects: {from: uploads}}
            environment:
              X: "1"
              _DEBUG: "1"
              LAMBDA_TASK_ROOT: /tmp
              _X_AMZN_TRACE_ID: x
              TZ: Europe/Paris
              OK_NAME: "1"
    """)
    with pytest.raises(SpecError) as caught:
        plan(load_spec(spec), "aws")
    found = {p.path: p for p in caught.value.problems}
    # TZ is not reserved (Lambda lists it among the variables a function may set)
    assert set(found) == {f"stages[0].environment.{key}" for key in ("X", "_DEBUG", "LAMBDA_TASK_ROOT", "_X_AMZN_TRACE_ID")}
    assert [found[f"stages[0].environment.{key}"].line for key in ("X", "_DEBUG", "LAMBDA_TASK_ROOT", "_X_AMZN_TRACE_ID")] == [9, 10, 11, 12]
    assert "start with a letter" in found["stages[0].environment.X"].message and "X_VALUE" in found["stages[0].environment.X"].hint
    assert "DEBUG" in found["stages[0].environment._DEBUG"].hint
    assert "reserved" in found["stages[0].environment.LAMBDA_TASK_ROOT"].message
    assert "reserved" in found["stages[0].environment._X_AMZN_TRACE_ID"].message
    # The same spec with valid names plans.
    spec.write_text(spec.read_text().replace('X: "1"', 'XX: "1"').replace("_DEBUG", "DEBUG").replace("LAMBDA_TASK_ROOT", "TASK_ROOT")
                    .replace("_X_AMZN_TRACE_ID:", "TRACE:"))
    assert plan(load_spec(spec), "aws").of_type("aws:lambda/function:Function")


def test_environment_measure_matches_the_planned_function(tmp_path: Path) -> None:
    """The check rebuilds exactly the variables the orchestrator sets, with the planned names' lengths."""
    loaded = load_spec(EXAMPLE, "dev")
    p = plan(loaded, "aws")
    for stage in loaded.spec.stages:
        planned = one(p, "aws:lambda/function:Function", f"{stage.name}-function").inputs["environment"]["variables"]
        rebuilt = {**environment.pipeline_variables(loaded.spec, "dev", stage, loaded.base_dir), **stage.environment}
        assert set(rebuilt) == set(planned)
        assert {k: len(v) for k, v in rebuilt.items()} == {k: len(v) for k, v in planned.items()}
        assert environment.measured(rebuilt) == environment.measured(planned)


@pytest.mark.parametrize(("setting", "path", "message"), [
    ("region: us-east-7", "clouds.aws.region", "not an AWS region"),
    ("{region: eu-central-2}", "clouds.aws.region", "function URLs"),
    ("{http_invokers: ['arn:aws:iam::1234:role/x']}", "clouds.aws.http_invokers[0]", "not an IAM role or user ARN"),
])
def test_bad_aws_settings_are_located_errors(tmp_path: Path, setting: str, path: str, message: str) -> None:
    settings = setting if setting.startswith("{") else "{" + setting + "}"
    spec = write_spec(tmp_path, f"""
        name: checks
        stages: [{{name: api, handler: "h.py:handle", trigger: {{http: {{}}}}}}]
        clouds: {{aws: {settings}}}
    """)
    with pytest.raises(SpecError) as caught:
        plan(load_spec(spec), "aws")
    assert [(p.path, message in p.message) for p in caught.value.problems] == [(path, True)]
    if "region" in path and "us-east-7" in setting:
        assert "us-east-1" in caught.value.problems[0].hint


def _invokers(count: int) -> list[str]:
    return [f"arn:aws:iam::{210987654300 + i}:role/partner-analytics-caller-{i:02d}" for i in range(count)]


def _invokers_spec(tmp_path: Path, count: int) -> Path:
    invokers = _invokers(count)
    return write_spec(tmp_path, f"""
        name: many-callers
        stages: [{{name: api, handler: "h.py:handle", trigger: {{http: {{}}}}}}]
        clouds: {{aws: {{http_invokers: {json.dumps(invokers)}}}}}
    """)


def test_http_invokers_over_lambdas_20_kb_resource_policy_are_a_located_error(tmp_path: Path) -> None:
    """Each invoker adds two statements to the function's resource policy; past 20 KB AddPermission fails part-way
    through the deploy. The check measures the statements the plan creates and names the most that fit."""
    with pytest.raises(SpecError) as caught:
        plan(load_spec(_invokers_spec(tmp_path, 40)), "aws")
    [problem] = caught.value.problems
    assert problem.path == "clouds.aws.http_invokers" and "20 KB" in problem.message and "80 resource-policy statements" in problem.message
    most = int(re.search(r"at most (\d+) invokers", problem.hint).group(1))  # type: ignore[union-attr]
    assert 20 <= most < 40
    fits = plan(load_spec(_invokers_spec(tmp_path, most)), "aws")
    permissions = fits.of_type("aws:lambda/permission:Permission")
    assert len(permissions) == 2 * most
    with pytest.raises(SpecError):
        plan(load_spec(_invokers_spec(tmp_path, most + 1)), "aws")

    # The measured statements are the planned permissions: same logical names (their generated statement ids),
    # actions, principals and conditions' arguments, on the planned function.
    function = one(fits, "aws:lambda/function:Function", "api-function").physical_name
    arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{function}"
    measured = triggers.invoker_policy(arn, _invokers(most), lambda suffix: f"many-callers-api-trigger-{suffix}")["Statement"]
    planned = {(p.name, p.inputs["action"], p.inputs["principal"]) for p in permissions}
    assert {(s["Sid"][:len(s["Sid"].rsplit("-", 1)[0])], s["Action"], s["Principal"]["AWS"]) for s in measured} == planned
    for p in permissions:
        assert p.inputs.get("functionUrlAuthType") == ("AWS_IAM" if p.inputs["action"] == "lambda:InvokeFunctionUrl" else None)
        assert p.inputs.get("invokedViaFunctionUrl") is (True if p.inputs["action"] == "lambda:InvokeFunction" else None)


def test_grants_count_each_statement_resource_once(full: Plan) -> None:
    backend = AwsBackend(load_spec(EXAMPLE, "dev").spec, "dev", EXAMPLE.parent)
    counted = backend.count_grants(full)
    expected = 0
    for r in full.cloud_resources:
        if r.type == "aws:lambda/permission:Permission":
            expected += 1
        elif r.type in backend.grant_types:
            expected += sum(len(s["Resource"]) if isinstance(s["Resource"], list) else 1 for s in statements(r) if s["Effect"] == "Allow")
    assert counted == expected > len([r for r in full.cloud_resources if r.type in backend.grant_types])


def test_every_new_role_passes_provider_property_names(full: Plan) -> None:
    """Typed *Args everywhere: no snake_case key reaches the engine (tests/test_plan_inputs.py scans the bundled
    stacks; this plan has the uploads, HTTP, schedule-from and alert roles they lack)."""
    snake = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)+$")
    user_keyed = {"tags", "defaultTags", "variables", "dimensions"}

    def keys(value: Any, path: str) -> Iterator[str]:
        if isinstance(value, dict):
            for key, child in value.items():
                if snake.match(str(key)):
                    yield f"{path}.{key}"
                if key not in user_keyed:
                    yield from keys(child, f"{path}.{key}")
        elif isinstance(value, list):
            for child in value:
                yield from keys(child, path)

    assert [found for r in full.cloud_resources for found in keys(r.inputs, r.name)] == []


def test_hints_name_the_producer_policies_and_the_endpoint(full: Plan, tmp_path: Path) -> None:
    loaded = load_spec(write_spec(tmp_path, FULL))
    aws = AwsBackend(loaded.spec, "default", loaded.base_dir)
    outputs = {
        "stream": "wiring-stream-abc", "buckets": {"uploads": "wiring-default-uploads-x", "nightly": "wiring-default-nightly-x"},
        "producers": {"stream": "arn:aws:iam::123456789012:policy/stream-producer", "uploads": "arn:aws:iam::123456789012:policy/uploads-producer"},
        "endpoints": {"lookup": "https://abc.lambda-url.us-east-1.on.aws/"},
        "http_callers": {"lookup": "arn:aws:iam::123456789012:policy/lookup-caller"},
    }
    hint = aws.test_record_hint(outputs)
    assert "aws kinesis put-record --region us-east-1 --stream-name wiring-stream-abc" in hint
    assert "policy/stream-producer attached" in hint and "policy/uploads-producer attached" in hint
    assert "s3://wiring-default-uploads-x/uploads/test-$(date -u +%Y%m%dT%H%M%SZ).jsonl" in hint  # a new name per upload
    assert "--aws-sigv4 'aws:amz:us-east-1:lambda'" in hint and "https://abc.lambda-url.us-east-1.on.aws/" in hint
    assert "policy/lookup-caller attached" in hint
