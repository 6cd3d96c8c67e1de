"""The Lambda entry point of an object stage that S3 notifies directly: `pipeline_aws.s3_notification.handler`.

A bucket only one stage reads sends that stage's function an S3 event notification (free) instead of routing every
event through EventBridge (billed per event); see `pipeline_aws.triggers.object_trigger`. The runtime
(`pipeline_aws.runtime.handler`) reads EventBridge's "Object Created" shape, so this module turns each notification
record into that shape and hands it over; any other event goes to the runtime as it is.

The two shapes differ in more than layout: a notification URL-encodes the object key ("red flower.jpg" arrives as
"red+flower.jpg", https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html), while
EventBridge sends the key as stored, so the key is decoded here. Delivery and failures are unchanged: the
notification invokes the function asynchronously, so a record that fails raises, and Lambda's retries and
on-failure destination (the stage's FunctionEventInvokeConfig) apply as they do to EventBridge's invocations.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from pipeline_aws import runtime

TEST_EVENT = "s3:TestEvent"  # what S3 may send when a notification configuration is saved


def object_created(record: dict[str, Any]) -> dict[str, Any]:
    """One S3 notification record as the EventBridge `Object Created` event the runtime reads."""
    s3 = record["s3"]
    found = s3["object"]
    detail_object: dict[str, Any] = {"key": unquote_plus(found["key"])}
    for source, target in (("size", "size"), ("eTag", "etag"), ("versionId", "version-id"), ("sequencer", "sequencer")):
        if found.get(source) is not None:
            detail_object[target] = found[source]
    return {
        "version": "0", "source": "aws.s3", "detail-type": "Object Created",
        "time": record.get("eventTime"), "region": record.get("awsRegion"),
        "detail": {"version": "0", "bucket": {"name": s3["bucket"]["name"]}, "object": detail_object,
                   "reason": record.get("eventName", "")},
    }


def is_notification(event: dict[str, Any]) -> bool:
    records = event.get("Records")
    return isinstance(records, list) and bool(records) and all(isinstance(r, dict) and r.get("eventSource") == "aws:s3" for r in records)


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Run the stage on each object the notification names (one per event in practice), in order; a failure raises,
    so the whole event is retried and the objects already done are rewritten at the same keys."""
    if event.get("Event") == TEST_EVENT:
        return {"ignored": TEST_EVENT}
    if not is_notification(event):
        return runtime.handler(event, context)
    results = [runtime.handler(object_created(record), context) for record in event["Records"]]
    return results[0] if len(results) == 1 else {"objects": results}
