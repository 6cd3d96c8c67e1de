"""The GCP runtime shim end to end against the GCS emulator, driven by requests in Google's documented shapes:
Pub/Sub push envelopes carrying Cloud Storage notifications (batch files of a stream stage, outputs of a stage,
uploads), Cloud Scheduler calls with their scheduled time, and authenticated HTTP requests. The Avro reader is
checked against files written by fastavro, an independent implementation."""

from __future__ import annotations

import base64
import gzip
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from emulators import EXAMPLE, example_lines, read_jsonl, write_flaky  # tests/ is on sys.path (conftest.py)
from pipeline_gcp import avro

fastavro = pytest.importorskip("fastavro", reason="fastavro is the GCP backend's dev extra: pip install -e 'providers/gcp[dev]'")

SUBSCRIPTION = "projects/txn-scoring-demo/subscriptions/txn-scoring-test-preprocess-batches"
# The record schema a Cloud Storage subscription writes with avro_config.write_metadata
# (https://cloud.google.com/pubsub/docs/cloudstorage#avro-format): metadata fields beside the payload.
PUBSUB_AVRO_SCHEMA = {
    "type": "record", "name": "PubsubMessage", "namespace": "google.pubsub.v1",
    "fields": [
        {"name": "subscription_name", "type": "string"},
        {"name": "message_id", "type": "string"},
        {"name": "publish_time", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "attributes", "type": {"type": "map", "values": "string"}},
        {"name": "data", "type": "bytes"},
    ],
}


def avro_file(rows: list[dict[str, Any]], codec: str = "null", schema: dict[str, Any] = PUBSUB_AVRO_SCHEMA) -> bytes:
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(schema), rows, codec=codec, sync_interval=200)  # small blocks: several per file
    return out.getvalue()


def pubsub_rows(lines: list[bytes], first_id: int = 9000) -> list[dict[str, Any]]:
    when = datetime(2026, 11, 1, 10, 0, 0, tzinfo=UTC)
    return [{"subscription_name": SUBSCRIPTION, "message_id": str(first_id + i), "publish_time": when,
             "attributes": {"ordering_key": f"card-{i}"} if i % 2 == 0 else {}, "data": line} for i, line in enumerate(lines)]


# ---- the Avro reader ------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["null", "deflate"])
def test_avro_reader_reads_what_fastavro_writes(codec: str) -> None:
    lines = [json.dumps({"n": i, "pad": "x" * (i % 37)}).encode() for i in range(300)]
    data = avro_file(pubsub_rows(lines), codec)
    container = avro.ContainerFile(data)
    assert container.codec == codec
    rows = list(container)
    assert [r["data"] for r in rows] == lines
    assert rows[0]["message_id"] == "9000" and rows[0]["attributes"] == {"ordering_key": "card-0"} and rows[1]["attributes"] == {}
    assert rows[0]["publish_time"] == int(datetime(2026, 11, 1, 10, tzinfo=UTC).timestamp() * 1e6)
    assert avro.field_logical_type(container.schema, "publish_time") == "timestamp-micros"


