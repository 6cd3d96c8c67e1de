"""The Lambda entry point against S3 (moto server mode), driven by events in AWS's documented shapes."""

from __future__ import annotations

import base64
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from emulators import EXAMPLE, MODEL, MODEL_KEY, example_lines, read_jsonl, write_flaky

pytest_plugins = ["conftest_emulators"]

SHARD = "shardId-000000000000"
STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/txn-scoring-test"


def kinesis_event(lines: list[bytes], first_sequence: int = 49590338271490256608559692538361571095921575989136588898) -> dict[str, Any]:
    """A Kinesis ESM event exactly as Lambda delivers it (one shard, base64 data, string sequence numbers)."""
    records = []
    for offset, line in enumerate(lines):
        sequence = str(first_sequence + offset)
        records.append({
            "kinesis": {
                "kinesisSchemaVersion": "1.0", "partitionKey": f"card-{offset % 7}", "sequenceNumber": sequence,
                "data": base64.b64encode(line).decode(), "approximateArrivalTimestamp": 1793520000.123 + offset,
            },
            "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": f"{SHARD}:{sequence}", "eventName": "aws:kinesis:record",
            "invokeIdentityArn": "arn:aws:iam::123456789012:role/txn-scoring-test-preprocess", "awsRegion": "us-east-1",
            "eventSourceARN": STREAM_ARN,
        })
    return {"Records": records}


def object_created(bucket: str, key: str, size: int) -> dict[str, Any]:
    """S3 `Object Created` as EventBridge delivers it to a Lambda target."""
    return {
        "version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103", "detail-type": "Object Created", "source": "aws.s3",
        "account": "123456789012", "time": "2026-11-01T18:43:48Z", "region": "us-east-1", "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0", "bucket": {"name": bucket},
            "object": {"key": key, "size": size, "etag": "b1946ac92492d2347c6235b4d2611184", "sequencer": "00617F08299329D189"},
            "request-id": "N4N7GDK58NMKJ12R", "requester": "123456789012", "source-ip-address": "1.2.3.4", "reason": "PutObject",
        },
    }


def scheduled_event() -> dict[str, Any]:
    return {
        "version": "0", "id": "89d1a02d-5ec7-412e-82f5-13505f849b41", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-11-02T06:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/txn-scoring-test-calibrate"], "detail": {},
    }


@pytest.fixture
def buckets(s3_client: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    names = {"preprocess": "txn-preprocess-out", "score": "txn-score-out", "calibrate": "txn-calibrate-out",
             "dead": "txn-dead-letter", "artifacts": "txn-artifacts"}
    for name in names.values():
        with contextlib.suppress(s3_client.exceptions.BucketAlreadyOwnedByYou):
            s3_client.create_bucket(Bucket=name)
    s3_client.put_object(Bucket=names["artifacts"], Key=MODEL_KEY, Body=MODEL.read_bytes())
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(EXAMPLE))
    return names


def get(s3: Any, bucket: str, key: str) -> bytes:
    data: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return data


def keys_in(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []))


