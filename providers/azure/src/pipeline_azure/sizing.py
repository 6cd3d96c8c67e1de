"""Event Hubs Standard throughput units and partitions, and each stage's batching, concurrency and
trigger wait on Flex Consumption, from the workload (see `pipeline.sizing` for the shared model).

Stream (https://learn.microsoft.com/azure/event-hubs/event-hubs-quotas, event-hubs-scalability):
one throughput unit (TU) takes 1 MB/s or 1,000 events/s of ingress, whichever comes first, and
serves 2 MB/s or 4,096 events/s of egress shared by all consumer groups; Capture does not count
against egress. A Standard namespace holds at most 40 TUs and an event hub at most 32 partitions.
A partition takes about one TU of ingress, and partitions **cannot change after creation** on
Standard (https://learn.microsoft.com/azure/event-hubs/dynamically-add-partitions): so the count
is chosen once (enough for the TUs and for the stream stages' concurrency) and then kept from the
stack's last deploy (`previous_outputs["stream_sizing"]`) unless the spec fixes it. Where the raw
archive is an archiver function (`pipeline_azure.archive_choice`), its consumer group's reads count against
egress and may add TUs, never partitions (`size_stream(..., archiver=True)`); the function itself is
sized by `size_archiver` at the end of this module.

Stages on Flex Consumption:

* stream: the Event Hubs trigger reads each partition separately and runs one batch per partition
  at a time; target-based scaling gives at most one instance per partition
  (https://learn.microsoft.com/azure/azure-functions/functions-target-based-scaling). A batch closes
  when it holds `maxEventBatchSize` events or `maxWaitTime` has passed (minEventBatchSize just
  below the maximum turns the wait on; host.json reference for Event Hubs). Concurrency = partitions.
* objects (stage outputs or uploads): Event Grid writes one BlobCreated event per object to the stage's
  Storage queue; the queue trigger runs batchSize + newBatchThreshold = 1 message per instance at a time
  (CPU-bound Python), target-based scaling adds an instance per waiting message up to
  `maximumInstanceCount`, sized here from the demand with the trigger's 100 ms pause between messages.
  Latency: Event Grid's delivery plus the queue polling (`maxPollingInterval` 2 s), a cold start at worst
  (https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue-trigger#polling-algorithm).
* http: requests run one at a time per instance (`perInstanceConcurrency` 1: the handlers are CPU
  bound Python), instances sized with Erlang B for at most 1 % refused requests (`http_stage`); with `from`,
  one run at a time like a schedule at the request rate (`windowed_http_stage`).
* schedule: the timer trigger holds a singleton lock: one run at a time.
* every app: `instances` (what the workload keeps running, what Flex bills) and `maximumInstanceCount` (never
  below the lowest Flex accepts in the region: `max_instance_count`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.sizing import (
    BLOCKING_TARGET,
    SECONDS_PER_MONTH,
    StageDemand,
    StageSizing,
    StreamSizing,
    erlang_b,
    invocation_ms,
    needed_concurrency,
    schedule_interval_s,
    servers_for_blocking,
    stage_sizing,
)
from pipeline.spec.model import PipelineSpec, StageSpec
from pipeline_azure import object_queue

INGRESS_BYTES_PER_TU = 1_000_000  # "1 MB per second"; decimal MB is the conservative reading
INGRESS_EVENTS_PER_TU = 1000
EGRESS_BYTES_PER_TU = 2_000_000
EGRESS_EVENTS_PER_TU = 4096
HEADROOM = 1.25
MAX_TU_STANDARD = 40
MAX_PARTITIONS_STANDARD = 32
MIN_PARTITIONS = 2  # a floor so two instances can share the stream (partitions can never be added later)
MAX_INSTANCES = 1000  # Flex maximumInstanceCount: the highest supported value (event-driven-scaling#limit-scale-out)
# The lowest maximumInstanceCount Flex accepts: "The lowest maximum scale is currently 40"
# (https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#considerations, 2026-01). Lower values were
# opened only in a few regions as a preview (the Functions team, early 2026) and are refused elsewhere. A maximum costs
# nothing on Flex (on-demand billing is per execution), so plans never go below 40 except where a lower one is known
# to be accepted; no stage relies on the cap as a mutex (timers hold a singleton lock, windowed runs take the
# runtime's lease), and what a stage is billed for is the instances its workload keeps running (`instances`).
FLEX_LOWEST_MAXIMUM = 40
LOW_MAXIMUM_REGIONS = frozenset({"westeurope", "australiaeast", "westus2"})
MAX_WAIT_S = 600  # maxWaitTime: "The longest allowed wait time is 10 minutes"
# Event Grid: "sub-second end-to-end latency" (event-grid overview), here into a queue; a cold Flex
# instance adds seconds. Both are estimates, not SLAs.
EVENT_GRID_DELIVERY_S = 1.0
COLD_START_S = 5.0


def _mbps(value: float) -> str:
    return f"{value / 1_000_000:.2f} MB/s"


def needed_units(spec: PipelineSpec, archiver: bool = False) -> tuple[int, list[str]]:
    """Throughput units for the workload's ingress and its readers' egress. `archiver`: the raw archiver
    function reads the hub on a consumer group of its own, which counts against egress like a stage
    (Capture does not)."""
    work = spec.workload
    readers = sum(1 for s in spec.stages if s.trigger.stream) + (1 if archiver else 0)
    by_bytes = math.ceil(work.bytes_per_second * HEADROOM / INGRESS_BYTES_PER_TU)
    by_events = math.ceil(work.records_per_second * HEADROOM / INGRESS_EVENTS_PER_TU)
    by_egress = math.ceil(work.bytes_per_second * readers * HEADROOM / EGRESS_BYTES_PER_TU)
    by_egress_events = math.ceil(work.records_per_second * readers * HEADROOM / EGRESS_EVENTS_PER_TU)
    who = "the stages' and the raw archiver's" if archiver else "the stages'"
    reasoning = [
        f"ingress: {_mbps(work.bytes_per_second)} x {HEADROOM} headroom / 1 MB/s per TU = {by_bytes} TU",
        f"events: {work.records_per_second:,.0f}/s x {HEADROOM} / 1,000 events/s per TU = {by_events} TU",
        f"egress: {readers} consumer group(s) ({who}) x {_mbps(work.bytes_per_second)} x {HEADROOM} / 2 MB/s per TU = {by_egress} TU "
        f"({by_egress_events} TU by 4,096 events/s)" + ("" if archiver else "; Capture is not counted against egress"),
    ]
    return max(1, by_bytes, by_events, by_egress, by_egress_events), reasoning


def previous_partitions(previous_outputs: Mapping[str, Any]) -> int | None:
    """The partition count the stack's event hub was created with, if it was deployed before."""
    sized = previous_outputs.get("stream_sizing")
    value = sized.get("partitions") if isinstance(sized, Mapping) else None
    return int(value) if isinstance(value, (int, float)) and value >= 1 else None


