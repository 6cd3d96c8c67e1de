"""The raw archiver's Azure Functions entry point: `function_app.py` in its package is

    from pipeline_azure.archive import build_app
    app = build_app()

Where Event Hubs Capture (billed per throughput unit-hour, whatever the volume) would cost more than a
little, the plan archives the stream with this function instead (see `pipeline_azure.archiving`): an
Event Hubs trigger on its own consumer group, with batches of up to `maxEventBatchSize` events or
`maxWaitTime` (5 minutes) per partition. Each batch becomes one blob:

* the events' bodies, each followed by a newline, exactly what `pipeline run` writes to raw/ locally
  (pipeline.runtime.local) and what the AWS archiver writes, gzip-compressed with no time in the header
  (`mtime=0`), so the same batch always gives the same bytes;
* at `raw/<partition>/<first sequence>-<last sequence>.jsonl.gz` (`keys.stream_batch`, the key every
  stream stage's outputs use), so a retried batch overwrites its own blob instead of archiving twice.

The host checkpoints a partition only after the function returns, and the function returns only once
the blob is written. A failed write raises, so the retry policy (`ARCHIVER_RETRIES`, exponential) runs
the same batch again; on its last attempt the batch is dead-lettered instead - every event with the error,
in the stage dead-letter format, under `raw/` of the dead-letter container - and the function returns so
the host can move on (it would checkpoint past the batch anyway: the Event Hubs trigger checkpoints after
the last retry whatever the outcome). The "dead_letters" log line raises the archiver's alert.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterable, Sequence
from typing import Any

from pipeline.runtime import keys
from pipeline.runtime.context import Context
from pipeline.runtime.invoke import BatchResult, Settings, StageRunner
from pipeline.runtime.logs import JsonLogger
from pipeline_azure.runtime import BlobStore, LoggingStream, event_record, last_attempt, partition_of, worker_types

NAME = "raw-archive"  # how logs and dead-letter entries name the archiver
RAW_CONTAINER_ENV = "PIPELINE_RAW_BUCKET"
RAW_PREFIX_ENV = "PIPELINE_RAW_PREFIX"
GZIP_LEVEL = 6  # zlib's default: level 9 takes about twice the CPU for a few percent smaller blobs of JSON
SUFFIX = ".gz"
CONTENT_TYPE = "application/gzip"

_archiver: Archiver | None = None


def archive_body(bodies: Iterable[bytes]) -> bytes:
    """Every body followed by a newline (`b"\\n".join(bodies) + b"\\n"`), gzip-compressed deterministically."""
    return gzip.compress(b"".join(body + b"\n" for body in bodies), compresslevel=GZIP_LEVEL, mtime=0)


def archive_key(prefix: str, partition: str, first: int, last: int) -> str:
    """`<prefix><partition>/<first>-<last>.jsonl.gz`: one trigger batch comes from one partition, and its
    first and last sequence numbers name it."""
    return keys.output_key(prefix, keys.stream_batch(partition, first, last)) + SUFFIX


def _never_called(records: Any, context: Any) -> None:  # pragma: no cover - the archiver runs no handler
    raise RuntimeError("the raw archiver runs no handler")


class Archiver:
    """Writes one batch of events as one blob; dead-letters a batch whose retries are exhausted."""

    def __init__(self, store: BlobStore, container: str, prefix: str, dead_letter_container: str, dead_letter_prefix: str,
                 logger: JsonLogger | None = None) -> None:
        self.store, self.container, self.prefix = store, container, prefix
        self.logger = logger or JsonLogger(stage=NAME)
        # The stage runner is only used for its dead-letter writer: the same entries (one per event, with the
        # error and the event's bytes) every stage writes, so one tool reads all of them.
        settings = Settings(stage=NAME, trigger="stream", handler="", output_bucket=container, output_prefix=prefix,
                            dead_letter_bucket=dead_letter_container, dead_letter_prefix=dead_letter_prefix)
        self.dead_letters = StageRunner(settings, _never_called, store, Context(NAME, logger=self.logger, trigger="stream"), self.logger)

    @classmethod
    def from_env(cls) -> Archiver:
        store = BlobStore(os.environ.get("PIPELINE_DATA_BLOB_ENDPOINT"), os.environ.get("PIPELINE_DATA_CONNECTION_STRING"))
        return cls(store, os.environ[RAW_CONTAINER_ENV], os.environ.get(RAW_PREFIX_ENV, keys.RAW_PREFIX),
                   os.environ["PIPELINE_DEAD_LETTER_BUCKET"], os.environ.get("PIPELINE_DEAD_LETTER_PREFIX", "raw/"),
                   JsonLogger(stream=LoggingStream(), stage=NAME))  # type: ignore[arg-type]  # write() and flush() are all it uses

    def archive(self, events: Sequence[Any], final: bool = False) -> BatchResult | None:
        """One batch (one partition, a contiguous sequence range) -> one blob. A failed write raises, unless
        this is the retry policy's last attempt (`final`): then the batch is dead-lettered and returned."""
        if not events:
            return None
        partition = partition_of(events)
        first, last = int(events[0].sequence_number), int(events[-1].sequence_number)
        batch_id = keys.stream_batch(partition, first, last)
        key = archive_key(self.prefix, partition, first, last)
        bodies = [event.get_body() for event in events]
        try:
            body = archive_body(bodies)
            self.store.put(self.container, key, body, content_type=CONTENT_TYPE)
        except Exception as exc:
            if not final:
                self.logger.warning("archive write failed; the retry policy runs the batch again", key=key, error=f"{type(exc).__name__}: {exc}")
                raise
            records = [event_record(event, partition) for event in events]
            return self.dead_letters.dead_letter_all(batch_id, bodies, [r.describe() for r in records], exc)
        self.logger.info("archived", key=key, events=len(events), bytes=len(body))
        result = BatchResult(batch_id, len(events))
        result.output_key, result.rows = key, len(events)
        return result


def archiver() -> Archiver:
    """The process's archiver, built on first use (one storage client per instance)."""
    global _archiver
    if _archiver is None:
        _archiver = Archiver.from_env()
    return _archiver


def archive_events(events: list[Any], context: Any = None) -> BatchResult | None:
    """Event Hubs trigger, cardinality many: archive the batch, or dead-letter it on the last attempt."""
    return archiver().archive(events, final=last_attempt(context))


def _archive_function(events: list[Any], context: Any) -> None:  # annotated for the worker by build_app()
    archive_events(events, context)


def build_app() -> Any:
    """A `func.FunctionApp` with the archiver's one Event Hubs trigger and its retry policy (app settings
    name the hub, the consumer group and the retry count; batch size and wait override host.json)."""
    import typing

    import azure.functions as func

    app = func.FunctionApp()
    archive = worker_types(_archive_function, events=typing.List[func.EventHubEvent], context=func.Context)  # noqa: UP006 - the worker's check
    function: Any = app.retry(strategy="exponential_backoff", max_retry_count=os.environ.get("PIPELINE_MAX_RETRIES", "10"),
                              minimum_interval="00:00:05", maximum_interval="00:05:00")(archive)
    function = app.event_hub_message_trigger(arg_name="events", event_hub_name="%PIPELINE_EVENT_HUB%", connection="EventHubConnection",
                                             consumer_group="%PIPELINE_CONSUMER_GROUP%", cardinality="many")(function)
    app.function_name("archive")(function)
    return app
