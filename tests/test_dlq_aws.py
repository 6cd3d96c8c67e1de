"""`pipeline dlq` and `pipeline status` on AWS against moto server (S3, SQS, Kinesis), through the console script with
`--outputs` and boto3's standard AWS_ENDPOINT_URL; the dead letters are the ones the real Lambda runtime writes.

moto runs Lambda functions only inside Docker, which this machine does not have, so the redrive tests replace the
Lambda client by the real runtime entry point (`pipeline_aws.runtime.handler`), called in this process with the
event the redrive sends: what is checked is that event, what the runtime writes from it, and the queue after it.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dlq_project import TOKEN, answer, cli, fix, ids, jsonl, line, make_project, set_stage, write_outputs

pytest_plugins = ["conftest_emulators"]

REGION = "us-east-1"


@pytest.fixture
def aws(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, cli_env_vars: dict[str, str]) -> dict[str, str]:
    """This process and the console script talk to moto with boto3's standard settings."""
    values = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": s3_endpoint,
              "PIPELINE_S3_ENDPOINT_URL": s3_endpoint, "AWS_EC2_METADATA_DISABLED": "true"}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return {**cli_env_vars, **values}


def client(service: str) -> Any:
    import boto3

    return boto3.client(service, region_name=REGION)


class Stack:
    """A deployed stack's names on moto (unique per test: the server is shared), its project folder and outputs file."""

    def __init__(self, folder: Path) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.folder = folder
        self.spec = make_project(folder, archive=True)
        self.buckets = {key: f"dt-{key}-{suffix}" for key in ("raw", "parse", "enrich", "total", "dead-letter")}
        self.queues = {stage: f"dt-{stage}-dlq-{suffix}" for stage in ("parse", "enrich", "total")}
        self.functions = {stage: f"dt-{stage}-{suffix}" for stage in ("parse", "enrich", "total")}
        self.stream = f"dt-stream-{suffix}"
        s3, sqs, kinesis = client("s3"), client("sqs"), client("kinesis")
        for name in self.buckets.values():
            s3.create_bucket(Bucket=name)
        self.urls = {stage: sqs.create_queue(QueueName=name)["QueueUrl"] for stage, name in self.queues.items()}
        kinesis.create_stream(StreamName=self.stream, ShardCount=1)
        self.arn = kinesis.describe_stream(StreamName=self.stream)["StreamDescription"]["StreamARN"]
        self.outputs = write_outputs(folder, {"buckets": self.buckets, "functions": self.functions, "dead_letters": self.queues,
                                              "stream": self.stream, "producers": {}})

    def put(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Records onto the stream, as a producer puts them; their shard and sequence numbers."""
        answer_ = client("kinesis").put_records(StreamName=self.stream, Records=[{"Data": line(r), "PartitionKey": f"k{r['id'] % 3}"} for r in records])
        return [{"shard": a["ShardId"], "sequence": a["SequenceNumber"], "record": r} for a, r in zip(answer_["Records"], records, strict=True)]

    def kinesis_event(self, put: list[dict[str, Any]]) -> dict[str, Any]:
        return {"Records": [{"kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": f"k{p['record']['id'] % 3}", "sequenceNumber": p["sequence"],
                                         "data": base64.b64encode(line(p["record"])).decode(), "approximateArrivalTimestamp": 1796600000.5},
                             "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": f"{p['shard']}:{p['sequence']}",
                             "eventName": "aws:kinesis:record", "awsRegion": REGION, "eventSourceARN": self.arn} for p in put]}

    def object_created(self, bucket: str, key: str) -> dict[str, Any]:
        return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Object Created", "source": "aws.s3", "account": "123456789012",
                "time": "2026-11-01T18:43:48Z", "region": REGION, "resources": [f"arn:aws:s3:::{bucket}"],
                "detail": {"version": "0", "bucket": {"name": bucket}, "object": {"key": key, "size": 1}, "reason": "PutObject"}}

    def batch_failure(self, put: list[dict[str, Any]]) -> dict[str, Any]:
        """The event source mapping's on-failure record for these records (its documented shape)."""
        return {"requestContext": {"requestId": str(uuid.uuid4()), "functionArn": f"arn:aws:lambda:{REGION}:123456789012:function:{self.functions['parse']}",
                                   "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 2},
                "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
                "version": "1.0", "timestamp": "2026-11-01T18:44:00.021Z",
                "KinesisBatchInfo": {"shardId": put[0]["shard"], "startSequenceNumber": put[0]["sequence"], "endSequenceNumber": put[-1]["sequence"],
                                     "approximateArrivalOfFirstRecord": "2026-11-01T18:43:58.835Z", "approximateArrivalOfLastRecord": "2026-11-01T18:43:59.580Z",
                                     "batchSize": len(put), "streamArn": self.arn}}

    def async_failure(self, event: dict[str, Any]) -> dict[str, Any]:
        """Lambda's on-failure record of an asynchronous invocation (its documented shape)."""
        return {"version": "1.0", "timestamp": "2026-11-01T18:45:00.000Z",
                "requestContext": {"requestId": str(uuid.uuid4()), "functionArn": f"arn:aws:lambda:{REGION}:123456789012:function:{self.functions['enrich']}:$LATEST",
                                   "condition": "RetriesExhausted", "approximateInvokeCount": 3},
                "requestPayload": event, "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
                "responsePayload": {"errorMessage": "'unlucky'", "errorType": "KeyError", "stackTrace": ["h.py:17 in enrich"]}}

    def queue_size(self, stage: str) -> int:
        found = client("sqs").get_queue_attributes(QueueUrl=self.urls[stage], AttributeNames=["ApproximateNumberOfMessages",
                                                                                               "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return int(found["ApproximateNumberOfMessages"]) + int(found["ApproximateNumberOfMessagesNotVisible"])

    def keys(self, key: str, prefix: str = "") -> list[str]:
        return sorted(o["Key"] for o in client("s3").list_objects_v2(Bucket=self.buckets[key], Prefix=prefix).get("Contents", []))

    def get(self, key: str, name: str) -> bytes:
        data: bytes = client("s3").get_object(Bucket=self.buckets[key], Key=name)["Body"].read()
        return data


@pytest.fixture
def stack(tmp_path: Path, aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """The stack after a bad day: the runtime dead-lettered record 3 of the first batch, the second batch (with record 15) kept
    failing and the mapping sent its range to the queue, and enrich gave up on the first batch's output (n == 13 is not there:
    this failure is Lambda's record of an invocation that kept failing for another reason)."""
    from pipeline_aws.runtime import handler

    built = Stack(tmp_path)
    first, second = built.put([r for r in _records() if r["id"] < 10]), built.put([r for r in _records() if r["id"] >= 10])
    with monkeypatch.context() as patch:
        set_stage(patch, built.spec, "parse", built.buckets)
        handler(built.kinesis_event(first))
    built.first, built.second = first, second  # type: ignore[attr-defined]
    sqs = client("sqs")
    sqs.send_message(QueueUrl=built.urls["parse"], MessageBody=json.dumps(built.batch_failure(second)))
    output = built.keys("parse", "parse/")[0]
    sqs.send_message(QueueUrl=built.urls["enrich"], MessageBody=json.dumps(built.async_failure(built.object_created(built.buckets["parse"], output))))
    yield built


def _records() -> list[dict[str, Any]]:
    from dlq_project import RECORDS

    return RECORDS


def test_list_and_show_read_the_bucket_and_the_queues_without_changing_them(stack: Stack, aws: dict[str, str], pipeline_exe: str) -> None:
    where = ["--cloud", "aws", "--outputs", str(stack.outputs)]
    listed = answer(cli(aws, pipeline_exe, stack.folder, "dlq", "list", *where, "--format", "json"))
    groups = {(g["stage"], g["kind"]): g for g in listed["groups"]}
    assert listed["total"] == 3
    assert groups[("parse", "record")]["error"]["type"] == "ValueError"
    assert groups[("parse", "record")]["kept"] == f"dead-letter bucket s3://{stack.buckets['dead-letter']}/parse/"
    assert groups[("parse", "batch")]["reason"] == "RetryAttemptsExhausted" and groups[("parse", "batch")]["kept"] == f"SQS queue {stack.queues['parse']}"
    assert groups[("enrich", "event")]["error"] == {"type": "KeyError", "message": "'unlucky'"}
    assert stack.queue_size("parse") == 1 and stack.queue_size("enrich") == 1  # read, and given back
    assert TOKEN not in json.dumps(listed)

    shown = cli(aws, pipeline_exe, stack.folder, "dlq", "show", *where, "--format", "jsonl")
    letters = [json.loads(x) for x in shown.stdout.splitlines()]
    [record] = [x for x in letters if x["stage"] == "parse" and x["where"].startswith("s3://")]
    assert record["record"] == {"id": 3, "n": 3, "bad": True, "password": "***"} and "***" in record["error"]["message"]
    assert record["input"]["partition"] == stack.first[0]["shard"] and record["input"]["sequence"] == stack.first[3]["sequence"]  # type: ignore[attr-defined]
    batch = [x for x in letters if x["stage"] == "parse" and x["where"].startswith("SQS")]  # the batch, read back from the stream
    assert [x["record"]["id"] for x in batch] == list(range(10, 20)) and {x["attempts"] for x in batch} == {2}
    assert batch[5]["record"]["password"] == "***" and batch[0]["where"].endswith("record 1 of 10 (read back from the stream)")
    assert [x["input"]["sequence"] for x in batch] == [p["sequence"] for p in stack.second]  # type: ignore[attr-defined]
    [event] = [x for x in letters if x["stage"] == "enrich"]
    assert event["event"]["detail-type"] == "Object Created" and event["attempts"] == 3 and event["kind"] == "event"
    assert stack.queue_size("parse") == 1 and stack.queue_size("enrich") == 1
    assert "hunter2" not in shown.stdout and TOKEN not in shown.stdout

    status = answer(cli(aws, pipeline_exe, stack.folder, "status", *where, "--format", "json"))
    stages = {s["stage"]: s for s in status["stages"]}
    assert stages["parse"]["dead_letters"] == {**stages["parse"]["dead_letters"], "inputs": 1, "records": 1, "queued_events": 1}
    assert stages["total"]["window"]["watermark"] is None and stages["total"]["window"]["waiting"]["objects"] == 1  # parse's first output


def test_replay_runs_the_fixed_handler_into_s3_and_keeps_what_it_could_not_redrive(stack: Stack, aws: dict[str, str], pipeline_exe: str) -> None:
    where = ["--cloud", "aws", "--outputs", str(stack.outputs)]
    fix(stack.folder)
    result = cli(aws, pipeline_exe, stack.folder, "dlq", "replay", *where, "--stage", "parse", "--yes", "--format", "json")
    body = json.loads(result.stdout)
    assert result.returncode == 1  # the queued batch needs the deployed function, which moto cannot run
    assert [r["status"] for r in body["results"]] == ["replayed"]
    assert [r["ok"] for r in body["redriven"]] == [False] and "Function not found" in body["redriven"][0]["error"]
    assert "this checkout" in body["note"]
    shard, sequence = stack.first[0]["shard"], stack.first[3]["sequence"]  # type: ignore[attr-defined]
    first, last = stack.first[0]["sequence"], stack.first[-1]["sequence"]  # type: ignore[attr-defined]
    replayed = f"parse/replay=parse/{shard}/{first}-{last}.jsonl"
    assert replayed in stack.keys("parse", "parse/")
    assert ids(jsonl(stack.get("parse", replayed))) == {3: 1} and sequence
    assert stack.keys("dead-letter") == []  # removed once its output landed
    assert stack.queue_size("parse") == 1  # the batch stays queued: its redrive failed
    assert ids([row for key in stack.keys("parse", "parse/") for row in jsonl(stack.get("parse", key))]) == {i: 1 for i in range(10)}


def test_missing_bucket_is_a_message_not_a_traceback(stack: Stack, aws: dict[str, str], pipeline_exe: str) -> None:
    gone = write_outputs(stack.folder, {**json.loads(stack.outputs.read_text()), "buckets": {**stack.buckets, "dead-letter": "dt-no-such-bucket-x"}})
    result = cli(aws, pipeline_exe, stack.folder, "dlq", "list", "--cloud", "aws", "--outputs", str(gone))
    assert result.returncode == 1 and "does not exist" in result.stderr and "s3://dt-no-such-bucket-x/parse/" in result.stderr
    assert "Traceback" not in result.stderr


class RuntimeLambda:
    """The Lambda client's Invoke, answered by the real runtime entry point running as the named function's stage."""

    def __init__(self, stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
        self.stack, self.monkeypatch = stack, monkeypatch
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def invoke(self, FunctionName: str, InvocationType: str, Payload: bytes) -> dict[str, Any]:  # noqa: N803 - boto3's names
        from pipeline_aws.runtime import handler

        stage = next(s for s, name in self.stack.functions.items() if name == FunctionName)
        event = json.loads(Payload)
        self.calls.append((stage, InvocationType, event))
        with self.monkeypatch.context() as patch:
            set_stage(patch, self.stack.spec, stage, self.stack.buckets)
            try:
                result = handler(event)
            except Exception as exc:
                return {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": io.BytesIO(json.dumps({"errorType": type(exc).__name__,
                                                                                                             "errorMessage": str(exc)}).encode())}
        return {"StatusCode": 202} if InvocationType == "Event" else {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(result).encode())}


def _operations(stack: Stack) -> Any:
    from pipeline_aws.operations import AwsOperations

    from pipeline.spec.load import load_spec

    loaded = load_spec(stack.spec, None)
    return loaded, AwsOperations(loaded.spec, loaded.stack, loaded.base_dir, json.loads(stack.outputs.read_text()))


def test_redrive_sends_the_batch_and_the_event_through_the_function_then_deletes_them(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    fix(stack.folder)
    loaded, ops = _operations(stack)
    ops._clients["lambda"] = lambda_ = RuntimeLambda(stack, monkeypatch)
    letters = [letter for stage in loaded.spec.stages for letter in ops.queued(stage, None)]
    results = list(ops.redrive(letters, dry_run=False))
    assert [r.ok for r in results] == [True, True], [r.error for r in results]
    assert {(stage, kind) for stage, kind, _ in lambda_.calls} == {("parse", "RequestResponse"), ("enrich", "Event")}
    second = stack.second  # type: ignore[attr-defined]
    batch_key = f"parse/{second[0]['shard']}/{second[0]['sequence']}-{second[-1]['sequence']}.jsonl"
    assert ids(jsonl(stack.get("parse", batch_key))) == {i: 1 for i in range(10, 20)}  # the key its first success would have had
    enriched = [key for key in stack.keys("enrich", "enrich/")]
    assert len(enriched) == 1 and ids(jsonl(stack.get("enrich", enriched[0]))) == {i: 1 for i in range(10) if i != 3}
    assert stack.queue_size("parse") == 0 and stack.queue_size("enrich") == 0
    kinesis_event = next(event for stage, _, event in lambda_.calls if stage == "parse")
    assert [r["kinesis"]["sequenceNumber"] for r in kinesis_event["Records"]] == [p["sequence"] for p in second]


def test_a_batch_past_retention_is_refused_and_kept_unless_the_archive_holds_it(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    fix(stack.folder)
    loaded, ops = _operations(stack)
    ops._clients["lambda"] = RuntimeLambda(stack, monkeypatch)
    sqs = client("sqs")
    gone = [{"shard": "shardId-000000000000", "sequence": str(90_000 + i), "record": {"id": 100 + i, "n": 100 + i}} for i in range(3)]
    sqs.purge_queue(QueueUrl=stack.urls["parse"])
    sqs.send_message(QueueUrl=stack.urls["parse"], MessageBody=json.dumps(stack.batch_failure(gone)))
    parse = loaded.spec.stage("parse")
    [refused] = list(ops.redrive(list(ops.queued(parse, None)), dry_run=False))
    assert not refused.ok and "past the stream's retention (24 h)" in refused.error and "raw/shardId-000000000000/" in refused.error
    assert stack.queue_size("parse") == 1

    archived = gzip.compress(b"".join(line(p["record"]) + b"\n" for p in gone), mtime=0)  # the Lambda archiver's object for this batch
    client("s3").put_object(Bucket=stack.buckets["raw"], Key=f"raw/shardId-000000000000/{gone[0]['sequence']}-{gone[-1]['sequence']}.jsonl.gz", Body=archived)
    [sent] = list(ops.redrive(list(ops.queued(parse, None)), dry_run=False))
    assert sent.ok and "rebuilt from the raw archive" in sent.action
    key = f"parse/shardId-000000000000/{gone[0]['sequence']}-{gone[-1]['sequence']}.jsonl"
    assert ids(jsonl(stack.get("parse", key))) == {100: 1, 101: 1, 102: 1} and stack.queue_size("parse") == 0


def test_sdk_errors_name_the_permission() -> None:
    from botocore.exceptions import ClientError, NoCredentialsError
    from pipeline_aws.operations import AwsOperations

    from pipeline.spec.load import load_spec

    spec_path = Path(__file__).resolve().parents[1] / "stacks" / "transactions" / "pipeline.yaml"
    loaded = load_spec(spec_path, None)
    ops = AwsOperations(loaded.spec, loaded.stack, loaded.base_dir, {})
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "User: arn:aws:iam::1:user/x is not authorized to perform: sqs:ReceiveMessage"}},
                         "ReceiveMessage")
    assert "sqs:ReceiveMessage" in (ops.explain(denied, "reading the SQS queue q") or "")
    assert "credentials" in (ops.explain(NoCredentialsError(), "listing") or "")
    assert ops.explain(RuntimeError("a bug"), "x") is None
