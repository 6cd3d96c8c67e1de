"""The raw archiver's Lambda entry point: `pipeline_aws.archive.handler`.

When Firehose's per-record rounding would make the raw archive expensive (see pipeline_aws.archiving),
the plan archives the stream with this function instead, on its own event source mapping (batches of up
to 10,000 records or 300 s). Each batch becomes one object:

* the records' bytes, each followed by a newline, exactly what `pipeline run` writes to raw/ locally
  (pipeline.runtime.local), gzip-compressed with no time in the header (`mtime=0`), so the same batch
  always gives the same bytes;
* at `raw/<shard>/<first sequence>-<last sequence>.jsonl.gz` (pipeline.runtime.keys.stream_batch, the
  key every stream stage's outputs use), so a redelivered batch, a retry or the mapping re-reading after
  a failure, overwrites its own object instead of archiving its records twice.

A failed PUT raises: the mapping retries the batch (bounded, bisecting it) and finally sends its shard
and sequence range to the archiver's SQS queue, while the records stay in the stream until its retention
ends. Standard library and boto3 (in the Lambda runtime) only; boto3 is imported on first use.
"""

from __future__ import annotations

import base64
import gzip
import os
from collections.abc import Sequence
from typing import Any

from pipeline.runtime import keys
from pipeline.runtime.logs import JsonLogger

BUCKET_ENV = "PIPELINE_RAW_BUCKET"
PREFIX_ENV = "PIPELINE_RAW_PREFIX"
GZIP_LEVEL = 6  # zlib's default: level 9 takes about twice the CPU for a few percent smaller objects on JSON
GZIP_SUFFIX = ".gz"
CONTENT_TYPE = "application/gzip"

_client: Any = None
logger = JsonLogger(stage="raw-archive")


def s3_client() -> Any:
    """One client per container (cold start pays once); PIPELINE_S3_ENDPOINT_URL points it at an emulator."""
    global _client
    if _client is None:
        import boto3

        _client = boto3.client("s3", endpoint_url=os.environ.get("PIPELINE_S3_ENDPOINT_URL") or None)
    return _client


def archive_body(records: Sequence[dict[str, Any]]) -> bytes:
    """Every record's bytes followed by a newline, gzip-compressed deterministically."""
    lines = b"".join(base64.b64decode(item["kinesis"]["data"]) + b"\n" for item in records)
    return gzip.compress(lines, compresslevel=GZIP_LEVEL, mtime=0)


def archive_key(prefix: str, records: Sequence[dict[str, Any]]) -> str:
    """`<prefix><shard>/<first>-<last>.jsonl.gz`: one Kinesis batch comes from one shard, and its first and
    last sequence numbers name it (eventID is `<shard id>:<sequence number>`)."""
    shard = str(records[0]["eventID"]).split(":", 1)[0]
    batch_id = keys.stream_batch(shard, records[0]["kinesis"]["sequenceNumber"], records[-1]["kinesis"]["sequenceNumber"])
    return keys.output_key(prefix, batch_id) + GZIP_SUFFIX


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Archive one batch of Kinesis records as one object; raise on failure so the mapping retries it."""
    records = [item for item in event.get("Records") or [] if item.get("eventSource") == "aws:kinesis"]
    if not records:
        logger.warning("no Kinesis records in the event", keys=sorted(event))
        return {"archived": 0}
    bucket = os.environ[BUCKET_ENV]
    key = archive_key(os.environ.get(PREFIX_ENV, keys.RAW_PREFIX), records)
    body = archive_body(records)
    s3_client().put_object(Bucket=bucket, Key=key, Body=body, ContentType=CONTENT_TYPE)
    logger.info("archived", key=key, records=len(records), bytes=len(body))
    return {"archived": len(records), "key": key}
