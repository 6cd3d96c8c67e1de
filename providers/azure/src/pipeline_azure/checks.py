"""What the spec asks for that Azure cannot deliver as written, reported before planning.

Nothing is silently dropped or rounded down: memory is rounded *up* to a Flex instance size (shown
in the plan as the app's `memory-mb` tag and instance_memory_mb), everything else that does not fit
is an error with a hint.
"""

from __future__ import annotations

from pipeline.spec.model import PipelineSpec
from pipeline_azure import functions, naming, sizing, triggers

Problem = tuple[tuple[str | int, ...], str, str]
MAX_CONSUMER_GROUPS_STANDARD = 20  # per event hub, including $Default
MAX_RETENTION_HOURS_STANDARD = 168
MAX_EVENT_BYTES_STANDARD = 1_048_576


def problems(spec: PipelineSpec, stack: str) -> list[Problem]:
    found: list[Problem] = []
    if spec.stream.retention_hours > MAX_RETENTION_HOURS_STANDARD:
        found.append((("stream", "retention_hours"), f"Event Hubs Standard keeps events at most {MAX_RETENTION_HOURS_STANDARD} hours (7 days)",
                      "set retention_hours to 168 or less"))
    if isinstance(spec.stream.partitions, int) and spec.stream.partitions > sizing.MAX_PARTITIONS_STANDARD:
        found.append((("stream", "partitions"), f"an Event Hubs Standard event hub has at most {sizing.MAX_PARTITIONS_STANDARD} partitions",
                      f"set partitions to {sizing.MAX_PARTITIONS_STANDARD} or less, or 'auto'"))
    units, _ = sizing.needed_units(spec)
    if units > sizing.MAX_TU_STANDARD:
        found.append((("workload", "records_per_second"),
                      f"the workload needs {units} throughput units; an Event Hubs Standard namespace allows {sizing.MAX_TU_STANDARD}",
                      "lower the workload or split the stream (Premium/Dedicated tiers are not supported by this backend)"))
    if spec.workload.record_bytes > MAX_EVENT_BYTES_STANDARD:
        found.append((("workload", "record_bytes"), "Event Hubs Standard accepts events of at most 1 MB", "send smaller records"))
    stream_stages = [s for s in spec.stages if s.trigger.stream]
    if len(stream_stages) > MAX_CONSUMER_GROUPS_STANDARD - 1:
        found.append((("stages",), f"{len(stream_stages)} stream stages need as many consumer groups; Event Hubs Standard allows "
                      f"{MAX_CONSUMER_GROUPS_STANDARD} per event hub including $Default", "chain stages with object triggers instead"))
    for index, stage in enumerate(spec.stages):
        if functions.flex_memory(stage.memory_mb) is None:
            found.append((("stages", index, "memory_mb"), f"{stage.memory_mb} MB is more than the largest Flex Consumption instance "
                          f"({functions.FLEX_MEMORY_MB[-1]} MB)", f"use at most {functions.FLEX_MEMORY_MB[-1]} MB"))
        if stage.trigger.schedule:
            for message, hint in triggers.schedule_problems(stage.trigger.parsed_schedule):
                found.append((("stages", index, "trigger", "schedule"), message, hint))
        app = naming.function_app_name(spec.name, stack, stage.name)
        if len(app) > naming.FUNCTION_APP_MAX:  # pragma: no cover - naming bounds it
            found.append((("stages", index, "name"), f"function app name {app!r} is too long", "use a shorter stage name"))
    return found
