"""The Azure Functions entry points against Azurite (Blob and Queue), driven by event-shaped objects
(azure.functions' EventHubEvent / EventGridEvent attributes, real azure.functions.QueueMessage objects built
from messages read back from Azurite's queue service) in Azure's documented shapes."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from emulators import EXAMPLE, MODEL, MODEL_KEY, example_lines, read_jsonl, write_flaky

pytest_plugins = ["conftest_emulators"]


class EventHubEvent:
    """The attributes azure.functions.EventHubEvent exposes (cardinality many: metadata on events[0])."""

    def __init__(self, body: bytes, sequence_number: int, partition_key: str | None = None, metadata: dict[str, Any] | None = None) -> None:
        self._body, self.sequence_number, self.partition_key = body, sequence_number, partition_key
        self.enqueued_time = datetime(2026, 11, 1, 10, 0, sequence_number % 60, tzinfo=UTC)
        self.offset = str(sequence_number * 512)
        self.metadata = metadata or {}

    def get_body(self) -> bytes:
        return self._body


class EventGridEvent:
    """azure.functions.EventGridEvent: id, topic, subject, event_type, get_json()."""

    def __init__(self, account: str, container: str, name: str, etag: str) -> None:
        self.id = "831e1650-001e-001b-66ab-eeb76e069631"
        self.topic = f"/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/{account}"
        self.subject = f"/blobServices/default/containers/{container}/blobs/{name}"
        self.event_type = "Microsoft.Storage.BlobCreated"
        self.event_time = datetime(2026, 11, 1, 10, 0, 5, tzinfo=UTC)
        self.data_version = ""
        self._data = {
            "api": "PutBlob", "clientRequestId": "6d79dbfb-0e37-4fc4-981f-442c9ca65760", "requestId": "831e1650-001e-001b-66ab-eeb76e000000",
            "eTag": etag, "contentType": "application/x-ndjson", "contentLength": 524288, "blobType": "BlockBlob",
            "url": f"https://{account}.blob.core.windows.net/{container}/{name}", "sequencer": "00000000000004420000000000028963",
            "storageDiagnostics": {"batchId": "b68529f3-68cd-4744-baa4-3c0498ec19f0"},
        }

    def get_json(self) -> dict[str, Any]:
        return self._data


@pytest.fixture
def containers(blob_service: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    names = {"preprocess": "preprocess", "score": "score", "calibrate": "calibrate", "dead": "dead-letter", "artifacts": "artifacts"}
    for name in names.values():
        if not blob_service.get_container_client(name).exists():
            blob_service.create_container(name)
    blob_service.get_blob_client(names["artifacts"], MODEL_KEY).upload_blob(MODEL.read_bytes(), overwrite=True)
    monkeypatch.setenv("AzureWebJobsScriptRoot", str(EXAMPLE))
    return names


def names_in(service: Any, container: str, prefix: str) -> list[str]:
    return sorted(b.name for b in service.get_container_client(container).list_blobs(name_starts_with=prefix))


def read(service: Any, container: str, name: str) -> bytes:
    data: bytes = service.get_blob_client(container, name).download_blob().readall()
    return data


def test_event_hub_batch_writes_rows_and_dead_letters(blob_service: Any, containers: dict[str, str], stage_env: Any) -> None:
    from pipeline_azure.runtime import process_events

    stage_env("preprocess", "stream", "handlers/preprocess.py:preprocess", containers["preprocess"], containers["dead"], CURRENCY="USD")
    lines = example_lines(20)
    events = [EventHubEvent(line, 500 + i, f"card-{i}", {"PartitionContext": {"PartitionId": "3", "EventHubName": "stream"}} if i == 0 else None)
              for i, line in enumerate(lines)]
    result = process_events(events)
    assert result is not None and result.output_key == "preprocess/3/00000000000000000500-00000000000000000519.jsonl"
    usd = [json.loads(line)["txn_id"] for line in lines[1:] if json.loads(line)["currency"] == "USD"]
    assert [r["txn_id"] for r in read_jsonl(read(blob_service, containers["preprocess"], result.output_key))] == usd
    [dead] = read_jsonl(read(blob_service, containers["dead"], "preprocess/3/00000000000000000500-00000000000000000519.jsonl"))
    assert dead["input"]["record_id"] == "3:500" and base64.b64decode(dead["data_base64"]) == lines[0]

    # The retry policy re-runs the same batch: same key, overwritten.
    process_events(events)
    assert names_in(blob_service, containers["preprocess"], "preprocess/3/") == [result.output_key]


def test_event_hub_transient_failure_raises_for_the_retry_policy(blob_service: Any, containers: dict[str, str], stage_env: Any,
                                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline_azure.runtime import process_events

    from pipeline.runtime.errors import BatchFailedError

    monkeypatch.setenv("AzureWebJobsScriptRoot", str(write_flaky(tmp_path)))
    stage_env("flaky", "stream", "handlers/flaky.py:passthrough", containers["preprocess"], containers["dead"], FAIL_AT_TXN="t2")
    events = [EventHubEvent(json.dumps({"txn_id": f"t{i}"}).encode(), 10 + i) for i in range(4)]
    with pytest.raises(BatchFailedError, match="downstream is down"):
        process_events(events)
    assert names_in(blob_service, containers["preprocess"], "flaky/") == []  # nothing partial: the retry re-runs the whole batch


def test_blob_created_scores_the_blob_with_the_model_from_the_artifacts_container(blob_service: Any, containers: dict[str, str],
                                                                                 stage_env: Any) -> None:
    from pipeline_azure.runtime import process_blob_created

    features = [{"txn_id": f"t{i}", "card_id": "c9", "timestamp": "2026-11-01T23:30:00+00:00", "amount": 900.0, "merchant_category": "6011",
                 "amount_log": 6.8, "is_foreign": 1, "is_night": 1, "card_present": 0, "velocity_1h": 8} for i in range(4)]
    name = "preprocess/3/00000000000000000500-00000000000000000519.jsonl"
    uploaded = blob_service.get_blob_client(containers["preprocess"], name).upload_blob(
        ("".join(json.dumps(f) + "\n" for f in features) + "{broken\n").encode(), overwrite=True)
    stage_env("score", "objects", "handlers/score.py:score", containers["score"], containers["dead"], source=(containers["preprocess"], "preprocess"),
              model_bucket=containers["artifacts"], model_key=MODEL_KEY)
    event = EventGridEvent("devstoreaccount1", containers["preprocess"], name, uploaded["etag"])
    result = process_blob_created(event)
    assert result is not None and result.output_key == "score/3/00000000000000000500-00000000000000000519.jsonl"
    rows = read_jsonl(read(blob_service, containers["score"], result.output_key))
    assert [r["txn_id"] for r in rows] == ["t0", "t1", "t2", "t3"] and all(r["flagged"] for r in rows)
    [dead] = read_jsonl(read(blob_service, containers["dead"], "score/3/00000000000000000500-00000000000000000519.jsonl"))
    assert dead["reason"] == "not JSON" and dead["input"]["generation"] == uploaded["etag"]

    # Event Grid redelivers: the output is overwritten, not duplicated; the stage's own outputs are ignored.
    process_blob_created(event)
    assert names_in(blob_service, containers["score"], "score/3/") == [result.output_key]
    assert process_blob_created(EventGridEvent("devstoreaccount1", containers["score"], result.output_key, "x")) is None


def test_timer_runs_the_schedule_stage_once_per_firing(blob_service: Any, containers: dict[str, str], stage_env: Any) -> None:
    from pipeline_azure.runtime import process_timer

    stage_env("calibrate", "schedule", "handlers/calibrate.py:calibrate", containers["calibrate"], containers["dead"],
              model_bucket=containers["artifacts"], model_key=MODEL_KEY, PIPELINE_SCHEDULE="0 0 6 * * *")
    # The host fired 3 minutes late (or this is a retry): the run is still named by its scheduled occurrence.
    fired = datetime(2026, 11, 2, 6, 3, 7, 250000, tzinfo=UTC)
    result = process_timer(None, now=fired)
    assert result.output_key == "calibrate/tick/20261102T060000Z.jsonl"
    [row] = read_jsonl(read(blob_service, containers["calibrate"], result.output_key))
    assert row["model"] == "fraud-logreg"


def test_build_app_registers_one_function_with_the_stage_trigger(stage_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("azure.functions")
    from pipeline_azure.runtime import build_app

    for trigger, binding in (("stream", "eventHubTrigger"), ("objects", "queueTrigger"), ("schedule", "timerTrigger"), ("http", "httpTrigger")):
        monkeypatch.setenv("PIPELINE_TRIGGER", trigger)
        [function] = build_app().get_functions()
        assert function.get_function_name() == "stage"
        assert function.get_trigger().get_binding_name() == binding
        if trigger == "objects":  # the queue and the identity-based connection the deployer configures (object_queue)
            from pipeline_azure import object_queue

            queue = function.get_trigger().get_dict_repr()
            assert queue["queueName"] == f"%{object_queue.QUEUE_SETTING}%" and queue["connection"] == object_queue.CONNECTION


class RetryContext:
    """azure.functions.RetryContext: retry_count counts attempts from 0 up to max_retry_count."""

    def __init__(self, retry_count: int, max_retry_count: int) -> None:
        self.retry_count, self.max_retry_count = retry_count, max_retry_count


class InvocationContext:
    def __init__(self, retry_count: int, max_retry_count: int) -> None:
        self.retry_context = RetryContext(retry_count, max_retry_count)


def test_event_hub_batch_is_dead_lettered_on_the_last_retry(blob_service: Any, containers: dict[str, str], stage_env: Any,
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Event Hubs host checkpoints past a batch once the retry policy gives up: the last attempt must keep it."""
    from pipeline_azure.runtime import process_events

    from pipeline.runtime.errors import BatchFailedError

    monkeypatch.setenv("AzureWebJobsScriptRoot", str(write_flaky(tmp_path)))
    stage_env("flaky", "stream", "handlers/flaky.py:passthrough", containers["preprocess"], containers["dead"], FAIL_AT_TXN="t2")
    meta = {"PartitionContext": {"PartitionId": "1"}}
    events = [EventHubEvent(json.dumps({"txn_id": f"t{i}"}).encode(), 40 + i, metadata=meta if i == 0 else None) for i in range(4)]
    for attempt in range(3):  # attempts 0..2 of max 3: raise so the policy retries
        with pytest.raises(BatchFailedError):
            process_events(events, InvocationContext(attempt, 3))
    assert names_in(blob_service, containers["dead"], "flaky/1/") == []
    result = process_events(events, InvocationContext(3, 3))  # the last attempt: dead-letter, do not raise
    assert result is not None and result.dead_letters == 4
    key = "flaky/1/00000000000000000040-00000000000000000043.jsonl"
    dead = read_jsonl(read(blob_service, containers["dead"], key))
    assert [d["reason"] for d in dead] == ["retries exhausted"] * 4
    assert [json.loads(base64.b64decode(d["data_base64"]))["txn_id"] for d in dead] == ["t0", "t1", "t2", "t3"]
    assert dead[0]["input"]["record_id"] == "1:40" and "downstream is down" in json.dumps(dead[0]["error"])