def stream_stage_batch(stage: StageSpec, records_per_second: float, partitions: int, duration_s: float) -> float:
    """Events per invocation of an Event Hubs-triggered stage: what one partition receives in
    max(batching window, run time), at least one event and at most batch_size (see module doc)."""
    assert stage.trigger.stream is not None
    per_partition = records_per_second / max(1, partitions)
    fill_s = max(stage.trigger.stream.max_batching_window_s, duration_s)
    return min(float(stage.trigger.stream.batch_size), max(1.0, per_partition * fill_s))


def _settled_batch(spec: PipelineSpec, stage: StageSpec, records_per_second: float, partitions: int) -> float:
    batch = 1.0
    for _ in range(6):  # a batch is what arrives while the previous one runs: settle the fixed point
        batch = stream_stage_batch(stage, records_per_second, partitions, invocation_ms(spec, stage, batch) / 1000)
    return batch


def stream_concurrency_needed(spec: PipelineSpec, partitions: int) -> int:
    """Partitions the stream stages need to carry the demand with headroom, with `partitions` partitions."""
    needed = 1
    for stage in spec.stages:
        if stage.trigger.stream:
            batch = _settled_batch(spec, stage, spec.workload.records_per_second, partitions)
            needed = max(needed, needed_concurrency(spec.workload.records_per_second, batch, invocation_ms(spec, stage, batch)))
    return needed


