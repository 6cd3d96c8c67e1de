"""The Azure Functions (Python v2 programming model) entry points of every stage.

`function_app.py` in a stage's package is two lines:

    from pipeline_azure.runtime import build_app
    app = build_app()

`build_app()` binds the trigger the stage's app settings name (PIPELINE_TRIGGER):

* stream: Event Hubs, `cardinality="many"`, with the stage's retry policy. The Event Hubs trigger
  checkpoints whether or not the function threw, so per-event isolation matters most here:
  poison events are dead-lettered by the runtime; a transient failure raises, and the retry
  policy re-runs the same batch (same partition and sequence range, so the same output key).
* objects: Event Grid `Microsoft.Storage.BlobCreated` (Event Grid retries and dead-letters).
* schedule: timer (NCRONTAB from PIPELINE_SCHEDULE), named by the minute it fired.

`process_events`, `process_blob_created` and `process_timer` take event-shaped objects, so they
run (and are tested) without `azure.functions`, which is imported only by `build_app()`.
Storage: azure-storage-blob with `DefaultAzureCredential` (the stage's user-assigned identity via
AZURE_CLIENT_ID); a connection string in PIPELINE_DATA_CONNECTION_STRING wins (Azurite, tests).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from pipeline.runtime import keys
from pipeline.runtime.entry import cached_runner, tick_name, wanted
from pipeline.runtime.invoke import BatchResult, StageRunner
from pipeline.runtime.records import Record

if TYPE_CHECKING:
    from datetime import datetime

BLOB_CREATED = "Microsoft.Storage.BlobCreated"


class BlobStore:
    """ObjectStore over Blob Storage: bucket = container. Uploading a block blob with overwrite is atomic."""

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

    def put(self, bucket: str, key: str, data: bytes) -> None:
        from azure.storage.blob import ContentSettings

        self.client.get_blob_client(bucket, key).upload_blob(data, overwrite=True, content_settings=ContentSettings(content_type="application/x-ndjson"))


def _data_store() -> BlobStore:
    return BlobStore(os.environ.get("PIPELINE_DATA_BLOB_ENDPOINT"), os.environ.get("PIPELINE_DATA_CONNECTION_STRING"))


def _artifact_store() -> BlobStore:
    return BlobStore(os.environ.get("PIPELINE_ARTIFACTS_BLOB_ENDPOINT"),
                     os.environ.get("PIPELINE_ARTIFACTS_CONNECTION_STRING") or os.environ.get("PIPELINE_DATA_CONNECTION_STRING"))


def runner() -> StageRunner:
    """The app's code root is the folder of function_app.py (the working directory on Azure)."""
    root = os.environ.get("AzureWebJobsScriptRoot")  # noqa: SIM112 - the host sets this exact name
    return cached_runner(_data_store, root, model_store=_artifact_store)


def _partition(events: list[Any]) -> str:
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


def process_events(events: list[Any]) -> BatchResult | None:
    """Event Hubs trigger, cardinality many: one partition, a contiguous sequence range."""
    if not events:
        return None
    stage = runner()
    partition = _partition(events)
    records = [event_record(event, partition) for event in events]
    first, last = events[0].sequence_number, events[-1].sequence_number
    return stage.run_stream(records, keys.stream_batch(partition, int(first), int(last)))


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


def process_blob_created(event: Any) -> BatchResult | None:
    """Event Grid BlobCreated (EventGridSchema). Raises to have Event Grid retry it."""
    stage = runner()
    if getattr(event, "event_type", BLOB_CREATED) != BLOB_CREATED:
        return None
    container, name = blob_location(event)
    if not wanted(stage.settings, container, name):
        stage.logger.info("ignored blob outside the input prefix", bucket=container, key=name)
        return None
    etag = (event.get_json() or {}).get("eTag")
    return stage.run_object(container, name, generation=etag)


def process_timer(timer: Any = None, now: datetime | None = None) -> BatchResult:
    """Timer trigger: one run named by the minute it fired (a retry of the same firing reuses it)."""
    from datetime import datetime

    moment = (now or datetime.now().astimezone()).replace(second=0, microsecond=0)
    return runner().run_schedule(tick_name(moment))


def _stream_stage(events: list[Any]) -> None:
    process_events(events)


def _object_stage(event: Any) -> None:
    process_blob_created(event)


def _schedule_stage(timer: Any) -> None:
    process_timer(timer)


def build_app() -> Any:
    """A `func.FunctionApp` with the one trigger this stage uses (settings come from app settings)."""
    import azure.functions as func

    app = func.FunctionApp()
    trigger = os.environ.get("PIPELINE_TRIGGER", "")
    retries = os.environ.get("PIPELINE_MAX_RETRIES", "3")
    if trigger == "stream":
        function: Any = app.retry(strategy="exponential_backoff", max_retry_count=retries, minimum_interval="00:00:05",
                                  maximum_interval="00:05:00")(_stream_stage)
        function = app.event_hub_message_trigger(arg_name="events", event_hub_name="%PIPELINE_EVENT_HUB%", connection="EventHubConnection",
                                                 consumer_group="%PIPELINE_CONSUMER_GROUP%", cardinality="many")(function)
    elif trigger == "objects":
        function = app.event_grid_trigger(arg_name="event")(_object_stage)
    else:
        function = app.retry(strategy="exponential_backoff", max_retry_count=retries, minimum_interval="00:00:10",
                             maximum_interval="00:05:00")(_schedule_stage)
        function = app.timer_trigger(schedule="%PIPELINE_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)(function)
    app.function_name("stage")(function)
    return app
