"""The limits a user weighs when choosing Azure, as this backend's plan configures the services.

Event Hubs Standard: events up to 1 MB, retention up to 7 days (168 h), order kept per partition
(https://learn.microsoft.com/azure/event-hubs/event-hubs-quotas). Flex Consumption: functionTimeout
defaults to 30 minutes and has no platform maximum, so the longest a stage may run is what the plan
configures - each stage's `timeout_s`, written to host.json and `AzureFunctionsJobHost__functionTimeout`
(https://learn.microsoft.com/azure/azure-functions/functions-scale#timeout). Event Grid waits 30 s
for a delivery to be acknowledged before queuing a retry, so object stages that run longer are
delivered again (https://learn.microsoft.com/azure/event-grid/delivery-and-retry).
"""

from __future__ import annotations

from pipeline.backend import Limits
from pipeline.spec.model import PipelineSpec
from pipeline_azure import checks

EVENT_GRID_ACK_S = 30
SOURCES = (
    "https://learn.microsoft.com/azure/event-hubs/event-hubs-quotas",
    "https://learn.microsoft.com/azure/azure-functions/functions-scale#timeout",
    "https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan",
    "https://learn.microsoft.com/azure/azure-functions/functions-reliable-event-processing",
    "https://learn.microsoft.com/azure/azure-functions/functions-bindings-error-pages",
    "https://learn.microsoft.com/azure/event-grid/delivery-and-retry",
)


def limits(spec: PipelineSpec) -> Limits:
    """Limits of the services as planned for `spec` (the timeout is the configured one: Flex sets no maximum)."""
    object_stages = [s for s in spec.stages if s.trigger.objects]
    delivery = "at least once (Event Hubs trigger checkpoints after each batch; Event Grid retries deliveries)"
    if object_stages:
        delivery += (f"; Event Grid redelivers an object event not acknowledged within {EVENT_GRID_ACK_S} s, so object stages "
                     "that run longer see duplicates")
    return Limits(
        max_record_bytes=checks.MAX_EVENT_BYTES_STANDARD,
        max_stage_timeout_s=max(s.timeout_s for s in spec.stages),
        max_retention_hours=checks.MAX_RETENTION_HOURS_STANDARD,
        delivery=delivery,
        ordering="per partition (partition key): events with the same key keep their order, and the trigger runs one batch "
                 "per partition at a time; none across partitions, none for object or schedule stages",
        poison_records="finite retry policy (retries per stage), then the runtime writes the event to the dead-letter container "
                       "under <stage>/; Event Grid dead-letters undeliverable blob events to blob (dead-letter container)",
        sources=SOURCES,
    )
