"""Pub/Sub capacity next to the workload. Pub/Sub is serverless: there are no shards to provision.

Limits (https://cloud.google.com/pubsub/quotas, reference gcp.md §4): publish throughput is a
per-project, per-region quota (not per topic) of 12,000,000 kB/min (200 MB/s) in the large regions
and 3,000,000 kB/min (50 MB/s) elsewhere; each publish request counts at least 1 kB; one ordering
key carries at most 1 MB/s; a message is at most 10 MB.
"""

from __future__ import annotations

from pipeline.backend import StreamSizing
from pipeline.spec.model import PipelineSpec

LARGE_REGIONS = frozenset({"us-central1", "us-east1", "europe-west1"})
LARGE_REGION_BYTES_PER_S = 12_000_000 * 1000 / 60  # 200 MB/s
OTHER_REGION_BYTES_PER_S = 3_000_000 * 1000 / 60  # 50 MB/s
MIN_BILLED_BYTES = 1000  # quota unit: max(1 kB, request size)
ORDERING_KEY_BYTES_PER_S = 1_000_000
HEADROOM = 1.25


def _mbps(value: float) -> str:
    return f"{value / 1_000_000:.2f} MB/s"


def size_stream(spec: PipelineSpec, notes: list[str]) -> StreamSizing:
    work = spec.workload
    region = spec.clouds.gcp.region
    quota = LARGE_REGION_BYTES_PER_S if region in LARGE_REGIONS else OTHER_REGION_BYTES_PER_S
    # Unbatched publishing counts every record as at least 1 kB against the quota.
    per_record = max(work.record_bytes, MIN_BILLED_BYTES)
    needed = work.records_per_second * per_record * HEADROOM
    reasoning = [
        "Pub/Sub is serverless: no shards or partitions to provision, capacity scales with traffic",
        f"publish quota in {region}: {_mbps(quota)} per project and region (shared by all topics), "
        f"each record counted as at least 1 kB when published unbatched",
        f"workload: {work.records_per_second:,.0f} records/s x {per_record:,} B x {HEADROOM} headroom = {_mbps(needed)} "
        f"({needed / quota:.1%} of the quota)",
    ]
    if needed > quota:
        reasoning.append("above the default quota: batch publishes or request a quota increase before going live")
    if isinstance(spec.stream.partitions, int):
        reasoning.append(f"stream.partitions = {spec.stream.partitions} has no effect on Pub/Sub (still valid for other clouds); "
                         f"ordering keys are limited to {_mbps(ORDERING_KEY_BYTES_PER_S)} each instead")
    reasoning.extend(notes)
    return StreamSizing(
        units=0, unit_name="partition", mode="serverless", partitions=0,
        capacity_records_per_second=quota / per_record,
        capacity_bytes_per_second=quota,
        reasoning=reasoning,
    )
