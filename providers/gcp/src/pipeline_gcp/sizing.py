"""How the GCP plan carries the workload: Pub/Sub capacity, batching, instances and trigger latency.

Stream stages are batched the way an expert ships it on GCP: a **Cloud Storage subscription** writes
the stream into Avro files (`batching.py` decides their size: `batch_size`, the spec's window at the
workload's rate, and the stage's memory), and each finished file triggers the stage once with the
whole batch (Cloud Storage notification -> Pub/Sub -> our push subscription). A push subscription
straight to the function would hand it one message per request, making `batch_size` act as 1: one
invocation, object write, event and log line per record.

Windowed stages (a schedule or an HTTP stage with `from`) run one request per instance on one instance:
the runtime's lease is what keeps two runs from reading one window; one instance keeps them from
competing for it. Plain HTTP stages are sized for at most 1 % of requests finding no free instance.

Pub/Sub limits (https://cloud.google.com/pubsub/quotas, reference gcp.md §4): publish throughput is a
per-project, per-region quota (not per topic) of 12,000,000 kB/min (200 MB/s) in the large regions and
3,000,000 kB/min (50 MB/s) elsewhere; one ordering key carries at most 1 MB/s; a message is at most 10 MB.
Pub/Sub has no partitions or shards: nothing to provision, nothing to keep across deploys.
"""

from __future__ import annotations

import math

