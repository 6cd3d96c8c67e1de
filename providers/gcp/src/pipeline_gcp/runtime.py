"""The Cloud Functions (gen2) entry points of every stage.

Every stage is an HTTP function (`--signature-type=http --target=http`), called by exactly one thing:

* **a push subscription of our own** carrying a Cloud Storage notification (`eventType` OBJECT_FINALIZE,
  payload JSON_API_V1): for an object stage, a new object of its source (a stage's output or an
  upload); for a stream stage, a new **batch file** that the stage's Cloud Storage subscription wrote
  (Avro, `write_metadata`: one file holds up to `batch_size` records, each with its Pub/Sub
  `message_id`, publish time, ordering key and attributes);
* **Cloud Scheduler** (header `X-CloudScheduler-ScheduleTime`): a scheduled run, named by its scheduled time
  (with `from`: a run over its window, cut off at that time);
* **an authenticated caller** of an HTTP stage: request rows in, the handler's rows out (with `from`: no rows
  in, a run over the window cut off at the request's time; 409 with Retry-After while another run holds it).

A window's state and lease are objects written with `ifGenerationMatch` (0: only if absent), so a lost
race is a 412 (https://cloud.google.com/storage/docs/request-preconditions).

Failures: a poison record is dead-lettered by the runtime (the rest of the batch carries on). A batch or
event that fails as a whole answers 500, so Pub/Sub redelivers it with backoff; once it has been tried
`retries + 1` times (Pub/Sub's `deliveryAttempt`) or is older than `max_event_age_s`, the runtime writes
every record of it to the dead-letter bucket, logs "retries exhausted" (alerted) and acknowledges it.
Whatever never reaches this code (a crash, a timeout) goes to the stage's dead-letter topic after the
subscription's delivery attempts. `cloud_event` stays for Eventarc-shaped events (Pub/Sub
`messagePublished`, Storage `object.v1.finalized`) a user may wire themselves.

Imports only the standard library, google-cloud-storage (lazily) and this package's Avro reader.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from pipeline.runtime import keys
from pipeline.runtime.entry import cached_runner, tick_name, wanted, window_request, window_run
from pipeline.runtime.errors import BatchFailedError
from pipeline.runtime.invoke import BatchResult, StageRunner
from pipeline.runtime.records import Record
from pipeline.runtime.store import PreconditionFailed

PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
STORAGE_FINALIZED = "google.cloud.storage.object.v1.finalized"
NOTIFICATION_FINALIZE = "OBJECT_FINALIZE"  # Cloud Storage Pub/Sub notification eventType attribute
BATCH_SUFFIX = ".avro"
SCHEDULE_HEADER = "X-CloudScheduler-ScheduleTime"


class GcsStore:
    """ListingStore over Cloud Storage: an upload replaces the object atomically (a new generation)."""

    def __init__(self, client: Any = None) -> None:
        if client is None:
            from google.cloud import storage

            client = storage.Client()
        self.client = client

    def get(self, bucket: str, key: str) -> bytes:
        data: bytes = self.client.bucket(bucket).blob(key).download_as_bytes()
        return data

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.client.bucket(bucket).blob(key).upload_from_string(data, content_type="application/x-ndjson")

    def read_versioned(self, bucket: str, key: str) -> tuple[bytes, str] | None:
        """The object and its generation (from the download's x-goog-generation header), or None when there is none.
        Without that header (some emulators), the generation is read first and the download made conditional on it."""
        from google.api_core.exceptions import NotFound

        blob = self.client.bucket(bucket).blob(key)
        try:
            data: bytes = blob.download_as_bytes()
            generation = blob.generation
            if generation is None:
                found = self.client.bucket(bucket).get_blob(key)
                if found is None:
                    return None
                generation = found.generation  # (a download sets it from the headers it lacks: read it first)
                data = found.download_as_bytes(if_generation_match=generation)
        except NotFound:
            return None
        return data, str(generation)

    def put_if(self, bucket: str, key: str, data: bytes, token: str | None) -> str:
        """An upload with `ifGenerationMatch` (the generation read, or 0: only if no live object exists); GCS answers
        412 when the object is not that generation. The client retries such uploads on transient errors itself."""
        from google.api_core.exceptions import PreconditionFailed as Failed

        blob = self.client.bucket(bucket).blob(key)
        try:
            blob.upload_from_string(data, content_type="application/json", if_generation_match=0 if token is None else int(token))
        except Failed as exc:
            raise PreconditionFailed(f"gs://{bucket}/{key}: {exc}") from exc
        return str(blob.generation)

    def list(self, bucket: str, prefix: str) -> Iterator[tuple[str, float]]:
        """Keys under `prefix` with their last update time (a rewrite counts as new: it is a new generation)."""
        for key, modified, _ in self.list_sized(bucket, prefix):
            yield key, modified

    def list_sized(self, bucket: str, prefix: str) -> Iterator[tuple[str, float, int]]:
        for blob in self.client.list_blobs(bucket, prefix=prefix):
            updated = blob.updated or blob.time_created
            yield blob.name, updated.timestamp() if updated is not None else 0.0, int(blob.size or 0)


def runner() -> StageRunner:
    """The deployed source is unpacked into /workspace (the working directory) on Cloud Functions."""
    return cached_runner(GcsStore)


# ---- the HTTP target --------------------------------------------------------------------------


def http(request: Any) -> tuple[str, int, dict[str, str]]:
    """The functions-framework HTTP target of every stage (a Flask request)."""
    stage = runner()
    if stage.settings.trigger == "http":
        if stage.settings.windowed:
            status, answer, extra = window_request(stage, request.get_data(cache=False))
            return _json(answer, status, extra)
        status, answer = stage.run_http(request.get_data(cache=False), request.headers.get("Content-Type", ""))
        return _json(answer, status)
    body = request.get_json(silent=True)
    if isinstance(body, dict) and isinstance(body.get("message"), dict):
        status, answer = push(stage, body)
        return _json(answer, status)
    if stage.settings.trigger == "schedule":
        scheduled = request.headers.get(SCHEDULE_HEADER)
        try:
            if stage.settings.windowed:
                return _json(window_run(stage, scheduled).summary(), 200)
            result = stage.run_schedule(tick_name(scheduled))
        except BatchFailedError as exc:  # Cloud Scheduler retries per the job's retry_config
            return _json({"error": str(exc.cause), "retryable": True}, 500)
        except RuntimeError as exc:  # the window changed under the run (WindowConflictError) or cannot be read
            return _json({"error": f"{type(exc).__name__}: {exc}", "retryable": bool(getattr(exc, "retryable", False))}, 500)
        return _json({"output": result.output_key, "dead_letters": result.dead_letters}, 200)
    return _json({"error": f"stage {stage.settings.stage}: not a request this {stage.settings.trigger} stage serves"}, 400)


def _json(answer: dict[str, Any], status: int, headers: dict[str, str] | None = None) -> tuple[str, int, dict[str, str]]:
    return json.dumps(answer, default=str), status, {"Content-Type": "application/json", **(headers or {})}


def push(stage: StageRunner, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """One Pub/Sub push request: a Cloud Storage notification (our subscriptions carry nothing else).

    2xx acknowledges; 500 has Pub/Sub redeliver. `deliveryAttempt` is set because every subscription of
    ours has a dead-letter policy (https://cloud.google.com/pubsub/docs/handling-failures).
    """
    message = body["message"]
    attributes = message.get("attributes") or {}
    if "eventType" not in attributes:
        single = pubsub_message(stage, body, None)
        return 200, {"output": single.output_key, "dead_letters": single.dead_letters}
    if attributes["eventType"] != NOTIFICATION_FINALIZE:
        return 200, {"ignored": attributes["eventType"]}
    data = _notification_object(message)
    bucket, name = data.get("bucket") or attributes.get("bucketId", ""), data.get("name") or attributes.get("objectId", "")
    generation = str(data.get("generation") or attributes.get("objectGeneration") or "") or None
    source = {"bucket": bucket, "key": name, "generation": generation}
    try:
        stream = stage.settings.trigger == "stream"
        result = batch_file(stage, bucket, name) if stream else storage_object(stage, {"bucket": bucket, "name": name, "generation": generation})
    except BatchFailedError as exc:
        if not _exhausted(stage, message, body.get("deliveryAttempt")):
            return 500, {"error": f"{type(exc.cause).__name__}: {exc.cause}", "retryable": True}
        stage.dead_letter_all(exc.batch_id or _batch_id(stage, name), *_raw_inputs(stage, bucket, name, source), exc.cause)
        return 200, {"dead_lettered": True}
    if result is None:
        return 200, {"ignored": name}
    return 200, {"output": result.output_key, "dead_letters": result.dead_letters}


def _notification_object(message: dict[str, Any]) -> dict[str, Any]:
    """The object resource (JSON_API_V1 payload) a notification carries as its base64 data."""
    raw = message.get("data")
    if not raw:
        return {}
    try:
        data = json.loads(base64.b64decode(raw))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _exhausted(stage: StageRunner, message: dict[str, Any], attempt: Any) -> bool:
    """Whether a failing event has had its retries (`retries + 1` deliveries) or is older than max_event_age_s."""
    retries = int(os.environ.get("PIPELINE_RETRIES", "3"))
    if isinstance(attempt, int) and attempt > retries:
        return True
    published = message.get("publishTime") or message.get("publish_time")
    max_age = float(os.environ.get("PIPELINE_MAX_EVENT_AGE_S", "3600"))
    return isinstance(published, str) and time.time() - _epoch(published) > max_age


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _batch_id(stage: StageRunner, name: str) -> str:
    if stage.settings.trigger == "stream":
        return batch_name(name, os.environ.get("PIPELINE_BATCH_PREFIX", f"{stage.settings.stage}/"))
    return keys.object_batch(name, stage.settings.input_prefix)


def _raw_inputs(stage: StageRunner, bucket: str, name: str, source: dict[str, Any]) -> tuple[list[bytes], list[dict[str, Any]]]:
    """What to dead-letter when a whole input gave up: each record of a batch file when it can still be read,
    else a pointer to the input object (it stays in its bucket for the bucket's retention)."""
    if stage.settings.trigger == "stream":
        try:
            records = read_batch(stage.store.get(bucket, name), name)
            return [r.data for r in records], [r.describe() for r in records]
        except Exception:
            pass
    return [b""], [source]


# ---- stream stages: batch files of the Cloud Storage subscription ------------------------------


def batch_name(name: str, prefix: str) -> str:
    """`preprocess/2026-11-01/10_00_00Z_<uuid>.avro` -> `batch/2026-11-01/10_00_00Z_<uuid>`: one output per batch file."""
    key = name[len(prefix):] if name.startswith(prefix) else name
    if key.endswith(BATCH_SUFFIX):
        key = key[: -len(BATCH_SUFFIX)]
    return "batch/" + keys.safe(key, keep_slash=True)


def read_batch(data: bytes, name: str) -> list[Record]:
    """An Avro batch file written with `write_metadata` -> records (message_id as the stable record id)."""
    from pipeline_gcp.avro import ContainerFile, field_logical_type

    container = ContainerFile(data)
    unit = {"timestamp-micros": 1e6, "timestamp-millis": 1e3}.get(field_logical_type(container.schema, "publish_time"), 1e6)
    partition = name.rsplit("/", 1)[-1].removesuffix(BATCH_SUFFIX)
    out = []
    for row in container:
        attributes = row.get("attributes") or {}
        message_id = str(row.get("message_id") or "")
        published = row.get("publish_time")
        arrival = published / unit if isinstance(published, (int, float)) else _epoch(published) if isinstance(published, str) else None
        key = attributes.get("ordering_key") or attributes.get("orderingKey") or attributes.get("key")
        payload = row.get("data")
        out.append(Record(payload if isinstance(payload, bytes) else str(payload or "").encode("utf-8"), key=key,
                          record_id=message_id, partition=partition, sequence=message_id, arrival_time=arrival))
    return out


def batch_file(stage: StageRunner, bucket: str, name: str) -> BatchResult | None:
    """Run a stream stage on one batch file: every record in it, one output object named after the file."""
    prefix = os.environ.get("PIPELINE_BATCH_PREFIX", f"{stage.settings.stage}/")
    if not name.startswith(prefix) or not name.endswith(BATCH_SUFFIX):
        stage.logger.info("ignored object outside the batch prefix", bucket=bucket, key=name)
        return None
    batch_id = batch_name(name, prefix)
    try:
        records = read_batch(stage.store.get(bucket, name), name)
    except Exception as exc:
        stage.logger.log("ERROR", "could not read the batch file; it will be retried", batch=batch_id, key=name, exc_info=exc)
        raise BatchFailedError(stage.settings.stage, batch_id, exc) from exc
    return stage.run_stream(records, batch_id)


# ---- object stages -----------------------------------------------------------------------------


def storage_object(stage: StageRunner, data: dict[str, Any]) -> BatchResult | None:
    bucket, name = data["bucket"], data["name"]
    if not wanted(stage.settings, bucket, name):
        stage.logger.info("ignored object outside the input prefix", bucket=bucket, key=name)
        return None
    generation = data.get("generation")
    return stage.run_object(bucket, name, generation=str(generation) if generation is not None else None)


# ---- Eventarc-shaped events and single pushed messages --------------------------------------------


def pubsub_record(message: dict[str, Any], subscription: str | None) -> Record:
    message_id = message.get("messageId") or message.get("message_id") or ""
    published = message.get("publishTime") or message.get("publish_time")
    attributes = message.get("attributes") or {}
    return Record(
        base64.b64decode(message.get("data") or b""), key=message.get("orderingKey") or message.get("ordering_key") or attributes.get("key"),
        record_id=message_id, partition=(subscription or "pubsub").rsplit("/", 1)[-1], sequence=message_id,
        arrival_time=_epoch(published) if published else None,
    )


def pubsub_message(stage: StageRunner, data: dict[str, Any], event_id: str | None) -> BatchResult:
    """One message per invocation (an Eventarc Pub/Sub trigger): its id is the batch identity."""
    record = pubsub_record(data["message"], data.get("subscription"))
    if not record.record_id and event_id:
        record.record_id = record.sequence = event_id
    return stage.run_stream([record], keys.message_batch(record.record_id))


def _attributes(event: Any) -> dict[str, Any]:
    """CloudEvent attributes from a cloudevents.http.CloudEvent or a plain dict with `data`."""
    if isinstance(event, dict):
        return {k: v for k, v in event.items() if k != "data"}
    get = getattr(event, "get_attributes", None)
    return dict(get()) if get is not None else {}


def cloud_event(event: Any) -> None:
    """functions-framework CloudEvent target, for Eventarc triggers a user wires themselves. Raises to retry."""
    stage = runner()
    attributes = _attributes(event)
    data: Any = event.get("data") if isinstance(event, dict) else event.data
    kind = attributes.get("type", "")
    if kind == PUBSUB_PUBLISHED:
        pubsub_message(stage, data, attributes.get("id"))
    elif kind == STORAGE_FINALIZED:
        storage_object(stage, data)
    elif stage.settings.trigger == "schedule" and stage.settings.windowed:
        window_run(stage, attributes.get("time"))
    elif stage.settings.trigger == "schedule":
        stage.run_schedule(tick_name(attributes.get("time")))
    else:
        raise ValueError(f"stage {stage.settings.stage}: unexpected event type {kind!r}")
