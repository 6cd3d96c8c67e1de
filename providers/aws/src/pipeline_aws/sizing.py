"""How the AWS plan carries the workload: Kinesis shards, event source mapping batches and Lambda concurrency.

Figures (each cited where it is used):

* a shard takes 1 MiB/s or 1,000 records/s of writes and serves 2 MiB/s of reads shared by every
  standard consumer (https://docs.aws.amazon.com/streams/latest/dev/service-sizes-and-limits.html);
* a new on-demand stream starts at 4 MiB/s of writes and 8 MiB/s of reads, and scales by doubling its
  recent peak; pre-warming it ("warm throughput") needs the account-level On-demand Advantage commitment
  (https://docs.aws.amazon.com/kinesis/latest/APIReference/API_UpdateStreamWarmThroughput.html);
* the Kinesis event source mapping polls each shard about once a second and invokes when the batch is
  full (at most 10,000 records), the batching window ends (at most 300 s) or the invocation payload
  reaches 6 MB; `ParallelizationFactor` (1-10) runs up to that many batches of one shard at once
  (https://docs.aws.amazon.com/lambda/latest/dg/with-kinesis.html). The payload is the event Lambda is
  invoked with: each record's data base64-encoded, plus its envelope (event id, sequence number, ARNs);
* Lambda gives a function CPU in proportion to its memory, one vCPU at 1,769 MB
  (https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html);
* S3 -> EventBridge events "are typically delivered in seconds but can sometimes take a minute or longer"
  (https://docs.aws.amazon.com/AmazonS3/latest/userguide/NotificationHowTo.html);
* an account has 1,000 concurrent Lambda executions per region by default, new accounts fewer, and reservations
  must leave 100 unreserved (https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html).

No function reserves concurrency unless the user caps it (`clouds.aws.reserved_concurrency`): every function scales
in the account's unreserved pool, and the sizing shares that pool between the plan's functions at their peaks
(`pipeline_aws.concurrency`), so the capacity shown is what a default account gives.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.sizing import (
    BLOCKING_TARGET,
    HEADROOM,
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
from pipeline_aws.concurrency import Pool

MIB = 1024 * 1024
WRITE_BYTES_PER_SHARD = MIB
WRITE_RECORDS_PER_SHARD = 1000
READ_BYTES_PER_SHARD = 2 * MIB
ON_DEMAND_INITIAL_WRITE_BYTES = 4 * MIB  # a new on-demand stream: 4 MiB/s and 4,000 records/s of writes
ON_DEMAND_INITIAL_READ_BYTES = 8 * MIB
ON_DEMAND_INITIAL_SHARDS = 4
MAX_SHARDS = 1000  # the smallest default regional shard quota (1,000; 20,000 in us-east-1, us-west-2, eu-west-1)

POLL_INTERVAL_S = 1.0  # the mapping polls each shard about once a second
MAX_PARALLELIZATION = 10
MAX_BATCH_SIZE = 10_000  # the largest BatchSize of a Kinesis event source mapping
MAX_BATCHING_WINDOW_S = 300  # the longest MaximumBatchingWindowInSeconds
LAMBDA_PAYLOAD_BYTES = 6 * 1024 * 1024  # a mapping's batch also closes at 6 MB of invocation payload
# A Kinesis event record without its data: the documented example event's record (kinesisSchemaVersion,
# partitionKey, sequenceNumber, approximateArrivalTimestamp, eventSource, eventVersion, eventID, eventName,
# invokeIdentityArn, awsRegion, eventSourceARN) is about 480 bytes of JSON; 600 leaves room for longer ARNs
# and a UUID partition key (https://docs.aws.amazon.com/lambda/latest/dg/with-kinesis.html#services-kinesis-event-example).
KINESIS_EVENT_RECORD_BYTES = 600
VCPU_MEMORY_MB = 1769  # Lambda memory that comes with one full vCPU
EVENT_DELIVERY_S = 2.0  # S3 -> EventBridge -> Lambda: "typically ... in seconds"
EVENT_DELIVERY_MAX_S = 60.0  # "... can sometimes take a minute or longer"


def _mib(value: float) -> str:
    return f"{value / MIB:,.2f} MiB/s"


# ---- the stream -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamBatch:
    """How one stream stage's event source mapping runs on a given number of shards."""

    parallelization: int
    records_per_invocation: float
    invocation_ms: float
    needed: int  # concurrent batches the stage needs (with headroom)

    def concurrency_for(self, shards: int) -> int:
        return shards * self.parallelization


