"""How the GCP plan carries the workload: Pub/Sub capacity, batching, instances and trigger latency.

Stream stages are batched the way an expert ships it on GCP: a **Cloud Storage subscription** writes
the stream into a per-stage batch bucket, one Avro file per `batch_size x record` bytes (`max_bytes`)
or per `max(60 s, max_batching_window_s)` (`max_duration`, whose floor is 60 s), and each finished
file triggers the stage once with the whole batch (Cloud Storage notification -> Pub/Sub -> our push
subscription). A push subscription straight to the function would hand it one message per request,
making `batch_size` act as 1: one invocation, object write, event and log line per record.

Pub/Sub limits (https://cloud.google.com/pubsub/quotas, reference gcp.md §4): publish throughput is a
per-project, per-region quota (not per topic) of 12,000,000 kB/min (200 MB/s) in the large regions and
3,000,000 kB/min (50 MB/s) elsewhere; one ordering key carries at most 1 MB/s; a message is at most 10 MB.
Pub/Sub has no partitions or shards: nothing to provision, nothing to keep across deploys.
"""

from __future__ import annotations

import math

from pipeline.sizing import StageDemand, StageSizing, StreamSizing, invocation_ms, needed_concurrency, schedule_interval_s, stage_sizing
from pipeline.spec.model import PipelineSpec, StageSpec
from pipeline_gcp import functions

LARGE_REGIONS = frozenset({"us-central1", "us-east1", "europe-west1"})
LARGE_REGION_BYTES_PER_S = 12_000_000 * 1000 / 60  # 200 MB/s
OTHER_REGION_BYTES_PER_S = 3_000_000 * 1000 / 60  # 50 MB/s
ORDERING_KEY_BYTES_PER_S = 1_000_000
HEADROOM = 1.25

# Cloud Storage subscription file limits (pulumi-gcp SubscriptionCloudStorageConfigArgs; https://cloud.google.com/pubsub/docs/cloudstorage):
# max_duration 1-10 min, max_bytes 1 KB - 10 GiB, max_messages at least 1000.
BATCH_MIN_DURATION_S = 60
BATCH_MAX_DURATION_S = 600
BATCH_MIN_BYTES = 1000
# One Avro record with write_metadata: the data plus subscription name (~80 B), message_id (~17 B), publish_time
# (a long) and the attributes map with varint lengths; assumed ~120 B on top of the record.
AVRO_METADATA_BYTES = 120
# Cloud Storage Pub/Sub notifications and push delivery: "typically within seconds" (assumed 2 s typical, 10 s
# worst under normal operation; https://cloud.google.com/storage/docs/pubsub-notifications).
NOTIFY_TYPICAL_S = 2.0
NOTIFY_MAX_S = 10.0
HTTP_COLD_START_S = 2.0  # a request that finds no warm instance waits for one to start (min_instances 0)


def _mbps(value: float) -> str:
    return f"{value / 1_000_000:.2f} MB/s"


def size_stream(spec: PipelineSpec, notes: list[str]) -> StreamSizing:
    work = spec.workload
    region = spec.clouds.gcp.region
    quota = LARGE_REGION_BYTES_PER_S if region in LARGE_REGIONS else OTHER_REGION_BYTES_PER_S
    needed = work.records_per_second * work.record_bytes * HEADROOM
    reasoning = [
        "Pub/Sub has no partitions or shards: nothing to provision and nothing to keep across deploys; capacity follows traffic",
        f"publish quota in {region}: {_mbps(quota)} per project and region (shared by every topic); producers publish "
        f"with the client library's batching, so requests count their message bytes",
        f"workload: {work.records_per_second:,.0f} records/s x {work.record_bytes:,} B x {HEADROOM} headroom = {_mbps(needed)} "
        f"({needed / quota:.1%} of the quota)",
    ]
    if needed > quota:
        reasoning.append("above the default quota: request a quota increase before going live")
    assert spec.stream is not None
    if isinstance(spec.stream.partitions, int):
        reasoning.append(f"stream.partitions = {spec.stream.partitions} has no effect on Pub/Sub (still valid for other clouds); "
                         f"ordering is per ordering key, each limited to {_mbps(ORDERING_KEY_BYTES_PER_S)}")
    reasoning.extend(notes)
    return StreamSizing(units=0, unit_name="no partitions", mode="serverless", partitions=0,
                        capacity_records_per_second=quota / max(work.record_bytes, 1), capacity_bytes_per_second=quota,
                        reasoning=reasoning)


def batch_duration_s(stage: StageSpec) -> int:
    """The Cloud Storage subscription's max_duration: the batching window, at least 60 s, at most 10 min."""
    assert stage.trigger.stream is not None
    return max(BATCH_MIN_DURATION_S, min(BATCH_MAX_DURATION_S, stage.trigger.stream.max_batching_window_s))