from pipeline.sizing import (
    BLOCKING_TARGET,
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
from pipeline_gcp import batching, functions, regions

LARGE_REGIONS = frozenset({"us-central1", "us-east1", "europe-west1"})
LARGE_REGION_BYTES_PER_S = 12_000_000 * 1000 / 60  # 200 MB/s
OTHER_REGION_BYTES_PER_S = 3_000_000 * 1000 / 60  # 50 MB/s
ORDERING_KEY_BYTES_PER_S = 1_000_000
HEADROOM = 1.25

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


def windowed(stage: StageSpec) -> bool:
    """A stage that runs over the outputs accumulated since its last run (a schedule or an HTTP stage with `from`)."""
    return bool(stage.trigger.window_source)


def single_run(stage: StageSpec) -> bool:
    """Stages that run one request at a time on one instance: schedules and HTTP stages over accumulated outputs."""
    return bool(stage.trigger.schedule) or windowed(stage)


def _limit_text(files: batching.Files, stage: StageSpec) -> str:
    trigger = stage.trigger.stream
    assert trigger is not None
    return {"batch_size": f"batch_size {trigger.batch_size}",
            "window": f"the records of the {trigger.max_batching_window_s} s window at the workload",
            "memory": f"what {stage.memory_mb} MB holds (the runtime keeps ~{batching.RUNTIME_FILE_FACTOR}x a file)",
            "bytes floor": f"max_bytes' {batching.MIN_BYTES:,} B minimum",
            "max_duration": f"max_duration {files.duration_s} s (traffic below what fills a file sooner)",
            "max_bytes": "max_bytes"}[files.limit]


def size_stage(spec: PipelineSpec, stage: StageSpec, demand: StageDemand) -> StageSizing:
    """Batching, instances and trigger wait of one stage, per trigger kind."""
    trigger = stage.trigger
    if trigger.schedule:
        interval = schedule_interval_s(stage)
        per_run = demand.records_per_event
        zone = trigger.timezone or "UTC"
        lines = [f"Cloud Scheduler calls the function every {interval:,.0f} s on average (cron read in {zone}; one run at a time)"
                 + (f", with the ~{per_run:,.0f} rows written since the last run" if trigger.from_stage else "")]
        job_region = regions.scheduler_region(spec.clouds.gcp.region)
        if job_region != spec.clouds.gcp.region:
            lines.append(f"Cloud Scheduler has no jobs in {spec.clouds.gcp.region}: the job runs in {job_region} and calls the function over HTTPS")
        return _sized(spec, stage, demand, per_run, interval / 2, interval, lines)
    if trigger.stream:
        source = batching.sources(spec)[stage.name]
        files = source.files
        shared = f", shared with {', '.join(s for s in source.stages if s != stage.name)}" if len(source.stages) > 1 else ""
        where = "the raw archive's subscription (raw/)" if source.archive else f"a Cloud Storage subscription of its own{shared}"
        lines = [
            f"{where} writes Avro files of up to {files.max_bytes:,} B (~{batching.avro_record_bytes(spec):,} B a record with "
            f"metadata) or {files.duration_s} s: at the workload ~{files.records_per_file:,.1f} records a file, open "
            f"{files.open_s:,.1f} s, closed by {_limit_text(files, stage)}",
            f"each finished file -> Cloud Storage notification -> push subscription -> one invocation with the whole batch "
            f"(~{NOTIFY_TYPICAL_S:g} s, up to ~{NOTIFY_MAX_S:g} s)",
        ]
        window = trigger.stream.max_batching_window_s
        if files.open_s > max(window, batching.MIN_WINDOW_S) + 1e-9:
            lines.append(f"max_batching_window_s {window}: a file cannot close by time before {batching.MIN_DURATION_S} s "
                         f"(max_duration's minimum), so at this rate a record waits up to {files.open_s:,.0f} s")
        else:
            lines.append(f"max_batching_window_s {window} honoured at the workload (max_bytes sized to the window's records); "
                         f"with less traffic a file waits at most {files.duration_s} s (max_duration's minimum is "
                         f"{batching.MIN_DURATION_S} s)")
        return _sized(spec, stage, demand, files.records_per_file, files.open_s / 2 + NOTIFY_TYPICAL_S, files.open_s + NOTIFY_MAX_S, lines)
    if trigger.http and windowed(stage):
        rate = spec.workload.http_requests_per_second(stage.name)
        interval = 1 / rate if rate > 0 else math.inf
        return _sized(spec, stage, demand, demand.records_per_event, interval / 2 if rate > 0 else 0.0, interval if rate > 0 else 0.0,
                      [f"each authenticated request runs the stage over the ~{demand.records_per_event:,.0f} rows written since the "
                       f"last run (one run at a time; {rate:g} requests/s)"])
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
    blocking: float | None = None
    per_instance = functions.requests_per_instance(stage.memory_mb)
    lines = list(reasoning)
    if single_run(stage):
        needed, per_instance = 1, 1
        lines.append("one request per instance and one instance: a second run would only wait for the first one's lease "
                     "(the runtime's lease, not this setting, is what keeps two runs from reading one window)")
    elif stage.trigger.http:
        # Cloud Run keeps a request that finds every instance busy pending briefly, then refuses it (429)
        # (https://cloud.google.com/run/docs/about-instance-autoscaling): sized as a loss system (Erlang B), which
        # counts every such request as refused, an upper bound.
        offered = (demand.events_per_second or 0.0) * duration / 1000
        servers = servers_for_blocking(offered)
        if servers > needed:
            lines.append(f"{offered:,.2f} requests in flight on average (Erlang B): {servers} concurrent requests keep refusals "
                         f"at or below {BLOCKING_TARGET:.0%}")
        needed = max(needed, servers)
    instances = min(functions.MAX_INSTANCES, max(1, math.ceil(needed / per_instance)))
    concurrency = instances * per_instance
    if stage.trigger.http and not single_run(stage):
        blocking = erlang_b(concurrency, (demand.events_per_second or 0.0) * duration / 1000)
    lines.append(f"{needed:,} invocation(s) in flight needed (25 % headroom) -> max_instance_count {instances:,} x "
                 f"{per_instance} request(s) per instance ({functions.cpu_for(stage.memory_mb)} vCPU at {stage.memory_mb} MiB); min_instance_count 0")
    if math.ceil(needed / per_instance) > functions.MAX_INSTANCES:
        lines.append(f"capped at {functions.MAX_INSTANCES:,} instances per function (Cloud Run's default maximum): raise memory_mb for "
                     f"more vCPUs per instance, or batch more per invocation")
    return stage_sizing(spec, stage, demand, records_per_invocation=per_invocation, concurrency=concurrency,
                        latency_s=latency, latency_max_s=latency_max, reasoning=lines, blocking=blocking,
                        settings={"max_instance_count": instances, "max_instance_request_concurrency": per_instance,
                                  "workers": per_instance})