def test_kinesis_batch_writes_rows_and_dead_letters_poison(s3_client: Any, buckets: Any, stage_env: Any) -> None:
    from pipeline_aws.runtime import handler

    stage_env("preprocess", "stream", "handlers/preprocess.py:preprocess", buckets["preprocess"], buckets["dead"], CURRENCY="USD")
    lines = example_lines(50)
    event = kinesis_event(lines)
    response = handler(event, None)

    assert response == {"batchItemFailures": []}  # the poison record is dead-lettered, not retried
    first, last = event["Records"][0]["kinesis"]["sequenceNumber"], event["Records"][-1]["kinesis"]["sequenceNumber"]
    key = f"preprocess/{SHARD}/{first}-{last}.jsonl"
    assert keys_in(s3_client, buckets["preprocess"], "preprocess/") == [key]
    rows = read_jsonl(get(s3_client, buckets["preprocess"], key))
    usd = [json.loads(line) for line in lines[1:] if json.loads(line)["currency"] == "USD"]
    assert [r["txn_id"] for r in rows] == [t["txn_id"] for t in usd]
    assert set(rows[0]) >= {"amount_log", "is_foreign", "velocity_1h"}

    assert keys_in(s3_client, buckets["dead"], "preprocess/") == [f"preprocess/{SHARD}/{first}-{last}.jsonl"]
    [dead] = read_jsonl(get(s3_client, buckets["dead"], f"preprocess/{SHARD}/{first}-{last}.jsonl"))
    assert dead["stage"] == "preprocess" and dead["error"]["type"] == "ValueError"
    assert "missing amount" in dead["error"]["message"] and dead["error"]["traceback"][-1].startswith("preprocess.py:")
    assert base64.b64decode(dead["data_base64"]) == lines[0]
    assert dead["input"]["record_id"] == event["Records"][0]["eventID"] and dead["input"]["key"] == "card-0"

    # A redelivered batch overwrites its output: same keys, same bytes, no duplicates.
    before = get(s3_client, buckets["preprocess"], key)
    assert handler(event, None) == {"batchItemFailures": []}
    assert keys_in(s3_client, buckets["preprocess"], "preprocess/") == [key] and get(s3_client, buckets["preprocess"], key) == before


def test_kinesis_transient_failure_reports_partial_batch(s3_client: Any, buckets: Any, stage_env: Any, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline_aws.runtime import handler

    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(write_flaky(tmp_path)))
    stage_env("flaky", "stream", "handlers/flaky.py:passthrough", buckets["preprocess"], buckets["dead"], FAIL_AT_TXN="t4")
    lines = [json.dumps({"txn_id": f"t{i}", "poison": i == 2}).encode() for i in range(8)]
    event = kinesis_event(lines, first_sequence=1000)

    response = handler(event, None)
    assert response == {"batchItemFailures": [{"itemIdentifier": "1004"}]}  # Lambda resumes at the failed record
    done = "flaky/shardId-000000000000/1000-1003.jsonl"
    assert keys_in(s3_client, buckets["preprocess"], "flaky/") == [done]  # named after the records it holds
    assert [r["txn_id"] for r in read_jsonl(get(s3_client, buckets["preprocess"], done))] == ["t0", "t1", "t3"]
    assert [d["input"]["sequence"] for d in read_jsonl(get(s3_client, buckets["dead"], done))] == ["1002"]

    # Lambda redelivers from 1004; the dependency is back.
    monkeypatch.setenv("FAIL_AT_TXN", "")
    rest = {"Records": event["Records"][4:]}
    assert handler(rest, None) == {"batchItemFailures": []}
    assert keys_in(s3_client, buckets["preprocess"], "flaky/") == [done, "flaky/shardId-000000000000/1004-1007.jsonl"]


def test_kinesis_failure_before_any_record_raises_for_retry(s3_client: Any, buckets: Any, stage_env: Any, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline_aws.runtime import handler

    from pipeline.runtime.errors import BatchFailedError

    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(write_flaky(tmp_path)))
    stage_env("broken", "stream", "handlers/flaky.py:broken_setup", buckets["preprocess"], buckets["dead"])
    with pytest.raises(BatchFailedError, match="model store unreachable"):
        handler(kinesis_event([b'{"txn_id": "t1"}']), None)
    assert keys_in(s3_client, buckets["preprocess"], "broken/") == []


