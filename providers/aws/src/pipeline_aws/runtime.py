"""The AWS Lambda entry point of every stage: `pipeline_aws.runtime.handler`.

One handler for the three event shapes the stage's trigger delivers:

* Kinesis (event source mapping): base64 records of one shard. Poison records are dead-lettered
  by the runtime; a transient failure returns the partial batch response
  `{"batchItemFailures": [{"itemIdentifier": <sequence number>}]}` so Lambda resumes at the first
  record not done (the mapping must enable ReportBatchItemFailures); a failure before any record
  is done raises, so Lambda retries (and bisects) the batch.
* EventBridge `Object Created` from S3: reads the object and runs the handler on its rows;
  failures raise so Lambda's async retries and on-failure destination apply.
* A scheduled event (EventBridge Scheduler or a rule): runs the handler once, named by the
  event's scheduled `time`.

Only the standard library and boto3 (already in the Lambda runtime) are imported, boto3 lazily.
"""

from __future__ import annotations

import base64
import os
from typing import Any

from pipeline.runtime import keys
from pipeline.runtime.entry import cached_runner, tick_name, wanted
from pipeline.runtime.errors import BatchFailedError
from pipeline.runtime.invoke import StageRunner
from pipeline.runtime.records import Record


class S3Store:
    """ObjectStore over S3. A PUT replaces an object atomically, which is all the runtime needs."""

    def __init__(self, client: Any = None) -> None:
        if client is None:
            import boto3

            client = boto3.client("s3", endpoint_url=os.environ.get("PIPELINE_S3_ENDPOINT_URL") or None)
        self.client = client

    def get(self, bucket: str, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        return body

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/x-ndjson")


def runner() -> StageRunner:
    return cached_runner(S3Store, os.environ.get("LAMBDA_TASK_ROOT"))


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda entry point: dispatch on the event's shape."""
    stage = runner()
    records = event.get("Records")
    if records and records[0].get("eventSource") == "aws:kinesis":
        return kinesis(stage, records)
    if event.get("source") == "aws.s3" and event.get("detail-type") == "Object Created":
        return object_created(stage, event)
    if stage.settings.trigger == "schedule" or event.get("detail-type") == "Scheduled Event":
        return scheduled(stage, event)
    raise ValueError(f"stage {stage.settings.stage}: unrecognised event (keys: {', '.join(sorted(event))})")


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


def object_created(stage: StageRunner, event: dict[str, Any]) -> dict[str, Any]:
    detail = event["detail"]
    bucket, key = detail["bucket"]["name"], detail["object"]["key"]
    if not wanted(stage.settings, bucket, key):
        stage.logger.info("ignored object outside the input prefix", bucket=bucket, key=key)
        return {"ignored": key}
    version = detail["object"].get("version-id") or detail["object"].get("etag")
    result = stage.run_object(bucket, key, generation=version)
    return {"output": result.output_key, "rows": result.rows, "dead_letters": result.dead_letters}


def scheduled(stage: StageRunner, event: dict[str, Any]) -> dict[str, Any]:
    result = stage.run_schedule(tick_name(event.get("time")))
    return {"output": result.output_key, "rows": result.rows}


__all__ = ["BatchFailedError", "S3Store", "handler"]
