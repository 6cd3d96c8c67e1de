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
