"""The Cloud Functions (gen2) entry points of every stage.

* `cloud_event(event)`: the functions-framework CloudEvent target
  (`--signature-type=cloudevent --target=cloud_event`). It takes Pub/Sub `messagePublished`
  (functions-framework also turns a raw Pub/Sub push body into this event), Cloud Storage
  `object.v1.finalized` (Eventarc), and any other event type on a schedule stage.
* `http(request)`: a plain HTTP target (`--signature-type=http`) for a push subscription or Cloud
  Scheduler calling the function directly; returns (body, status).

Delivery semantics: a poison message is dead-lettered by the runtime and acknowledged (2xx), so
Pub/Sub does not redeliver it forever; a transient failure raises (HTTP 500), so Pub/Sub or
Eventarc retries with backoff and, after the subscription's attempts, sends it to its dead-letter
topic. Pub/Sub push delivers one message per request: the output key is the message id.

Imports only the standard library and google-cloud-storage (lazily).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from pipeline.runtime import keys
from pipeline.runtime.entry import cached_runner, tick_name, wanted
from pipeline.runtime.invoke import BatchResult, StageRunner
from pipeline.runtime.records import Record

PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
STORAGE_FINALIZED = "google.cloud.storage.object.v1.finalized"


class GcsStore:
    """ObjectStore over Cloud Storage: an upload replaces the object atomically (a new generation)."""

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


def runner() -> StageRunner:
    """The deployed source is unpacked into /workspace (the working directory) on Cloud Functions."""
    return cached_runner(GcsStore)


def _attributes(event: Any) -> dict[str, Any]:
    """CloudEvent attributes from a cloudevents.http.CloudEvent or a plain dict with `data`."""
    if isinstance(event, dict):
        return {k: v for k, v in event.items() if k != "data"}
    get = getattr(event, "get_attributes", None)
    return dict(get()) if get is not None else {}


def _data(event: Any) -> Any:
    return event.get("data") if isinstance(event, dict) else event.data


def cloud_event(event: Any) -> None:
    """functions-framework CloudEvent target. Raises to have the event retried."""
    stage = runner()
    attributes, data = _attributes(event), _data(event)
    kind = attributes.get("type", "")
    if kind == PUBSUB_PUBLISHED:
        pubsub_message(stage, data, attributes.get("id"))
    elif kind == STORAGE_FINALIZED:
        storage_object(stage, data)
    elif stage.settings.trigger == "schedule":
        stage.run_schedule(tick_name(attributes.get("time")))
    else:
        raise ValueError(f"stage {stage.settings.stage}: unexpected event type {kind!r}")


def http(request: Any) -> tuple[str, int]:
    """Plain HTTP target (a Flask request): Pub/Sub push body, Cloud Scheduler call, or a structured CloudEvent."""
    stage = runner()
    body = request.get_json(silent=True) or {}
    result: BatchResult | None
    if isinstance(body, dict) and isinstance(body.get("message"), dict):
        result = pubsub_message(stage, body, None)
    elif isinstance(body, dict) and body.get("type") == STORAGE_FINALIZED:
        result = storage_object(stage, body.get("data") or {})
    elif stage.settings.trigger == "schedule":
        result = stage.run_schedule(tick_name(request.headers.get("X-CloudScheduler-ScheduleTime")))
    else:
        return "unrecognised request", 400
    return json.dumps({"output": result.output_key if result else None, "dead_letters": result.dead_letters if result else 0}), 200


def pubsub_record(message: dict[str, Any], subscription: str | None) -> Record:
    from datetime import datetime

    message_id = message.get("messageId") or message.get("message_id") or ""
    published = message.get("publishTime") or message.get("publish_time")
    attributes = message.get("attributes") or {}
    return Record(
        base64.b64decode(message.get("data") or b""), key=message.get("orderingKey") or message.get("ordering_key") or attributes.get("key"),
        record_id=message_id, partition=(subscription or "pubsub").rsplit("/", 1)[-1], sequence=message_id,
        arrival_time=datetime.fromisoformat(published.replace("Z", "+00:00")).timestamp() if published else None,
    )


def pubsub_message(stage: StageRunner, data: dict[str, Any], event_id: str | None) -> BatchResult:
    """One message per invocation: its id is the batch identity."""
    record = pubsub_record(data["message"], data.get("subscription"))
    if not record.record_id and event_id:
        record.record_id = record.sequence = event_id
    return stage.run_stream([record], keys.message_batch(record.record_id))


def storage_object(stage: StageRunner, data: dict[str, Any]) -> BatchResult | None:
    bucket, name = data["bucket"], data["name"]
    if not wanted(stage.settings, bucket, name):
        stage.logger.info("ignored object outside the input prefix", bucket=bucket, key=name)
        return None
    generation = data.get("generation")
    return stage.run_object(bucket, name, generation=str(generation) if generation is not None else None)