def size_stream(spec: PipelineSpec, previous_outputs: Mapping[str, Any] | None = None, archiver: bool = False) -> StreamSizing:
    """TUs and partitions. Partitions follow the stages' TUs and concurrency only, so the raw archive's choice
    (`archiver`: a function reading its own consumer group, see pipeline_azure.archive_choice) never changes them:
    it may add TUs for its egress, never a partition (which Standard could not remove again)."""
    assert spec.stream is not None
    units, reasoning = needed_units(spec)
    if units > MAX_TU_STANDARD:  # check() reports this before planning; keep sizing total
        reasoning.append(f"needs {units} TU, above the {MAX_TU_STANDARD} a Standard namespace allows")
    before = previous_partitions(previous_outputs or {})
    if isinstance(spec.stream.partitions, int):
        partitions = spec.stream.partitions
        reasoning.append(f"partitions fixed by the spec: {partitions}")
    elif before is not None:
        partitions = before
        reasoning.append(f"partitions: {partitions}, kept from this stack's event hub (a Standard event hub cannot change its "
                         "partition count after creation; set stream.partitions and recreate the stream to change it)")
    else:
        # Enough partitions for the ingress TUs and for the stream stages' concurrency (one batch per
        # partition at a time); more partitions only make each batch smaller.
        partitions = min(MAX_PARTITIONS_STANDARD, max(MIN_PARTITIONS, units))
        while partitions < MAX_PARTITIONS_STANDARD and stream_concurrency_needed(spec, partitions) > partitions:
            partitions += 1
        reasoning.append(f"partitions: max({MIN_PARTITIONS}, {units} TU, the stream stages' concurrency) = {partitions}; fixed at "
                         f"creation on Standard, so later deploys keep it (max {MAX_PARTITIONS_STANDARD})")
    if archiver:
        with_archiver, lines = needed_units(spec, archiver=True)
        if with_archiver > units:
            reasoning.append(f"{lines[-1]}: {with_archiver} TU with the raw archiver")
        else:
            reasoning.append(f"the raw archiver's consumer group fits in the same {units} TU of egress")
        units = with_archiver
    usable = min(units, partitions)  # a partition takes about one TU of ingress
    if partitions < units:
        reasoning.append(f"{partitions} partition(s) carry at most ~{partitions} TU of ingress: capacity is {usable} TU")
    reasoning.append(f"=> Standard namespace with {units} TU (auto-inflate off: it never scales back down), {partitions} partitions")
    return StreamSizing(
        units=units, unit_name="throughput unit", mode="standard", partitions=partitions,
        capacity_records_per_second=usable * INGRESS_EVENTS_PER_TU,
        capacity_bytes_per_second=usable * INGRESS_BYTES_PER_TU,
        reasoning=reasoning,
    )


def max_event_batch(stage: StageSpec) -> tuple[int, int | None, int | None]:
    """(maxEventBatchSize, minEventBatchSize, maxWaitTime seconds) for the Event Hubs trigger.

    minEventBatchSize "must be less than maxEventBatchSize" and maxWaitTime is "only considered when
    minEventBatchSize is larger than 1", so a window needs batch_size >= 3 to have any effect."""
    assert stage.trigger.stream is not None
    batch, window = stage.trigger.stream.batch_size, stage.trigger.stream.max_batching_window_s
    if window > 0 and batch >= 3:
        return batch, batch - 1, min(window, MAX_WAIT_S)
    return batch, None, None


def max_instance_count(spec: PipelineSpec, instances: int) -> int:
    """maximumInstanceCount for an app that runs `instances` at its workload (see FLEX_LOWEST_MAXIMUM)."""
    floor = 1 if spec.clouds.azure.location in LOW_MAXIMUM_REGIONS else FLEX_LOWEST_MAXIMUM
    return max(floor, min(MAX_INSTANCES, instances))


def _scale(spec: PipelineSpec, instances: int) -> dict[str, int]:
    """The two instance counts every stage's settings carry: what its workload runs (billed: `pricing`) and the cap."""
    runs = max(1, min(MAX_INSTANCES, instances))
    return {"instances": runs, "maximumInstanceCount": max_instance_count(spec, runs)}


def _cap_note(spec: PipelineSpec, scale: dict[str, int]) -> str:
    if scale["maximumInstanceCount"] == scale["instances"]:
        return f"maximumInstanceCount {scale['instances']}"
    return (f"maximumInstanceCount {scale['maximumInstanceCount']} (the lowest Flex accepts in {spec.clouds.azure.location}; "
            f"the workload keeps {scale['instances']} running)")


HTTP_PER_INSTANCE = 1  # perInstanceConcurrency of HTTP stages: the handlers are CPU-bound Python


