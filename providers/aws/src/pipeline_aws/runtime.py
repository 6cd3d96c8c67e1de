"""The AWS Lambda entry point of every stage: `pipeline_aws.runtime.handler`.

One handler for the event shapes the stage's trigger delivers:

* Kinesis (event source mapping): base64 records of one shard. Poison records are dead-lettered
  by the runtime; a transient failure returns the partial batch response
  `{"batchItemFailures": [{"itemIdentifier": <sequence number>}]}` so Lambda resumes at the first
  record not done (the mapping must enable ReportBatchItemFailures); a failure before any record
  is done raises, so Lambda retries (and bisects) the batch.
* EventBridge `Object Created` from S3 (a stage's outputs, or a file dropped into the uploads
  bucket): reads the object and runs the handler on its rows; failures raise so Lambda's async
  retries and on-failure destination apply.
* An HTTP request through the function URL (or an API Gateway HTTP API: the same payload format
  2.0): the body (base64 when `isBase64Encoded`) holds rows as a JSON array or JSON lines; the
  response is the handler's rows as JSON.
* A scheduled run: EventBridge Scheduler passes `{"scheduled_time": "<aws.scheduler.scheduled-time>"}`
  (filled in by Scheduler), an EventBridge rule sends a `Scheduled Event` with `time`; the run is named
  by that time, so a retried run overwrites its own output. A schedule with `from` runs over its window
  cut off at that time (`pipeline.runtime.window`), and so does a request to an HTTP stage with `from`
  (cut off at the request's time): the window's state and lease are S3 objects written with `If-Match` /
  `If-None-Match: *` (conditional writes, https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-requests.html).

Only the standard library and boto3 (already in the Lambda runtime) are imported, boto3 lazily.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_plus

from pipeline.runtime import keys
from pipeline.runtime.entry import cached_runner, tick_name, wanted, window_request, window_run
from pipeline.runtime.errors import BatchFailedError
from pipeline.runtime.invoke import StageRunner
from pipeline.runtime.records import Record
from pipeline.runtime.store import PreconditionFailed

JSON_HEADERS = {"content-type": "application/json"}


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


class S3Store:
    """ObjectStore (and ListingStore) over S3. A PUT replaces an object atomically, which is all the runtime needs."""

    def __init__(self, client: Any = None, page_size: int = 1000) -> None:
        if client is None:
            import boto3

            client = boto3.client("s3", endpoint_url=os.environ.get("PIPELINE_S3_ENDPOINT_URL") or None)
        self.client = client
        self.page_size = page_size  # ListObjectsV2 returns at most 1,000 keys a request

    def get(self, bucket: str, key: str) -> bytes:
        """The object's bytes. A missing key raises FileNotFoundError, also when S3 answers 403 because the
        role may list only a prefix (S3 says 404 only to callers with ListBucket; a prefix-scoped ListBucket
        lets us ask whether the key exists instead)."""
        return self._get(bucket, key)[0]

    def _get(self, bucket: str, key: str) -> tuple[bytes, str]:
        try:
            response = self.client.get_object(Bucket=bucket, Key=key)
            body: bytes = response["Body"].read()
        except Exception as exc:
            if _code(exc) in {"NoSuchKey", "404"} or (_code(exc) in {"AccessDenied", "403"} and not self.exists(bucket, key)):
                raise FileNotFoundError(f"s3://{bucket}/{key}") from exc
            raise
        return body, str(response["ETag"])

    def read_versioned(self, bucket: str, key: str) -> tuple[bytes, str] | None:
        """The object and its ETag (the version `put_if` compares), or None when there is none."""
        try:
            return self._get(bucket, key)
        except FileNotFoundError:
            return None

    def put_if(self, bucket: str, key: str, data: bytes, token: str | None) -> str:
        """PutObject with `If-Match: <etag>`, or `If-None-Match: *` to create only. S3 answers 412 PreconditionFailed
        when the object changed (or exists), 409 ConditionalRequestConflict when another conditional write to it is
        in flight, and 404 NoSuchKey for `If-Match` on a key that is gone: every one means another writer won."""
        condition = {"IfNoneMatch": "*"} if token is None else {"IfMatch": token}
        try:
            response = self.client.put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/json", **condition)
        except Exception as exc:
            if _code(exc) in {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"} or (token is not None and _code(exc) in {"NoSuchKey", "404"}):
                raise PreconditionFailed(f"s3://{bucket}/{key}: {_code(exc)}") from exc
            raise
        return str(response["ETag"])

    def exists(self, bucket: str, key: str) -> bool:
        """Whether `key` exists, by listing it (works with a ListBucket scoped to the key's prefix)."""
        try:
            found = self.client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("Contents", [])
        except Exception:
            return True  # cannot tell: report the original error, not a missing object
        return any(item["Key"] == key for item in found)

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/x-ndjson")

    def list(self, bucket: str, prefix: str) -> Iterator[tuple[str, float]]:
        """Every key under `prefix` with its last-modified time (ListObjectsV2, 1,000 keys a page)."""
        for key, modified, _ in self.list_sized(bucket, prefix):
            yield key, modified

    def list_sized(self, bucket: str, prefix: str) -> Iterator[tuple[str, float, int]]:
        """Every key under `prefix` with its last-modified time and size. S3 dates a multipart upload at its
        start (CreateMultipartUpload), so a key may appear with an older time: windows allow for that."""
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": self.page_size}):
            for item in page.get("Contents", []):
                yield item["Key"], item["LastModified"].timestamp(), int(item.get("Size") or 0)


def runner() -> StageRunner:
    return cached_runner(S3Store, os.environ.get("LAMBDA_TASK_ROOT"))


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda entry point: dispatch on the event's shape."""
    stage = runner()
    if stage.settings.trigger == "http":
        return http_only(stage, event)
    records = event.get("Records")
    if records and records[0].get("eventSource") == "aws:kinesis":
        return kinesis(stage, records)
    if records and all(isinstance(r, dict) and r.get("eventSource") == "aws:s3" for r in records):
        return s3_notification(stage, records)
    if event.get("Event") == S3_TEST_EVENT:  # S3 may send this when a notification configuration is saved
        return {"ignored": S3_TEST_EVENT}
    if event.get("source") == "aws.s3" and event.get("detail-type") == "Object Created":
        return object_created(stage, event)
    if _function_url_request(event):
        return http_request(stage, event)
    if "scheduled_time" in event or event.get("detail-type") == "Scheduled Event":
        return scheduled(stage, event)
    raise ValueError(f"stage {stage.settings.stage}: unrecognised event (keys: {', '.join(sorted(event))})")


def _function_url_request(event: dict[str, Any]) -> bool:
    return isinstance(event.get("requestContext"), dict) and isinstance(event["requestContext"].get("http"), dict)


def http_only(stage: StageRunner, event: dict[str, Any]) -> dict[str, Any]:
    """An HTTP stage answers function URL requests only. Its callers hold lambda:InvokeFunction too (the URL
    needs it), so they could invoke it directly with any payload: a scheduled event there would run a window
    cut off at a time of the caller's choosing and move the watermark past data not read yet. Nothing else is
    ever delivered to it (no schedule, trigger, or asynchronous retry targets it, and `pipeline dlq replay`
    only re-sends queued stream batches and asynchronous events, which HTTP stages never have), so anything
    else is refused and logged, and the window is left alone."""
    if _function_url_request(event):
        return http_request(stage, event)
    keys = sorted(str(k) for k in event) if isinstance(event, dict) else []
    stage.logger.warning("refused an event that is not a function URL request", keys=keys)
    return {"refused": f"stage {stage.settings.stage} is an HTTP stage: it answers only requests to its function URL "
                       f"(this event's keys: {', '.join(keys) or 'none'})"}


def kinesis_record(item: dict[str, Any]) -> Record:
    data = item["kinesis"]
    return Record(
        base64.b64decode(data["data"]), key=data.get("partitionKey"), record_id=item.get("eventID", ""),
        partition=item.get("eventID", "shard").split(":", 1)[0], sequence=data["sequenceNumber"],
        arrival_time=data.get("approximateArrivalTimestamp"),
    )


def kinesis(stage: StageRunner, items: list[dict[str, Any]]) -> dict[str, Any]:
    """One batch from one shard; key = shard + first/last sequence number of the records written."""
    records = [kinesis_record(item) for item in items]
    shard = records[0].partition

    def batch_id(end: int) -> str:
        return keys.stream_batch(shard, records[0].sequence, records[end - 1].sequence)

    result = stage.run_stream(records, batch_id(len(records)), partial=True, batch_id_for=batch_id)
    if result.retry_from is not None:
        return {"batchItemFailures": [{"itemIdentifier": records[result.retry_from].sequence}]}
    return {"batchItemFailures": []}


def _stored_key(stage: StageRunner, bucket: str, key: str) -> str:
    """The key as stored. EventBridge sends S3 keys as they are; S3's classic notifications URL-encode them
    ("red flower.jpg" -> "red+flower.jpg"), so a key that only exists decoded is used decoded."""
    decoded = unquote_plus(key)
    if decoded == key or not isinstance(stage.store, S3Store) or stage.store.exists(bucket, key):
        return key
    return decoded if stage.store.exists(bucket, decoded) else key


def object_created(stage: StageRunner, event: dict[str, Any]) -> dict[str, Any]:
    """A new object of the source stage, or a file a producer uploaded (JSON lines, gzip or not)."""
    detail = event["detail"]
    bucket, key = detail["bucket"]["name"], detail["object"]["key"]
    if not wanted(stage.settings, bucket, key):
        stage.logger.info("ignored object outside the input prefix", bucket=bucket, key=key)
        return {"ignored": key}
    key = _stored_key(stage, bucket, key)
    version = detail["object"].get("version-id") or detail["object"].get("etag")
    result = stage.run_object(bucket, key, generation=version)
    return {"output": result.output_key, "rows": result.rows, "dead_letters": result.dead_letters}


S3_TEST_EVENT = "s3:TestEvent"


def s3_notification(stage: StageRunner, records: list[dict[str, Any]]) -> dict[str, Any]:
    """An S3 event notification (a bucket one stage reads notifies it directly; EventBridge only fans out to
    several readers): each record as the EventBridge `Object Created` event it stands for, in order. The key
    arrives URL-encoded ("red flower.jpg" as "red+flower.jpg", notification-content-structure.html) and is
    decoded here. A failure raises, so Lambda's async retries and on-failure destination apply as they do to
    EventBridge's invocations; objects already done are rewritten at the same keys."""
    results = []
    for record in records:
        s3 = record["s3"]
        found = s3["object"]
        detail_object: dict[str, Any] = {"key": unquote_plus(found["key"])}
        for source, target in (("size", "size"), ("eTag", "etag"), ("versionId", "version-id"), ("sequencer", "sequencer")):
            if found.get(source) is not None:
                detail_object[target] = found[source]
        event = {"source": "aws.s3", "detail-type": "Object Created", "time": record.get("eventTime"),
                 "detail": {"bucket": {"name": s3["bucket"]["name"]}, "object": detail_object, "reason": record.get("eventName", "")}}
        results.append(object_created(stage, event))
    return results[0] if len(results) == 1 else {"objects": results}


def _response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": dict(JSON_HEADERS), "body": json.dumps(body, default=str, ensure_ascii=False)}


def http_request(stage: StageRunner, event: dict[str, Any]) -> dict[str, Any]:
    """A function URL (payload format 2.0) request: POST rows, get the handler's rows back as JSON; for a stage
    with `from`, POST nothing and the stage runs over its window, cut off at the request's time."""
    method = str(event["requestContext"]["http"].get("method", "")).upper()
    if method != "POST":
        response = _response(405, {"error": f"{method or 'this method'} is not supported; POST the rows as a JSON array or JSON lines"})
        response["headers"]["allow"] = "POST"
        return response
    raw = event.get("body") or ""
    try:
        body = base64.b64decode(raw, validate=True) if event.get("isBase64Encoded") else raw.encode("utf-8")
    except ValueError:
        return _response(400, {"error": "the request body is not valid base64"})
    if stage.settings.windowed:
        epoch_ms = event["requestContext"].get("timeEpoch")
        status, answer, extra = window_request(stage, body, epoch_ms / 1000 if isinstance(epoch_ms, (int, float)) else None)
        response = _response(status, answer)
        response["headers"].update({k.lower(): v for k, v in extra.items()})
        return response
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    status, answer = stage.run_http(body, headers.get("content-type", ""))
    return _response(status, answer)


def scheduled(stage: StageRunner, event: dict[str, Any]) -> dict[str, Any]:
    """One run, named by its scheduled time (Scheduler's context attribute, or a rule event's `time`)."""
    when = event.get("scheduled_time") or event.get("time")
    if not when or str(when).startswith("<aws.scheduler"):
        raise ValueError(f"stage {stage.settings.stage}: the scheduled event carries no scheduled time ({event!r})")
    if stage.settings.windowed:  # a failure raises: Scheduler's retry policy, then its dead-letter queue
        return window_run(stage, str(when)).summary()
    result = stage.run_schedule(tick_name(str(when)))
    return {"output": result.output_key, "rows": result.rows}


__all__ = ["BatchFailedError", "S3Store", "handler"]