def event_record_bytes(record_bytes: int) -> int:
    """What one record adds to the event a mapping invokes Lambda with: its data base64-encoded plus its envelope."""
    return 4 * math.ceil(record_bytes / 3) + KINESIS_EVENT_RECORD_BYTES


def payload_cap(record_bytes: int) -> int:
    """The most records of this size one invocation's 6 MB payload holds."""
    return max(1, LAMBDA_PAYLOAD_BYTES // event_record_bytes(record_bytes))


def records_per_batch(batch_size: int, window_s: int, records_per_second: float, record_bytes: int) -> float:
    """Records in one invocation of a mapping reading `records_per_second` (one shard, or one of its
    parallel batchers): what arrives in the window (at least the 1 s poll), capped by `batch_size` and
    by the 6 MB payload limit, never below one."""
    collected = records_per_second * max(window_s, POLL_INTERVAL_S)
    cap = min(batch_size, payload_cap(record_bytes))
    return max(1.0, min(float(cap), collected))


def plan_batches(records_per_second: float, shards: int, batch_size: int, window_s: int, record_bytes: int,
                 duration_ms: Callable[[float], float]) -> StreamBatch:
    """The smallest ParallelizationFactor whose concurrent batches carry `records_per_second` on `shards` shards.

    A larger factor splits each shard's records between more batchers, so batches get smaller and
    invocations more numerous: the smallest factor that carries the load batches best. When even 10
    does not, the result says so through `needed > shards * 10`.
    """
    per_shard = records_per_second / max(shards, 1)
    best: StreamBatch | None = None
    for factor in range(1, MAX_PARALLELIZATION + 1):
        batch = records_per_batch(batch_size, window_s, per_shard / factor, record_bytes)
        duration = duration_ms(batch)
        needed = needed_concurrency(records_per_second, batch, duration)
        best = StreamBatch(factor, batch, duration, needed)
        if needed <= shards * factor:
            return best
    assert best is not None
    return best


def plan_stream_stage(spec: PipelineSpec, stage: StageSpec, shards: int) -> StreamBatch:
    """How a stream stage's mapping batches on `shards` shards (see `plan_batches`)."""
    assert stage.trigger.stream is not None
    trigger, work = stage.trigger.stream, spec.workload
    return plan_batches(work.records_per_second, shards, trigger.batch_size, trigger.max_batching_window_s, work.record_bytes,
                        lambda records: invocation_ms(spec, stage, records))


def _shards_for_stages(spec: PipelineSpec, shards: int) -> tuple[int, list[str]]:
    """Raise `shards` until every stream stage fits in shards x 10 concurrent batches (or MAX_SHARDS)."""
    lines: list[str] = []
    for stage in spec.stages:
        if not stage.trigger.stream:
            continue
        start = shards
        while shards < MAX_SHARDS and plan_stream_stage(spec, stage, shards).needed > shards * MAX_PARALLELIZATION:
            shards += 1
        if shards > start:
            lines.append(f"stage {stage.name}: {start} shard(s) x {MAX_PARALLELIZATION} parallel batches cannot carry its work; "
                         f"raised to {shards} shard(s)")
    return shards, lines


def _stepped(target: int, previous: Mapping[str, Any]) -> tuple[int, list[str]]:
    """Kinesis changes a provisioned stream's shard count at most 2x up or down per update
    (https://docs.aws.amazon.com/kinesis/latest/APIReference/API_UpdateShardCount.html): step toward
    the target from the last deployed count and say that another deploy continues."""
    before = previous.get("units") if previous.get("mode") == "provisioned" else None
    if not isinstance(before, int) or before <= 0 or before == target:
        return target, []
    low, high = math.ceil(before / 2), before * 2
    step = min(max(target, low), high)
    if step == target:
        return target, [f"last deploy had {before} shard(s): {before} -> {target} is within the 2x step UpdateShardCount allows"]
    return step, [f"last deploy had {before} shard(s): UpdateShardCount moves at most 2x per update, so this deploy sets {step} "
                  f"and a later deploy continues to {target} (until then capacity is {step} shard(s))"]


def size_stream(spec: PipelineSpec, previous: Mapping[str, Any]) -> StreamSizing:
    """The shards (or on-demand stream) that carry the workload with 25 % headroom, and why."""
    assert spec.stream is not None
    work = spec.workload
    readers = sum(1 for s in spec.stages if s.trigger.stream) + (1 if spec.stream.archive else 0)
    write_bytes, write_records = work.bytes_per_second * HEADROOM, work.records_per_second * HEADROOM
    read_bytes = work.bytes_per_second * readers * HEADROOM
    reasoning: list[str] = []
    if spec.clouds.aws.stream_mode == "on_demand":
        fits = (write_bytes <= ON_DEMAND_INITIAL_WRITE_BYTES and write_records <= ON_DEMAND_INITIAL_SHARDS * WRITE_RECORDS_PER_SHARD
                and read_bytes <= ON_DEMAND_INITIAL_READ_BYTES)
        if fits:
            return StreamSizing(
                units=0, unit_name="shard", mode="on-demand", partitions=ON_DEMAND_INITIAL_SHARDS,
                capacity_records_per_second=ON_DEMAND_INITIAL_SHARDS * WRITE_RECORDS_PER_SHARD,
                capacity_bytes_per_second=ON_DEMAND_INITIAL_WRITE_BYTES,
                reasoning=[f"on-demand: a new stream takes {_mib(ON_DEMAND_INITIAL_WRITE_BYTES)} and 4,000 records/s of writes "
                           f"({ON_DEMAND_INITIAL_SHARDS} shards); the workload needs {_mib(write_bytes)} and {write_records:,.0f} records/s "
                           f"with {HEADROOM} headroom, and {readers} reader(s) need {_mib(read_bytes)} of the {_mib(ON_DEMAND_INITIAL_READ_BYTES)} read"],
            )
        reasoning.append(f"on-demand asked for, but a new on-demand stream starts at {_mib(ON_DEMAND_INITIAL_WRITE_BYTES)}, 4,000 records/s "
                         f"and {_mib(ON_DEMAND_INITIAL_READ_BYTES)} of reads, below the {_mib(write_bytes)}, {write_records:,.0f} records/s "
                         f"and {_mib(read_bytes)} of reads this workload needs: it would be throttled until on-demand scaling catches up")
        reasoning.append("pre-warming it (warm throughput) needs the account-level On-demand Advantage commitment (25 MiB/s minimum), "
                         "so the plan provisions shards instead")
    by_bytes = math.ceil(write_bytes / WRITE_BYTES_PER_SHARD)
    by_records = math.ceil(write_records / WRITE_RECORDS_PER_SHARD)
    by_reads = math.ceil(read_bytes / READ_BYTES_PER_SHARD)
    reasoning += [
        f"writes: {_mib(work.bytes_per_second)} x {HEADROOM} headroom / 1 MiB/s per shard = {by_bytes} shard(s)",
        f"records: {work.records_per_second:,.0f}/s x {HEADROOM} / 1,000 records/s per shard = {by_records} shard(s)",
        f"reads: {readers} standard consumer(s) x {_mib(work.bytes_per_second)} x {HEADROOM} / 2 MiB/s per shard = {by_reads} shard(s)",
    ]
    needed = max(1, by_bytes, by_records, by_reads)
    needed, stage_lines = _shards_for_stages(spec, needed)
    reasoning += stage_lines
    if isinstance(spec.stream.partitions, int):
        target = spec.stream.partitions
        note = "" if target >= needed else f" (below the {needed} the workload needs: expect throttling)"
        reasoning.append(f"fixed by the spec: {target} shard(s){note}")
    else:
        target = needed
    shards, step_lines = _stepped(target, previous)
    reasoning += step_lines
    reasoning.append(f"=> {shards} provisioned shard(s)")
    return StreamSizing(
        units=shards, unit_name="shard", mode="provisioned", partitions=shards,
        capacity_records_per_second=shards * WRITE_RECORDS_PER_SHARD,
        capacity_bytes_per_second=shards * WRITE_BYTES_PER_SHARD,
        reasoning=reasoning,
    )


def stream_shards(stream: StreamSizing) -> int:
    """Shards the mapping reads: the provisioned count, or an on-demand stream's initial four."""
    return stream.units if stream.mode == "provisioned" else stream.partitions


# ---- stages -----------------------------------------------------------------------------------------


def object_readers(spec: PipelineSpec, key: str) -> list[str]:
    """Stages triggered by each new object of bucket `key`."""
    return [s.name for s in spec.stages if s.trigger.objects is not None and s.trigger.objects.from_stage == key]


def fans_out(spec: PipelineSpec, key: str) -> bool:
    """Several stages read each new object of `key`: its events go through EventBridge, whose rules fan them out. One
    reader is notified by S3 directly (free): S3 cannot send one event type and prefix to several functions."""
    return len(object_readers(spec, key)) > 1


@dataclass(frozen=True)
class _Carry:
    """How a stage's invocations run before the account's pool is shared out: what it needs at its peak and the
    most its trigger can ever run at once (None: as many as the pool gives)."""

    peak: int
    ceiling: int | None
    lines: list[str]


def _carry(spec: PipelineSpec, stage: StageSpec, demand: StageDemand, duration: float, offered: float) -> _Carry:
    trigger = stage.trigger
    if trigger.window_source:
        how = "EventBridge Scheduler (flexible window off)" if trigger.schedule else "a Lambda function URL (IAM auth), on each request"
        return _Carry(1, 1, [f"{how} runs the stage over what {trigger.window_source} wrote since its last good run; the runtime's lease "
                             "in the stage's own bucket lets one run at a time take the window (a run that finds it taken ends at once)"])
    if trigger.schedule:
        return _Carry(1, 1, ["EventBridge Scheduler (flexible window off) invokes one run per tick"])
    needed = needed_concurrency(demand.records_per_second, demand.records_per_event, duration) if demand.events_per_second else 1
    if trigger.http:
        for_blocking = servers_for_blocking(offered)
        return _Carry(max(needed, for_blocking), None, [
            f"Lambda function URL (IAM auth), one synchronous invocation per request: a request that finds no free execution gets 429 "
            f"at once; {offered:,.2f} busy executions on average need {for_blocking:,} for at most {BLOCKING_TARGET:.0%} of requests "
            "refused (Erlang B)"])
    assert trigger.objects is not None
    route = (f"S3 -> EventBridge (several stages read {trigger.objects.from_stage}) -> Lambda" if fans_out(spec, trigger.objects.from_stage)
             else "S3 event notification -> Lambda")
    return _Carry(needed, None, [f"{route} (asynchronous), one invocation per object; a burst beyond its concurrency waits in "
                                 "Lambda's async queue"])


def _share(spec: PipelineSpec, stage: StageSpec, carry: _Carry, pool: Pool | None) -> tuple[int, list[str], dict[str, Any]]:
    """The concurrency the plan gives a stage: its reservation when the user caps it, else what the shared pool leaves it."""
    cap = spec.clouds.aws.reserved_concurrency.get(stage.name)
    settings: dict[str, Any] = {"peak_concurrency": carry.peak}
    if cap is not None:
        settings["reserved_concurrency"] = cap
        concurrency = min(cap, carry.ceiling) if carry.ceiling is not None else cap
        lines = [f"reserved concurrency {cap:,} (clouds.aws.reserved_concurrency): guaranteed and a cap; it needs {carry.peak:,} at its peak"]
        if cap < carry.peak:
            lines.append(f"the reservation {cap:,} is below the {carry.peak:,} it needs at its peak: invocations beyond it are throttled")
        return concurrency, lines, settings
    if pool is None:  # the first pass, before every function's peak is known
        return carry.ceiling or carry.peak, [], settings
    available = pool.available(stage.name)
    concurrency = min(carry.ceiling, available) if carry.ceiling is not None else available
    return max(concurrency, 0), pool.explain(stage.name, carry.peak), settings


def size_stage(spec: PipelineSpec, stage: StageSpec, demand: StageDemand, stream: StreamSizing | None, pool: Pool | None = None) -> StageSizing:
    """Records per invocation, concurrency and trigger wait of one stage on Lambda. `pool` shares the account's concurrency
    between the plan's functions (`pipeline_aws.concurrency`); without it, each stage gets what it needs (a first pass
    that finds every function's peak)."""
    trigger = stage.trigger
    if trigger.stream is not None:
        assert stream is not None
        shards = stream_shards(stream)
        batch = plan_stream_stage(spec, stage, shards)
        most = batch.concurrency_for(shards)
        notes = [f"event source mapping: {shards} shard(s) x ParallelizationFactor {batch.parallelization} = {most} concurrent "
                 f"batch(es), {batch.records_per_invocation:,.0f} records each (batch_size {trigger.stream.batch_size}, window "
                 f"{trigger.stream.max_batching_window_s} s, 6 MB cap)"]
        if batch.needed > most:
            notes.append(f"needs {batch.needed} concurrent batches, more than {shards} shard(s) x {MAX_PARALLELIZATION}")
        concurrency, shared, settings = _share(spec, stage, _Carry(most, most, notes), pool)
        per_batcher = demand.records_per_second / max(most, 1)
        fill = batch.records_per_invocation / per_batcher if per_batcher > 0 else float(trigger.stream.max_batching_window_s)
        wait = min(float(trigger.stream.max_batching_window_s), fill)
        return stage_sizing(spec, stage, demand, records_per_invocation=batch.records_per_invocation, concurrency=concurrency,
                            latency_s=wait / 2 + POLL_INTERVAL_S / 2, latency_max_s=wait + POLL_INTERVAL_S, reasoning=notes + shared,
                            settings={**settings, "parallelization_factor": batch.parallelization, "shards": shards})
    duration = invocation_ms(spec, stage, demand.records_per_event)
    offered = (demand.events_per_second or 0.0) * duration / 1000  # Erlang: executions busy on average
    carry = _carry(spec, stage, demand, duration, offered)
    concurrency, shared, settings = _share(spec, stage, carry, pool)
    lines = list(carry.lines)
    blocking = erlang_b(concurrency, offered) if trigger.http else None
    if blocking is not None and blocking > BLOCKING_TARGET:
        lines.append(f"{blocking:.1%} of requests would find all {concurrency:,} execution(s) busy and be refused (Erlang B; "
                     f"{servers_for_blocking(offered):,} keep it at or below {BLOCKING_TARGET:.0%})"
                     + ("; requests to a windowed stage run one at a time: call it less often than a run takes" if trigger.window_source else ""))
    lines += shared  # last: what to do about the account's pool is the hint of a capacity problem
    if trigger.window_source:
        every = 1 / demand.events_per_second if demand.events_per_second else 0.0
        if trigger.schedule:
            every = schedule_interval_s(stage)
        return stage_sizing(spec, stage, demand, records_per_invocation=0, concurrency=concurrency,
                            latency_s=every / 2, latency_max_s=every, reasoning=lines,
                            settings=settings, blocking=blocking)
    if trigger.schedule:
        interval = schedule_interval_s(stage)
        return stage_sizing(spec, stage, demand, records_per_invocation=0, concurrency=concurrency, latency_s=interval / 2,
                            latency_max_s=interval, reasoning=lines, settings=settings)
    if trigger.http:
        return stage_sizing(spec, stage, demand, records_per_invocation=0, concurrency=concurrency, latency_s=0.0, latency_max_s=0.0,
                            reasoning=lines, settings=settings, blocking=blocking)
    return stage_sizing(spec, stage, demand, records_per_invocation=0, concurrency=concurrency,
                        latency_s=EVENT_DELIVERY_S, latency_max_s=EVENT_DELIVERY_MAX_S, reasoning=lines, settings=settings)


# ---- the raw archive's Lambda archiver ------------------------------------------------------------
# The archiver (pipeline_aws.archive) reads the stream on its own event source mapping with the largest
# batches a mapping allows, so an invocation and its one S3 object carry as many records as possible.
ARCHIVER_BATCH_SIZE = MAX_BATCH_SIZE
ARCHIVER_WINDOW_S = MAX_BATCHING_WINDOW_S
ARCHIVER_MEMORY_MB = 256  # a 6 MB event parses into a few tens of MB; more memory only buys CPU the work does not need
ARCHIVER_TIMEOUT_S = 60
# CPU to base64-decode, join and gzip (level 6) records, per KiB of record at one full vCPU: 40-67 us measured
# on x86 by benchmarks/aws_archiver.py; 100 us leaves room for arm64 and noisy neighbours.
ARCHIVE_US_PER_KIB = 100.0
ARCHIVE_MS_PER_INVOCATION = 150.0  # one S3 PUT of up to a few MB plus the handler's own start


def archiver_invocation_ms(records: float, record_bytes: int) -> float:
    """One archiver invocation: the PUT and start, plus the CPU work at the vCPU share its memory buys."""
    cpu_share = ARCHIVER_MEMORY_MB / VCPU_MEMORY_MB
    return ARCHIVE_MS_PER_INVOCATION + records * record_bytes / 1024 * ARCHIVE_US_PER_KIB / 1000 / cpu_share


@dataclass(frozen=True)
class ArchiverSizing:
    """How a Lambda archiver would carry the stream: batches, invocations and the most it runs at once."""

    shards: int
    parallelization: int
    records_per_invocation: float
    invocations_per_second: float
    invocation_ms: float
    concurrency: int  # shards x ParallelizationFactor: the most its mapping runs at once (its peak in the account's pool)
    needed: int  # concurrent invocations the archive needs with headroom

    @property
    def invocations_per_month(self) -> float:
        return self.invocations_per_second * SECONDS_PER_MONTH

    @property
    def gb_seconds_per_month(self) -> float:
        return ARCHIVER_MEMORY_MB / 1024 * self.invocation_ms / 1000 * self.invocations_per_month


def size_archiver(spec: PipelineSpec, stream: StreamSizing) -> ArchiverSizing:
    """Batches of up to 10,000 records or 300 s (capped by the 6 MB payload), one batcher per shard unless more
    are needed; the archiver's peak concurrency is what its mapping can run at once."""
    work = spec.workload
    shards = stream_shards(stream)
    batch = plan_batches(work.records_per_second, shards, ARCHIVER_BATCH_SIZE, ARCHIVER_WINDOW_S, work.record_bytes,
                         lambda records: archiver_invocation_ms(records, work.record_bytes))
    invocations = work.records_per_second / batch.records_per_invocation if work.records_per_second > 0 else 0.0
    return ArchiverSizing(shards, batch.parallelization, batch.records_per_invocation, invocations, batch.invocation_ms,
                          shards * batch.parallelization, batch.needed)


ArchiveKind = Literal["firehose", "lambda"]


@dataclass(frozen=True)
class RawArchive:
    """The raw archive the plan builds (chosen in pipeline_aws.archive_choice), the archiver it would size
    either way (for the comparison), and why."""

    kind: ArchiveKind
    archiver: ArchiverSizing
    reasoning: list[str] = field(default_factory=list)

    @property
    def peak_concurrency(self) -> int:
        """Executions the archive takes from the account's pool at its peak (Firehose takes none)."""
        return self.archiver.concurrency if self.kind == "lambda" else 0
