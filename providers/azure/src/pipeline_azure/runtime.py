"""The Azure Functions (Python v2 programming model) entry points of every stage.

`function_app.py` in a stage's package is two lines:

    from pipeline_azure.runtime import build_app
    app = build_app()

`build_app()` binds the trigger the stage's app settings name (PIPELINE_TRIGGER):

* stream: Event Hubs, `cardinality="many"`, with the stage's retry policy. The Event Hubs trigger
  checkpoints whether or not the function threw, so a batch that still fails on the policy's last
  attempt (`context.retry_context`) is written to the dead-letter container here, before the host
  checkpoints past it; earlier attempts raise so the policy re-runs the same batch (same partition
  and sequence range, so the same output key). Poison records are dead-lettered one by one.
* objects: a Storage queue message holding Event Grid's `Microsoft.Storage.BlobCreated` event (stage
  outputs or uploaded files). A failure raises, so the queue trigger makes the message visible again
  after host.json's visibilityTimeout; on the last dequeue (`DequeueCount` = maxDequeueCount, from
  PIPELINE_MAX_DEQUEUE_COUNT) or past max_event_age_s, the object is dead-lettered (a pointer to it
  with the error) and the message completes, like a stream batch on its last retry.
* schedule: timer (NCRONTAB from PIPELINE_SCHEDULE), named by the scheduled occurrence it runs for,
  so a late or retried run reads and writes exactly what the on-time run would have; its last
  attempt dead-letters the run. With `from`, a run over its window cut off at that occurrence.
* http: POST rows (JSON array or JSON lines), answered with the handler's rows; authLevel FUNCTION. With
  `from`, POST nothing: a run over the window cut off at the request's time (409 + Retry-After when busy).

A window's state and lease are blobs written with `If-None-Match: *` (`overwrite=False`) or `If-Match: <etag>`
(`etag=..., match_condition=MatchConditions.IfNotModified`): a lost race is 409 BlobAlreadyExists or 412
(https://learn.microsoft.com/rest/api/storageservices/specifying-conditional-headers-for-blob-service-operations).

`process_*` take event-shaped objects, so they run (and are tested) without `azure.functions`,
which is imported only by `build_app()`. Storage: azure-storage-blob with `DefaultAzureCredential`
(the stage's user-assigned identity via AZURE_CLIENT_ID); a connection string in
PIPELINE_DATA_CONNECTION_STRING wins (Azurite, tests). The runtime's JSON log lines go through
Python `logging`, which the Functions worker forwards to Application Insights (AppTraces), where the
dead-letter alert finds them (see observability.py).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pipeline.runtime import keys
from pipeline.runtime.entry import cached_runner, tick_name, wanted, window_request, window_run
from pipeline.runtime.errors import BatchFailedError
from pipeline.runtime.invoke import BatchResult, StageRunner
from pipeline.runtime.records import Record
from pipeline.runtime.store import PreconditionFailed

if TYPE_CHECKING:
    from pipeline.runtime.logs import JsonLogger
    from pipeline.runtime.window import WindowOutcome

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
LOGGER_NAME = "pipeline"
# Names the deployer's object_queue module sets (that module imports Pulumi, so it is not shipped): kept equal by a test.
OBJECT_QUEUE_CONNECTION = "ObjectQueue"
OBJECT_QUEUE_SETTING = "PIPELINE_OBJECT_QUEUE"
DEQUEUE_SETTING = "PIPELINE_MAX_DEQUEUE_COUNT"


class BlobStore:
    """ListingStore over Blob Storage: bucket = container. Uploading a block blob with overwrite is atomic."""

    def __init__(self, account_url: str | None = None, connection_string: str | None = None, client: Any = None) -> None:
        if client is None:
            from azure.storage.blob import BlobServiceClient

            if connection_string:
                client = BlobServiceClient.from_connection_string(connection_string)
            else:
                from azure.identity import DefaultAzureCredential

                if not account_url:
                    raise RuntimeError("set PIPELINE_DATA_BLOB_ENDPOINT (the deployer does) or PIPELINE_DATA_CONNECTION_STRING")
                client = BlobServiceClient(account_url=account_url, credential=DefaultAzureCredential())
        self.client = client

    def get(self, bucket: str, key: str) -> bytes:
        data: bytes = self.client.get_blob_client(bucket, key).download_blob().readall()
        return data

    def put(self, bucket: str, key: str, data: bytes, content_type: str = "application/x-ndjson") -> None:
        from azure.storage.blob import ContentSettings

        self.client.get_blob_client(bucket, key).upload_blob(data, overwrite=True, content_settings=ContentSettings(content_type=content_type))

    def read_versioned(self, bucket: str, key: str) -> tuple[bytes, str] | None:
        """The blob and its ETag, from one download (the ETag is the downloaded version's), or None when there is none."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            downloader = self.client.get_blob_client(bucket, key).download_blob()
            data: bytes = downloader.readall()
        except ResourceNotFoundError:
            return None
        return data, str(downloader.properties.etag)

    def put_if(self, bucket: str, key: str, data: bytes, token: str | None) -> str:
        """Put Blob only if absent (`overwrite=False`: If-None-Match *) or only if still `token` (If-Match)."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
        from azure.storage.blob import ContentSettings

        blob = self.client.get_blob_client(bucket, key)
        settings = ContentSettings(content_type="application/json")
        try:
            if token is None:
                result = blob.upload_blob(data, overwrite=False, content_settings=settings)
            else:
                result = blob.upload_blob(data, overwrite=True, etag=token, match_condition=MatchConditions.IfNotModified,
                                          content_settings=settings)
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError) as exc:
            raise PreconditionFailed(f"{bucket}/{key}: {type(exc).__name__}") from exc
        return str(result["etag"])

    def list(self, bucket: str, prefix: str) -> Iterator[tuple[str, float]]:
        """(name, last modified epoch) under `prefix`: List Blobs with the prefix parameter, which is what the
        stage's role assignment condition allows (`iam.list_condition`)."""
        for key, modified, _ in self.list_sized(bucket, prefix):
            yield key, modified

    def list_sized(self, bucket: str, prefix: str) -> Iterator[tuple[str, float, int]]:
        for blob in self.client.get_container_client(bucket).list_blobs(name_starts_with=prefix):
            yield blob.name, blob.last_modified.timestamp(), int(blob.size or 0)


class LoggingStream:
    """A text stream for the runtime's JsonLogger that hands each JSON line to Python `logging`
    (level from the line), which the Functions Python worker forwards to the host and Application Insights."""

    LEVELS = {'"level": "ERROR"': logging.ERROR, '"level": "CRITICAL"': logging.CRITICAL,
              '"level": "WARNING"': logging.WARNING, '"level": "DEBUG"': logging.DEBUG}

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger(LOGGER_NAME)

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                level = next((lvl for marker, lvl in self.LEVELS.items() if marker in line), logging.INFO)
                self.logger.log(level, line)
        return len(text)

    def flush(self) -> None:
        """Nothing is buffered."""


def _data_store() -> BlobStore:
    return BlobStore(os.environ.get("PIPELINE_DATA_BLOB_ENDPOINT"), os.environ.get("PIPELINE_DATA_CONNECTION_STRING"))


def _artifact_store() -> BlobStore:
    return BlobStore(os.environ.get("PIPELINE_ARTIFACTS_BLOB_ENDPOINT"),
                     os.environ.get("PIPELINE_ARTIFACTS_CONNECTION_STRING") or os.environ.get("PIPELINE_DATA_CONNECTION_STRING"))


def runner() -> StageRunner:
    """The app's code root is the folder of function_app.py (the working directory on Azure)."""
    root = os.environ.get("AzureWebJobsScriptRoot")  # noqa: SIM112 - the host sets this exact name
    stage = cached_runner(_data_store, root, model_store=_artifact_store)
    log: JsonLogger = stage.logger
    if not isinstance(getattr(log, "_stream", None), LoggingStream):
        log._stream = LoggingStream()  # type: ignore[assignment]  # write() and flush() are all JsonLogger uses; shared with the handler context
    return stage


def last_attempt(context: Any) -> bool:
    """Whether this is the retry policy's last attempt (`retry_count` counts from 0 to `max_retry_count`;
    https://learn.microsoft.com/azure/azure-functions/functions-bindings-error-pages). Without an invocation
    context (called outside the host) the caller retries: not the last. A context without a retry context
    (no policy) gets no other attempt: the last."""
    if context is None:
        return False
    retry = getattr(context, "retry_context", None)
    if retry is None:
        return True
    try:
        return int(retry.retry_count) >= int(retry.max_retry_count)
    except (TypeError, ValueError):
        return True


# ---- stream --------------------------------------------------------------------------------------
def partition_of(events: Sequence[Any]) -> str:
    """The partition id the batch came from: in the trigger metadata of a `many` batch."""
    metadata = getattr(events[0], "metadata", None) or {}
    context = metadata.get("PartitionContext") or {}
    partition = context.get("PartitionId") if isinstance(context, dict) else None
    return str(partition) if partition is not None else "0"


def event_record(event: Any, partition: str) -> Record:
    sequence = event.sequence_number
    enqueued = event.enqueued_time
    return Record(
        event.get_body(), key=event.partition_key, record_id=f"{partition}:{sequence}", partition=partition,
        sequence=str(sequence), arrival_time=enqueued.timestamp() if hasattr(enqueued, "timestamp") else None,
    )


def process_events(events: list[Any], context: Any = None) -> BatchResult | None:
    """Event Hubs trigger, cardinality many: one partition, a contiguous sequence range.

    A whole-batch failure raises for the retry policy, except on its last attempt: then the batch is
    dead-lettered (the host checkpoints past it either way) and the invocation succeeds."""
    if not events:
        return None
    stage = runner()
    partition = partition_of(events)
    records = [event_record(event, partition) for event in events]
    batch_id = keys.stream_batch(partition, int(events[0].sequence_number), int(events[-1].sequence_number))
    try:
        return stage.run_stream(records, batch_id)
    except BatchFailedError as exc:
        if not last_attempt(context):
            raise
        return stage.dead_letter_all(batch_id, [r.data for r in records], [r.describe() for r in records], exc.cause or exc)


# ---- objects (stage outputs and uploads) -----------------------------------------------------------
def blob_location(event: Any) -> tuple[str, str]:
    """(container, blob name) from the event subject `/blobServices/default/containers/C/blobs/NAME` or the data url."""
    subject = getattr(event, "subject", "") or ""
    marker = "/containers/"
    if marker in subject and "/blobs/" in subject:
        container, _, name = subject.split(marker, 1)[1].partition("/blobs/")
        return container, name
    from urllib.parse import unquote, urlparse

    url = (event.get_json() or {}).get("url", "")
    path = unquote(urlparse(url).path).lstrip("/")
    container, _, name = path.partition("/")
    return container, name


def process_blob_created(event: Any, last_attempt: bool = False) -> BatchResult | None:
    """A BlobCreated event (EventGridSchema): a stage's output object or an uploaded file (JSON lines,
    gzip or not, any name under the uploads prefix). A failure raises to have the event retried, except on
    the last attempt: then the object is dead-lettered (a pointer to it, which stays in its container for
    the container's retention, with the error) and the event completes."""
    stage = runner()
    if getattr(event, "event_type", BLOB_CREATED) != BLOB_CREATED:
        return None
    container, name = blob_location(event)
    if not wanted(stage.settings, container, name):
        stage.logger.info("ignored blob outside the input prefix", bucket=container, key=name)
        return None
    etag = (event.get_json() or {}).get("eTag")
    try:
        return stage.run_object(container, name, generation=etag)
    except BatchFailedError as exc:
        if not last_attempt:
            raise
        source = {"bucket": container, "key": name, "generation": etag}
        return stage.dead_letter_all(keys.object_batch(name, stage.settings.input_prefix), [b""], [source], exc.cause or exc)


class QueuedEvent:
    """An Event Grid event (EventGridSchema) read from a queue message, with EventGridEvent's attributes."""

    def __init__(self, event: dict[str, Any]) -> None:
        self.id = event.get("id")
        self.subject = event.get("subject", "")
        self.event_type = event.get("eventType", "")
        self.event_time = event.get("eventTime")
        self._data = event.get("data") or {}

    def get_json(self) -> dict[str, Any]:
        data: dict[str, Any] = self._data
        return data


def queued_event(body: bytes | str) -> QueuedEvent:
    """The event a queue message holds, as JSON or as Base64 of JSON. host.json sets messageEncoding `none`,
    so the text arrives as written: Event Grid has written Base64 (MicrosoftDocs/azure-docs#102923) where its
    quickstart once said plain text; both are read. Anything else raises ValueError."""
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    text = text.strip()
    if not text.startswith("{"):
        try:
            text = base64.b64decode(text, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ValueError("the queue message is neither JSON nor Base64") from exc
    event = json.loads(text)
    if not isinstance(event, dict):
        raise ValueError("the queue message does not hold one Event Grid event")
    return QueuedEvent(event)


def last_dequeue(message: Any, now: datetime | None = None) -> bool:
    """Whether this is the message's last attempt: its dequeue count reached host.json's maxDequeueCount (the
    host moves it to the poison queue if it fails now), or it was queued longer ago than max_event_age_s."""
    most = int(os.environ.get(DEQUEUE_SETTING, "1"))
    count = getattr(message, "dequeue_count", None)
    if isinstance(count, int) and count >= most:
        return True
    inserted = getattr(message, "insertion_time", None)
    if not isinstance(inserted, datetime):
        return False
    if inserted.tzinfo is None:  # the worker's metadata parser may give naive UTC times
        inserted = inserted.replace(tzinfo=UTC)
    max_age = float(os.environ.get("PIPELINE_MAX_EVENT_AGE_S", "3600"))
    return ((now or datetime.now(UTC)) - inserted).total_seconds() > max_age


def process_queue_message(message: Any, now: datetime | None = None) -> BatchResult | None:
    """Queue trigger of an object stage: the message holds the BlobCreated event Event Grid wrote.

    A message that holds no event can never succeed: it is dead-lettered at once (its text, under
    `unreadable/<message id>`) rather than retried into the poison queue."""
    body = message.get_body()
    try:
        event = queued_event(body)
    except ValueError as exc:
        stage = runner()
        raw = body if isinstance(body, bytes) else str(body).encode()
        ident = str(getattr(message, "id", None) or "message")
        return stage.dead_letter_all(keys.safe(f"unreadable/{ident}", keep_slash=True), [raw], [{"queue_message_id": ident}], exc)
    return process_blob_created(event, last_attempt=last_dequeue(message, now))


# ---- schedule -----------------------------------------------------------------------------------
def _field_matches(expr: str, value: int) -> bool:
    """One NCRONTAB field as `triggers.ncrontab` writes them: '*', '*/n' or a list of numbers."""
    if expr == "*":
        return True
    if expr.startswith("*/"):
        return value % int(expr[2:]) == 0
    return value in {int(part) for part in expr.split(",")}


def scheduled_time(ncrontab: str, now: datetime, horizon_days: int = 32) -> datetime:
    """The latest occurrence of the six-field NCRONTAB `ncrontab` at or before `now` (UTC, whole minutes):
    the run a timer invocation stands for, even when it fires late or is retried."""
    second, minute, hour, day, month, weekday = ncrontab.split()
    moment = now.astimezone(UTC).replace(second=int(second) if second.isdigit() else 0, microsecond=0)
    if moment > now:
        moment -= timedelta(minutes=1)
    for _ in range(horizon_days * 24 * 60):
        if (_field_matches(minute, moment.minute) and _field_matches(hour, moment.hour) and _field_matches(day, moment.day)
                and _field_matches(month, moment.month) and _field_matches(weekday, (moment.weekday() + 1) % 7)):
            return moment
        moment -= timedelta(minutes=1)
    return now.astimezone(UTC).replace(second=0, microsecond=0)  # pragma: no cover - every schedule fires within a month


def process_timer(timer: Any = None, now: datetime | None = None, context: Any = None) -> BatchResult | WindowOutcome:
    """Timer trigger: one run named by its scheduled occurrence; the policy's last failing attempt
    dead-letters the run (its name and error, or a window's rows) instead of raising again."""
    stage = runner()
    moment = now or datetime.now(UTC)
    expression = os.environ.get("PIPELINE_SCHEDULE", "")
    occurrence = scheduled_time(expression, moment) if expression else moment.replace(second=0, microsecond=0)
    if stage.settings.windowed:
        return window_run(stage, occurrence, last_attempt=last_attempt(context))
    tick = tick_name(occurrence)
    try:
        return stage.run_schedule(tick)
    except BatchFailedError as exc:
        if not last_attempt(context):
            raise
        return stage.dead_letter_all(keys.schedule_batch(tick), [], [], exc.cause or exc)


# ---- http ---------------------------------------------------------------------------------------
def process_http(body: bytes, content_type: str = "") -> tuple[int, dict[str, Any], dict[str, str]]:
    """POST rows -> (status, JSON body, extra headers) from `StageRunner.run_http` (200 rows, 400 bad body, 500
    retryable); for a stage with `from`, a run over its window (`entry.window_request`: 200, 409 busy, 500)."""
    stage = runner()
    if stage.settings.windowed:
        return window_request(stage, body)
    status, answer = stage.run_http(body, content_type)
    return status, answer, {}


# ---- the function app ------------------------------------------------------------------------------
# The Python worker refuses to load a function whose parameters are not annotated with its bindings' types
# (`context` must be azure.functions.Context; an Event Hubs trigger with cardinality many wants
# typing.List[EventHubEvent]; see Registry.validate_function_params in azure-functions-python-worker).
# azure.functions is imported only by build_app(), so build_app() sets these annotations (`worker_types`).
def _stream_stage(events: list[Any], context: Any) -> None:
    process_events(events, context)


def _object_stage(message: Any) -> None:
    process_queue_message(message)


def _schedule_stage(timer: Any, context: Any) -> None:
    process_timer(timer, context=context)


def _http_stage(req: Any) -> Any:
    import json

    import azure.functions as func

    status, answer, headers = process_http(req.get_body(), req.headers.get("content-type", ""))
    return func.HttpResponse(json.dumps(answer, default=str), status_code=status, mimetype="application/json", headers=headers or None)


def worker_types(function: Callable[..., Any], returns: Any = None, **parameters: Any) -> Callable[..., Any]:
    """Give `function` the annotations the Functions Python worker checks against its bindings (see above)."""
    function.__annotations__ = {**parameters, "return": returns}
    return function


def build_app() -> Any:
    """A `func.FunctionApp` with the one trigger this stage uses (settings come from app settings)."""
    import typing

    import azure.functions as func

    app = func.FunctionApp()
    trigger = os.environ.get("PIPELINE_TRIGGER", "")
    retries = os.environ.get("PIPELINE_MAX_RETRIES", "3")
    if trigger == "stream":
        stream_stage = worker_types(_stream_stage, events=typing.List[func.EventHubEvent], context=func.Context)  # noqa: UP006 - the worker's check
        function: Any = app.retry(strategy="exponential_backoff", max_retry_count=retries, minimum_interval="00:00:05",
                                  maximum_interval="00:05:00")(stream_stage)
        function = app.event_hub_message_trigger(arg_name="events", event_hub_name="%PIPELINE_EVENT_HUB%", connection="EventHubConnection",
                                                 consumer_group="%PIPELINE_CONSUMER_GROUP%", cardinality="many")(function)
    elif trigger == "objects":
        function = app.queue_trigger(arg_name="message", queue_name=f"%{OBJECT_QUEUE_SETTING}%", connection=OBJECT_QUEUE_CONNECTION)(
            worker_types(_object_stage, message=func.QueueMessage))
    elif trigger == "http":
        function = app.route(route=os.environ.get("PIPELINE_STAGE", "stage"), methods=["POST"], auth_level=func.AuthLevel.FUNCTION)(
            worker_types(_http_stage, returns=func.HttpResponse, req=func.HttpRequest))
    else:
        function = app.retry(strategy="exponential_backoff", max_retry_count=retries, minimum_interval="00:00:10",
                             maximum_interval="00:05:00")(worker_types(_schedule_stage, timer=func.TimerRequest, context=func.Context))
        function = app.timer_trigger(schedule="%PIPELINE_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)(function)
    app.function_name("stage")(function)
    return app
