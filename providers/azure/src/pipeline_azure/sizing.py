"""Event Hubs Standard throughput units and partitions from the workload, next to the published limits.

Limits (https://learn.microsoft.com/azure/event-hubs/event-hubs-quotas, event-hubs-scalability):
one throughput unit (TU) takes 1 MB/s or 1,000 events/s of ingress, whichever comes first, and
serves 2 MB/s or 4,096 events/s of egress shared by all consumer groups. Capture does not count
against egress. A Standard namespace holds at most 40 TUs and an event hub at most 32 partitions;
partitions are fixed at creation on Standard, so we pick them with room to grow (default 4) and
never fewer than the TUs (a partition carries about one TU of ingress). Headroom is 25 %, as on AWS.
"""

from __future__ import annotations

import math

from pipeline.sizing import StageDemand, StageSizing, StreamSizing, invocation_ms, needed_concurrency, schedule_interval_s, stage_sizing
from pipeline.spec.model import PipelineSpec, StageSpec

INGRESS_BYTES_PER_TU = 1_000_000  # "1 MB per second"; decimal MB is the conservative reading
INGRESS_EVENTS_PER_TU = 1000
EGRESS_BYTES_PER_TU = 2_000_000
EGRESS_EVENTS_PER_TU = 4096
HEADROOM = 1.25
MAX_TU_STANDARD = 40
MAX_PARTITIONS_STANDARD = 32
DEFAULT_PARTITIONS = 4


def _mbps(value: float) -> str:
    return f"{value / 1_000_000:.2f} MB/s"


def needed_units(spec: PipelineSpec) -> tuple[int, list[str]]:
    work = spec.workload
    readers = sum(1 for s in spec.stages if s.trigger.stream)
    by_bytes = math.ceil(work.bytes_per_second * HEADROOM / INGRESS_BYTES_PER_TU)
    by_events = math.ceil(work.records_per_second * HEADROOM / INGRESS_EVENTS_PER_TU)
    by_egress = math.ceil(work.bytes_per_second * readers * HEADROOM / EGRESS_BYTES_PER_TU)
    by_egress_events = math.ceil(work.records_per_second * readers * HEADROOM / EGRESS_EVENTS_PER_TU)
    reasoning = [
        f"ingress: {_mbps(work.bytes_per_second)} x {HEADROOM} headroom / 1 MB/s per TU = {by_bytes} TU",
        f"events: {work.records_per_second:,.0f}/s x {HEADROOM} / 1,000 events/s per TU = {by_events} TU",
        f"egress: {readers} consumer group(s) x {_mbps(work.bytes_per_second)} x {HEADROOM} / 2 MB/s per TU = {by_egress} TU "
        f"({by_egress_events} TU by 4,096 events/s); Capture is not counted against egress",
    ]
    return max(1, by_bytes, by_events, by_egress, by_egress_events), reasoning


def size_stream(spec: PipelineSpec) -> StreamSizing:
    units, reasoning = needed_units(spec)
    if units > MAX_TU_STANDARD:  # check() reports this before planning; keep sizing total
        reasoning.append(f"needs {units} TU, above the {MAX_TU_STANDARD} a Standard namespace allows")
    if isinstance(spec.stream.partitions, int):
        partitions = spec.stream.partitions
        note = "" if partitions >= min(units, MAX_PARTITIONS_STANDARD) else f" (fewer than the {units} TU: partitions cap throughput)"
        reasoning.append(f"partitions fixed by the spec: {partitions}{note}")
    else:
        partitions = min(MAX_PARTITIONS_STANDARD, max(DEFAULT_PARTITIONS, units))
        reasoning.append(
            f"partitions: max(default {DEFAULT_PARTITIONS}, {units} TU) = {partitions} "
            f"(fixed at creation on Standard; caps consumer parallelism; max {MAX_PARTITIONS_STANDARD})"
        )
    reasoning.append(f"=> Standard namespace with {units} TU (auto-inflate off: it never scales back down), {partitions} partitions")
    return StreamSizing(
        units=units, unit_name="throughput unit", mode="standard", partitions=partitions,
        capacity_records_per_second=units * INGRESS_EVENTS_PER_TU,
        capacity_bytes_per_second=units * INGRESS_BYTES_PER_TU,
        reasoning=reasoning,
    )


EVENT_GRID_DELIVERY_S = 2.0  # Blob Storage -> Event Grid -> function, typically seconds


def size_stage(spec: PipelineSpec, stage: StageSpec, demand: StageDemand, stream: StreamSizing | None) -> StageSizing:
    """Flex Consumption: an Event Hubs trigger runs one batch per partition at a time; other triggers scale out instances."""
    from pipeline_azure.functions import MAX_INSTANCES
    from pipeline_azure.pricing import effective_batch

    trigger = stage.trigger
    if trigger.stream and stream is not None and trigger.stream is not None:
        batch = 1.0
        for _ in range(4):  # a batch is what arrives while the previous one runs: settle the fixed point
            batch = effective_batch(stage, demand.records_per_second, stream.partitions, invocation_ms(spec, stage, batch) / 1000)
        window = trigger.stream.max_batching_window_s
        return stage_sizing(spec, stage, demand, records_per_invocation=batch, concurrency=stream.partitions,
                            latency_s=window / 2, latency_max_s=float(window) or 1.0,
                            reasoning=[f"Event Hubs trigger: one batch per partition at a time ({stream.partitions} partitions)"])
    if trigger.schedule:
        interval = schedule_interval_s(stage)
        return stage_sizing(spec, stage, demand, records_per_invocation=0, concurrency=1,
                            latency_s=interval / 2, latency_max_s=interval, reasoning=["timer trigger: one run at a time"])
    needed = needed_concurrency(demand.records_per_second, demand.records_per_event, invocation_ms(spec, stage, demand.records_per_event))
    return stage_sizing(spec, stage, demand, records_per_invocation=0, concurrency=MAX_INSTANCES,
                        latency_s=EVENT_GRID_DELIVERY_S, latency_max_s=EVENT_GRID_DELIVERY_S * 5,
                        reasoning=[f"Event Grid: one event per object; {needed:,} concurrent needed, up to {MAX_INSTANCES} instances"])