def avro_record_bytes(spec: PipelineSpec) -> int:
    return spec.workload.record_bytes + AVRO_METADATA_BYTES


def batch_max_bytes(spec: PipelineSpec, stage: StageSpec) -> int:
    """max_bytes of one batch file: batch_size records of the workload's size, with their metadata."""
    assert stage.trigger.stream is not None
    return max(BATCH_MIN_BYTES, stage.trigger.stream.batch_size * avro_record_bytes(spec))


def size_stage(spec: PipelineSpec, stage: StageSpec, demand: StageDemand) -> StageSizing:
    """Batching, instances and trigger wait of one stage, per trigger kind."""
    trigger = stage.trigger
    if trigger.schedule:
        interval = schedule_interval_s(stage)
        per_run = demand.records_per_event
        return _sized(spec, stage, demand, per_run, interval / 2, interval,
                      [f"Cloud Scheduler calls the function every {interval:,.0f} s (one run at a time)"
                       + (f", with the ~{per_run:,.0f} rows written since the last run" if trigger.from_stage else "")])
    if trigger.stream:
        batch = trigger.stream.batch_size
        duration = batch_duration_s(stage)
        rate = demand.records_per_second
        per_file = min(float(batch), rate * duration) if rate > 0 else 1.0
        fill_s = per_file / rate if rate > 0 else float(duration)
        lines = [
            f"Cloud Storage subscription -> batch file of up to {batch_max_bytes(spec, stage):,} B (batch_size {batch} x "
            f"~{avro_record_bytes(spec):,} B Avro record) or {duration} s (max_duration, floor 60 s), whichever comes first: "
            f"~{per_file:,.0f} records per file, one file every {fill_s:,.1f} s (Pub/Sub may write smaller files in parallel under load)",
            f"each finished file -> Cloud Storage notification -> push subscription -> one invocation with the whole batch "
            f"(~{NOTIFY_TYPICAL_S:g} s, up to ~{NOTIFY_MAX_S:g} s)",
        ]
        if trigger.stream.max_batching_window_s < BATCH_MIN_DURATION_S and fill_s >= trigger.stream.max_batching_window_s:
            lines.append(f"max_batching_window_s {trigger.stream.max_batching_window_s} -> {duration} s: a file closes after 60 s at the "
                         f"earliest unless it is full; latency is bounded by the fill time, not the window")
        return _sized(spec, stage, demand, per_file, fill_s / 2 + NOTIFY_TYPICAL_S, fill_s + NOTIFY_MAX_S, lines)
    if trigger.http:
        return _sized(spec, stage, demand, demand.records_per_event, 0.0, HTTP_COLD_START_S,
                      ["HTTPS request -> function, answered synchronously (no queue); a cold instance adds start-up time"])
    return _sized(spec, stage, demand, demand.records_per_event, NOTIFY_TYPICAL_S, NOTIFY_MAX_S,
                  [f"each new object -> Cloud Storage notification -> push subscription -> one invocation "
                   f"(~{NOTIFY_TYPICAL_S:g} s, up to ~{NOTIFY_MAX_S:g} s)"])


def _sized(spec: PipelineSpec, stage: StageSpec, demand: StageDemand, per_invocation: float, latency: float, latency_max: float,
           reasoning: list[str]) -> StageSizing:
    """Instances from the demand (with the shared headroom), requests per instance from the vCPUs the memory buys."""
    duration = invocation_ms(spec, stage, max(per_invocation, 1.0 if stage.trigger.stream else per_invocation))
    needed = needed_concurrency(demand.records_per_second, max(per_invocation, 1e-9), duration) if demand.records_per_second else 1
    if stage.trigger.schedule:
        needed = 1  # one run at a time; a retry only follows a failure
    per_instance = functions.requests_per_instance(stage.memory_mb)
    instances = min(functions.MAX_INSTANCES, max(1, math.ceil(needed / per_instance)))
    concurrency = instances * per_instance
    lines = [*reasoning,
             f"{needed:,} invocation(s) in flight needed (25 % headroom) -> max_instance_count {instances:,} x "
             f"{per_instance} request(s) per instance ({functions.cpu_for(stage.memory_mb)} vCPU at {stage.memory_mb} MiB); min_instance_count 0"]
    if math.ceil(needed / per_instance) > functions.MAX_INSTANCES:
        lines.append(f"capped at {functions.MAX_INSTANCES:,} instances per function (Cloud Run's default maximum): raise memory_mb for "
                     f"more vCPUs per instance, or batch more per invocation")
    return stage_sizing(spec, stage, demand, records_per_invocation=per_invocation, concurrency=concurrency,
                        latency_s=latency, latency_max_s=latency_max, reasoning=lines,
                        settings={"max_instance_count": instances, "max_instance_request_concurrency": per_instance,
                                  "workers": per_instance})