def test_object_created_scores_the_object_with_the_model_from_s3(s3_client: Any, buckets: Any, stage_env: Any) -> None:
    from pipeline_aws.runtime import handler

    features = [{"txn_id": f"t{i}", "card_id": "c1", "timestamp": "2026-11-01T01:00:00+00:00", "amount": 10.0 * i, "currency": "USD",
                 "merchant_category": "5999", "amount_log": 1.0, "is_foreign": i % 2, "is_night": 1, "card_present": 0, "velocity_1h": i}
                for i in range(5)]
    body = b"".join(json.dumps(row).encode() + b"\n" for row in features) + b"not json\n"
    source_key = f"preprocess/{SHARD}/100-199.jsonl"
    s3_client.put_object(Bucket=buckets["preprocess"], Key=source_key, Body=body)
    stage_env("score", "objects", "handlers/score.py:score", buckets["score"], buckets["dead"], source=(buckets["preprocess"], "preprocess"),
              model_bucket=buckets["artifacts"], model_key=MODEL_KEY)


    result = handler(object_created(buckets["preprocess"], source_key, len(body)), None)

    out_key = f"score/{SHARD}/100-199.jsonl"
    assert result == {"output": out_key, "rows": 5, "dead_letters": 1}
    rows = read_jsonl(get(s3_client, buckets["score"], out_key))
    assert [r["txn_id"] for r in rows] == [f"t{i}" for i in range(5)]
    assert all(0 <= r["fraud_probability"] <= 1 and r["model_version"] == "2026-11-01" for r in rows)
    [dead] = read_jsonl(get(s3_client, buckets["dead"], out_key))
    assert dead["reason"] == "not JSON" and base64.b64decode(dead["data_base64"]) == b"not json"
    assert dead["input"] == {"bucket": buckets["preprocess"], "key": source_key, "generation": "b1946ac92492d2347c6235b4d2611184", "line": 5}

    # Objects outside the source prefix (e.g. the stage's own outputs) are ignored.
    assert handler(object_created(buckets["preprocess"], "other/x.jsonl", 1), None) == {"ignored": "other/x.jsonl"}


def test_scheduled_event_runs_once_per_scheduled_time(s3_client: Any, buckets: Any, stage_env: Any) -> None:
    from pipeline_aws.runtime import handler

    stage_env("calibrate", "schedule", "handlers/calibrate.py:calibrate", buckets["calibrate"], buckets["dead"],
              model_bucket=buckets["artifacts"], model_key=MODEL_KEY)
    assert handler(scheduled_event(), None) == {"output": "calibrate/tick/20261102T060000Z.jsonl", "rows": 1}
    handler(scheduled_event(), None)  # redelivered: overwritten, not duplicated
    assert keys_in(s3_client, buckets["calibrate"]) == ["calibrate/tick/20261102T060000Z.jsonl"]
    [row] = read_jsonl(get(s3_client, buckets["calibrate"], "calibrate/tick/20261102T060000Z.jsonl"))
    assert row["model"] == "fraud-logreg"


# ---- listing, HTTP requests, uploads, scheduled runs over accumulated outputs, dead-letter alerts ----------

import gzip  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402


def fresh_bucket(s3: Any, role: str) -> str:
    """A bucket of its own for one test (the moto server lives for the whole session)."""
    name = f"txn-{role}-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def function_url_event(body: bytes | str, *, method: str = "POST", content_type: str = "application/json", base64_body: bool = False) -> dict[str, Any]:
    """A function URL request as Lambda delivers it (payload format 2.0, IAM auth: requestContext.authorizer.iam)."""
    raw = body if isinstance(body, bytes) else body.encode()
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "",
        "headers": {"content-type": content_type, "host": "abc123.lambda-url.us-east-1.on.aws", "x-forwarded-proto": "https"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "domainName": "abc123.lambda-url.us-east-1.on.aws", "domainPrefix": "abc123",
            "authorizer": {"iam": {"accessKey": "AKIAEXAMPLE", "accountId": "210987654321", "callerId": "AROAEXAMPLE:caller",
                                   "userArn": "arn:aws:sts::210987654321:assumed-role/analytics-caller/caller", "userId": "AROAEXAMPLE"}},
            "http": {"method": method, "path": "/", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9", "userAgent": "curl/8.5.0"},
            "requestId": "c0ffee00-0000-4000-8000-000000000001", "routeKey": "$default", "stage": "$default",
            "time": "02/Nov/2026:06:00:00 +0000", "timeEpoch": 1793599200000,
        },
        "body": base64.b64encode(raw).decode() if base64_body else raw.decode(),
        "isBase64Encoded": base64_body,
    }


