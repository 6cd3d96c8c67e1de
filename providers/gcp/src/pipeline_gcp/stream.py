"""The Pub/Sub topic and its raw archive: a Cloud Storage subscription into the raw bucket."""

from __future__ import annotations

import pulumi_gcp as gcp

from pipeline.backend import Handle, RoleContext
from pipeline.spec.model import PipelineSpec
from pipeline_gcp import iam
from pipeline_gcp.platform import Env

ARCHIVE_MAX_DURATION_S = 300  # Pub/Sub allows 1-10 min per file; 5 min matches the AWS Firehose buffer
ARCHIVE_MAX_BYTES = 64 * 1024 * 1024  # larger objects, fewer Class A operations
ARCHIVE_ACK_DEADLINE_S = 300  # max_duration may not exceed the subscription's ack deadline
ARCHIVE_DATETIME = "YYYY-MM-DD/hh_mm_ssZ"  # raw/2025-01-31/13_05_00Z... : date folders like the AWS hour paths


def seconds(value: int) -> str:
    return f"{value}s"


def stream(role: RoleContext, env: Env, spec: PipelineSpec) -> Handle[gcp.pubsub.Topic]:
    """The topic. Retention: every subscription keeps its unacknowledged messages for `retention_hours`, so a stalled
    consumer catches up (billed only for a backlog older than a day). Replaying what was already consumed needs the
    records kept: the raw archive keeps them for `raw_days` when `archive` is on; without it the topic itself keeps
    `retention_hours` of messages (topic retention, billed per GiB-month)."""
    assert spec.stream is not None
    retention = None if spec.stream.archive else seconds(spec.stream.retention_hours * 3600)
    topic = gcp.pubsub.Topic(role.name(), message_retention_duration=retention, opts=env.opts(role))
    return Handle(topic, topic.name, {"id": topic.id})


def archive(role: RoleContext, env: Env, spec: PipelineSpec, source: Handle[gcp.pubsub.Topic], target: Handle[gcp.storage.Bucket], prefix: str) -> None:
    """Pub/Sub writes batches itself (no function, no extra consumer to run) as the Pub/Sub service agent.

    The agent gets only what writing there needs, on this bucket only: objectCreator (create objects)
    and legacyBucketReader (storage.buckets.get, to read bucket metadata)
    (https://cloud.google.com/pubsub/docs/create-cloudstorage-subscription; reference gcp.md §2).
    """
    assert spec.stream is not None
    agent = iam.member(env.pubsub_agent)
    writer = iam.bucket_member(role, env, "agent-writer", target.name, "roles/storage.objectCreator", agent)
    reader = iam.bucket_member(role, env, "agent-bucket-reader", target.name, "roles/storage.legacyBucketReader", agent)
    gcp.pubsub.Subscription(
        role.name(),
        topic=source.extra["id"],
        ack_deadline_seconds=ARCHIVE_ACK_DEADLINE_S,
        message_retention_duration=seconds(spec.stream.retention_hours * 3600),
        expiration_policy=gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl=""),  # never expire, even through a quiet month
        cloud_storage_config=gcp.pubsub.SubscriptionCloudStorageConfigArgs(
            bucket=target.name,
            filename_prefix=prefix,
            filename_datetime_format=ARCHIVE_DATETIME,
            filename_suffix=".jsonl",
            max_duration=seconds(ARCHIVE_MAX_DURATION_S),
            max_bytes=ARCHIVE_MAX_BYTES,
        ),
        opts=env.opts(role, writer, reader),
    )