def size_stage(spec: PipelineSpec, stage: StageSpec, demand: StageDemand, stream: StreamSizing | None) -> StageSizing:
    trigger = stage.trigger
    if trigger.stream is not None and stream is not None:
        partitions = stream.partitions
        batch = _settled_batch(spec, stage, demand.records_per_second, partitions)
        most, least, wait = max_event_batch(stage)
        per_partition = demand.records_per_second / max(1, partitions)
        full_after = most / per_partition if per_partition else math.inf
        fill = min(float(wait), full_after) if wait else 0.0
        scale = _scale(spec, partitions)
        return stage_sizing(
            spec, stage, demand, records_per_invocation=batch, concurrency=partitions,
            latency_s=fill / 2, latency_max_s=fill,
            reasoning=[f"Event Hubs trigger: one batch per partition at a time, {partitions} partitions (at most one instance each: "
                       f"{_cap_note(spec, scale)}); a batch closes at {most} events or after {wait or 0} s"
                       + (" (up to twice that right after a scale-out)" if wait else "")],
            settings={"partitions": partitions, "maxEventBatchSize": most, "minEventBatchSize": least, "maxWaitTime_s": wait, **scale},
        )
    if trigger.schedule:
        interval = schedule_interval_s(stage)
        source = f"; reads what {trigger.from_stage} wrote since the last run (the runtime's lease: one run at a time)" if trigger.from_stage else ""
        scale = _scale(spec, 1)
        return stage_sizing(spec, stage, demand, records_per_invocation=0, concurrency=1,
                            latency_s=interval / 2, latency_max_s=interval,
                            reasoning=[f"timer trigger: one run at a time (singleton lock), every {interval:,.0f} s{source}; {_cap_note(spec, scale)}"],
                            settings=scale)
    if trigger.http and trigger.http.from_stage:
        return windowed_http_stage(spec, stage, demand)
    if trigger.http:
        return http_stage(spec, stage, demand)
    return object_stage(spec, stage, demand)


def http_stage(spec: PipelineSpec, stage: StageSpec, demand: StageDemand) -> StageSizing:
    """Requests answered synchronously, one per instance at a time. Flex's front end does not hold a request for an
    instance: when every instance allowed is busy it answers 429 (as a Lambda function URL does), so the instances are
    sized with Erlang B for at most 1 % refused requests at the workload with headroom (`pipeline.sizing.erlang_b`)."""
    per_event = demand.records_per_event
    duration = invocation_ms(spec, stage, per_event)
    rate = demand.events_per_second or 0.0
    offered = rate * duration / 1000
    servers = max(needed_concurrency(demand.records_per_second, per_event, duration), servers_for_blocking(offered * HEADROOM))
    scale = _scale(spec, math.ceil(servers / HTTP_PER_INSTANCE))
    slots = scale["maximumInstanceCount"] * HTTP_PER_INSTANCE
    refused = erlang_b(slots, offered)
    return stage_sizing(spec, stage, demand, records_per_invocation=0, concurrency=slots, latency_s=0.0, latency_max_s=COLD_START_S,
                        reasoning=[f"HTTP trigger: one request per instance at a time; {offered:,.2f} erlangs offered ({rate:,.2f} requests/s x "
                                   f"{duration:,.0f} ms); {servers:,} instance(s) keep Erlang B blocking at or below "
                                   f"{BLOCKING_TARGET:.0%} with {HEADROOM} headroom -> {_cap_note(spec, scale)}, which refuses "
                                   f"{refused:.2e} of requests (429); a cold instance adds ~{COLD_START_S:.0f} s (estimate)"],
                        settings={**scale, "perInstanceConcurrency": HTTP_PER_INSTANCE}, blocking=refused)


def windowed_http_stage(spec: PipelineSpec, stage: StageSpec, demand: StageDemand) -> StageSizing:
    """An HTTP stage over accumulated outputs (`http: {from: ...}`): each request runs the stage over what its source
    wrote since the last run, one run at a time (the runtime's lease; a request arriving during a run is told so, not
    queued), so it is sized like a schedule over accumulated outputs that fires at the request rate."""
    rate = demand.events_per_second or 0.0
    interval = 1 / rate if rate > 0 else math.inf
    scale = _scale(spec, 1)
    return stage_sizing(spec, stage, demand, records_per_invocation=0, concurrency=1,
                        latency_s=interval / 2 if rate > 0 else 0.0, latency_max_s=interval if rate > 0 else 0.0,
                        reasoning=[f"HTTP trigger over accumulated outputs of {stage.trigger.source}: one run at a time (the runtime's lease), "
                                   f"{rate:,.3f} requested runs/s, each over what arrived since the last; {_cap_note(spec, scale)}"],
                        settings={**scale, "perInstanceConcurrency": HTTP_PER_INSTANCE})