def test_s3_store_lists_every_page_with_modification_times(s3_client: Any, buckets: Any) -> None:
    from pipeline_aws.runtime import S3Store

    bucket = fresh_bucket(s3_client, "list")
    for i in range(5):
        s3_client.put_object(Bucket=bucket, Key=f"preprocess/s/{i}.jsonl", Body=b"{}\n")
    s3_client.put_object(Bucket=bucket, Key="other/x.jsonl", Body=b"{}\n")
    store = S3Store(s3_client, page_size=2)  # three pages of ListObjectsV2
    listed = dict(store.list(bucket, "preprocess/"))
    assert sorted(listed) == [f"preprocess/s/{i}.jsonl" for i in range(5)]
    assert all(abs(modified - time.time()) < 600 for modified in listed.values())


def test_s3_store_reports_a_missing_key_as_missing_even_when_s3_says_403(s3_client: Any, buckets: Any) -> None:
    """Without ListBucket on the whole bucket S3 answers 403 for a missing key; the prefix-scoped ListBucket the
    plan grants lets the store tell "no watermark yet" apart from a real denial."""
    import botocore.exceptions
    from pipeline_aws.runtime import S3Store

    class PrefixScoped:
        """moto does not enforce IAM: this client answers GetObject like S3 does for a role without ListBucket."""

        def __init__(self, real: Any) -> None:
            self.real = real

        def get_object(self, **kwargs: Any) -> Any:
            try:
                return self.real.get_object(**kwargs)
            except self.real.exceptions.NoSuchKey:
                raise botocore.exceptions.ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "GetObject") from None

        def list_objects_v2(self, **kwargs: Any) -> Any:
            return self.real.list_objects_v2(**kwargs)

    bucket = fresh_bucket(s3_client, "state")
    store = S3Store(PrefixScoped(s3_client))
    with pytest.raises(FileNotFoundError):
        store.get(bucket, "_state/calibrate/watermark.json")
    s3_client.put_object(Bucket=bucket, Key="_state/calibrate/watermark.json", Body=b'{"until": 1}')
    assert store.get(bucket, "_state/calibrate/watermark.json") == b'{"until": 1}'
    with pytest.raises(FileNotFoundError):
        S3Store(s3_client).get(bucket, "_state/calibrate/missing.json")  # plain 404


def test_function_url_request_returns_the_handlers_rows(s3_client: Any, buckets: Any, stage_env: Any, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline_aws.runtime import handler

    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(write_flaky(tmp_path)))
    stage_env("lookup", "http", "handlers/flaky.py:copy_rows", "", buckets["dead"])
    monkeypatch.delenv("PIPELINE_OUTPUT_BUCKET")  # an HTTP stage without persist has no output bucket

    response = handler(function_url_event(json.dumps([{"id": 1}, {"id": 2}])), None)
    assert response["statusCode"] == 200 and response["headers"]["content-type"] == "application/json"
    body = json.loads(response["body"])
    assert body["rows"] == [{"id": 1, "copied": True}, {"id": 2, "copied": True}] and body["failed"] == [] and body["output"] is None

    # A binary-safe client sends the body base64-encoded; JSON lines work too.
    lines = b'{"id": 3}\n{"id": 4}\n'
    response = handler(function_url_event(lines, content_type="application/x-ndjson", base64_body=True), None)
    assert [r["id"] for r in json.loads(response["body"])["rows"]] == [3, 4]

    assert handler(function_url_event("not rows"), None)["statusCode"] == 400
    refused = handler(function_url_event("", method="GET"), None)
    assert refused["statusCode"] == 405 and refused["headers"]["allow"] == "POST"
    bad = function_url_event("x", base64_body=True)
    bad["body"] = "%%%"
    assert handler(bad, None)["statusCode"] == 400
    assert keys_in(s3_client, buckets["dead"], "lookup/") == []


