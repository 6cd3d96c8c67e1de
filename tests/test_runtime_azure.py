"""The Azure Functions entry points against Azurite (Blob), driven by event-shaped objects
(azure.functions' EventHubEvent / EventGridEvent attributes) in Azure's documented shapes."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
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
              model_bucket=containers["artifacts"], model_key=MODEL_KEY)
    fired = datetime(2026, 11, 2, 6, 0, 0, 250000, tzinfo=UTC)
    result = process_timer(None, now=fired)
    assert result.output_key == "calibrate/tick/20261102T060000Z.jsonl"
    [row] = read_jsonl(read(blob_service, containers["calibrate"], result.output_key))
    assert row["model"] == "fraud-logreg"


def test_build_app_registers_one_function_with_the_stage_trigger(stage_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("azure.functions")
    from pipeline_azure.runtime import build_app

    for trigger, binding in (("stream", "eventHubTrigger"), ("objects", "eventGridTrigger"), ("schedule", "timerTrigger")):
        monkeypatch.setenv("PIPELINE_TRIGGER", trigger)
        [function] = build_app().get_functions()
        assert function.get_function_name() == "stage"
        assert function.get_trigger().get_binding_name() == binding
