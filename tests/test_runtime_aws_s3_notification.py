"""The Lambda entry point (`pipeline_aws.runtime.handler`) of an object stage S3 notifies directly, against S3 (moto
server mode), driven by S3 event notifications in the shape AWS documents
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html)."""

from __future__ import annotations

import contextlib
import gzip
from pathlib import Path
from typing import Any

import pytest
from emulators import read_jsonl, write_flaky

pytest_plugins = ["conftest_emulators"]


def notification(bucket: str, key: str, size: int, version: str | None = None) -> dict[str, Any]:
    """What S3 sends a Lambda function for one new object: the key URL-encoded, as S3 always sends it."""
    from urllib.parse import quote_plus

    found: dict[str, Any] = {"key": quote_plus(key, safe="/"), "size": size, "eTag": "0123456789abcdef0123456789abcdef",
                             "sequencer": "0A1B2C3D4E5F678901"}
    if version:
        found["versionId"] = version
    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1", "eventTime": "2026-11-01T18:43:48.000Z",
        "eventName": "ObjectCreated:Put", "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "1.2.3.4"}, "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810"},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "files-trigger",
               "bucket": {"name": bucket, "ownerIdentity": {"principalId": "A3NL1KOZZKExample"}, "arn": f"arn:aws:s3:::{bucket}"},
               "object": found},
    }]}


@pytest.fixture
def landing(s3_client: Any, stage_env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    names = {"uploads": "claims-uploads", "out": "claims-process-out", "dead": "claims-dead-letter"}
    for name in names.values():
        with contextlib.suppress(s3_client.exceptions.BucketAlreadyOwnedByYou):
            s3_client.create_bucket(Bucket=name)
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(write_flaky(tmp_path)))
    stage_env("process", "objects", "handlers/flaky.py:copy_rows", names["out"], names["dead"], source=(names["uploads"], "uploads"))
    return names


def test_a_notified_upload_is_processed_like_an_eventbridge_one(s3_client: Any, landing: dict[str, str]) -> None:
    from pipeline_aws.runtime import handler

    payload = gzip.compress(b'{"id": "a"}\n{"id": "b"}\n')
    key = "uploads/2026/claims day+1 é.jsonl.gz"  # a space, a literal '+' and a non-ASCII letter: decoded exactly
    s3_client.put_object(Bucket=landing["uploads"], Key=key, Body=payload)

    result = handler(notification(landing["uploads"], key, len(payload)), None)

    assert result["rows"] == 2 and result["dead_letters"] == 0
    assert result["output"] == "process/2026/claims=20day=2B1=20=C3=A9.jsonl"  # the runtime's safe key for the decoded name
    stored = s3_client.get_object(Bucket=landing["out"], Key=result["output"])["Body"].read()
    assert [row["id"] for row in read_jsonl(stored)] == ["a", "b"]
    # A redelivery of the same notification rewrites the same output key (at-least-once in, exactly one output).
    assert handler(notification(landing["uploads"], key, len(payload)), None)["output"] == result["output"]


def test_objects_outside_the_input_prefix_and_s3_test_events_are_ignored(s3_client: Any, landing: dict[str, str]) -> None:
    from pipeline_aws.runtime import handler

    assert handler(notification(landing["uploads"], "elsewhere/x.jsonl", 1), None) == {"ignored": "elsewhere/x.jsonl"}
    assert handler({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": landing["uploads"]}, None) == {"ignored": "s3:TestEvent"}


def test_a_failing_object_raises_so_lambda_retries_the_event(s3_client: Any, landing: dict[str, str]) -> None:
    """A missing object (deleted before the stage ran) fails the invocation: Lambda's async retries and the stage's
    on-failure queue take it from there, as with EventBridge."""
    from pipeline_aws.runtime import handler

    with pytest.raises(Exception):  # noqa: B017 - whatever the runtime raises, it must not be swallowed
        handler(notification(landing["uploads"], "uploads/gone.jsonl", 10), None)


def test_every_record_of_a_notification_is_processed(s3_client: Any, landing: dict[str, str]) -> None:
    from pipeline_aws.runtime import handler

    event: dict[str, Any] = {"Records": []}
    for name in ("one", "two"):
        s3_client.put_object(Bucket=landing["uploads"], Key=f"uploads/{name}.jsonl", Body=b'{"id": "%s"}\n' % name.encode())
        event["Records"] += notification(landing["uploads"], f"uploads/{name}.jsonl", 12)["Records"]
    result = handler(event, None)
    assert [r["rows"] for r in result["objects"]] == [1, 1]