def test_avro_reader_covers_every_schema_type() -> None:
    schema = {
        "type": "record", "name": "All", "fields": [
            {"name": "b", "type": "boolean"}, {"name": "i", "type": "int"}, {"name": "l", "type": "long"},
            {"name": "f", "type": "float"}, {"name": "d", "type": "double"}, {"name": "s", "type": "string"},
            {"name": "maybe", "type": ["null", "string"]}, {"name": "tags", "type": {"type": "array", "items": "string"}},
            {"name": "color", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}},
            {"name": "hash", "type": {"type": "fixed", "name": "Hash", "size": 4}},
            {"name": "inner", "type": {"type": "record", "name": "Inner", "fields": [{"name": "x", "type": "long"}]}},
            {"name": "again", "type": "Inner"},
        ]}
    rows = [{"b": True, "i": -7, "l": 2**40, "f": 1.5, "d": -2.25, "s": "héllo", "maybe": None, "tags": ["a", "b"], "color": "GREEN",
             "hash": b"\x00\x01\x02\x03", "inner": {"x": -1}, "again": {"x": 3}},
            {"b": False, "i": 0, "l": -(2**40), "f": 0.0, "d": 1e300, "s": "", "maybe": "yes", "tags": [], "color": "RED",
             "hash": b"abcd", "inner": {"x": 0}, "again": {"x": 0}}]
    assert avro.records(avro_file(rows, "deflate", schema)) == rows


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: b"Nope" + d[4:], "bad magic"),
    (lambda d: d[:-20], "truncated|sync"),
    (lambda d: d.replace(b"deflate", b"snappyy", 1), "not supported"),
])
def test_avro_reader_refuses_broken_files(mutate: Any, message: str) -> None:
    data = avro_file(pubsub_rows([b"{}"] * 50), "deflate")
    with pytest.raises(avro.AvroError, match=message):
        avro.records(mutate(data))


# ---- push requests against the emulator -----------------------------------------------------------