def object_stage(spec: PipelineSpec, stage: StageSpec, demand: StageDemand) -> StageSizing:
    """Event Grid -> the stage's queue -> the queue trigger, one message per instance at a time (see module doc)."""
    q = object_queue
    per_event = demand.records_per_event
    duration = invocation_ms(spec, stage, per_event)
    per_instance = q.BATCH_SIZE + q.NEW_BATCH_THRESHOLD
    # An instance takes its next message ~100 ms after the last one ends: size the instances for that cycle.
    needed = math.ceil(needed_concurrency(demand.records_per_second, per_event, duration + q.POLL_GAP_S * 1000) / per_instance)
    scale = _scale(spec, needed)
    poll = float(q.MAX_POLLING_INTERVAL_S)
    return stage_sizing(
        spec, stage, demand, records_per_invocation=0, concurrency=scale["maximumInstanceCount"] * per_instance,
        latency_s=EVENT_GRID_DELIVERY_S + poll / 2, latency_max_s=EVENT_GRID_DELIVERY_S + poll + COLD_START_S,
        reasoning=[f"Event Grid -> Storage queue -> queue trigger: one BlobCreated message per object, {per_instance} per instance at a time "
                   f"(batchSize {q.BATCH_SIZE} + newBatchThreshold {q.NEW_BATCH_THRESHOLD}); {needed:,} instance(s) needed with the "
                   f"{q.POLL_GAP_S * 1000:.0f} ms pause between messages -> {_cap_note(spec, scale)}",
                   f"latency: ~{EVENT_GRID_DELIVERY_S:.0f} s delivery + up to {q.MAX_POLLING_INTERVAL_S} s polling "
                   f"(+~{COLD_START_S:.0f} s on a cold instance; estimates); {q.max_dequeue_count(stage)} attempt(s), "
                   f"{q.retry_delay_s(stage)} s apart"],
        settings={**scale, "batchSize": q.BATCH_SIZE, "newBatchThreshold": q.NEW_BATCH_THRESHOLD,
                  "maxDequeueCount": q.max_dequeue_count(stage), "visibilityTimeout_s": q.retry_delay_s(stage),
                  "maxPollingInterval_s": q.MAX_POLLING_INTERVAL_S},
    )


# ---- the raw archive: an archiver function (pipeline_azure.archive) ---------------------------------
# Where Capture would cost more than a little (pipeline_azure.archive_choice decides), a function archives the
# stream: an Event Hubs trigger on its own consumer group, batches of as many events as memory allows or
# whatever a partition receives in ARCHIVER_WAIT_S, one gzip blob per batch.
ARCHIVER_WAIT_S = 300  # maxWaitTime: the raw archive lags at most ~5 minutes (10 after a scale-out), like a 300 s Capture window
ARCHIVER_RETRIES = 10  # retry policy (exponential, 5 s to 5 min) before the last attempt dead-letters the batch
ARCHIVER_TIMEOUT_S = 600
ARCHIVER_PREFETCH = 300  # the documented default: a batch waiting for maxWaitTime is stored by the trigger, not by the prefetch cache
# Flex instance sizes and their vCPUs (https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan,
# "instance memory": 512 MB ~ 0.25 vCPU, 2,048 MB 1 vCPU, 4,096 MB 2 vCPU).
FLEX_VCPUS = {512: 0.25, 2048: 1.0, 4096: 2.0}
# CPU per batch, at one full vCPU: benchmarks/azure_archiver.py measures ~95-105 us per event for the Python
# worker's conversion into EventHubEvent objects and 45-56 us per KiB to join and gzip (level 6). The host's
# own per-event work (AMQP receive, the gRPC message to the worker) is not measurable here and is taken as
# equal to the worker's; the per-KiB figure keeps a margin for the upload's copy.
ARCHIVE_US_PER_EVENT = 200.0
ARCHIVE_US_PER_KIB = 100.0
ARCHIVE_MS_PER_INVOCATION = 150.0  # one Put Blob of a few MB inside the region, plus the invocation itself
# Memory per event of a batch in flight: the worker's objects measured at ~1 KB + 2 x the body (tracemalloc,
# benchmarks/azure_archiver.py); the host holds the batch again (stored events, prefetch, the gRPC message).
ARCHIVE_FIXED_BYTES_PER_EVENT = 2048
ARCHIVE_BODY_COPIES = 5
ARCHIVE_MEMORY_SHARE = 0.25  # of the instance for one batch: the host and worker need the rest, and an instance may hold two partitions