def test_function_url_request_with_persist_writes_its_rows(s3_client: Any, buckets: Any, stage_env: Any, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline_aws.runtime import handler

    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(write_flaky(tmp_path)))
    stage_env("lookup", "http", "handlers/flaky.py:copy_rows", buckets["score"], buckets["dead"])
    body = json.loads(handler(function_url_event('[{"id": 9}]'), None)["body"])
    assert keys_in(s3_client, buckets["score"], "lookup/") == [body["output"]]
    assert read_jsonl(get(s3_client, buckets["score"], body["output"])) == [{"id": 9, "copied": True}]


def test_uploaded_gzip_file_runs_the_object_stage(s3_client: Any, buckets: Any, stage_env: Any, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline_aws.runtime import handler

    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(write_flaky(tmp_path)))
    uploads = fresh_bucket(s3_client, "uploads")
    stage_env("files", "objects", "handlers/flaky.py:copy_rows", buckets["score"], buckets["dead"], source=(uploads, "uploads"))
    payload = gzip.compress(b'{"id": "a"}\n{"id": "b"}\n')
    s3_client.put_object(Bucket=uploads, Key="uploads/2026/batch one.jsonl.gz", Body=payload)

    result = handler(object_created(uploads, "uploads/2026/batch one.jsonl.gz", len(payload)), None)
    assert result["rows"] == 2 and result["dead_letters"] == 0
    assert [r["id"] for r in read_jsonl(get(s3_client, buckets["score"], result["output"]))] == ["a", "b"]
    # A URL-encoded key (S3's classic notification format) still finds the object.
    again = handler(object_created(uploads, "uploads/2026/batch+one.jsonl.gz", len(payload)), None)
    assert again["output"] == result["output"]


def test_window_replay_on_s3_with_conditional_writes(s3_client: Any, buckets: Any) -> None:
    """Out-of-order, duplicate, late, empty and concurrent runs over a window, with S3's If-Match / If-None-Match."""
    from pipeline_aws.runtime import S3Store
    from window_scenario import replay

    source, own = fresh_bucket(s3_client, "source"), fresh_bucket(s3_client, "own")
    replay(S3Store(s3_client), source, own, buckets["dead"], lambda bucket, prefix: keys_in(s3_client, bucket, prefix))


def test_s3_conditional_writes_lose_to_a_newer_version(s3_client: Any, buckets: Any) -> None:
    from pipeline_aws.runtime import S3Store

    from pipeline.runtime.store import PreconditionFailed

    bucket, store = fresh_bucket(s3_client, "cond"), S3Store(s3_client)
    assert store.read_versioned(bucket, "_state/w/lease.json") is None
    first = store.put_if(bucket, "_state/w/lease.json", b"one", None)
    with pytest.raises(PreconditionFailed):
        store.put_if(bucket, "_state/w/lease.json", b"again", None)  # If-None-Match: * on an existing key: 412
    second = store.put_if(bucket, "_state/w/lease.json", b"two", first)
    with pytest.raises(PreconditionFailed):
        store.put_if(bucket, "_state/w/lease.json", b"stale", first)  # If-Match with the old ETag: 412
    assert store.read_versioned(bucket, "_state/w/lease.json") == (b"two", second)
    with pytest.raises(PreconditionFailed):
        store.put_if(bucket, "_state/w/missing.json", b"x", first)  # If-Match on a key that is gone: 404 NoSuchKey


def window_stage(s3: Any, buckets: Any, stage_env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trigger: str) -> tuple[str, str]:
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(write_flaky(tmp_path)))
    source, own = fresh_bucket(s3, "source"), fresh_bucket(s3, "own")
    stage_env("calibrate", trigger, "handlers/flaky.py:copy_rows", own, buckets["dead"], source=(source, "preprocess"),
              PIPELINE_STATE_BUCKET=own, PIPELINE_STATE_PREFIX="_state/calibrate/", PIPELINE_WINDOW_LATENESS_S="3600",
              PIPELINE_TIMEOUT_S="60")
    return source, own