@pytest.fixture
def buckets(gcs_client: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    names = {"batches": "gt-batches", "preprocess": "gt-preprocess", "score": "gt-score", "dead": "gt-dead-letter",
             "uploads": "gt-uploads", "loaded": "gt-loaded", "api": "gt-api", "daily": "gt-daily"}
    for name in names.values():
        if gcs_client.lookup_bucket(name) is None:
            gcs_client.create_bucket(name)
    monkeypatch.setenv("PIPELINE_CODE_ROOT", str(EXAMPLE))
    return names


def client(target: str = "http") -> Any:
    import functions_framework
    import pipeline_gcp.runtime

    return functions_framework.create_app(target=target, source=pipeline_gcp.runtime.__file__, signature_type="http").test_client()


def notification(bucket: str, name: str, generation: int, attempt: int | None = None, published: str | None = None) -> dict[str, Any]:
    """A push request for a Cloud Storage notification (https://cloud.google.com/storage/docs/pubsub-notifications, JSON_API_V1)."""
    resource = {"kind": "storage#object", "bucket": bucket, "name": name, "generation": str(generation), "size": "10",
                "contentType": "application/octet-stream", "id": f"{bucket}/{name}/{generation}"}
    body: dict[str, Any] = {
        "message": {
            "attributes": {"bucketId": bucket, "objectId": name, "objectGeneration": str(generation), "eventType": "OBJECT_FINALIZE",
                           "eventTime": "2026-11-01T10:01:00.000Z", "payloadFormat": "JSON_API_V1", "notificationConfig": "projects/_/buckets/x/notificationConfigs/1"},
            "data": base64.b64encode(json.dumps(resource).encode()).decode(),
            "messageId": "555", "message_id": "555",
            "publishTime": published or datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        },
        "subscription": "projects/txn-scoring-demo/subscriptions/events",
    }
    if attempt is not None:
        body["deliveryAttempt"] = attempt
    return body


def put(gcs: Any, bucket: str, name: str, data: bytes) -> int:
    blob = gcs.bucket(bucket).blob(name)
    blob.upload_from_string(data)
    blob.reload()
    return int(blob.generation)


def names(gcs: Any, bucket: str, prefix: str) -> list[str]:
    return sorted(b.name for b in gcs.list_blobs(bucket, prefix=prefix))


def read(gcs: Any, bucket: str, name: str) -> bytes:
    data: bytes = gcs.bucket(bucket).blob(name).download_as_bytes()
    return data


BATCH = "preprocess/2026-11-01/10_00_00Z_0a1b2c.avro"


def test_a_batch_file_is_one_invocation_with_every_record(gcs_client: Any, buckets: dict[str, str], stage_env: Any) -> None:
    stage_env("preprocess", "stream", "handlers/preprocess.py:preprocess", buckets["preprocess"], buckets["dead"], CURRENCY="USD",
              PIPELINE_BATCH_PREFIX="preprocess/")
    lines = example_lines(6)  # line 0 is malformed (no amount)
    generation = put(gcs_client, buckets["batches"], BATCH, avro_file(pubsub_rows(lines), "deflate"))
    for _ in range(2):  # delivered at least once: the second delivery overwrites the same output
        response = client().post("/", json=notification(buckets["batches"], BATCH, generation))
        assert response.status_code == 200, response.data
    key = "preprocess/batch/2026-11-01/10_00_00Z_0a1b2c.jsonl"
    assert names(gcs_client, buckets["preprocess"], "preprocess/") == [key]
    rows = read_jsonl(read(gcs_client, buckets["preprocess"], key))
    assert [r["txn_id"] for r in rows] == [json.loads(x)["txn_id"] for x in lines[1:] if json.loads(x).get("currency", "USD") == "USD"]
    [dead] = read_jsonl(read(gcs_client, buckets["dead"], "preprocess/batch/2026-11-01/10_00_00Z_0a1b2c.jsonl"))
    assert dead["input"]["record_id"] == "9000" and dead["input"]["key"] == "card-0"  # the Pub/Sub message id and ordering key
    assert base64.b64decode(dead["data_base64"]) == lines[0]


def test_a_failing_batch_is_retried_then_dead_lettered_record_by_record(gcs_client: Any, buckets: dict[str, str], stage_env: Any,
                                                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_CODE_ROOT", str(write_flaky(tmp_path)))
    stage_env("flaky", "stream", "handlers/flaky.py:passthrough", buckets["preprocess"], buckets["dead"], FAIL_AT_TXN="t1",
              PIPELINE_BATCH_PREFIX="flaky/", PIPELINE_RETRIES="2", PIPELINE_MAX_EVENT_AGE_S="3600")
    name = "flaky/2026-11-01/10_05_00Z_ff.avro"
    generation = put(gcs_client, buckets["batches"], name, avro_file(pubsub_rows([b'{"txn_id": "t0"}', b'{"txn_id": "t1"}'], 7000)))
    for attempt in (1, 2):  # retries: 2 -> three deliveries in all
        assert client().post("/", json=notification(buckets["batches"], name, generation, attempt)).status_code == 500
    assert names(gcs_client, buckets["dead"], "flaky/") == []
    response = client().post("/", json=notification(buckets["batches"], name, generation, 3))
    assert response.status_code == 200 and json.loads(response.data) == {"dead_lettered": True}
    dead = read_jsonl(read(gcs_client, buckets["dead"], "flaky/batch/2026-11-01/10_05_00Z_ff.jsonl"))
    assert [d["input"]["record_id"] for d in dead] == ["7000", "7001"] and {d["reason"] for d in dead} == {"retries exhausted"}
    assert names(gcs_client, buckets["preprocess"], "flaky/") == []


def test_an_event_older_than_max_event_age_is_dead_lettered(gcs_client: Any, buckets: dict[str, str], stage_env: Any, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_CODE_ROOT", str(write_flaky(tmp_path)))
    stage_env("copy", "objects", "handlers/flaky.py:broken_setup", buckets["score"], buckets["dead"], source=(buckets["preprocess"], "old"),
              PIPELINE_RETRIES="10", PIPELINE_MAX_EVENT_AGE_S="60")
    generation = put(gcs_client, buckets["preprocess"], "old/a.jsonl", b'{"a": 1}\n')
    fresh = notification(buckets["preprocess"], "old/a.jsonl", generation, 1)
    assert client().post("/", json=fresh).status_code == 500  # young: retried
    stale = notification(buckets["preprocess"], "old/a.jsonl", generation, 2, published="2026-01-01T00:00:00Z")
    assert client().post("/", json=stale).status_code == 200
    [dead] = read_jsonl(read(gcs_client, buckets["dead"], "copy/a.jsonl"))
    assert dead["input"] == {"bucket": buckets["preprocess"], "key": "old/a.jsonl", "generation": str(generation)}


def test_outputs_of_a_stage_and_gzip_uploads_run_object_stages(gcs_client: Any, buckets: dict[str, str], stage_env: Any, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_CODE_ROOT", str(write_flaky(tmp_path)))
    stage_env("loaded", "objects", "handlers/flaky.py:copy_rows", buckets["loaded"], buckets["dead"], source=(buckets["uploads"], "uploads"))
    body = gzip.compress(b'{"id": 1}\n{"id": 2}\nnot json\n')
    generation = put(gcs_client, buckets["uploads"], "uploads/day1.jsonl.gz", body)
    assert client().post("/", json=notification(buckets["uploads"], "uploads/day1.jsonl.gz", generation)).status_code == 200
    assert read_jsonl(read(gcs_client, buckets["loaded"], "loaded/day1.jsonl")) == [{"id": 1, "copied": True}, {"id": 2, "copied": True}]
    [dead] = read_jsonl(read(gcs_client, buckets["dead"], "loaded/day1.jsonl"))
    assert dead["reason"] == "not JSON"
    # An object outside the input prefix (e.g. a folder marker or another producer's path) is acknowledged and ignored.
    other = put(gcs_client, buckets["uploads"], "elsewhere/x.jsonl", b'{"id": 3}\n')
    response = client().post("/", json=notification(buckets["uploads"], "elsewhere/x.jsonl", other))
    assert response.status_code == 200 and "ignored" in json.loads(response.data)


def test_http_stage_answers_rows_and_persists(gcs_client: Any, buckets: dict[str, str], stage_env: Any, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_CODE_ROOT", str(write_flaky(tmp_path)))
    stage_env("api", "http", "handlers/flaky.py:copy_rows", buckets["api"], buckets["dead"])
    response = client().post("/", data=b'[{"id": 1}, {"id": 2}]', headers={"Content-Type": "application/json", "Authorization": "Bearer x"})
    assert response.status_code == 200
    answer = json.loads(response.data)
    assert answer["rows"] == [{"id": 1, "copied": True}, {"id": 2, "copied": True}]
    assert names(gcs_client, buckets["api"], "api/") == [answer["output"]]
    assert client().post("/", data=b"not rows", headers={"Content-Type": "text/plain"}).status_code == 400


def test_scheduled_run_reads_what_the_source_wrote_since_the_last_run(gcs_client: Any, buckets: dict[str, str], stage_env: Any,
                                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_CODE_ROOT", str(write_flaky(tmp_path)))
    stage_env("daily", "schedule", "handlers/flaky.py:copy_rows", buckets["daily"], buckets["dead"], source=(buckets["loaded"], "acc"),
              PIPELINE_STATE_BUCKET=buckets["daily"], PIPELINE_STATE_PREFIX="_state/daily/")
    put(gcs_client, buckets["loaded"], "acc/one.jsonl", b'{"n": 1}\n{"n": 2}\n')
    put(gcs_client, buckets["loaded"], "acc/two.jsonl", b'{"n": 3}\n')
    from pipeline_gcp.runtime import GcsStore

    listed = dict(GcsStore(gcs_client).list(buckets["loaded"], "acc/"))
    assert sorted(listed) == ["acc/one.jsonl", "acc/two.jsonl"] and all(v > 1.7e9 for v in listed.values())
    later = datetime.fromtimestamp(max(listed.values()) + 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    response = client().post("/", json={"pipeline": "txn-scoring"}, headers={"X-CloudScheduler-ScheduleTime": later})
    assert response.status_code == 200, response.data
    output = json.loads(response.data)["output"]
    assert sorted(r["n"] for r in read_jsonl(read(gcs_client, buckets["daily"], output))) == [1, 2, 3]
    assert json.loads(read(gcs_client, buckets["daily"], "_state/daily/watermark.json"))["objects"] == 2
