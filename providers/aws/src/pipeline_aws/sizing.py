"""Kinesis capacity from the workload, next to the published per-shard limits.

Limits (https://docs.aws.amazon.com/streams/latest/dev/service-sizes-and-limits.html):
each shard takes 1 MiB/s or 1,000 records/s of writes and serves 2 MiB/s of reads shared by
all standard (non-EFO) consumers. We keep 25 % headroom so bursts and uneven partition
keys do not throttle producers.
"""

from __future__ import annotations

import math

from pipeline.backend import StreamSizing
from pipeline.spec.model import PipelineSpec

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
