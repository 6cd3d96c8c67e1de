"""The Cloud Functions entry points through functions-framework, against a GCS emulator,
driven by CloudEvents and push bodies in Google's documented shapes."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from emulators import EXAMPLE, MODEL, MODEL_KEY, example_lines, read_jsonl, write_flaky

pytest_plugins = ["conftest_emulators"]

SUBSCRIPTION = "projects/txn-scoring-demo/subscriptions/txn-scoring-test-preprocess"
TOPIC_SOURCE = "//pubsub.googleapis.com/projects/txn-scoring-demo/topics/txn-scoring-test-stream"


@pytest.fixture
def buckets(gcs_client: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    names = {"preprocess": "gtxn-preprocess", "score": "gtxn-score", "calibrate": "gtxn-calibrate", "dead": "gtxn-dead-letter",
             "artifacts": "gtxn-artifacts"}
    for name in names.values():
        if gcs_client.lookup_bucket(name) is None:
            gcs_client.create_bucket(name)
    gcs_client.bucket(names["artifacts"]).blob(MODEL_KEY).upload_from_string(MODEL.read_bytes())
    monkeypatch.setenv("PIPELINE_CODE_ROOT", str(EXAMPLE))
    return names


def client_for(signature: str, target: str) -> Any:
    import functions_framework
    import pipeline_gcp.runtime

    app = functions_framework.create_app(target=target, source=pipeline_gcp.runtime.__file__, signature_type=signature)
    return app.test_client()


def blob_names(gcs: Any, bucket: str, prefix: str) -> list[str]:
    return sorted(b.name for b in gcs.list_blobs(bucket, prefix=prefix))


def read(gcs: Any, bucket: str, name: str) -> bytes:
    data: bytes = gcs.bucket(bucket).blob(name).download_as_bytes()
    return data


def pubsub_message(data: bytes, message_id: str) -> dict[str, Any]:
    # Real push bodies can carry camelCase and snake_case twins.
    return {"data": base64.b64encode(data).decode(), "attributes": {"key": "card-1"}, "messageId": message_id, "message_id": message_id,
            "publishTime": "2026-11-01T10:00:00.123Z", "publish_time": "2026-11-01T10:00:00.123Z"}


def binary_cloud_event(kind: str, source: str, event_id: str, data: dict[str, Any], subject: str | None = None) -> tuple[dict[str, str], str]:
    headers = {"ce-id": event_id, "ce-source": source, "ce-type": kind, "ce-specversion": "1.0", "ce-time": "2026-11-01T10:00:01Z",
               "Content-Type": "application/json"}
    if subject:
        headers["ce-subject"] = subject
    return headers, json.dumps(data)


def test_pubsub_cloud_events_write_rows_and_dead_letters(gcs_client: Any, buckets: dict[str, str], stage_env: Any) -> None:
    stage_env("preprocess", "stream", "handlers/preprocess.py:preprocess", buckets["preprocess"], buckets["dead"], CURRENCY="USD")
    client = client_for("cloudevent", "cloud_event")
    lines = example_lines(3)

    for index, line in enumerate(lines):
        message_id = f"1000{index}"
        headers, body = binary_cloud_event("google.cloud.pubsub.topic.v1.messagePublished", TOPIC_SOURCE, message_id,
                                           {"message": pubsub_message(line, message_id), "subscription": SUBSCRIPTION})
        response = client.post("/", headers=headers, data=body)
        assert response.status_code == 200, response.data  # a poison message is acked: it is in the dead-letter bucket

    assert blob_names(gcs_client, buckets["preprocess"], "preprocess/") == ["preprocess/msg/10001.jsonl", "preprocess/msg/10002.jsonl"]
    [row] = read_jsonl(read(gcs_client, buckets["preprocess"], "preprocess/msg/10001.jsonl"))
    assert row["txn_id"] == json.loads(lines[1])["txn_id"]
    assert blob_names(gcs_client, buckets["dead"], "preprocess/") == ["preprocess/msg/10000.jsonl"]
    [dead] = read_jsonl(read(gcs_client, buckets["dead"], "preprocess/msg/10000.jsonl"))
    assert base64.b64decode(dead["data_base64"]) == lines[0] and "missing amount" in dead["error"]["message"]
    assert dead["input"]["record_id"] == "10000" and dead["input"]["key"] == "card-1"


def test_raw_pubsub_push_body_is_converted_by_functions_framework(gcs_client: Any, buckets: dict[str, str], stage_env: Any) -> None:
    stage_env("preprocess", "stream", "handlers/preprocess.py:preprocess", buckets["preprocess"], buckets["dead"], CURRENCY="USD")
    client = client_for("cloudevent", "cloud_event")
    line = example_lines(5)[4]
    response = client.post("/", json={"message": pubsub_message(line, "20004"), "subscription": SUBSCRIPTION})
    assert response.status_code == 200, response.data
    assert "preprocess/msg/20004.jsonl" in blob_names(gcs_client, buckets["preprocess"], "preprocess/msg/2")


def test_transient_failure_is_a_500_so_pubsub_redelivers(gcs_client: Any, buckets: dict[str, str], stage_env: Any, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_CODE_ROOT", str(write_flaky(tmp_path)))
    stage_env("flaky", "stream", "handlers/flaky.py:passthrough", buckets["preprocess"], buckets["dead"], FAIL_AT_TXN="t1")
    client = client_for("cloudevent", "cloud_event")
    headers, body = binary_cloud_event("google.cloud.pubsub.topic.v1.messagePublished", TOPIC_SOURCE, "30001",
                                       {"message": pubsub_message(b'{"txn_id": "t1"}', "30001"), "subscription": SUBSCRIPTION})
    assert client.post("/", headers=headers, data=body).status_code == 500
    assert blob_names(gcs_client, buckets["preprocess"], "flaky/") == []
    monkeypatch.setenv("FAIL_AT_TXN", "")
    assert client.post("/", headers=headers, data=body).status_code == 200  # the redelivery succeeds
    assert blob_names(gcs_client, buckets["preprocess"], "flaky/") == ["flaky/msg/30001.jsonl"]


def test_storage_finalized_scores_the_object(gcs_client: Any, buckets: dict[str, str], stage_env: Any) -> None:
    features = [{"txn_id": f"t{i}", "card_id": "c1", "timestamp": "2026-11-01T01:00:00+00:00", "amount": 5.0, "merchant_category": "5411",
                 "amount_log": 1.8, "is_foreign": 0, "is_night": 0, "card_present": 1, "velocity_1h": 0} for i in range(3)]
    name = "preprocess/msg/10001.jsonl"
    blob = gcs_client.bucket(buckets["preprocess"]).blob(name)
    blob.upload_from_string("".join(json.dumps(f) + "\n" for f in features))
    blob.reload()
    stage_env("score", "objects", "handlers/score.py:score", buckets["score"], buckets["dead"], source=(buckets["preprocess"], "preprocess"),
              model_bucket=buckets["artifacts"], model_key=MODEL_KEY)
    client = client_for("cloudevent", "cloud_event")
    data = {"bucket": buckets["preprocess"], "name": name, "generation": str(blob.generation), "metageneration": "1", "size": str(blob.size),
            "contentType": "application/x-ndjson", "id": f"{buckets['preprocess']}/{name}/{blob.generation}", "storageClass": "STANDARD",
            "timeCreated": "2026-11-01T10:00:02.000Z", "updated": "2026-11-01T10:00:02.000Z"}
    headers, body = binary_cloud_event("google.cloud.storage.object.v1.finalized", f"//storage.googleapis.com/projects/_/buckets/{buckets['preprocess']}",
                                       "40001", data, subject=f"objects/{name}")
    for _ in range(2):  # Eventarc delivers at least once: the second delivery overwrites
        response = client.post("/", headers=headers, data=body)
        assert response.status_code == 200, response.data
    assert blob_names(gcs_client, buckets["score"], "score/") == ["score/msg/10001.jsonl"]
    rows = read_jsonl(read(gcs_client, buckets["score"], "score/msg/10001.jsonl"))
    assert [r["txn_id"] for r in rows] == ["t0", "t1", "t2"] and all(r["flagged"] is False for r in rows)


def test_scheduler_http_call_runs_the_schedule_stage(gcs_client: Any, buckets: dict[str, str], stage_env: Any) -> None:
    stage_env("calibrate", "schedule", "handlers/calibrate.py:calibrate", buckets["calibrate"], buckets["dead"],
              model_bucket=buckets["artifacts"], model_key=MODEL_KEY)
    client = client_for("http", "http")
    response = client.post("/", json={"pipeline": "txn-scoring", "stage": "calibrate", "schedule": "0 6 * * *"},
                           headers={"X-CloudScheduler": "true", "X-CloudScheduler-ScheduleTime": "2026-11-02T06:00:00Z"})
    assert response.status_code == 200, response.data
    assert json.loads(response.data)["output"] == "calibrate/tick/20261102T060000Z.jsonl"
    [row] = read_jsonl(read(gcs_client, buckets["calibrate"], "calibrate/tick/20261102T060000Z.jsonl"))
    assert row["model_version"] == "2026-11-01"


# ---- windows over accumulated outputs: generation preconditions (on fake-gcs-server, which enforces them) ----------


def conditional_buckets(gcs: Any) -> dict[str, str]:
    import uuid

    names = {role: f"w{role}-{uuid.uuid4().hex[:10]}" for role in ("source", "own", "dead")}
    for name in names.values():
        gcs.create_bucket(name)
    return names


def test_window_replay_on_gcs_with_generation_preconditions(gcs_conditional_client: Any) -> None:
    from pipeline_gcp.runtime import GcsStore
    from window_scenario import replay

    names = conditional_buckets(gcs_conditional_client)
    replay(GcsStore(gcs_conditional_client), names["source"], names["own"], names["dead"],
           lambda bucket, prefix: blob_names(gcs_conditional_client, bucket, prefix))


def test_gcs_conditional_writes_lose_to_a_newer_generation(gcs_conditional_client: Any) -> None:
    from pipeline_gcp.runtime import GcsStore

    from pipeline.runtime.store import PreconditionFailed

    bucket, store = conditional_buckets(gcs_conditional_client)["own"], GcsStore(gcs_conditional_client)
    assert store.read_versioned(bucket, "_state/w/lease.json") is None
    first = store.put_if(bucket, "_state/w/lease.json", b"one", None)
    with pytest.raises(PreconditionFailed):
        store.put_if(bucket, "_state/w/lease.json", b"again", None)  # ifGenerationMatch=0 on a live object: 412
    second = store.put_if(bucket, "_state/w/lease.json", b"two", first)
    with pytest.raises(PreconditionFailed):
        store.put_if(bucket, "_state/w/lease.json", b"stale", first)
    assert store.read_versioned(bucket, "_state/w/lease.json") == (b"two", second) and first != second


def test_scheduler_and_http_runs_over_the_window(window_clock_ahead: float, gcs_conditional_client: Any, stage_env: Any, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Cloud Scheduler's X-CloudScheduler-ScheduleTime is the cut-off (a repeat does nothing); an HTTP stage with
    `from` runs over the same kind of window on an empty POST, and answers 409 with Retry-After while it is leased."""
    from datetime import UTC, datetime, timedelta

    monkeypatch.setenv("PIPELINE_CODE_ROOT", str(write_flaky(tmp_path)))
    names = conditional_buckets(gcs_conditional_client)
    window_env = {"PIPELINE_STATE_BUCKET": names["own"], "PIPELINE_STATE_PREFIX": "_state/daily/", "PIPELINE_WINDOW_LATENESS_S": "3600",
                  "PIPELINE_TIMEOUT_S": "60"}
    stage_env("daily", "schedule", "handlers/flaky.py:copy_rows", names["own"], names["dead"], source=(names["source"], "acc"), **window_env)
    gcs_conditional_client.bucket(names["source"]).blob("acc/one.jsonl").upload_from_string(b'{"n": 1}\n{"n": 2}\n')
    at = (datetime.now(UTC) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    client = client_for("http", "http")
    first = client.post("/", json={}, headers={"X-CloudScheduler-ScheduleTime": at})
    assert first.status_code == 200, first.data
    answer = json.loads(first.data)
    assert answer["status"] == "ran" and answer["output"] == "daily/window/start.jsonl" and answer["rows"] == 2
    again = client.post("/", json={}, headers={"X-CloudScheduler-ScheduleTime": at})
    assert json.loads(again.data)["status"] == "late"  # Cloud Scheduler delivers at least once

    stage_env("api", "http", "handlers/flaky.py:copy_rows", names["own"], names["dead"], source=(names["source"], "acc"),
              **{**window_env, "PIPELINE_STATE_PREFIX": "_state/api/"})
    response = client_for("http", "http").post("/", data=b"", headers={"Authorization": "Bearer x"})
    assert response.status_code == 200, response.data
    assert json.loads(response.data)["output"] == "api/window/start.jsonl" and json.loads(response.data)["rows"] == 2
    assert client_for("http", "http").post("/", data=b'[{"n": 1}]').status_code == 400
    gcs_conditional_client.bucket(names["own"]).blob("_state/api/lease.json").upload_from_string(
        json.dumps({"owner": "other", "run": "r", "expires": datetime.now(UTC).timestamp() + window_clock_ahead + 30}))
    busy = client_for("http", "http").post("/", data=b"{}")
    assert busy.status_code == 409 and 1 <= int(busy.headers["Retry-After"]) <= 30
