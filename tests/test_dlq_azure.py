"""`pipeline dlq` and `pipeline status` on Azure against Azurite (Blob and Queue), through the console script with
`--outputs` and AZURE_STORAGE_CONNECTION_STRING; the dead letters are the ones the real Functions runtime writes, the
poison message and Event Grid's dead-letter blob are in their documented shapes.

Azurite is one storage account, so the stage's host-storage queues and the data account's containers share it here;
in Azure they are separate accounts (the names the operations derive for them are checked on their own)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from dlq_project import TOKEN, answer, cli, fix, ids, jsonl, line, make_project, set_stage, write_outputs

pytest_plugins = ["conftest_emulators"]

ACCOUNT = "daytwodat1a2b3c4d"  # how the backend names a data account (pipeline 'daytwo', random suffix 1a2b3c4d)


class HubEvent:
    """What azure.functions.EventHubEvent exposes (cardinality many: the partition on the first event's metadata)."""

    def __init__(self, record: dict[str, Any], sequence: int) -> None:
        self._body, self.sequence_number, self.partition_key = line(record), sequence, f"k{record['id'] % 3}"
        self.enqueued_time = datetime(2026, 11, 1, 10, 0, sequence % 60, tzinfo=UTC)
        self.metadata = {"PartitionContext": {"PartitionId": "2"}}

    def get_body(self) -> bytes:
        return self._body


def blob_created(container: str, name: str) -> dict[str, Any]:
    """A BlobCreated event in EventGridSchema, as Event Grid writes it to the stage's queue."""
    return {"id": str(uuid.uuid4()), "topic": f"/subscriptions/0/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/{ACCOUNT}",
            "subject": f"/blobServices/default/containers/{container}/blobs/{name}", "eventType": "Microsoft.Storage.BlobCreated",
            "eventTime": "2026-11-01T10:00:05.0000000Z", "dataVersion": "", "metadataVersion": "1",
            "data": {"api": "PutBlob", "eTag": "0x8DC", "contentType": "application/x-ndjson", "blobType": "BlockBlob",
                     "url": f"https://{ACCOUNT}.blob.core.windows.net/{container}/{name}"}}


class Stack:
    def __init__(self, folder: Path, blobs: Any, queues: Any, connection: str) -> None:
        suffix = uuid.uuid4().hex[:6]
        self.folder, self.blobs, self.queues = folder, blobs, queues
        self.spec = make_project(folder)
        self.buckets = {"parse": f"out-parse-{suffix}", "enrich": f"out-enrich-{suffix}", "total": f"out-total-{suffix}",
                        "dead-letter": f"dead-letter-{suffix}"}
        for name in self.buckets.values():
            blobs.create_container(name)
        for name in ("objects", "objects-poison"):  # Azurite is one account: the stage's host-storage queues live beside the data
            queue = queues.get_queue_client(name)
            if not any(q.name == name for q in queues.list_queues(name_starts_with=name)):
                queue.create_queue()
            queue.clear_messages()
        self.outputs = write_outputs(folder, {"buckets": self.buckets, "dead_letters": dict.fromkeys(("parse", "enrich", "total"), self.buckets["dead-letter"]),
                                              "functions": {s: f"func-daytwo-dev-{s}-{suffix}" for s in ("parse", "enrich", "total")},
                                              "azure_data_account": ACCOUNT, "stream": "evhns/stream", "producers": {}})

    def names(self, key: str, prefix: str = "") -> list[str]:
        return sorted(b.name for b in self.blobs.get_container_client(self.buckets[key]).list_blobs(name_starts_with=prefix))

    def read(self, key: str, name: str) -> bytes:
        data: bytes = self.blobs.get_blob_client(self.buckets[key], name).download_blob().readall()
        return data

    def queue_texts(self, name: str) -> list[str]:
        return [m.content for m in self.queues.get_queue_client(name).peek_messages(max_messages=32)]


@pytest.fixture
def azure(azurite_connection_string: str, monkeypatch: pytest.MonkeyPatch, cli_env_vars: dict[str, str]) -> dict[str, str]:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite_connection_string)
    monkeypatch.setenv("PIPELINE_DATA_CONNECTION_STRING", azurite_connection_string)
    return {**cli_env_vars, "AZURE_STORAGE_CONNECTION_STRING": azurite_connection_string}