def test_scheduler_runs_over_the_window_once_per_scheduled_time(window_clock_ahead: float, s3_client: Any, buckets: Any, stage_env: Any, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """EventBridge Scheduler's scheduled time is the cut-off: a redelivered or older event does nothing, a newer one
    reads only what is new (also an object dated before the last cut-off that was not listed then)."""
    from pipeline_aws.runtime import handler

    source, own = window_stage(s3_client, buckets, stage_env, tmp_path, monkeypatch, "schedule")
    s3_client.put_object(Bucket=source, Key="preprocess/s/1-1.jsonl", Body=b'{"n": 1}\n')
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)

    def tick(when: datetime) -> dict[str, Any]:
        return {"scheduled_time": when.strftime("%Y-%m-%dT%H:%M:%SZ")}

    first = handler(tick(at), None)
    assert first["status"] == "ran" and first["output"] == "calibrate/window/start.jsonl" and first["rows"] == 1
    s3_client.put_object(Bucket=source, Key="preprocess/s/2-2.jsonl", Body=b'{"n": 2}\n')  # dated before `at`, listed after it
    assert handler(tick(at), None)["status"] == "late" and handler(tick(at - timedelta(hours=1)), None)["status"] == "late"
    second = handler(tick(at + timedelta(hours=1)), None)
    assert second["output"] == f"calibrate/window/{at:%Y%m%dT%H%M%SZ}.jsonl" and second["rows"] == 1
    assert read_jsonl(get(s3_client, own, second["output"])) == [{"n": 2, "copied": True}]
    assert handler(tick(at + timedelta(hours=2)), None)["status"] == "empty"
    assert keys_in(s3_client, own, "calibrate/") == sorted([first["output"], second["output"]])
    watermark = json.loads(get(s3_client, own, "_state/calibrate/watermark.json"))
    assert watermark["until"] == (at + timedelta(hours=1)).timestamp() and watermark["runs"] == 2

    with pytest.raises(ValueError, match="no scheduled time"):
        handler({"scheduled_time": "<aws.scheduler.scheduled-time>"}, None)


