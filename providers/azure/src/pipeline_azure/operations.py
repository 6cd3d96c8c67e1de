"""Azure day two: a deployed stack's dead letters and windows, read and redriven with azure-storage-blob and
azure-storage-queue as the operator (DefaultAzureCredential: `az login`, AZURE_* variables, a managed identity).

What this pipeline keeps on Azure (see triggers.py, object_queue.py):

* the dead-letter container (`buckets.dead-letter`, `<stage>/...`) in the data account (`azure_data_account`): records the
  runtime dead-lettered, including an object stage's object (a pointer to it) on its last dequeue and a stream batch on
  its retry policy's last attempt; read, replayed and removed by the core through `store()`;
* an object stage's poison queue, `objects-poison` in the stage's own host-storage account (the Functions host moves a
  message there when an attempt never returned: a crash or a timeout on the last dequeue). Read with Peek Messages (no
  change at all; it shows at most 32 messages, the rest are counted), redriven by the queue trigger's own path: the
  message's text is sent back to the stage's `objects` queue (never expiring, like Event Grid's), then deleted from the
  poison queue (https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue-trigger#poison-messages);
* BlobCreated events Event Grid could not write to that queue, dead-lettered into the dead-letter container as blobs under
  the event subscription's name in upper case (`<STAGE>-OBJECTS/yyyy/m/d/h/<guid>.json`, each a JSON array of events with
  `deadLetterReason`, `deliveryAttempts`, `lastDeliveryOutcome`: https://learn.microsoft.com/azure/event-grid/manage-event-delivery).
  Redriven by writing each event to the stage's `objects` queue, as Event Grid would have, then removing it from the blob.

Non-HTTP apps have public network access disabled (functions.inbound), so nothing here calls a function: queued events go
back through the stage's queue, and records from the dead-letter container are replayed by the core with this checkout's
handler. `AZURE_STORAGE_CONNECTION_STRING`, when set, is used for every account instead (the Azurite emulator, tests).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.errors import PipelineError
from pipeline.operations.model import EVENT, DeadLetter, epoch
from pipeline.operations.protocol import Operations, OperationsStore, OutputsError, Redriven
from pipeline.spec.model import StageSpec
from pipeline_azure.credentials import DATA_ACCOUNT_OUTPUT
from pipeline_azure.runtime import BlobStore

CONNECTION_STRING_ENV = "AZURE_STORAGE_CONNECTION_STRING"
SUFFIX_ENV = "AZURE_STORAGE_ENDPOINT_SUFFIX"  # core.windows.net in the public cloud
QUEUE, POISON = "objects", "objects-poison"  # object_queue.QUEUE_NAME / POISON_QUEUE_NAME (that module imports Pulumi)
PEEK_LIMIT = 32  # Peek Messages returns at most 32 messages
REDRIVE_VISIBILITY_S = 300
DEAD_LETTER_FIELDS = ("deadLetterReason", "deliveryAttempts", "lastDeliveryOutcome", "lastHttpStatusCode", "publishTime",
                      "lastDeliveryAttemptTime", "deadletterReason")
BLOB_ROLES = "Storage Blob Data Reader on the data account to read (Storage Blob Data Contributor to replay)"
QUEUE_ROLES = ("Storage Queue Data Reader on the stage's host-storage account to read (Storage Queue Data Message Processor "
               "on its objects-poison queue and Storage Queue Data Message Sender on its objects queue to replay)")


class BlobOperationsStore(BlobStore):
    """The runtime's blob store, plus Delete Blob (one already gone is fine)."""

    def delete(self, bucket: str, key: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        with contextlib.suppress(ResourceNotFoundError):
            self.client.get_blob_client(bucket, key).delete_blob()


@dataclass(frozen=True)
class PoisonRef:
    account: str
    message_id: str
    content: str


@dataclass(frozen=True)
class GridRef:
    blob: str
    event_id: str


def subscription_folder(stage: str) -> str:
    """Where Event Grid dead-letters the stage's events: the subscription's name (triggers.object_trigger) in upper case."""
    return f"{stage}-objects".upper()


class AzureOperations(Operations):
    name = "azure"
    title = "Azure"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connection_string = os.environ.get(CONNECTION_STRING_ENV) or None
        self.suffix = os.environ.get(SUFFIX_ENV) or "core.windows.net"
        self._store: BlobOperationsStore | None = None
        self._credential: Any = None
        self._queues: dict[str, Any] = {}

    # -- accounts and clients ---------------------------------------------------------------------

    @property
    def data_account(self) -> str:
        name = self.outputs.get(DATA_ACCOUNT_OUTPUT)
        if not isinstance(name, str) or not name:
            raise OutputsError(f"the stack's outputs name no data account (\"{DATA_ACCOUNT_OUTPUT}\"); save them again with "
                               "`pipeline outputs --cloud azure --json` from a deploy of this version")
        return name

    def host_account(self, stage: StageSpec) -> str:
        """A stage's own host-storage account: named from the stack's random suffix, which ends the data account's name."""
        from pipeline_azure import naming

        data = self.data_account
        suffix = data[-naming.SUFFIX_CHARS:]
        if naming.storage_account_name(self.spec.name, "dat", suffix) != data:
            raise OutputsError(f"the data account {data!r} is not named as this version names it, so the host-storage account of "
                               f"stage {stage.name} cannot be told; is this the stack of {self.spec.name}?")
        return naming.host_account_name(self.spec.name, stage.name, suffix)

    def credential(self) -> Any:
        if self._credential is None:
            import logging

            from azure.identity import DefaultAzureCredential

            # DefaultAzureCredential logs each credential it tried at WARNING; a failure is explained once, by explain().
            logging.getLogger("azure.identity").setLevel(logging.ERROR)

            self._credential = DefaultAzureCredential()
        return self._credential

    def store(self) -> OperationsStore:
        return self._blobs()

    def _blobs(self) -> BlobOperationsStore:
        if self._store is None:
            from azure.storage.blob import BlobServiceClient

            with self.guarded("connecting to Blob Storage"):
                if self.connection_string:
                    client = BlobServiceClient.from_connection_string(self.connection_string)
                else:
                    client = BlobServiceClient(account_url=f"https://{self.data_account}.blob.{self.suffix}", credential=self.credential())
                self._store = BlobOperationsStore(client=client)
        return self._store

    def queue(self, account: str, name: str) -> Any:
        key = f"{account}/{name}"
        if key not in self._queues:
            from azure.storage.queue import QueueClient

            if self.connection_string:
                self._queues[key] = QueueClient.from_connection_string(self.connection_string, name)
            else:
                self._queues[key] = QueueClient(account_url=f"https://{account}.queue.{self.suffix}", queue_name=name, credential=self.credential())
        return self._queues[key]

    def location(self, bucket: str, key: str = "") -> str:
        base = str(self._blobs().client.url).rstrip("/") if self.connection_string else f"https://{self.data_account}.blob.{self.suffix}"
        return f"{base}/{bucket}/{key}"

    # -- the failure queues and Event Grid's dead letters ------------------------------------------------

    def queued(self, stage: StageSpec, earliest: float | None) -> Iterator[DeadLetter]:
        if not stage.trigger.objects:
            return
        yield from self._poison(stage)
        yield from self._grid_letters(stage)

    def _poison(self, stage: StageSpec) -> Iterator[DeadLetter]:
        account = self.host_account(stage)
        queue = self.queue(account, POISON)
        kept = f"poison queue {POISON} of {account}"
        with self.guarded(f"peeking at {kept}"):
            count = int(queue.get_queue_properties().approximate_message_count or 0)
            messages = list(queue.peek_messages(max_messages=PEEK_LIMIT))
        for i, message in enumerate(messages):
            text = _text(message.content)
            event = _event(text)
            notes = [f"the poison queue holds about {count} messages; Peek shows the first {PEEK_LIMIT} (replay takes them all)"] \
                if i == len(messages) - 1 and count > len(messages) else []
            yield DeadLetter(stage.name, EVENT, "moved to the poison queue by the Functions host", "",
                             "an attempt on its last dequeue never returned (the host crashed or stopped it at functionTimeout); "
                             "its logs are in Application Insights", kept, f"{kept} message {message.id}",
                             message.inserted_on.timestamp() if message.inserted_on else None, stage.retries + 1,
                             event=event if event is not None else text, input=_blob_of(event), ref=PoisonRef(account, message.id, text), notes=notes)

    def _grid_blobs(self, stage: StageSpec) -> list[str]:
        store, bucket = self.store(), self.bucket("dead-letter")
        folder = subscription_folder(stage.name)
        topic = f"evgt-{self.spec.name}-{self.stack}".upper()  # triggers.system_topic
        found: list[str] = []
        with self.guarded(f"listing Event Grid's dead letters of stage {stage.name} in {self.location(bucket)}"):
            for prefix in (f"{folder}/", f"{topic}/{folder}/"):
                found += [key for key, _, _ in store.list_sized(bucket, prefix)]
        return sorted(set(found))

    def _grid_events(self, blob: str) -> list[dict[str, Any]]:
        with self.guarded(f"reading {self.location(self.bucket('dead-letter'), blob)}"):
            data = self.store().get(self.bucket("dead-letter"), blob)
        try:
            parsed = json.loads(data)
        except ValueError:
            parsed = [json.loads(line) for line in data.splitlines() if line.strip()]
        events = parsed if isinstance(parsed, list) else [parsed]
        return [event for event in events if isinstance(event, dict)]

    def _grid_letters(self, stage: StageSpec) -> Iterator[DeadLetter]:
        bucket = self.bucket("dead-letter")
        for blob in self._grid_blobs(stage):
            for event in self._grid_events(blob):
                original = {k: v for k, v in event.items() if k not in DEAD_LETTER_FIELDS}
                outcome = str(event.get("lastDeliveryOutcome") or "")
                status = event.get("lastHttpStatusCode")
                yield DeadLetter(stage.name, EVENT, str(event.get("deadLetterReason") or event.get("deadletterReason") or "dead-lettered by Event Grid"),
                                 outcome, f"Event Grid could not write the event to the stage's queue (last outcome {outcome or '?'}"
                                          + (f", HTTP {status}" if status else "") + ")",
                                 f"dead-letter container {self.location(bucket, subscription_folder(stage.name) + '/')}", f"{self.location(bucket, blob)}",
                                 epoch(event.get("lastDeliveryAttemptTime") or event.get("publishTime") or event.get("eventTime")),
                                 event.get("deliveryAttempts") if isinstance(event.get("deliveryAttempts"), int) else None,
                                 event=original, input=_blob_of(_event(json.dumps(original))), ref=GridRef(blob, str(event.get("id") or "")))

    def queued_count(self, stage: StageSpec) -> int | None:
        if not stage.trigger.objects:
            return None
        queue = self.queue(self.host_account(stage), POISON)
        with self.guarded(f"reading the length of the poison queue of stage {stage.name}"):
            poisoned = int(queue.get_queue_properties().approximate_message_count or 0)
        return poisoned + sum(len(self._grid_events(blob)) for blob in self._grid_blobs(stage))

    # -- redrive ------------------------------------------------------------------------------------

    def redrive(self, letters: Sequence[DeadLetter], dry_run: bool) -> Iterator[Redriven]:
        poison = [letter for letter in letters if isinstance(letter.ref, PoisonRef)]
        grid = [letter for letter in letters if isinstance(letter.ref, GridRef)]
        stages = {letter.stage: self.spec.stage(letter.stage) for letter in letters}
        for stage_name in dict.fromkeys(letter.stage for letter in poison):
            wanted = [letter for letter in poison if letter.stage == stage_name]
            if dry_run:
                yield from (Redriven(letter, True, f"would move it back to queue {QUEUE}") for letter in wanted)
            else:
                yield from self._redrive_poison(stages[stage_name], wanted)
        for blob in dict.fromkeys(letter.ref.blob for letter in grid):
            wanted = [letter for letter in grid if letter.ref.blob == blob]
            if dry_run:
                yield from (Redriven(letter, True, f"would write the event to queue {QUEUE} of stage {letter.stage}") for letter in wanted)
            else:
                yield from self._redrive_grid(stages[wanted[0].stage], blob, wanted)

    def _redrive_poison(self, stage: StageSpec, wanted: list[DeadLetter]) -> Iterator[Redriven]:
        """Receive the poison queue (each message hidden while this runs), send each wanted message's text to the stage's
        queue, then delete it from the poison queue; a message whose send failed becomes visible again at once."""
        account = self.host_account(stage)
        poison, target = self.queue(account, POISON), self.queue(account, QUEUE)
        by_id = {letter.ref.message_id: letter for letter in wanted}
        with self.guarded(f"receiving the poison queue {POISON} of {account}"):
            # All of it at once: each received message stays hidden, so the pages end; released ones would come round again.
            messages = list(poison.receive_messages(messages_per_page=PEEK_LIMIT, visibility_timeout=REDRIVE_VISIBILITY_S))
        keep = []
        try:
            for message in messages:
                letter = by_id.pop(message.id, None)
                if letter is None:
                    keep.append(message)  # arrived since it was listed: the next replay takes it
                    continue
                try:
                    target.send_message(_text(message.content), time_to_live=-1)
                except Exception as exc:
                    keep.append(message)
                    yield Redriven(letter, False, f"move it back to queue {QUEUE}", self.explain(exc, "sending it") or f"{type(exc).__name__}: {exc}")
                    continue
                with self.guarded(f"deleting message {message.id} from {POISON}"):
                    poison.delete_message(message)
                yield Redriven(letter, True, f"moved back to queue {QUEUE} of {account} (the queue trigger runs it, with its retries); "
                                             "deleted from the poison queue")
        finally:
            for message in keep:
                poison.update_message(message, visibility_timeout=0)
        for letter in by_id.values():
            yield Redriven(letter, True, "already gone from the poison queue (redriven or expired since it was listed)")

    def _redrive_grid(self, stage: StageSpec, blob: str, wanted: list[DeadLetter]) -> Iterator[Redriven]:
        """Each wanted event of one dead-letter blob to the stage's queue; then the blob keeps only the events not sent."""
        target = self.queue(self.host_account(stage), QUEUE)
        ids = {letter.ref.event_id for letter in wanted}
        events = self._grid_events(blob)
        left: list[dict[str, Any]] = []
        results = []
        for event in events:
            letter = next((x for x in wanted if x.ref.event_id == str(event.get("id") or "")), None) if str(event.get("id") or "") in ids else None
            if letter is None:
                left.append(event)
                continue
            original = {k: v for k, v in event.items() if k not in DEAD_LETTER_FIELDS}
            try:
                target.send_message(json.dumps(original), time_to_live=-1)
            except Exception as exc:
                left.append(event)
                results.append(Redriven(letter, False, f"write the event to queue {QUEUE}", self.explain(exc, "sending it") or f"{type(exc).__name__}: {exc}"))
                continue
            results.append(Redriven(letter, True, f"written to queue {QUEUE} of stage {stage.name}, as Event Grid would have"))
        bucket = self.bucket("dead-letter")
        with self.guarded(f"updating {self.location(bucket, blob)}"):
            if left:
                self._blobs().put(bucket, blob, json.dumps(left).encode(), content_type="application/json")
            else:
                self.store().delete(bucket, blob)
        yield from results

    # -- errors --------------------------------------------------------------------------------------

    def explain(self, exc: BaseException, doing: str) -> str | None:
        try:
            from azure.core import exceptions as errors
        except ImportError:
            return None
        try:
            from azure.identity import CredentialUnavailableError
        except ImportError:  # pragma: no cover - azure-identity is installed with the runtime extra
            CredentialUnavailableError = errors.ClientAuthenticationError  # type: ignore[misc,assignment]  # noqa: N806
        if isinstance(exc, CredentialUnavailableError | errors.ClientAuthenticationError):
            return (f"{doing}: no Azure credentials ({str(exc).splitlines()[0]}); run `az login`, or set AZURE_CLIENT_ID, AZURE_TENANT_ID and "
                    "AZURE_CLIENT_SECRET (DefaultAzureCredential)")
        if isinstance(exc, errors.ServiceRequestError):
            return f"{doing}: cannot reach Azure Storage ({str(exc).splitlines()[0]}); check the network and the account names"
        if isinstance(exc, errors.ResourceNotFoundError):
            return f"{doing}: it does not exist ({getattr(exc, 'error_code', None) or 'not found'}); was the stack destroyed, or deployed under other names?"
        if isinstance(exc, errors.HttpResponseError):
            code = str(getattr(exc, "error_code", "") or "")
            if getattr(exc, "status_code", None) == 403 or code.startswith("Authorization"):
                roles = QUEUE_ROLES if "queue" in doing or "poison" in doing else BLOB_ROLES
                return f"{doing}: Azure denied it ({code or 'HTTP 403'}); grant {roles} to the identity you run as (see 'When something fails' in the README)"
            return f"{doing}: Azure answered {code or getattr(exc, 'status_code', '')}: {str(exc).splitlines()[0]}"
        if isinstance(exc, PipelineError):
            return str(exc)
        return None


def _text(content: Any) -> str:
    return content.decode("utf-8", "replace") if isinstance(content, bytes) else str(content)


def _event(text: str) -> dict[str, Any] | None:
    """The Event Grid event a queue message holds (JSON, or Base64 of JSON: runtime.queued_event reads both)."""
    from pipeline_azure.runtime import queued_event

    try:
        queued = queued_event(text)
    except ValueError:
        return None
    return {"id": queued.id, "subject": queued.subject, "eventType": queued.event_type, "eventTime": queued.event_time, "data": queued.get_json()}


def _blob_of(event: dict[str, Any] | None) -> dict[str, Any]:
    """The blob a BlobCreated event is about ({bucket: container, key: name}), from its subject."""
    subject = str((event or {}).get("subject") or "")
    marker = "/containers/"
    if marker not in subject or "/blobs/" not in subject:
        return {}
    container, _, name = subject.split(marker, 1)[1].partition("/blobs/")
    return {"bucket": container, "key": name}