def test_uploaded_gzip_file_is_processed_from_its_blob_created_event(blob_service: Any, containers: dict[str, str], stage_env: Any,
                                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip

    from pipeline_azure.runtime import process_blob_created

    if not blob_service.get_container_client("in-uploads").exists():
        blob_service.create_container("in-uploads")
    monkeypatch.setenv("AzureWebJobsScriptRoot", str(write_flaky(tmp_path)))
    stage_env("ingest", "objects", "handlers/flaky.py:copy_rows", containers["preprocess"], containers["dead"], source=("in-uploads", "uploads"))
    body = gzip.compress(b'{"txn_id": "u1"}\n{"txn_id": "u2"}\n')
    name = "uploads/2026/11/01/batch-7.jsonl.gz"
    uploaded = blob_service.get_blob_client("in-uploads", name).upload_blob(body, overwrite=True)
    result = process_blob_created(EventGridEvent("devstoreaccount1", "in-uploads", name, uploaded["etag"]))
    assert result is not None and result.output_key == "ingest/2026/11/01/batch-7.jsonl"
    assert [r["txn_id"] for r in read_jsonl(read(blob_service, containers["preprocess"], result.output_key))] == ["u1", "u2"]


def test_blob_store_lists_a_prefix_with_modification_times(blob_service: Any, containers: dict[str, str]) -> None:
    from pipeline_azure.runtime import BlobStore

    store = BlobStore(client=blob_service)
    for name in ("acc/a.jsonl", "acc/b.jsonl", "other/c.jsonl"):
        store.put(containers["preprocess"], name, b"{}\n")
    listed = dict(store.list(containers["preprocess"], "acc/"))
    assert sorted(listed) == ["acc/a.jsonl", "acc/b.jsonl"]
    assert all(abs(modified - datetime.now(UTC).timestamp()) < 600 for modified in listed.values())


def test_window_replay_on_blob_storage_with_etag_conditions(blob_service: Any, containers: dict[str, str]) -> None:
    """Out-of-order, duplicate, late, empty and concurrent runs over a window, with Blob If-Match / If-None-Match."""
    import uuid

    from pipeline_azure.runtime import BlobStore
    from window_scenario import replay

    source, own = f"src-{uuid.uuid4().hex[:10]}", f"own-{uuid.uuid4().hex[:10]}"
    for name in (source, own):
        blob_service.create_container(name)
    replay(BlobStore(client=blob_service), source, own, containers["dead"], lambda bucket, prefix: names_in(blob_service, bucket, prefix))


def test_blob_conditional_writes_lose_to_a_newer_etag(blob_service: Any, containers: dict[str, str]) -> None:
    from pipeline_azure.runtime import BlobStore

    from pipeline.runtime.store import PreconditionFailed

    store = BlobStore(client=blob_service)
    assert store.read_versioned(containers["calibrate"], "_state/w/lease.json") is None
    first = store.put_if(containers["calibrate"], "_state/w/lease.json", b"one", None)
    with pytest.raises(PreconditionFailed):
        store.put_if(containers["calibrate"], "_state/w/lease.json", b"again", None)  # overwrite=False: 409 BlobAlreadyExists
    second = store.put_if(containers["calibrate"], "_state/w/lease.json", b"two", first)
    with pytest.raises(PreconditionFailed):
        store.put_if(containers["calibrate"], "_state/w/lease.json", b"stale", first)  # If-Match with the old ETag: 412
    assert store.read_versioned(containers["calibrate"], "_state/w/lease.json") == (b"two", second)


def test_timer_and_http_runs_over_the_window(window_clock_ahead: float, blob_service: Any, containers: dict[str, str], stage_env: Any,
                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A timer occurrence is the cut-off (a retry of it does nothing once it committed); an HTTP stage with `from`
    runs over the window on an empty POST and answers 409 with Retry-After while another run holds the lease."""
    func = pytest.importorskip("azure.functions")
    from pipeline_azure.runtime import _http_stage, process_timer

    for name in ("daily", "src"):
        if not blob_service.get_container_client(name).exists():
            blob_service.create_container(name)
    blob_service.get_container_client("src").upload_blob("score/3/1-2.jsonl", b'{"txn_id": "a"}\n{"txn_id": "b"}\n', overwrite=True)
    monkeypatch.setenv("AzureWebJobsScriptRoot", str(write_flaky(tmp_path)))
    window_env = {"PIPELINE_STATE_BUCKET": "daily", "PIPELINE_WINDOW_LATENESS_S": "3600", "PIPELINE_TIMEOUT_S": "60"}
    stage_env("daily", "schedule", "handlers/flaky.py:copy_rows", "daily", containers["dead"], source=("src", "score"),
              PIPELINE_STATE_PREFIX="_state/daily/", PIPELINE_SCHEDULE="0 0 6 * * *", **window_env)
    later = datetime.now(UTC) + timedelta(days=1)
    outcome = process_timer(None, now=later)
    assert outcome.status == "ran" and outcome.result is not None and outcome.result.output_key == "daily/window/start.jsonl"  # type: ignore[union-attr]
    rows = read_jsonl(read(blob_service, "daily", "daily/window/start.jsonl"))
    assert sorted(r["txn_id"] for r in rows) == ["a", "b"] and all(r["copied"] for r in rows)
    assert process_timer(None, now=later + timedelta(minutes=3)).status == "late"  # type: ignore[union-attr]  # the same occurrence, retried
    assert process_timer(None, now=later + timedelta(days=1)).status == "empty"  # type: ignore[union-attr]

    stage_env("api", "http", "handlers/flaky.py:copy_rows", "daily", containers["dead"], source=("src", "score"),
              PIPELINE_STATE_PREFIX="_state/api/", **window_env)

    def post(body: bytes) -> Any:
        return _http_stage(func.HttpRequest("POST", "https://app.azurewebsites.net/api/api", body=body, headers={}))

    response = post(b"")
    answer = json.loads(response.get_body())
    assert response.status_code == 200 and answer["output"] == "api/window/start.jsonl" and answer["rows"] == 2, answer
    assert post(b'[{"txn_id": "c"}]').status_code == 400
    blob_service.get_blob_client("daily", "_state/api/lease.json").upload_blob(
        json.dumps({"owner": "other", "run": "r", "expires": datetime.now(UTC).timestamp() + window_clock_ahead + 30}), overwrite=True)
    busy = post(b"{}")
    assert busy.status_code == 409 and 1 <= int(busy.headers["Retry-After"]) <= 30


def test_http_request_rows_in_rows_out(blob_service: Any, containers: dict[str, str], stage_env: Any,
                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline_azure.runtime import process_http

    monkeypatch.setenv("AzureWebJobsScriptRoot", str(write_flaky(tmp_path)))
    stage_env("lookup", "http", "handlers/flaky.py:copy_rows", "", containers["dead"])
    monkeypatch.delenv("PIPELINE_OUTPUT_BUCKET")
    status, body, _ = process_http(b'[{"txn_id": "h1"}, {"txn_id": "h2"}]', "application/json")
    assert status == 200 and [r["txn_id"] for r in body["rows"]] == ["h1", "h2"] and body["output"] is None
    status, body, _ = process_http(b'{"txn_id": "h3"}\n', "application/x-ndjson")
    assert status == 200 and body["rows"][0]["copied"] is True
    assert process_http(b"not json", "application/json")[0] == 400


def test_http_function_answers_through_azure_functions(stage_env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       blob_service: Any, containers: dict[str, str]) -> None:
    func = pytest.importorskip("azure.functions")
    from pipeline_azure.runtime import _http_stage

    monkeypatch.setenv("AzureWebJobsScriptRoot", str(write_flaky(tmp_path)))
    stage_env("lookup", "http", "handlers/flaky.py:copy_rows", "", containers["dead"])
    monkeypatch.delenv("PIPELINE_OUTPUT_BUCKET")
    request = func.HttpRequest("POST", "https://app.azurewebsites.net/api/lookup", body=b'[{"id": 1}]',
                               headers={"content-type": "application/json"})
    response = _http_stage(request)
    assert response.status_code == 200 and json.loads(response.get_body())["rows"] == [{"id": 1, "copied": True}]


def test_runtime_log_lines_reach_python_logging_and_match_the_dead_letter_alert(blob_service: Any, containers: dict[str, str],
                                                                                stage_env: Any, caplog: pytest.LogCaptureFixture) -> None:
    """The alert query must match what the runtime really logs when it dead-letters (issue: it looked for text never written)."""
    from pipeline_azure.observability import dead_letter_line, dead_letter_query
    from pipeline_azure.runtime import LOGGER_NAME, process_events

    stage_env("preprocess", "stream", "handlers/preprocess.py:preprocess", containers["preprocess"], containers["dead"], CURRENCY="USD")
    lines = example_lines(5)  # line 1 is malformed: dead-lettered
    with caplog.at_level("INFO", logger=LOGGER_NAME):
        process_events([EventHubEvent(line, 900 + i, metadata={"PartitionContext": {"PartitionId": "0"}} if i == 0 else None)
                        for i, line in enumerate(lines)])
        process_events([EventHubEvent(lines[1], 950, metadata={"PartitionContext": {"PartitionId": "0"}})])  # a clean batch
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER_NAME]
    matched = [m for m in messages if dead_letter_line(m)]
    assert len(matched) == 1 and json.loads(matched[0])["dead_letters"] == 1
    assert not any(dead_letter_line(m) for m in messages if m not in matched)  # the clean batch's "batch done" does not alert
    query = dead_letter_query("func-x")
    assert "Message contains '\"dead_letters\"'" in query and "toint(entry.dead_letters) > 0" in query


def test_scheduled_time_is_the_latest_occurrence() -> None:
    from pipeline_azure.runtime import scheduled_time

    now = datetime(2026, 11, 4, 10, 7, 30, tzinfo=UTC)  # a Wednesday
    assert scheduled_time("0 */15 * * * *", now) == datetime(2026, 11, 4, 10, 0, tzinfo=UTC)
    assert scheduled_time("0 0 6 * * *", now) == datetime(2026, 11, 4, 6, 0, tzinfo=UTC)
    assert scheduled_time("0 30 2 * * 1,2,3,4,5", datetime(2026, 11, 8, 12, 0, tzinfo=UTC)) == datetime(2026, 11, 6, 2, 30, tzinfo=UTC)
    assert scheduled_time("0 0 0 * * 0", now) == datetime(2026, 11, 1, 0, 0, tzinfo=UTC)  # Sunday


# ---- object stages: Event Grid -> Storage queue -> queue trigger ----------------------------------------
def event_grid_message(event: EventGridEvent, encode: bool = True) -> str:
    """The queue message Event Grid writes for a BlobCreated event (EventGridSchema), Base64 as Event Grid writes it."""
    body = json.dumps({"id": event.id, "topic": event.topic, "subject": event.subject, "eventType": event.event_type,
                       "eventTime": event.event_time.isoformat(), "data": event.get_json(), "dataVersion": "", "metadataVersion": "1"})
    return base64.b64encode(body.encode()).decode() if encode else body


def receive(queue: Any) -> Any:
    """The next message as the queue trigger hands it to Python: the worker's QueueMessage with Azurite's metadata."""
    from azure.functions.queue import QueueMessage

    [message] = list(queue.receive_messages(max_messages=1, visibility_timeout=30))
    return message, QueueMessage(id=message.id, body=message.content, dequeue_count=message.dequeue_count,
                                      insertion_time=message.inserted_on, pop_receipt=message.pop_receipt)


@pytest.fixture
def object_queue(queue_service: Any) -> Any:
    queue = queue_service.get_queue_client("objects")
    try:
        queue.create_queue()
    except Exception:
        queue.clear_messages()
    return queue


def test_queued_blob_created_event_scores_the_blob(blob_service: Any, containers: dict[str, str], stage_env: Any, object_queue: Any) -> None:
    pytest.importorskip("azure.functions")
    from pipeline_azure.runtime import process_queue_message

    name = "preprocess/1/00000000000000000100-00000000000000000101.jsonl"
    features = [{"txn_id": f"q{i}", "card_id": "c1", "timestamp": "2026-11-01T12:00:00+00:00", "amount": 15.0, "merchant_category": "5411",
                 "amount_log": 2.7, "is_foreign": 0, "is_night": 0, "card_present": 1, "velocity_1h": 1} for i in range(2)]
    uploaded = blob_service.get_blob_client(containers["preprocess"], name).upload_blob("".join(json.dumps(f) + "\n" for f in features).encode(),
                                                                                       overwrite=True)
    stage_env("score", "objects", "handlers/score.py:score", containers["score"], containers["dead"], source=(containers["preprocess"], "preprocess"),
              model_bucket=containers["artifacts"], model_key=MODEL_KEY, PIPELINE_MAX_DEQUEUE_COUNT="4")
    event = EventGridEvent("devstoreaccount1", containers["preprocess"], name, uploaded["etag"])
    for encode in (True, False):  # Event Grid writes Base64; plain JSON is read too (messageEncoding none)
        object_queue.send_message(event_grid_message(event, encode))
        raw, message = receive(object_queue)
        assert message.dequeue_count == 1
        result = process_queue_message(message)
        object_queue.delete_message(raw)  # the trigger completes the message when the function returns
        assert result is not None and result.output_key == "score/1/00000000000000000100-00000000000000000101.jsonl"
        assert [r["txn_id"] for r in read_jsonl(read(blob_service, containers["score"], result.output_key))] == ["q0", "q1"]


def test_failing_object_is_retried_then_dead_lettered_on_the_last_dequeue(blob_service: Any, containers: dict[str, str], stage_env: Any,
                                                                         object_queue: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """maxDequeueCount 3: dequeues 1 and 2 raise (the host makes the message visible again); dequeue 3 dead-letters the
    object and completes, so nothing reaches the poison queue."""
    pytest.importorskip("azure.functions")
    from pipeline_azure.runtime import process_queue_message

    from pipeline.runtime.errors import BatchFailedError

    monkeypatch.setenv("AzureWebJobsScriptRoot", str(write_flaky(tmp_path)))
    stage_env("flaky", "objects", "handlers/flaky.py:broken_setup", containers["score"], containers["dead"], source=(containers["preprocess"], "preprocess"),
              PIPELINE_MAX_DEQUEUE_COUNT="3")
    name = "preprocess/2/00000000000000000007-00000000000000000009.jsonl"
    uploaded = blob_service.get_blob_client(containers["preprocess"], name).upload_blob(
        b"".join(json.dumps({"txn_id": f"t{i}"}).encode() + b"\n" for i in range(4)), overwrite=True)
    object_queue.send_message(event_grid_message(EventGridEvent("devstoreaccount1", containers["preprocess"], name, uploaded["etag"])))
    key = "flaky/2/00000000000000000007-00000000000000000009.jsonl"
    for attempt in (1, 2):
        raw, message = receive(object_queue)
        assert message.dequeue_count == attempt
        with pytest.raises(BatchFailedError, match="model store unreachable"):
            process_queue_message(message)
        object_queue.update_message(raw, visibility_timeout=0)  # the host releases a failed message (visibilityTimeout)
        assert names_in(blob_service, containers["dead"], "flaky/2/") == []
    raw, message = receive(object_queue)
    assert message.dequeue_count == 3
    result = process_queue_message(message)
    object_queue.delete_message(raw)
    assert result is not None and result.dead_letters == 1
    [dead] = read_jsonl(read(blob_service, containers["dead"], key))
    assert dead["reason"] == "retries exhausted" and "model store unreachable" in json.dumps(dead["error"])
    assert dead["input"] == {"bucket": containers["preprocess"], "key": name, "generation": uploaded["etag"]}
    assert names_in(blob_service, containers["score"], "flaky/2/") == []
    assert list(object_queue.peek_messages()) == []


def test_old_or_unreadable_queue_messages_are_dead_lettered(blob_service: Any, containers: dict[str, str], stage_env: Any, object_queue: Any,
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("azure.functions")
    from pipeline_azure.runtime import last_dequeue, process_queue_message

    monkeypatch.setenv("AzureWebJobsScriptRoot", str(write_flaky(tmp_path)))
    stage_env("flaky", "objects", "handlers/flaky.py:broken_setup", containers["score"], containers["dead"], source=(containers["preprocess"], "preprocess"),
              PIPELINE_MAX_DEQUEUE_COUNT="5", PIPELINE_MAX_EVENT_AGE_S="600")
    name = "preprocess/4/00000000000000000001-00000000000000000001.jsonl"
    uploaded = blob_service.get_blob_client(containers["preprocess"], name).upload_blob(b'{"txn_id": "t0"}\n', overwrite=True)
    object_queue.send_message(event_grid_message(EventGridEvent("devstoreaccount1", containers["preprocess"], name, uploaded["etag"])))
    raw, message = receive(object_queue)
    # queued longer ago than max_event_age_s: the first failure is the last attempt
    later = message.insertion_time + timedelta(seconds=601)
    assert not last_dequeue(message) and last_dequeue(message, now=later)
    result = process_queue_message(message, now=later)
    object_queue.delete_message(raw)
    assert result is not None and result.dead_letters == 1
    assert names_in(blob_service, containers["dead"], "flaky/4/") == ["flaky/4/00000000000000000001-00000000000000000001.jsonl"]

    object_queue.send_message("not an event")
    raw, message = receive(object_queue)
    result = process_queue_message(message)  # never retried into the poison queue: it can never succeed
    assert result is not None and result.dead_letters == 1
    [dead] = [n for n in names_in(blob_service, containers["dead"], "flaky/unreadable/")]
    assert raw.id in dead
    [entry] = read_jsonl(read(blob_service, containers["dead"], dead))
    assert base64.b64decode(entry["data_base64"]) == b"not an event"


def test_runtime_names_match_the_deployers() -> None:
    from pipeline_azure import object_queue, runtime

    assert runtime.OBJECT_QUEUE_CONNECTION == object_queue.CONNECTION
    assert runtime.OBJECT_QUEUE_SETTING == object_queue.QUEUE_SETTING and runtime.DEQUEUE_SETTING == object_queue.DEQUEUE_SETTING


# ---- the raw archiver function (pipeline_azure.archive) --------------------------------------------
@pytest.fixture
def archiver_env(blob_service: Any, stage_env: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The app settings the deployer gives the archiver (pipeline_azure.archiver_resources), a fresh archiver per test."""
    from pipeline_azure import archive

    stage_env("unused", "stream", "unused.py:f", "unused")  # clears every PIPELINE_* setting of earlier tests
    names = {"raw": "raw", "dead": "dead-letter"}
    for name in names.values():
        if not blob_service.get_container_client(name).exists():
            blob_service.create_container(name)
    for key, value in {"PIPELINE_NAME": "txn-scoring", "PIPELINE_STACK": "test", "PIPELINE_RAW_BUCKET": names["raw"],
                       "PIPELINE_RAW_PREFIX": "raw/", "PIPELINE_DEAD_LETTER_BUCKET": names["dead"], "PIPELINE_DEAD_LETTER_PREFIX": "raw/"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(archive, "_archiver", None)
    return names


def archiver_events(bodies: list[bytes], partition: str, first: int) -> list[EventHubEvent]:
    """A cardinality-many batch: the partition context is in the trigger metadata (on events[0])."""
    return [EventHubEvent(body, first + i, f"card-{i}", {"PartitionContext": {"PartitionId": partition, "EventHubName": "records"}} if i == 0 else None)
            for i, body in enumerate(bodies)]


def test_raw_archiver_writes_one_gzip_json_lines_blob_per_batch(blob_service: Any, archiver_env: dict[str, str]) -> None:
    import gzip

    from pipeline_azure.archive import archive_events

    bodies = example_lines(20)  # line 1 is not JSON: the archive keeps every event as it came
    result = archive_events(archiver_events(bodies, "3", 500))
    key = "raw/3/00000000000000000500-00000000000000000519.jsonl.gz"
    assert result is not None and result.output_key == key and result.rows == 20
    blob = blob_service.get_blob_client(archiver_env["raw"], key)
    data: bytes = blob.download_blob().readall()
    assert blob.get_blob_properties().content_settings.content_type == "application/gzip"
    # the local runner's raw format (and the AWS archiver's): every record followed by a newline, gzip without a timestamp
    assert gzip.decompress(data) == b"\n".join(bodies) + b"\n"
    assert data[4:8] == b"\x00\x00\x00\x00"  # gzip MTIME 0: the same batch always gives the same bytes


def test_raw_archiver_redelivery_overwrites_its_own_blob_with_the_same_bytes(blob_service: Any, archiver_env: dict[str, str]) -> None:
    from pipeline_azure.archive import archive_events

    bodies = [json.dumps({"txn_id": f"t{i}"}).encode() for i in range(5)]
    events = archiver_events(bodies, "0", 7)
    first = archive_events(events)
    before = read(blob_service, archiver_env["raw"], "raw/0/00000000000000000007-00000000000000000011.jsonl.gz")
    second = archive_events(events)  # the retry policy, or a restart before the checkpoint, delivers the same batch again
    assert first is not None and second is not None and first.output_key == second.output_key
    assert names_in(blob_service, archiver_env["raw"], "raw/0/") == ["raw/0/00000000000000000007-00000000000000000011.jsonl.gz"]
    assert read(blob_service, archiver_env["raw"], first.output_key) == before
    # a later batch of the same partition is a blob of its own, named by its own sequence range
    archive_events(archiver_events(bodies[:2], "0", 12))
    assert names_in(blob_service, archiver_env["raw"], "raw/0/")[-1] == "raw/0/00000000000000000012-00000000000000000013.jsonl.gz"


def test_raw_archiver_raises_for_the_retry_policy_and_dead_letters_on_the_last_attempt(
        blob_service: Any, archiver_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from pipeline_azure.archive import archive_events
    from pipeline_azure.observability import dead_letter_line
    from pipeline_azure.runtime import LOGGER_NAME

    monkeypatch.setenv("PIPELINE_RAW_BUCKET", "no-such-container")  # every write fails (404), like a lost role assignment
    bodies = [json.dumps({"txn_id": f"t{i}"}).encode() for i in range(4)]
    events = archiver_events(bodies, "1", 40)
    from azure.core.exceptions import ResourceNotFoundError

    for attempt in range(3):  # attempts before the last: raise, so the policy runs the same batch again (no checkpoint yet)
        with pytest.raises(ResourceNotFoundError):
            archive_events(events, InvocationContext(attempt, 3))
    assert names_in(blob_service, archiver_env["dead"], "raw/1/") == []
    with caplog.at_level("INFO", logger=LOGGER_NAME):
        result = archive_events(events, InvocationContext(3, 3))  # the last attempt: dead-letter the batch, return
    assert result is not None and result.dead_letters == 4
    dead = read_jsonl(read(blob_service, archiver_env["dead"], "raw/1/00000000000000000040-00000000000000000043.jsonl"))
    assert [d["reason"] for d in dead] == ["retries exhausted"] * 4 and {d["stage"] for d in dead} == {"raw-archive"}
    assert [base64.b64decode(d["data_base64"]) for d in dead] == bodies
    assert dead[0]["input"]["record_id"] == "1:40" and "ResourceNotFound" in json.dumps(dead[0]["error"])
    # the line the archiver's dead-letter alert selects (observability.dead_letter_query)
    assert [json.loads(m)["dead_letters"] for m in (r.getMessage() for r in caplog.records if r.name == LOGGER_NAME) if dead_letter_line(m)] == [4]


def test_raw_archiver_app_binds_its_event_hubs_trigger_with_a_retry_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("azure.functions")
    from pipeline_azure.archive import build_app

    monkeypatch.setenv("PIPELINE_MAX_RETRIES", "10")
    [function] = build_app().get_functions()
    [trigger] = json.loads(function.get_function_json())["bindings"]
    assert function.get_function_name() == "archive" and trigger["type"] == "eventHubTrigger"
    assert trigger["cardinality"].lower() == "many" and trigger["consumerGroup"] == "%PIPELINE_CONSUMER_GROUP%"
    assert trigger["eventHubName"] == "%PIPELINE_EVENT_HUB%" and trigger["connection"] == "EventHubConnection"
    retry = function.get_setting("retry_policy").get_dict_repr()
    assert retry["strategy"] == "exponential_backoff" and retry["max_retry_count"] == "10"


def worker_would_load(function: Any) -> None:
    """The checks the Functions Python worker runs before it loads a function (Registry.validate_function_params and
    is_context_required in azure-functions-python-worker): `context` annotated as azure.functions.Context, every
    binding's parameter annotated with a type its converter accepts, and an HTTP function's return type."""
    import typing

    from azure.functions import meta

    user = function.get_user_function()
    hints = typing.get_type_hints(user)
    if "context" in hints:
        assert isinstance(hints["context"], type) and hints["context"].__name__ == "Context", hints["context"]
    for binding in json.loads(function.get_function_json())["bindings"]:
        converter = meta._ConverterMeta.get(binding["type"])
        if binding["name"] == "$return":
            assert converter.check_output_type_annotation(hints["return"]), (binding, hints.get("return"))
        else:
            assert converter.check_input_type_annotation(hints[binding["name"]]), (binding, hints.get(binding["name"]))


def test_the_python_worker_accepts_every_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    """Annotations the worker cannot match (typing.Any, list[...]) make it refuse to load the function at all."""
    pytest.importorskip("azure.functions")
    from pipeline_azure import archive, runtime

    for trigger in ("stream", "objects", "schedule", "http"):
        monkeypatch.setenv("PIPELINE_TRIGGER", trigger)
        [function] = runtime.build_app().get_functions()
        worker_would_load(function)
    [function] = archive.build_app().get_functions()
    worker_would_load(function)
