"""Kinesis capacity from the workload, next to the published per-shard limits.

Limits (https://docs.aws.amazon.com/streams/latest/dev/service-sizes-and-limits.html):
each shard takes 1 MiB/s or 1,000 records/s of writes and serves 2 MiB/s of reads shared by
all standard (non-EFO) consumers. We keep 25 % headroom so bursts and uneven partition
keys do not throttle producers.
"""

from __future__ import annotations

import math

from pipeline.sizing import StageDemand, StageSizing, StreamSizing, schedule_interval_s, stage_sizing
from pipeline.spec.model import PipelineSpec, StageSpec

WRITE_BYTES_PER_SHARD = 1024 * 1024
WRITE_RECORDS_PER_SHARD = 1000
READ_BYTES_PER_SHARD = 2 * 1024 * 1024
HEADROOM = 1.25
ON_DEMAND_INITIAL_WRITE_BYTES = 4 * 1024 * 1024  # new on-demand streams start at 4 MB/s writes


def _mbps(value: float) -> str:
    return f"{value / 1024 / 1024:.2f} MiB/s"


def size_stream(spec: PipelineSpec) -> StreamSizing:
    work = spec.workload
    readers = sum(1 for s in spec.stages if s.trigger.stream) + (1 if spec.stream.archive else 0)
    if spec.clouds.aws.stream_mode == "on_demand":
        return StreamSizing(
            units=0, unit_name="shard", mode="on-demand", partitions=4,
            capacity_records_per_second=4 * WRITE_RECORDS_PER_SHARD,
            capacity_bytes_per_second=ON_DEMAND_INITIAL_WRITE_BYTES,
            reasoning=[f"on-demand: starts at {_mbps(ON_DEMAND_INITIAL_WRITE_BYTES)} writes and scales with traffic; "
                       f"workload {_mbps(work.bytes_per_second)}"],
        )
    by_bytes = math.ceil(work.bytes_per_second * HEADROOM / WRITE_BYTES_PER_SHARD)
    by_records = math.ceil(work.records_per_second * HEADROOM / WRITE_RECORDS_PER_SHARD)
    by_reads = math.ceil(work.bytes_per_second * readers * HEADROOM / READ_BYTES_PER_SHARD)
    needed = max(1, by_bytes, by_records, by_reads)
    reasoning = [
        f"writes: {_mbps(work.bytes_per_second)} x {HEADROOM} headroom / 1 MiB/s per shard = {by_bytes} shard(s)",
        f"records: {work.records_per_second:,.0f}/s x {HEADROOM} / 1,000 records/s per shard = {by_records} shard(s)",
        f"reads: {readers} consumer(s) x {_mbps(work.bytes_per_second)} x {HEADROOM} / 2 MiB/s per shard = {by_reads} shard(s)",
    ]
    shards = needed
    if isinstance(spec.stream.partitions, int):
        shards = spec.stream.partitions
        note = "" if shards >= needed else f" (below the {needed} the workload needs: expect throttling)"
        reasoning.append(f"fixed by the spec: {shards} shard(s){note}")
    else:
        reasoning.append(f"=> {shards} shard(s)")
    return StreamSizing(
        units=shards, unit_name="shard", mode="provisioned", partitions=shards,
        capacity_records_per_second=shards * WRITE_RECORDS_PER_SHARD,
        capacity_bytes_per_second=shards * WRITE_BYTES_PER_SHARD,
        reasoning=reasoning,
    )


# ---- stages ------------------------------------------------------------------------------------------
ACCOUNT_CONCURRENCY = 1000  # default regional Lambda concurrency quota shared by every function of the account
POLL_INTERVAL_S = 1.0  # the event source mapping polls each shard about once a second
EVENT_DELIVERY_S = 1.0  # S3 -> EventBridge -> Lambda asynchronous invoke, typically under a second or two


def size_stage(spec: PipelineSpec, stage: StageSpec, demand: StageDemand, stream: StreamSizing | None) -> StageSizing:
    """Lambda: a Kinesis ESM invokes one batch per shard at a time; other triggers share the account's concurrency."""
    from pipeline_aws.pricing import stream_batch

    trigger = stage.trigger
    if trigger.stream and stream is not None and trigger.stream is not None:
        batch = stream_batch(spec, stream, stage)
        shards = stream.units if stream.mode == "provisioned" else stream.partitions
        window = trigger.stream.max_batching_window_s
        fill = batch / max(demand.records_per_second / max(shards, 1), 1e-9)
        return stage_sizing(spec, stage, demand, records_per_invocation=batch, concurrency=max(1, shards),
                            latency_s=min(window, fill) + POLL_INTERVAL_S / 2, latency_max_s=window + POLL_INTERVAL_S,
                            reasoning=[f"event source mapping: one concurrent batch per shard ({shards} shard(s)), "
                                       f"{batch:,.0f} records per batch"])
    if trigger.schedule:
        interval = schedule_interval_s(stage)
        return stage_sizing(spec, stage, demand, records_per_invocation=0, concurrency=1,
                            latency_s=interval / 2, latency_max_s=interval, reasoning=["EventBridge Scheduler: one run at a time"])
    return stage_sizing(spec, stage, demand, records_per_invocation=0, concurrency=ACCOUNT_CONCURRENCY,
                        latency_s=EVENT_DELIVERY_S, latency_max_s=EVENT_DELIVERY_S * 5,
                        reasoning=[f"unreserved: shares the account's {ACCOUNT_CONCURRENCY:,} concurrent executions"])
