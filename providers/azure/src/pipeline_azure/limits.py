"""The limits a user weighs when choosing Azure, as this backend's plan configures the services.

Event Hubs Standard: events up to 1 MB, retention up to 7 days (168 h), order kept per partition
(https://learn.microsoft.com/azure/event-hubs/event-hubs-quotas).

Longest invocation per trigger kind on Flex Consumption (https://learn.microsoft.com/azure/azure-functions/functions-scale#timeout):
functionTimeout has no maximum ("Unbounded"), but an execution gets a 60-minute grace period when
its instance is scaled in (10 minutes during platform updates), so 3,600 s is the longest a stream,
object or schedule stage can count on; an HTTP-triggered function must answer within 230 s (load
balancer idle timeout). Object stages read their events from a Storage queue (see object_queue): the
queue trigger keeps a running message invisible for as long as the run takes, so they get the same
Flex limit (Event Grid's 30 s answer window applied only when it pushed to the function).
`max_stage_timeout_s` is the smallest of these over the kinds the spec uses.

HTTP: requests up to 100 MB (104,857,600 bytes; the Functions host's HTTP request limit,
https://learn.microsoft.com/azure/azure-functions/functions-bindings-http-webhook-trigger#limits).
No separate response limit is documented; the request limit is reported for both.
"""

from __future__ import annotations

from pipeline.faces import Limits
from pipeline.spec.model import PipelineSpec

# Event Hubs Standard (https://learn.microsoft.com/azure/event-hubs/event-hubs-quotas)
MAX_CONSUMER_GROUPS_STANDARD = 20  # per event hub, including $Default
MAX_RETENTION_HOURS_STANDARD = 168
MAX_EVENT_BYTES_STANDARD = 1_048_576
HTTP_TIMEOUT_S = 230
HTTP_MAX_REQUEST_BYTES = 104_857_600
FLEX_GRACE_S = 3600
MAX_TIMEOUT_S = {"stream": FLEX_GRACE_S, "schedule": FLEX_GRACE_S, "objects": FLEX_GRACE_S, "http": HTTP_TIMEOUT_S}
SOURCES = (
    "https://learn.microsoft.com/azure/event-hubs/event-hubs-quotas",
    "https://learn.microsoft.com/azure/azure-functions/functions-scale#timeout",
    "https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan",
    "https://learn.microsoft.com/azure/azure-functions/functions-reliable-event-processing",
    "https://learn.microsoft.com/azure/azure-functions/functions-bindings-error-pages",
    "https://learn.microsoft.com/azure/event-grid/handler-storage-queues",
    "https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue-trigger",
    "https://learn.microsoft.com/azure/azure-functions/functions-bindings-http-webhook-trigger#limits",
)


def limits(spec: PipelineSpec) -> Limits:
    """Limits of the services as planned for `spec`."""
    kinds = {s.trigger.kind for s in spec.stages}
    delivery = "at least once (the Event Hubs trigger checkpoints after each batch; queue messages and timers are retried)"
    if "objects" in kinds:
        delivery += ("; object events wait in a Storage queue, invisible to other instances while a run takes them, so a long "
                     "run is not delivered twice (a crashed run is retried; outputs are overwritten, not duplicated)")
    http = "http" in kinds
    return Limits(
        max_record_bytes=MAX_EVENT_BYTES_STANDARD,
        max_stage_timeout_s=min(MAX_TIMEOUT_S[kind] for kind in kinds),
        max_retention_hours=MAX_RETENTION_HOURS_STANDARD,
        delivery=delivery,
        ordering="per partition (partition key): events with the same key keep their order, and the trigger runs one batch "
                 "per partition at a time; none across partitions, none for object, schedule or HTTP stages",
        poison_records="a failing record is dead-lettered alone by the runtime; a batch that still fails on the retry policy's last "
                       "attempt is written whole to the dead-letter container under <stage>/ (the Event Hubs host checkpoints past it); "
                       "an object whose last attempt (maxDequeueCount) fails is dead-lettered the same way; Event Grid dead-letters "
                       "events it could not write to the queue, the host moves a message that never completed to the poison queue; "
                       "every dead letter raises an alert",
        sources=SOURCES,
        http_max_request_bytes=HTTP_MAX_REQUEST_BYTES if http else None,
        http_max_response_bytes=HTTP_MAX_REQUEST_BYTES if http else None,
        http_max_timeout_s=HTTP_TIMEOUT_S if http else None,
        max_stage_timeout_s_by_trigger={kind: MAX_TIMEOUT_S[kind] for kind in kinds},
    )