@pytest.fixture
def stack(tmp_path: Path, azure: dict[str, str], azurite_connection_string: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """A bad day on Azure: parse dead-lettered records 3 and 15, enrich dead-lettered row 5 and (on its last dequeue) the whole
    second output as a pointer; a message on the poison queue, and a BlobCreated event Event Grid dead-lettered."""
    from azure.storage.blob import BlobServiceClient
    from azure.storage.queue import QueueServiceClient
    from dlq_project import RECORDS
    from pipeline_azure.runtime import process_blob_created, process_events, queued_event

    built = Stack(tmp_path, BlobServiceClient.from_connection_string(azurite_connection_string),
                  QueueServiceClient.from_connection_string(azurite_connection_string), azurite_connection_string)
    with monkeypatch.context() as patch:
        set_stage(patch, built.spec, "parse", built.buckets)
        process_events([HubEvent(r, 100 + r["id"]) for r in RECORDS if r["id"] < 10])
        process_events([HubEvent(r, 100 + r["id"]) for r in RECORDS if r["id"] >= 10])
    first, second = built.names("parse", "parse/")
    built.first, built.second = first, second  # type: ignore[attr-defined]
    with monkeypatch.context() as patch:
        set_stage(patch, built.spec, "enrich", built.buckets)
        process_blob_created(queued_event(json.dumps(blob_created(built.buckets["parse"], first))), last_attempt=True)
        process_blob_created(queued_event(json.dumps(blob_created(built.buckets["parse"], second))), last_attempt=True)
    built.queues.get_queue_client("objects-poison").send_message(json.dumps(blob_created(built.buckets["parse"], first)))
    dead_event = {**blob_created(built.buckets["parse"], second), "deadLetterReason": "MaxDeliveryAttemptsExceeded", "deliveryAttempts": 30,
                  "lastDeliveryOutcome": "Forbidden", "lastHttpStatusCode": 403, "publishTime": "2026-11-01T10:00:05.1234567Z",
                  "lastDeliveryAttemptTime": "2026-11-02T10:00:05.7654321Z"}
    built.blobs.get_blob_client(built.buckets["dead-letter"], "ENRICH-OBJECTS/2026/11/2/10/6f1d2c3b-0000-4000-8000-000000000001.json") \
        .upload_blob(json.dumps([dead_event]).encode())
    yield built


def test_list_show_and_status_read_everything_azure_keeps(stack: Stack, azure: dict[str, str], pipeline_exe: str) -> None:
    where = ["--cloud", "azure", "--outputs", str(stack.outputs)]
    listed = answer(cli(azure, pipeline_exe, stack.folder, "dlq", "list", *where, "--format", "json"))
    groups = {(g["stage"], g["kind"], g["reason"]): g for g in listed["groups"]}
    assert groups[("parse", "record", "handler raised")]["count"] == 2
    assert groups[("enrich", "record", "handler raised")]["error"] == {"type": "KeyError", "message": "'unlucky'"}
    assert groups[("enrich", "record", "retries exhausted")]["error"]["type"] == "ConnectionError"
    assert groups[("enrich", "event", "moved to the poison queue by the Functions host")]["kept"] == f"poison queue objects-poison of {_host()}"
    grid = groups[("enrich", "event", "MaxDeliveryAttemptsExceeded")]
    assert grid["first"] == "2026-11-02T10:00:05Z" and grid["error"]["type"] == "Forbidden" and "ENRICH-OBJECTS" in grid["kept"]
    assert listed["total"] == 6
    assert len(stack.queue_texts("objects-poison")) == 1  # peeked, not taken

    letters = [json.loads(x) for x in cli(azure, pipeline_exe, stack.folder, "dlq", "show", *where, "--format", "jsonl").stdout.splitlines()]
    pointer = next(x for x in letters if x["reason"] == "retries exhausted")
    assert pointer["input"] == {"bucket": stack.buckets["parse"], "key": stack.second, "generation": "0x8DC"} and pointer["attempts"] == 2  # type: ignore[attr-defined]
    poisoned = next(x for x in letters if x["kind"] == "event" and "poison" in x["reason"])
    assert poisoned["event"]["subject"].endswith(stack.first) and poisoned["input"]["key"] == stack.first  # type: ignore[attr-defined]
    assert TOKEN not in json.dumps(letters) and all(x["record"]["password"] == "***" for x in letters if x["stage"] == "parse")

    status = answer(cli(azure, pipeline_exe, stack.folder, "status", *where, "--format", "json"))
    stages = {s["stage"]: s for s in status["stages"]}
    assert stages["enrich"]["dead_letters"]["queued_events"] == 2 and stages["enrich"]["dead_letters"]["records"] == 2
    assert stages["total"]["window"]["waiting"]["objects"] == 2


def test_replay_moves_events_back_and_replays_records_exactly_once(stack: Stack, azure: dict[str, str], pipeline_exe: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline_azure.runtime import process_queue_message

    fix(stack.folder)
    result = cli(azure, pipeline_exe, stack.folder, "dlq", "replay", "--cloud", "azure", "--outputs", str(stack.outputs), "--yes", "--format", "json")
    body = json.loads(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [r["status"] for r in body["results"]] == ["replayed"] * 4 and [r["ok"] for r in body["redriven"]] == [True, True]
    assert stack.names("dead-letter") == [] and stack.queue_texts("objects-poison") == []
    assert len(stack.queue_texts("objects")) == 2  # the poison message and the dead-lettered event, back on the stage's queue
    assert stack.second.removeprefix("parse/") in " ".join(stack.names("enrich", "enrich/"))  # type: ignore[attr-defined]  # at its own key

    everything_but_the_replayed_parse_rows = {i: 1 for i in range(20) if i not in (3, 15)}
    assert ids([r for n in stack.names("enrich", "enrich/") for r in jsonl(stack.read("enrich", n))]) == everything_but_the_replayed_parse_rows
    assert ids([r for n in stack.names("parse", "parse/") for r in jsonl(stack.read("parse", n))]) == {i: 1 for i in range(20)}

    # The queue trigger runs what went back on the queue: the same objects again, at the same keys: no row twice.
    class Message:
        def __init__(self, content: str) -> None:
            self.content, self.id, self.dequeue_count, self.insertion_time = content, "m", 1, None

        def get_body(self) -> bytes:
            return self.content.encode()

    with monkeypatch.context() as patch:
        set_stage(patch, stack.spec, "enrich", stack.buckets)
        for text in stack.queue_texts("objects"):
            process_queue_message(Message(text))
    assert ids([r for n in stack.names("enrich", "enrich/") for r in jsonl(stack.read("enrich", n))]) == everything_but_the_replayed_parse_rows


def test_host_account_names_follow_the_data_account(tmp_path: Path) -> None:
    from pipeline_azure import naming, object_queue
    from pipeline_azure.operations import POISON, QUEUE, AzureOperations

    from pipeline.operations.protocol import OutputsError
    from pipeline.spec.load import load_spec

    assert (QUEUE, POISON) == (object_queue.QUEUE_NAME, object_queue.POISON_QUEUE_NAME)
    loaded = load_spec(make_project(tmp_path), None)
    enrich = loaded.spec.stage("enrich")
    ops = AzureOperations(loaded.spec, loaded.stack, loaded.base_dir, {"azure_data_account": ACCOUNT})
    assert ops.host_account(enrich) == naming.host_account_name("daytwo", "enrich", "1a2b3c4d")
    other = AzureOperations(loaded.spec, loaded.stack, loaded.base_dir, {"azure_data_account": "someoneelsesaccount"})
    with pytest.raises(OutputsError, match="is not named as this version names it"):
        other.host_account(enrich)


def _host() -> str:
    from pipeline_azure import naming

    return naming.host_account_name("daytwo", "enrich", "1a2b3c4d")