def archive_bytes_per_event(record_bytes: int) -> int:
    return ARCHIVE_FIXED_BYTES_PER_EVENT + ARCHIVE_BODY_COPIES * record_bytes


def archiver_max_events(record_bytes: int, memory_mb: int) -> int:
    """maxEventBatchSize: the largest batch that fits its share of the instance's memory."""
    return max(3, math.floor(memory_mb * 1024 * 1024 * ARCHIVE_MEMORY_SHARE / archive_bytes_per_event(record_bytes)))


def archiver_invocation_ms(records: float, record_bytes: int, memory_mb: int) -> float:
    """One archiver invocation: the write and start, plus the CPU work at the instance's vCPU share."""
    per_event_us = ARCHIVE_US_PER_EVENT + record_bytes / 1024 * ARCHIVE_US_PER_KIB
    return ARCHIVE_MS_PER_INVOCATION + records * per_event_us / 1000 / FLEX_VCPUS[memory_mb]


@dataclass(frozen=True)
class ArchiverSizing:
    """How an archiver function carries the stream: one batch per partition at a time."""

    partitions: int
    memory_mb: int  # the Flex instance size
    max_events: int  # maxEventBatchSize (minEventBatchSize is one less, so the trigger waits up to ARCHIVER_WAIT_S)
    records_per_invocation: float
    invocations_per_second: float
    invocation_ms: float
    needed: int  # concurrent batches the demand needs with headroom (at most one per partition runs)

    @property
    def invocations_per_month(self) -> float:
        return self.invocations_per_second * SECONDS_PER_MONTH

    @property
    def capacity_records_per_second(self) -> float:
        return self.partitions * self.records_per_invocation / (self.invocation_ms / 1000)

    def describe(self) -> str:
        return (f"{self.records_per_invocation:,.0f} events a batch (maxEventBatchSize {self.max_events:,} at {self.memory_mb} MB, "
                f"maxWaitTime {ARCHIVER_WAIT_S} s), {self.invocation_ms / 1000:,.1f} s each, {self.invocations_per_month:,.0f} invocations")


def size_archiver(spec: PipelineSpec, partitions: int) -> ArchiverSizing:
    """The smallest Flex instance on which one instance per partition carries the stream with headroom (larger
    ones only raise the 1 s minimum bill of a sparse batch: CPU work costs the same GB-s on each, 2 GB per vCPU)."""
    work = spec.workload
    per_partition = work.records_per_second / max(1, partitions)
    sized: ArchiverSizing | None = None
    for memory in FLEX_VCPUS:
        most = archiver_max_events(work.record_bytes, memory)
        batch = min(float(most), max(1.0, per_partition * ARCHIVER_WAIT_S))
        duration = archiver_invocation_ms(batch, work.record_bytes, memory)
        batch = min(float(most), max(batch, per_partition * duration / 1000))  # what arrives while a long batch runs
        duration = archiver_invocation_ms(batch, work.record_bytes, memory)
        invocations = work.records_per_second / batch if work.records_per_second > 0 else 0.0
        needed = needed_concurrency(work.records_per_second, batch, duration)
        sized = ArchiverSizing(partitions, memory, most, batch, invocations, duration, needed)
        if needed <= partitions:
            break
    assert sized is not None
    return sized


@dataclass(frozen=True)
class RawArchive:
    """The raw archive the plan builds - "capture" or "function" - the archiver it would size either way
    (for the comparison), the TUs each way, and why (pipeline_azure.archive_choice.plan_archive)."""

    kind: str
    archiver: ArchiverSizing
    capture_units: int  # TUs with Capture (it reads no egress)
    archiver_units: int  # TUs with the archiver's consumer group
    reasoning: list[str] = field(default_factory=list)

    @property
    def units(self) -> int:
        return self.archiver_units if self.kind == "function" else self.capture_units