def test_function_url_runs_an_http_stage_over_its_window(s3_client: Any, buckets: Any, stage_env: Any, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """`http: {from: ...}`: an authenticated POST without rows runs the stage over what accumulated; 409 while busy."""
    from pipeline_aws.runtime import handler

    source, own = window_stage(s3_client, buckets, stage_env, tmp_path, monkeypatch, "http")
    s3_client.put_object(Bucket=source, Key="preprocess/s/1-1.jsonl", Body=b'{"n": 1}\n{"n": 2}\nnot json\n')
    now_ms = int(time.time() * 1000) + 2000

    def post(body: str = "", at_ms: int = now_ms) -> tuple[int, dict[str, Any], dict[str, str]]:
        event = function_url_event(body)
        event["requestContext"]["timeEpoch"] = at_ms
        response = handler(event, None)
        return response["statusCode"], json.loads(response["body"]), response["headers"]

    status, answer, _ = post("{}")
    assert status == 200 and answer["rows"] == 2 and answer["output"] == "calibrate/window/start.jsonl", answer
    assert answer["window"]["since"] is None and answer["window"]["objects"] == 1 and answer["dead_letters"] == 1
    assert answer["failed"] == [{"index": 2, "key": "preprocess/s/1-1.jsonl", "line": 2, "type": "JSONDecodeError",
                                 "message": answer["failed"][0]["message"]}]
    status, empty, _ = post("", now_ms + 1000)
    assert status == 200 and empty["window"]["objects"] == 0 and empty["output"] is None and empty["rows"] == 0
    assert post('[{"n": 9}]')[0] == 400  # rows in the body: this stage takes none

    s3_client.put_object(Bucket=own, Key="_state/calibrate/lease.json",
                         Body=json.dumps({"owner": "elsewhere", "run": "r1", "expires": time.time() + 90}).encode())
    status, busy, headers = post("", now_ms + 2000)
    assert status == 409 and 1 <= int(headers["retry-after"]) <= 90 and busy["retry_after_s"] == int(headers["retry-after"])


def test_an_http_stage_refuses_a_direct_invoke_that_would_move_its_window(s3_client: Any, buckets: Any, stage_env: Any,
                                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A holder of the caller policy may invoke the function directly: a forged `scheduled_time` in 2099 (or any
    event that is not a function URL request) is refused and logged, writes no watermark, and the next URL request
    still reads the source's objects."""
    from pipeline_aws.runtime import handler

    source, own = window_stage(s3_client, buckets, stage_env, tmp_path, monkeypatch, "http")
    s3_client.put_object(Bucket=source, Key="preprocess/s/1-1.jsonl", Body=b'{"n": 1}\n')
    for forged in ({"scheduled_time": "2099-01-01T00:00:00Z"}, {"detail-type": "Scheduled Event", "time": "2099-01-01T00:00:00Z"},
                   {"Records": [{"eventSource": "aws:s3", "s3": {"bucket": {"name": source}, "object": {"key": "preprocess/s/1-1.jsonl"}}}]},
                   {"requestContext": {"http": "not a request"}, "scheduled_time": "2099-01-01T00:00:00Z"}):
        answer = handler(forged, None)
        assert "function URL" in answer["refused"], answer
    assert keys_in(s3_client, own) == []  # no watermark, no lease, no output
    logged = capsys.readouterr()
    assert logged.err.count("refused an event that is not a function URL request") == 4

    event = function_url_event("")
    event["requestContext"]["timeEpoch"] = int(time.time() * 1000)
    response = handler(event, None)
    answer = json.loads(response["body"])
    assert response["statusCode"] == 200 and answer["window"]["objects"] == 1 and answer["rows"] == 1, answer


# CloudWatch Logs JSON filter patterns (https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/FilterAndPatternSyntax.html):
# `{ SELECTOR OPERATOR NUMBER }` matches a log event that is a JSON object in which the selector names a
# numeric value satisfying the comparison; events that are not JSON, or lack the selector, never match.
_NUMERIC = re.compile(r"^\{\s*\$\.(?P<path>[A-Za-z_][\w.]*)\s*(?P<op>=|!=|>=|<=|>|<)\s*(?P<number>-?\d+(\.\d+)?)\s*\}$")
_OPS = {"=": float.__eq__, "!=": float.__ne__, ">": float.__gt__, "<": float.__lt__, ">=": float.__ge__, "<=": float.__le__}


def cloudwatch_json_match(pattern: str, event: str) -> bool:
    found = _NUMERIC.match(pattern)
    assert found, f"pattern outside the numeric JSON subset this helper evaluates: {pattern}"
    try:
        value: Any = json.loads(event)
    except ValueError:
        return False
    for part in found["path"].split("."):
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return bool(_OPS[found["op"]](float(value), float(found["number"])))


def test_the_dead_letter_alarm_filter_matches_the_runtimes_own_log_line(s3_client: Any, buckets: Any, stage_env: Any,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Run the runtime on a batch with a poison record, capture the JSON lines it writes (Lambda ships them to
    CloudWatch Logs unchanged), and evaluate the plan's metric filter pattern on them."""
    from pipeline_aws.observability import DEAD_LETTER_PATTERN
    from pipeline_aws.runtime import handler

    stage_env("preprocess", "stream", "handlers/preprocess.py:preprocess", buckets["preprocess"], buckets["dead"], CURRENCY="USD")
    capsys.readouterr()
    handler(kinesis_event(example_lines(20)), None)  # line 1 of the example is malformed
    handler(kinesis_event(example_lines(20)[1:], first_sequence=7), None)  # a clean batch
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    matched = [json.loads(line) for line in lines if cloudwatch_json_match(DEAD_LETTER_PATTERN, line)]
    assert [(m["message"], m["dead_letters"], m["stage"]) for m in matched] == [("batch done", 1, "preprocess")]
    done = [json.loads(line) for line in lines if json.loads(line).get("message") == "batch done"]
    assert len(done) == 2  # the clean batch logged too, and did not match
    # Lambda's own JSON platform lines and plain text never match.
    assert not cloudwatch_json_match(DEAD_LETTER_PATTERN, '{"time":"2026-11-02T06:00:00Z","type":"platform.report","record":{}}')
    assert not cloudwatch_json_match(DEAD_LETTER_PATTERN, "dead_letters > 0")
    # The dimension the filter publishes (`$.stage`) is in the line, as the alarm expects.
    assert matched[0]["stage"] == "preprocess"


# ---- the raw archiver (pipeline_aws.archive): the stream's records, batch by batch, as gzip objects under raw/ ----


@pytest.fixture
def raw_bucket(s3_client: Any, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    """An empty bucket of this test's own (the emulator lives for the session)."""
    import hashlib

    from pipeline_aws import archive

    name = f"txn-raw-{hashlib.sha256(request.node.name.encode()).hexdigest()[:12]}"
    s3_client.create_bucket(Bucket=name)
    monkeypatch.setenv("PIPELINE_RAW_BUCKET", name)
    monkeypatch.setenv("PIPELINE_RAW_PREFIX", "raw/")
    monkeypatch.setattr(archive, "_client", None)  # a fresh client for this test's endpoint
    return name


def test_archiver_writes_one_gzip_object_of_newline_delimited_records_per_batch(s3_client: Any, raw_bucket: str) -> None:
    import gzip

    from pipeline_aws.archive import handler

    lines = example_lines(20)  # line 1 is malformed JSON: the archive keeps records as they came, good or bad
    result = handler(kinesis_event(lines), None)
    first = 49590338271490256608559692538361571095921575989136588898
    key = f"raw/{SHARD}/{first}-{first + 19}.jsonl.gz"
    assert result == {"archived": 20, "key": key}
    assert keys_in(s3_client, raw_bucket) == [key]
    stored = s3_client.get_object(Bucket=raw_bucket, Key=key)
    assert stored["ContentType"] == "application/gzip"
    text = gzip.decompress(stored["Body"].read())
    # The local runner's raw/ objects hold the same bytes (pipeline.local.runner: records joined by newlines, one after the last).
    assert text == b"\n".join(lines) + b"\n"
    assert text.split(b"\n")[:-1] == lines


def test_a_redelivered_batch_overwrites_its_own_object_with_the_same_bytes(s3_client: Any, raw_bucket: str) -> None:
    from pipeline_aws.archive import handler

    event = kinesis_event(example_lines(5))
    handler(event, None)
    before = {k: get(s3_client, raw_bucket, k) for k in keys_in(s3_client, raw_bucket)}
    handler(event, None)  # the mapping retries the same batch (or re-reads it after a failure)
    after = {k: get(s3_client, raw_bucket, k) for k in keys_in(s3_client, raw_bucket)}
    assert after == before and len(after) == 1  # no second object, and gzip carries no time: identical bytes
    handler(kinesis_event(example_lines(5)[1:], first_sequence=7), None)  # the next batch: its own key
    assert len(keys_in(s3_client, raw_bucket)) == 2


def test_archiver_raises_when_s3_refuses_so_the_mapping_retries(s3_client: Any, raw_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline_aws.archive import handler

    monkeypatch.setenv("PIPELINE_RAW_BUCKET", "no-such-raw-bucket")
    with pytest.raises(Exception, match="NoSuchBucket"):
        handler(kinesis_event(example_lines(3)), None)
    assert handler({"Records": []}, None) == {"archived": 0}  # nothing to archive is not an error
