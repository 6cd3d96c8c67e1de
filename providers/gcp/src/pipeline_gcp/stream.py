"""The Pub/Sub topic and its raw archive: a Cloud Storage subscription writing Avro files into the raw bucket, which are
also the batch files of the first group of stream stages (batching.py)."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from pipeline.roles import Handle, RoleContext
from pipeline.spec.model import PipelineSpec
from pipeline_gcp import batching, iam
from pipeline_gcp.env import Env

FILE_DATETIME = "YYYY-MM-DD/hh_mm_ssZ"  # raw/2025-01-31/13_05_00Z_<id>.avro : date folders like the AWS hour paths
FILE_SUFFIX = ".avro"
MAX_ACK_DEADLINE_S = 600


def ack_deadline_s(files: batching.Files) -> int:
    """A Cloud Storage subscription's ack deadline: max_duration may not exceed it; a minute more, within Pub/Sub's 600 s."""
    return min(MAX_ACK_DEADLINE_S, files.duration_s + 60)


def storage_config(bucket: pulumi.Input[str], prefix: str, files: batching.Files) -> gcp.pubsub.SubscriptionCloudStorageConfigArgs:
    """Avro files with each message's id, publish time, ordering key and attributes (`write_metadata`): the runtime's
    record ids (stable across redeliveries) and arrival times come from them."""
    return gcp.pubsub.SubscriptionCloudStorageConfigArgs(
        bucket=bucket,
        filename_prefix=prefix,
        filename_datetime_format=FILE_DATETIME,
        filename_suffix=FILE_SUFFIX,
        max_bytes=files.max_bytes,
        max_duration=seconds(files.duration_s),
        avro_config=gcp.pubsub.SubscriptionCloudStorageConfigAvroConfigArgs(write_metadata=True),
    )


def seconds(value: int) -> str:
    return f"{value}s"


def stream(role: RoleContext, env: Env, spec: PipelineSpec) -> Handle[gcp.pubsub.Topic]:
    """The topic. Retention: every subscription keeps its unacknowledged messages for `retention_hours`, so a stalled
    consumer catches up (billed only for a backlog older than a day). Replaying what was already consumed needs the
    records kept: the raw archive keeps them for `raw_days` when `archive` is on; without it the topic itself keeps
    `retention_hours` of messages (topic retention, billed per GiB-month)."""
    assert spec.stream is not None
    retention = None if spec.stream.archive else seconds(spec.stream.retention_hours * 3600)
    topic = gcp.pubsub.Topic(role.name(), name=env.pubsub_name(role.name()), message_retention_duration=retention, opts=env.opts(role))
    return Handle(topic, topic.name, {"id": topic.id})


def archive(role: RoleContext, env: Env, spec: PipelineSpec, source: Handle[gcp.pubsub.Topic], target: Handle[gcp.storage.Bucket], prefix: str) -> None:
    """Pub/Sub writes the files itself (no function, no extra consumer to run) as the Pub/Sub service agent. The files are
    those the first group of stream stages reads (batching.sources), so one subscription bills the bytes once.

    The agent gets only what writing there needs, on this bucket only: objectCreator (create objects)
    and legacyBucketReader (storage.buckets.get, to read bucket metadata)
    (https://cloud.google.com/pubsub/docs/create-cloudstorage-subscription; reference gcp.md §2).
    """
    assert spec.stream is not None and prefix == batching.ARCHIVE_PREFIX
    agent = iam.member(env.pubsub_agent)
    writer = iam.bucket_member(role, env, "agent-writer", target.name, "roles/storage.objectCreator", agent)
    reader = iam.bucket_member(role, env, "agent-bucket-reader", target.name, "roles/storage.legacyBucketReader", agent)
    files = batching.archive_files(spec)
    subscription = gcp.pubsub.Subscription(
        role.name(),
        name=env.pubsub_name(role.name()),
        topic=source.extra["id"],
        ack_deadline_seconds=ack_deadline_s(files),
        message_retention_duration=seconds(spec.stream.retention_hours * 3600),
        expiration_policy=gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl=""),  # never expire, even through a quiet month
        cloud_storage_config=storage_config(target.name, prefix, files),
        opts=env.opts(role, writer, reader),
    )
    env.batch_subscriptions["raw"] = subscription.name
