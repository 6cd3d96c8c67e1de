"""The limits a user weighs when choosing GCP, as this backend's plan configures Pub/Sub, Cloud Functions and Scheduler."""

from __future__ import annotations

from pipeline.backend import Limits
from pipeline.spec.model import PipelineSpec
from pipeline_gcp import functions, triggers

PUBSUB_MAX_MESSAGE_BYTES = 10_000_000  # 10 MB (https://cloud.google.com/pubsub/quotas#resource_limits)
PUBSUB_MAX_RETENTION_HOURS = 31 * 24  # topic message retention: at most 31 days
# Longest run per trigger kind, as planned. Stream stages are HTTP functions behind our own push subscription,
# whose ack deadline (the push request timeout) is at most 600 s; the backend's check() holds them, like the
# Eventarc-triggered object stages, to the 540 s event-driven maximum. Scheduled stages are HTTP functions (60 min)
# but Cloud Scheduler's HTTP attempt deadline is at most 30 min: a longer run is counted as failed and retried.
MAX_TIMEOUT_S = {
    "stream": functions.EVENT_DRIVEN_MAX_TIMEOUT_S,
    "objects": functions.EVENT_DRIVEN_MAX_TIMEOUT_S,
    "schedule": min(3600, triggers.SCHEDULER_MAX_DEADLINE_S),
}
SOURCES = (
    "https://cloud.google.com/pubsub/quotas#resource_limits",
    "https://cloud.google.com/functions/docs/configuring/timeout",
    "https://cloud.google.com/scheduler/docs/reference/rest/v1/projects.locations.jobs",
    "https://cloud.google.com/pubsub/docs/subscription-overview",
    "https://cloud.google.com/pubsub/docs/ordering",
    "https://cloud.google.com/pubsub/docs/dead-letter-topics",
    "https://cloud.google.com/pubsub/docs/handling-failures",
    "https://cloud.google.com/functions/docs/bestpractices/retries",
)


def limits(spec: PipelineSpec) -> Limits:
    """Limits for the trigger kinds this spec uses (the shortest stage timeout of those kinds)."""
    kinds = {stage.trigger.kind for stage in spec.stages}
    poison = []
    attempts = sorted({triggers.delivery_attempts(s.retries) for s in spec.stages if s.trigger.stream})
    if attempts:
        poison.append("stream: push retries with exponential backoff (10-600 s), then the stage's dead-letter topic after "
                      f"{'/'.join(map(str, attempts))} delivery attempts")
    if "objects" in kinds:
        poison.append(f"object events: Eventarc retries with backoff for up to {triggers.EVENTARC_RETENTION_S // 3600} h; the runtime "
                      "dead-letters events older than max_event_age_s")
    if "schedule" in kinds:
        poison.append(f"schedules: Cloud Scheduler retries up to {triggers.SCHEDULER_MAX_RETRIES} times, then logs the failure (alerted)")
    poison.append("the runtime dead-letters single failing records, so one bad record does not block the rest")
    return Limits(
        max_record_bytes=PUBSUB_MAX_MESSAGE_BYTES,
        max_stage_timeout_s=min(MAX_TIMEOUT_S[kind] for kind in kinds),
        max_retention_hours=PUBSUB_MAX_RETENTION_HOURS,
        delivery="at least once",
        ordering="none unless ordering keys are used (not enabled)",
        poison_records="; ".join(poison),
        sources=SOURCES,
    )
