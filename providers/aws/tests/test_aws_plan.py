"""The AWS plan's real wiring, checked on the offline plan of the bundled example and small specs."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pipeline_aws.backend import AwsBackend

from pipeline.errors import SpecError
from pipeline.plan import Plan, PlannedResource
from pipeline.planner import SECRET_MASK, plain, plan
from pipeline.spec.load import load_spec

EXAMPLE = Path(__file__).parents[3] / "stacks" / "transactions" / "pipeline.yaml"


@pytest.fixture(scope="module")
def dev() -> Plan:
    return plan(load_spec(EXAMPLE, "dev"), "aws")


def physical(p: Plan, type_: str, role: str) -> PlannedResource:
    return p.one(type_, role)


def arn(p: Plan, type_: str, role: str) -> str:
    """The ARN the mock engine assigned, read back from a resource that references it."""
    name = physical(p, type_, role).physical_name
    templates = {
        "aws:kinesis/stream:Stream": f"arn:aws:kinesis:us-east-1:123456789012:stream/{name}",
        "aws:lambda/function:Function": f"arn:aws:lambda:us-east-1:123456789012:function:{name}",
        "aws:sqs/queue:Queue": f"arn:aws:sqs:us-east-1:123456789012:{name}",
        "aws:s3/bucket:Bucket": f"arn:aws:s3:::{name}",
    }
    return templates[type_]


def policies_of(p: Plan, role_name: str) -> list[dict[str, Any]]:
    """Every statement of every inline policy attached to one IAM role."""
    statements = []
    for rp in p.of_type("aws:iam/rolePolicy:RolePolicy"):
        if rp.inputs["role"] == role_name:
            statements.extend(json.loads(rp.inputs["policy"])["Statement"])
    return statements


def grants(statements: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(action, resource) for s in statements for action in s["Action"] for resource in s["Resource"]}


def write_spec(tmp_path: Path, body: str) -> Path:
    (tmp_path / "h.py").write_text("def handle(records, context):\n    return []\n")
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(textwrap.dedent(body))
    return spec


def test_stream_is_encrypted_and_sized_from_the_workload(dev: Plan) -> None:
    stream = physical(dev, "aws:kinesis/stream:Stream", "stream")
    assert stream.inputs["encryptionType"] == "KMS"
    assert stream.inputs["kmsKeyId"] == "alias/aws/kinesis"
    assert stream.inputs["shardCount"] == dev.sizing["stream"]["units"] == 1
    assert stream.inputs["retentionPeriod"] == 24
    prod = plan(load_spec(EXAMPLE, "prod"), "aws")
    # 1500 rec/s x 700 B = 1.0 MiB/s; x1.25 headroom -> 2 shards by bytes and by records.
    assert physical(prod, "aws:kinesis/stream:Stream", "stream").inputs["shardCount"] == prod.sizing["stream"]["units"] == 2
    assert physical(prod, "aws:kinesis/stream:Stream", "stream").inputs["retentionPeriod"] == 168


def test_stream_stage_has_an_event_source_mapping_not_a_permission(dev: Plan) -> None:
    esm = physical(dev, "aws:lambda/eventSourceMapping:EventSourceMapping", "preprocess-trigger").inputs
    assert esm["eventSourceArn"] == arn(dev, "aws:kinesis/stream:Stream", "stream")
    assert esm["functionName"] == arn(dev, "aws:lambda/function:Function", "preprocess-function")
    assert esm["functionResponseTypes"] == ["ReportBatchItemFailures"]
    assert esm["bisectBatchOnFunctionError"] is True
    assert esm["maximumRetryAttempts"] == 3
    assert esm["maximumRecordAgeInSeconds"] == 3600
    assert esm["batchSize"] == 500 and esm["maximumBatchingWindowInSeconds"] == 5
    sized = dev.sizing["stages"]["preprocess"]
    assert esm["parallelizationFactor"] == sized["settings"]["parallelization_factor"] == 1
    assert esm["destinationConfig"]["onFailure"]["destinationArn"] == arn(dev, "aws:sqs/queue:Queue", "preprocess-dead-letter")
    assert not [p for p in dev.of_type("aws:lambda/permission:Permission") if "kinesis" in p.inputs["principal"]]


def test_an_object_stage_one_stage_reads_is_notified_by_s3_not_eventbridge(dev: Plan) -> None:
    """Only `score` reads the preprocess bucket: a free S3 event notification invokes it (asynchronously, with Lambda's
    bounded retries and on-failure queue), no EventBridge rule or per-event charge; S3 may invoke only this function, for
    this bucket in this account, and the notification waits for that permission (S3 validates it when saving)."""
    assert not dev.of_type("aws:cloudwatch/eventRule:EventRule") and not dev.of_type("aws:cloudwatch/eventTarget:EventTarget")
    source = physical(dev, "aws:s3/bucket:Bucket", "preprocess-bucket")
    function_arn = arn(dev, "aws:lambda/function:Function", "score-function")
    [notification] = dev.of_type("aws:s3/bucketNotification:BucketNotification")
    assert notification.role == "score-trigger"
    assert notification.inputs["bucket"] == source.physical_name and "eventbridge" not in notification.inputs
    assert notification.inputs["lambdaFunctions"] == [{"lambdaFunctionArn": function_arn, "events": ["s3:ObjectCreated:*"],
                                                      "filterPrefix": "preprocess/"}]
    permission = physical(dev, "aws:lambda/permission:Permission", "score-trigger")
    assert permission.inputs == {"action": "lambda:InvokeFunction", "function": physical(dev, "aws:lambda/function:Function", "score-function").physical_name,
                                 "principal": "s3.amazonaws.com", "sourceArn": f"arn:aws:s3:::{source.physical_name}",
                                 "sourceAccount": "123456789012"}
    assert permission.urn in notification.dependencies
    # The function's entry point reads S3 notifications (pipeline_aws.s3_notification), and no CloudTrail is involved.
    assert physical(dev, "aws:lambda/function:Function", "score-function").inputs["handler"] == "pipeline_aws.runtime.handler"
    assert physical(dev, "aws:lambda/function:Function", "preprocess-function").inputs["handler"] == "pipeline_aws.runtime.handler"
    assert not [r for r in dev.resources if r.type.startswith("aws:cloudtrail")]
    invoke_config = physical(dev, "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig", "score-trigger").inputs
    assert invoke_config["maximumRetryAttempts"] == 2
    assert invoke_config["maximumEventAgeInSeconds"] == 3600
    assert invoke_config["destinationConfig"]["onFailure"]["destination"] == arn(dev, "aws:sqs/queue:Queue", "score-dead-letter")


def test_a_bucket_several_stages_read_fans_out_through_eventbridge(tmp_path: Path) -> None:
    """Two stages read each new object of `ingest`: S3 cannot notify two functions of one event type and prefix, so the
    bucket sends its events to EventBridge and a rule per stage matches the bucket and prefix."""
    spec = write_spec(tmp_path, """
        name: fanout
        stages:
          - {name: ingest, handler: "h.py:handle", trigger: {stream: {}}}
          - {name: left, handler: "h.py:handle", trigger: {objects: {from: ingest}}}
          - {name: right, handler: "h.py:handle", trigger: {objects: {from: ingest}}, retries: 4}
    """)
    p = plan(load_spec(spec), "aws")
    [notification] = p.of_type("aws:s3/bucketNotification:BucketNotification")
    assert (notification.role, notification.inputs["eventbridge"]) == ("ingest-bucket", True)
    source_bucket = physical(p, "aws:s3/bucket:Bucket", "ingest-bucket").physical_name
    for stage, retries in (("left", 3), ("right", 4)):
        rule = physical(p, "aws:cloudwatch/eventRule:EventRule", f"{stage}-trigger")
        assert json.loads(rule.inputs["eventPattern"]) == {
            "source": ["aws.s3"], "detail-type": ["Object Created"],
            "detail": {"bucket": {"name": [source_bucket]}, "object": {"key": [{"prefix": "ingest/"}]}},
        }
        rule_arn = f"arn:aws:events:us-east-1:123456789012:rule/{rule.physical_name}"
        target = physical(p, "aws:cloudwatch/eventTarget:EventTarget", f"{stage}-trigger").inputs
        assert target["arn"] == arn(p, "aws:lambda/function:Function", f"{stage}-function") and target["rule"] == rule.physical_name
        assert target["retryPolicy"] == {"maximumRetryAttempts": retries, "maximumEventAgeInSeconds": 3600}
        assert target["deadLetterConfig"]["arn"] == arn(p, "aws:sqs/queue:Queue", f"{stage}-dead-letter")
        permission = physical(p, "aws:lambda/permission:Permission", f"{stage}-trigger").inputs
        assert (permission["principal"], permission["sourceArn"]) == ("events.amazonaws.com", rule_arn)
        queue_policy = json.loads(physical(p, "aws:sqs/queuePolicy:QueuePolicy", f"{stage}-trigger").inputs["policy"])
        assert queue_policy["Statement"][0]["Condition"] == {"ArnEquals": {"aws:SourceArn": rule_arn}}
        assert physical(p, "aws:lambda/function:Function", f"{stage}-function").inputs["handler"] == "pipeline_aws.runtime.handler"
    cost = {(line.role, line.item) for line in AwsBackend(load_spec(spec).spec, "default", tmp_path).estimate_cost(free_tier=False).lines}
    assert ("left-trigger", "EventBridge S3 events") in cost and ("right-trigger", "EventBridge S3 events") not in cost  # billed once


def test_schedule_stage_uses_scheduler_with_a_role_that_invokes_only_its_function(dev: Plan) -> None:
    schedule = physical(dev, "aws:scheduler/schedule:Schedule", "calibrate-trigger").inputs
    assert schedule["scheduleExpression"] == "cron(0 6 * * ? *)"
    assert schedule["scheduleExpressionTimezone"] == "UTC"
    function_arn = arn(dev, "aws:lambda/function:Function", "calibrate-function")
    assert schedule["target"]["arn"] == function_arn
    assert schedule["target"]["deadLetterConfig"]["arn"] == arn(dev, "aws:sqs/queue:Queue", "calibrate-dead-letter")
    scheduler_role = physical(dev, "aws:iam/role:Role", "calibrate-trigger")
    assert json.loads(scheduler_role.inputs["assumeRolePolicy"])["Statement"][0]["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert grants(policies_of(dev, scheduler_role.physical_name)) == {
        ("lambda:InvokeFunction", function_arn),
        ("sqs:SendMessage", arn(dev, "aws:sqs/queue:Queue", "calibrate-dead-letter")),
    }


def test_each_function_role_grants_exactly_what_its_stage_needs(dev: Plan) -> None:
    bucket = {key: arn(dev, "aws:s3/bucket:Bucket", f"{key}-bucket") for key in ("preprocess", "score", "dead-letter", "artifacts")}
    log_group = {s: f"arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/txn-scoring-dev-{s}:*" for s in ("preprocess", "score")}
    model_key = physical(dev, "aws:s3/bucketObjectv2:BucketObjectv2", "model-1").inputs["key"]
    stream = arn(dev, "aws:kinesis/stream:Stream", "stream")
    kinesis = {"kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:ListShards"}

    preprocess_role = physical(dev, "aws:iam/role:Role", "preprocess-identity").physical_name
    assert grants(policies_of(dev, preprocess_role)) == {
        *((action, stream) for action in kinesis),
        ("s3:PutObject", f"{bucket['preprocess']}/preprocess/*"),
        ("s3:PutObject", f"{bucket['dead-letter']}/preprocess/*"),
        ("logs:CreateLogStream", log_group["preprocess"]),
        ("logs:PutLogEvents", log_group["preprocess"]),
        ("sqs:SendMessage", arn(dev, "aws:sqs/queue:Queue", "preprocess-dead-letter")),
    }
    score_role = physical(dev, "aws:iam/role:Role", "score-identity").physical_name
    assert grants(policies_of(dev, score_role)) == {
        ("s3:GetObject", f"{bucket['preprocess']}/preprocess/*"),
        ("s3:PutObject", f"{bucket['score']}/score/*"),
        ("s3:PutObject", f"{bucket['dead-letter']}/score/*"),
        ("s3:GetObject", f"{bucket['artifacts']}/{model_key}"),
        ("logs:CreateLogStream", log_group["score"]),
        ("logs:PutLogEvents", log_group["score"]),
        ("sqs:SendMessage", arn(dev, "aws:sqs/queue:Queue", "score-dead-letter")),
    }


def test_no_wildcard_actions_no_wildcard_resources_no_managed_policies(dev: Plan) -> None:
    for rp in dev.of_type("aws:iam/rolePolicy:RolePolicy"):
        for statement in json.loads(rp.inputs["policy"])["Statement"]:
            assert all("*" not in action for action in statement["Action"]), rp.name
            assert all(resource != "*" and resource.startswith("arn:aws:") for resource in statement["Resource"]), rp.name
    assert not dev.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")


def test_buckets_are_private_encrypted_tls_only_and_expire(dev: Plan) -> None:
    expected_days = {"raw-bucket": 7, "preprocess-bucket": 7, "score-bucket": 30, "calibrate-bucket": 30, "dead-letter-bucket": 14}
    assert {b.role for b in dev.of_type("aws:s3/bucket:Bucket")} == {*expected_days, "artifacts-bucket"}
    for b in dev.of_type("aws:s3/bucket:Bucket"):
        role = b.role
        block = physical(dev, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", role).inputs
        assert all(block[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
        assert physical(dev, "aws:s3/bucketOwnershipControls:BucketOwnershipControls", role).inputs["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
        sse = physical(dev, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", role).inputs
        assert sse["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
        policy = json.loads(physical(dev, "aws:s3/bucketPolicy:BucketPolicy", role).inputs["policy"])
        assert policy["Statement"][0]["Effect"] == "Deny"
        assert policy["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        rules = physical(dev, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", role).inputs["rules"]
        expiry = [r["expiration"]["days"] for r in rules if "days" in r.get("expiration", {})]
        assert expiry == ([expected_days[role]] if role in expected_days else []), role


def test_functions_use_a_current_runtime_and_real_bucket_names(dev: Plan) -> None:
    fn = physical(dev, "aws:lambda/function:Function", "score-function").inputs
    assert fn["runtime"] == "python3.12" and fn["architectures"] == ["arm64"]
    assert fn["memorySize"] == 512 and fn["timeout"] == 120  # dev overlay merged by stage name
    env = fn["environment"]["variables"]
    assert env["PIPELINE_OUTPUT_BUCKET"] == physical(dev, "aws:s3/bucket:Bucket", "score-bucket").physical_name
    assert env["PIPELINE_INPUT_BUCKET"] == physical(dev, "aws:s3/bucket:Bucket", "preprocess-bucket").physical_name
    assert env["PIPELINE_INPUT_PREFIX"] == "preprocess/"
    assert fn["loggingConfig"]["logGroup"] == "/aws/lambda/txn-scoring-dev-score"
    assert physical(dev, "aws:cloudwatch/logGroup:LogGroup", "score-function").inputs["retentionInDays"] == 30
    assert physical(dev, "aws:lambda/function:Function", "preprocess-function").inputs["environment"]["variables"]["CURRENCY"] == "USD"


def test_small_records_are_archived_by_a_lambda_archiver(dev: Plan) -> None:
    """Dev's 700-byte records would bill as 5 KB each on Firehose: the archive is a Lambda function on its own
    mapping, reading the stream with the largest batches, allowed to read the stream and put under raw/ only."""
    assert not dev.of_type("aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream")
    fn = physical(dev, "aws:lambda/function:Function", "raw-archive")
    assert fn.physical_name == "txn-scoring-dev-raw_archive"
    assert fn.inputs["handler"] == "pipeline_aws.archive.handler"
    assert fn.inputs["code"]["archive"].endswith(".pipeline/build/aws/dev/raw_archive.zip")  # no user code (test_aws_archiver_package)
    assert fn.inputs["memorySize"] == 256 and fn.inputs["architectures"] == ["arm64"]
    assert fn.inputs["reservedConcurrentExecutions"] == -1  # nothing reserved: its mapping runs 1 shard x ParallelizationFactor 1
    raw_bucket = physical(dev, "aws:s3/bucket:Bucket", "raw-bucket").physical_name
    assert fn.inputs["environment"]["variables"] == {"PIPELINE_RAW_BUCKET": raw_bucket, "PIPELINE_RAW_PREFIX": "raw/"}
    assert fn.inputs["loggingConfig"]["logGroup"] == "/aws/lambda/txn-scoring-dev-raw_archive"
    assert physical(dev, "aws:cloudwatch/logGroup:LogGroup", "raw-archive").inputs["retentionInDays"] == 30
    esm = physical(dev, "aws:lambda/eventSourceMapping:EventSourceMapping", "raw-archive").inputs
    queue = arn(dev, "aws:sqs/queue:Queue", "raw-archive")
    assert esm["eventSourceArn"] == arn(dev, "aws:kinesis/stream:Stream", "stream")
    assert esm["functionName"] == arn(dev, "aws:lambda/function:Function", "raw-archive")
    assert (esm["batchSize"], esm["maximumBatchingWindowInSeconds"], esm["parallelizationFactor"]) == (10_000, 300, 1)
    assert esm["startingPosition"] == "TRIM_HORIZON"
    assert esm["bisectBatchOnFunctionError"] is True and esm["maximumRetryAttempts"] == 10
    assert esm["maximumRecordAgeInSeconds"] == 24 * 3600  # the stream's retention
    assert esm["destinationConfig"]["onFailure"]["destinationArn"] == queue
    assert physical(dev, "aws:sqs/queue:Queue", "raw-archive").inputs["sqsManagedSseEnabled"] is True
    role = physical(dev, "aws:iam/role:Role", "raw-archive")
    assert json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Principal"] == {"Service": "lambda.amazonaws.com"}
    log_group = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/txn-scoring-dev-raw_archive"
    assert grants(policies_of(dev, role.physical_name)) == {
        *((action, arn(dev, "aws:kinesis/stream:Stream", "stream")) for action in
          ("kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:ListShards")),
        ("s3:PutObject", f"{arn(dev, 'aws:s3/bucket:Bucket', 'raw-bucket')}/raw/*"),
        ("logs:CreateLogStream", f"{log_group}:*"), ("logs:PutLogEvents", f"{log_group}:*"),
        ("sqs:SendMessage", queue),
    }
    # Alarmed like a stage: batches it gave up on, errors, throttles, falling behind the stream.
    alarms = {a.physical_name: a.inputs for a in dev.of_type("aws:cloudwatch/metricAlarm:MetricAlarm") if "raw_archive" in a.physical_name}
    assert set(alarms) == {f"txn-scoring-dev-raw_archive-{what}" for what in ("failed-batches", "errors", "throttles", "lag")}
    assert alarms["txn-scoring-dev-raw_archive-throttles"]["metricName"] == "Throttles"
    assert alarms["txn-scoring-dev-raw_archive-failed-batches"]["dimensions"] == {"QueueName": physical(dev, "aws:sqs/queue:Queue", "raw-archive").physical_name}
    assert alarms["txn-scoring-dev-raw_archive-errors"]["dimensions"] == {"FunctionName": fn.physical_name}
    assert alarms["txn-scoring-dev-raw_archive-lag"]["metricName"] == "IteratorAge"
    reasoning = dev.sizing["stream"]["reasoning"]
    assert any(line.startswith("raw archive: Firehose would bill 2.0 TB a month (5 KB per 700-byte record) = $54.5") for line in reasoning)
    assert any(line.startswith("=> Lambda archiver: $5") and "less than Firehose" in line for line in reasoning)


def test_firehose_archives_where_it_costs_least(tmp_path: Path) -> None:
    """A trickle of records: Firehose's bill (pennies) is below what an archiver's alarms alone cost, so the managed
    service is built."""
    spec = write_spec(tmp_path, """
        name: trickle
        stream: {archive: true}
        stages: [{name: only, handler: "h.py:handle", trigger: {stream: {}}}]
        workload: {records_per_second: 0.5, record_bytes: 700}
    """)
    p = plan(load_spec(spec), "aws")
    assert not [r for r in p.of_type("aws:lambda/function:Function") if r.role == "raw-archive"]
    firehose = physical(p, "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream", "raw-archive").inputs
    assert firehose["kinesisSourceConfiguration"]["kinesisStreamArn"] == arn(p, "aws:kinesis/stream:Stream", "stream")
    s3 = firehose["extendedS3Configuration"]
    assert s3["bucketArn"] == arn(p, "aws:s3/bucket:Bucket", "raw-bucket")
    assert s3["prefix"].startswith("raw/") and s3["compressionFormat"] == "GZIP"
    assert s3["errorOutputPrefix"].startswith("raw-errors/")
    assert any(line.startswith("=> Firehose: a Lambda archiver would not cost less") for line in p.sizing["stream"]["reasoning"])


def test_dead_letter_queues_are_encrypted_and_alarmed(dev: Plan) -> None:
    for stage in ("preprocess", "score", "calibrate"):
        queue = physical(dev, "aws:sqs/queue:Queue", f"{stage}-dead-letter")
        assert queue.inputs["sqsManagedSseEnabled"] is True
        assert queue.inputs["messageRetentionSeconds"] == 14 * 86400
        alarms = [a for a in dev.of_type("aws:cloudwatch/metricAlarm:MetricAlarm") if a.inputs["dimensions"].get("QueueName") == queue.physical_name]
        assert len(alarms) == 1


def test_plans_are_deterministic_and_several_clouds_can_run_in_one_process(dev: Plan) -> None:
    again = plan(load_spec(EXAMPLE, "dev"), "aws")
    assert again.to_json() == dev.to_json()
    every_role_has_resources = {key for key, kind in dev.roles() if kind != "Platform"} - set(dev.by_role())
    assert not every_role_has_resources


def test_chained_object_stages_never_retrigger_themselves(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, """
        name: chain
        stages:
          - {name: ingest, handler: "h.py:handle", trigger: {stream: {}}}
          - {name: clean, handler: "h.py:handle", trigger: {objects: {from: ingest}}}
          - {name: enrich, handler: "h.py:handle", trigger: {objects: {from: clean}}}
          - {name: score, handler: "h.py:handle", trigger: {objects: {from: enrich}}}
    """)
    p = plan(load_spec(spec), "aws")
    for stage, source in (("clean", "ingest"), ("enrich", "clean"), ("score", "enrich")):
        notification = physical(p, "aws:s3/bucketNotification:BucketNotification", f"{stage}-trigger").inputs
        own = physical(p, "aws:s3/bucket:Bucket", f"{stage}-bucket").physical_name
        assert notification["bucket"] == physical(p, "aws:s3/bucket:Bucket", f"{source}-bucket").physical_name != own
        assert notification["lambdaFunctions"][0]["filterPrefix"] == f"{source}/"
        assert notification["lambdaFunctions"][0]["lambdaFunctionArn"] == arn(p, "aws:lambda/function:Function", f"{stage}-function")
    assert len(p.of_type("aws:s3/bucketNotification:BucketNotification")) == 3


def test_on_demand_mode_and_no_archive(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, """
        name: ondemand
        stream: {archive: false}
        stages: [{name: only, handler: "h.py:handle", trigger: {stream: {}}}]
        clouds: {aws: {stream_mode: on_demand, region: eu-west-1}}
    """)
    p = plan(load_spec(spec), "aws")
    stream = physical(p, "aws:kinesis/stream:Stream", "stream").inputs
    assert stream["streamModeDetails"] == {"streamMode": "ON_DEMAND"} and "shardCount" not in stream
    assert not p.of_type("aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream")
    assert p.location == "eu-west-1"
    assert p.one("pulumi:providers:aws").inputs["region"] == "eu-west-1"


def test_cron_that_aws_cannot_express_is_a_located_spec_error(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, """
        name: crons
        stages:
          - name: nightly
            handler: "h.py:handle"
            trigger: {schedule: "0 1 1 * MON"}
    """)
    with pytest.raises(SpecError) as caught:
        plan(load_spec(spec), "aws")
    problem = caught.value.problems[0]
    assert problem.path == "stages[0].trigger.schedule" and problem.line == 6
    assert "AWS" in problem.message and "day-of-week" in problem.message


def test_weekday_cron_translates_to_aws_day_names(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, """
        name: crons
        stages: [{name: weekdays, handler: "h.py:handle", trigger: {schedule: "30 2 * * 1-5"}}]
    """)
    schedule = plan(load_spec(spec), "aws").one("aws:scheduler/schedule:Schedule").inputs
    assert schedule["scheduleExpression"] == "cron(30 2 ? * MON-FRI *)"


def test_plan_masks_secrets() -> None:
    wire = {"password": {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": "hunter2"}, "n": 3.0}
    assert plain(wire) == {"n": 3, "password": SECRET_MASK}
