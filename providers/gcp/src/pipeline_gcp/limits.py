"""The limits a user weighs when choosing GCP, as this backend's plan configures Pub/Sub, Cloud Functions and Scheduler."""

from __future__ import annotations

from pipeline.faces import Limits
from pipeline.spec.model import PipelineSpec
from pipeline_gcp import functions, triggers

PUBSUB_MAX_MESSAGE_BYTES = 10_000_000  # 10 MB (https://cloud.google.com/pubsub/quotas#resource_limits)
PUBSUB_MAX_RETENTION_HOURS = 31 * 24  # topic message retention: at most 31 days
# gen2 HTTP functions: 32 MiB request and response bodies (HTTP/1), 60 min per request
# (https://cloud.google.com/functions/quotas#resource_limits, https://cloud.google.com/functions/docs/configuring/timeout).
HTTP_MAX_REQUEST_BYTES = 32 * 1024 * 1024
HTTP_MAX_RESPONSE_BYTES = 32 * 1024 * 1024
# Longest run per trigger kind, as planned: push-fed stages are bounded by the push request timeout (the ack
# deadline, at most 600 s; functions.PUSH_MAX_TIMEOUT_S keeps a margin); Cloud Scheduler's HTTP attempt deadline
# is at most 30 min, longer runs are counted as failed and retried; HTTP stages run up to 60 min.
MAX_TIMEOUT_S = {
    "stream": functions.PUSH_MAX_TIMEOUT_S,
    "objects": functions.PUSH_MAX_TIMEOUT_S,
    "schedule": triggers.SCHEDULER_MAX_DEADLINE_S,
    "http": functions.HTTP_MAX_TIMEOUT_S,
}
SOURCES = (
    "https://cloud.google.com/pubsub/quotas#resource_limits",
    "https://cloud.google.com/pubsub/docs/cloudstorage",
    "https://cloud.google.com/storage/docs/pubsub-notifications",
    "https://cloud.google.com/functions/docs/configuring/timeout",
    "https://cloud.google.com/functions/quotas#resource_limits",
    "https://cloud.google.com/scheduler/docs/reference/rest/v1/projects.locations.jobs",
    "https://cloud.google.com/pubsub/docs/ordering",
    "https://cloud.google.com/pubsub/docs/handling-failures",
)


def limits(spec: PipelineSpec) -> Limits:
    """Limits for the trigger kinds this spec uses (the shortest platform maximum of those kinds)."""
    kinds = {stage.trigger.kind for stage in spec.stages}
    poison = []
    attempts = sorted({triggers.delivery_attempts(s.retries) for s in spec.stages if triggers.pushed(s)})
    if attempts:
        poison.append("stream batches and object events: push retries with backoff (10-600 s); after retries + 1 deliveries or "
                      f"max_event_age_s the runtime dead-letters every record; events that never reach it go to the stage's "
                      f"dead-letter topic after {'/'.join(map(str, attempts))} deliveries")
    if "schedule" in kinds:
        poison.append(f"schedules: Cloud Scheduler retries up to {triggers.SCHEDULER_MAX_RETRIES} times, then logs the failure (alerted)")
    if "http" in kinds:
        poison.append("HTTP: the caller gets 500 for a failed request (and may retry); rows that raise are dead-lettered and listed")
    poison.append("the runtime dead-letters single failing records, so one bad record does not block the rest (alerted)")
    http = "http" in kinds
    return Limits(
        max_record_bytes=PUBSUB_MAX_MESSAGE_BYTES,
        max_stage_timeout_s=min(MAX_TIMEOUT_S[kind] for kind in kinds),
        max_retention_hours=PUBSUB_MAX_RETENTION_HOURS,
        delivery="at least once",
        ordering="none in batch files (Pub/Sub has no partitions; ordering keys are kept as record keys, not as an order)",
        poison_records="; ".join(poison),
        sources=SOURCES,
        http_max_request_bytes=HTTP_MAX_REQUEST_BYTES if http else None,
        http_max_response_bytes=HTTP_MAX_RESPONSE_BYTES if http else None,
        http_max_timeout_s=functions.HTTP_MAX_TIMEOUT_S if http else None,
        max_stage_timeout_s_by_trigger={kind: MAX_TIMEOUT_S[kind] for kind in kinds},
    )
