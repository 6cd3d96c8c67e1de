"""Pub/Sub capacity next to the workload. Pub/Sub is serverless: there are no shards to provision.

Limits (https://cloud.google.com/pubsub/quotas, reference gcp.md §4): publish throughput is a
per-project, per-region quota (not per topic) of 12,000,000 kB/min (200 MB/s) in the large regions
and 3,000,000 kB/min (50 MB/s) elsewhere; each publish request counts at least 1 kB; one ordering
key carries at most 1 MB/s; a message is at most 10 MB.
"""

from __future__ import annotations

from pipeline.sizing import StageDemand, StageSizing, StreamSizing, needed_concurrency, schedule_interval_s, stage_sizing
from pipeline.spec.model import PipelineSpec, StageSpec

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


PUSH_DELIVERY_S = 0.1  # a push subscription delivers within about 100 ms of publishing
EVENTARC_DELIVERY_S = 2.0  # Cloud Storage -> Eventarc -> function, typically a few seconds


def size_stage(spec: PipelineSpec, stage: StageSpec, demand: StageDemand, stream: StreamSizing | None) -> StageSizing:
    """Cloud Functions gen2 with concurrency 1: instances = invocations in flight; push delivers one message per request."""
    from pipeline.sizing import invocation_ms
    from pipeline_gcp.functions import MAX_INSTANCES_CAP, max_instances

    trigger = stage.trigger
    if trigger.schedule:
        interval = schedule_interval_s(stage)
        return stage_sizing(spec, stage, demand, records_per_invocation=0, concurrency=max_instances(stage, 1),
                            latency_s=interval / 2, latency_max_s=interval, reasoning=["Cloud Scheduler: one run at a time"])
    per_invocation = 1.0 if trigger.stream else demand.records_per_event
    needed = needed_concurrency(demand.records_per_second, per_invocation, invocation_ms(spec, stage, per_invocation))
    instances = max_instances(stage, needed)
    why = "push subscription: one message per request" if trigger.stream else "Eventarc: one event per object"
    return stage_sizing(spec, stage, demand, records_per_invocation=per_invocation, concurrency=instances,
                        latency_s=PUSH_DELIVERY_S if trigger.stream else EVENTARC_DELIVERY_S,
                        latency_max_s=(PUSH_DELIVERY_S if trigger.stream else EVENTARC_DELIVERY_S) * 5,
                        reasoning=[f"{why}; {needed:,} instance(s) needed at concurrency 1, capped at {MAX_INSTANCES_CAP}"],
                        settings={"max_instances": instances})
