"""Monthly cost of the Azure plan, one line per billing line and role, from `prices.json`.

The formulas follow how each service bills (sources on every price in the sheet):

* Event Hubs Standard: throughput units x 730 hours; ingress events per million, an event counting once
  per started 64 KB; Capture per TU-hour (metered with the namespace's TUs); events kept beyond the
  84 GB per TU the tier includes are billed at the LRS blob rate (Event Hubs pricing FAQ).
* Flex Consumption on demand: executions and GB-seconds of *instance* memory (the 512/2048/4096 MB
  size the backend configures, not the spec's memory) while an instance executes; each activity
  period bills at least 1,000 ms (https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#billing).
  Free grant per subscription and month: 100,000 GB-s and 250,000 executions. No always-ready
  instances are configured, so there is no baseline charge.
* Event Grid: every BlobCreated the data account raises is an ingress operation of the system topic
  (filters do not reduce ingress), every delivery to an object stage another; first 100,000 free.
* Blob storage (Hot LRS, data account): GB-months at steady state from each container's retention;
  write operations (one per Capture file, one per stage output); read operations (object stages);
  Functions host operations (Event Hubs checkpoints and partition leases).
* Log Analytics (workspace-based Application Insights): GB ingested; first 5 GB per billing account free.
* Alerts: log search rules per rule-month (5-minute frequency), metric alerts per monitored time series.

The free grants are per subscription or billing account, not per stage, so each is drawn down once
across all lines (`_Grant`), in the order the lines are written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.cost import (
    GB,
    HOURS_PER_MONTH,
    SECONDS_PER_MONTH,
    CostEstimate,
    Price,
    PriceSheet,
    bytes_per_month,
    load_price_sheet,
    output_rows_per_month,
    records_per_month,
    stored_gb_months,
)
from pipeline.sizing import Sizing, StreamSizing
from pipeline.spec.model import PipelineSpec, StageSpec
from pipeline_azure import functions, stream

PRICES = Path(__file__).with_name("prices.json")

EVENT_BILLING_BYTES = 64 * 1024  # an ingress event counts once per started 64 KB
RETENTION_GB_PER_TU = 84  # storage included per TU on Standard; the excess bills at the LRS blob rate
FLEX_FREE_GB_S = 100_000  # per subscription and month, on-demand only
FLEX_FREE_EXECUTIONS = 250_000
FLEX_MIN_PERIOD_S = 1.0  # "The minimum billable execution period ... is 1,000 ms"
FLEX_ROUNDING_S = 0.1  # "... past that, the billable activity period is rounded up to the nearest 100 ms"
EVENT_GRID_FREE_OPERATIONS = 100_000
LOG_FREE_GB = 5.0  # per billing account and month
# Capture writes Avro: each event carries SequenceNumber, Offset, EnqueuedTimeUtc, SystemProperties and
# Properties next to Body, plus the container's header and sync markers. ~120 bytes per event is an
# estimate (not a published figure) for events without application properties.
AVRO_OVERHEAD_BYTES_PER_EVENT = 120
# Telemetry per invocation (assumed, not published): one AppRequests row (~1 KB with its standard
# columns), the host's "Executing"/"Executed" AppTraces rows and the runtime's one summary log line.
TELEMETRY_BYTES_PER_INVOCATION = 3 * 1024
HOST_LEASE_RENEWALS_PER_PARTITION_S = 1 / 10  # the Event Hubs processor renews each partition lease about every 10 s


class _Grant:
    """A monthly free grant shared by several lines (per subscription, not per resource)."""

    def __init__(self, amount: float):
        self.left = amount

    def take(self, quantity: float) -> float:
        used = min(self.left, quantity)
        self.left -= used
        return used


def per_unit(price: Price, per: float, unit: str) -> Price:
    """A price quoted per block (per million, per 10,000) as a price per single unit, so quantities and
    free grants stay in plain counts (a grant of 250,000 executions, not 0.25 "1M executions")."""
    return replace(price, usd=price.usd / per, unit=unit)


# ---- the formulas, each usable on its own (the tests reproduce published examples with them) ----------


def billable_events(records: float, record_bytes: int) -> float:
    """Event Hubs ingress events: one per started 64 KB of each event."""
    return records * max(1, math.ceil(record_bytes / EVENT_BILLING_BYTES))


def effective_batch(stage: StageSpec, records_per_second: float, partitions: int, duration_s: float) -> float:
    """Events per invocation of an Event Hubs-triggered stage.

    The trigger reads each partition separately and runs one batch per partition at a time. With a
    batching window the backend sets minEventBatchSize = maxEventBatchSize = batch_size and
    maxWaitTime = window, so a batch closes when it is full or the window has passed; without one,
    a batch holds what arrived while the previous batch ran. Either way a batch is what one partition
    receives in max(window, run time), at least one event and at most batch_size."""
    assert stage.trigger.stream is not None
    per_partition = records_per_second / max(1, partitions)
    fill_s = max(stage.trigger.stream.max_batching_window_s, duration_s)
    return min(float(stage.trigger.stream.batch_size), max(1.0, per_partition * fill_s))


def flex_billed_seconds(invocations: float, duration_s: float) -> float:
    """Instance-seconds Flex bills on demand for `invocations` runs of `duration_s`.

    Flex bills an instance's activity periods (concurrent executions on one instance count once), at
    least 1 s each, rounded up to 100 ms. Busy stages are one long activity period: their billed time is
    the execution time. Sparse stages start a new period per invocation, billed at least 1 s each, but
    those periods cannot add up to more than one instance active all month. Hence
    max(execution time, min(invocations x per-period time, one instance-month))."""
    period = max(FLEX_MIN_PERIOD_S, math.ceil(round(duration_s / FLEX_ROUNDING_S, 9)) * FLEX_ROUNDING_S)
    return max(invocations * duration_s, min(invocations * period, float(SECONDS_PER_MONTH)))


def gb_seconds(memory_mb: int, seconds: float) -> float:
    """GB-seconds of `memory_mb` held for `seconds` (billing GB = 1,024 MB)."""
    return memory_mb / 1024 * seconds


def event_grid_operations(published: float, deliveries: float) -> float:
    """Event Grid operations: each event published to a topic (system topics too) plus each delivery attempt."""
    return published + deliveries


def capture_files(spec: PipelineSpec, sizing: StreamSizing) -> float:
    """Capture files a month: one per partition per window, the window closing at the time or size limit."""
    per_partition_bytes_s = spec.workload.bytes_per_second / max(1, sizing.partitions)
    window_s = min(float(stream.CAPTURE_INTERVAL_S), stream.CAPTURE_SIZE_BYTES / per_partition_bytes_s if per_partition_bytes_s else math.inf)
    return sizing.partitions * SECONDS_PER_MONTH / window_s


@dataclass(frozen=True)
class _Stage:
    """What the estimate needs of one stage."""

    spec: StageSpec
    invocations: float
    memory_mb: int
    duration_s: float
    batch: float | None  # events per invocation (stream stages)


def _stages(spec: PipelineSpec, sizing: Sizing) -> list[_Stage]:
    result = []
    for stage in spec.stages:
        sized = sizing.stages[stage.name]
        memory = functions.flex_memory(stage.memory_mb) or functions.FLEX_MEMORY_MB[-1]  # check() rejects larger sizes
        batch = sized.records_per_invocation if stage.trigger.stream else None
        result.append(_Stage(stage, sized.invocations_per_month, memory, sized.invocation_ms / 1000, batch))
    return result


def estimate(spec: PipelineSpec, full: Sizing, free_tier: bool, sheet: PriceSheet | None = None) -> CostEstimate:
    """The monthly estimate of the plan the backend builds for `spec` with `sizing`.

    Raises the core's PipelineError when the location has no price sheet (never a silent zero)."""
    location = str(spec.clouds.azure.location)
    sheet = sheet or load_price_sheet(PRICES, "Azure", location)
    est = CostEstimate("azure", location, free_tier)
    stages = _stages(spec, full)
    work = spec.workload
    assert full.stream is not None  # TODO(uploads-only pipelines): price without a stream
    sizing = full.stream
    tus = sizing.units
    records = records_per_month(spec)

    # ---- stream ------------------------------------------------------------------------------
    est.add("stream", "Event Hubs Standard throughput units", tus * HOURS_PER_MONTH, sheet["eventhubs_standard_tu"],
            note=f"{tus} TU x {HOURS_PER_MONTH} h (auto-inflate off)")
    per_event = max(1, math.ceil(work.record_bytes / EVENT_BILLING_BYTES))
    est.add("stream", "Event Hubs ingress events", billable_events(records, work.record_bytes),
            per_unit(sheet["eventhubs_standard_ingress"], 1e6, "event"),
            note=f"{records:,.0f} records x {per_event} billable event(s) each (64 KB units)")
    retained_gb = work.bytes_per_second * spec.stream.retention_hours * 3600 / GB
    excess_gb = max(0.0, retained_gb - RETENTION_GB_PER_TU * tus)
    if excess_gb > 0:
        est.add("stream", "Event Hubs storage above the included 84 GB per TU", excess_gb, sheet["blob_hot_lrs_stored"],
                note=f"{retained_gb:,.1f} GB kept for {spec.stream.retention_hours} h - {RETENTION_GB_PER_TU * tus} GB included; "
                     "billed at the LRS blob rate per the Event Hubs pricing FAQ (rate tier not verified)")

    # ---- raw archive (Capture) ------------------------------------------------------------------
    writes = per_unit(sheet["blob_hot_lrs_write_ops"], 1e4, "operation")
    reads = per_unit(sheet["blob_hot_read_ops"], 1e4, "operation")
    other = per_unit(sheet["blob_hot_other_ops"], 1e4, "operation")
    blob_created = 0.0  # BlobCreated events the data account raises (Event Grid ingress)
    if spec.stream.archive:
        est.add("raw-archive", "Event Hubs Capture", tus * HOURS_PER_MONTH, sheet["eventhubs_standard_capture"],
                note=f"{tus} TU x {HOURS_PER_MONTH} h")
        raw_bytes = bytes_per_month(spec) + records * AVRO_OVERHEAD_BYTES_PER_EVENT
        est.add("raw-bucket", "Blob Hot LRS storage (Capture Avro files)", stored_gb_months(raw_bytes, spec.storage.raw_days),
                sheet["blob_hot_lrs_stored"],
                note=f"{spec.storage.raw_days} days kept; Avro adds ~{AVRO_OVERHEAD_BYTES_PER_EVENT} B per event (estimate)")
        files = capture_files(spec, sizing)
        est.add("raw-bucket", "Blob write operations (Capture files)", files, writes,
                note=f"one file per partition per {stream.CAPTURE_INTERVAL_S} s window x {sizing.partitions} partitions; "
                     "Capture may commit a file in several blocks (more writes)")
        blob_created += files

    # ---- stages ---------------------------------------------------------------------------------
    gb_s_grant, exec_grant = _Grant(FLEX_FREE_GB_S), _Grant(FLEX_FREE_EXECUTIONS)
    for st in stages:
        name, role = st.spec.name, f"{st.spec.name}-function"
        billed_s = flex_billed_seconds(st.invocations, st.duration_s)
        gbs = gb_seconds(st.memory_mb, billed_s)
        how = (f"{st.invocations:,.0f} invocations x {st.duration_s * 1000:,.0f} ms at the {st.memory_mb} MB instance size "
               f"(spec asks {st.spec.memory_mb} MB); {billed_s:,.0f} instance-s billed")
        est.add(role, "Flex Consumption on-demand execution time", gbs, sheet["flex_on_demand_execution_time"], free=gb_s_grant.take(gbs), note=how)
        est.add(role, "Flex Consumption on-demand executions", st.invocations, per_unit(sheet["flex_on_demand_executions"], 1e6, "execution"),
                free=exec_grant.take(st.invocations), note=_invocation_note(st))

        # Outputs: one object per invocation, each output row ~ one input record in size (assumed).
        consumed = bool(spec.consumers_of(name))
        days = spec.storage.intermediate_days if consumed else spec.storage.final_days
        rows = output_rows_per_month(full.stages[name])
        out_bytes = rows * work.record_bytes
        est.add(f"{name}-bucket", "Blob Hot LRS storage (stage outputs)", stored_gb_months(out_bytes, days), sheet["blob_hot_lrs_stored"],
                note=f"{rows:,.0f} rows of ~{work.record_bytes} B a month, kept {days} days")
        est.add(f"{name}-bucket", "Blob write operations (one output object per invocation)", st.invocations, writes)
        blob_created += st.invocations

        if st.spec.trigger.objects:
            source = st.spec.trigger.objects.from_stage
            est.add(f"{source}-bucket", f"Blob read operations (stage {name} reads each object)", st.invocations, reads)
        if st.spec.trigger.stream:
            # The Functions host checkpoints every batch (batchCheckpointFrequency 1) and renews partition leases.
            host_ops = st.invocations + sizing.partitions * HOST_LEASE_RENEWALS_PER_PARTITION_S * SECONDS_PER_MONTH
            est.add(f"{name}-trigger", "Host storage operations (checkpoints, partition leases)", host_ops, other,
                    note="one checkpoint per batch + a lease renewal per partition every ~10 s; meter class not verified")

    # ---- Event Grid: the data account's system topic exists only with an object stage ------------------
    object_stages = [st for st in stages if st.spec.trigger.objects]
    if object_stages:
        ops = per_unit(sheet["eventgrid_operations"], 1e6, "operation")
        grid_grant = _Grant(EVENT_GRID_FREE_OPERATIONS)
        published = event_grid_operations(blob_created, 0)
        est.add("platform", "Event Grid operations (BlobCreated published by the data account)", published, ops,
                free=grid_grant.take(published),
                note="every blob created in the data account (Capture files, all stage outputs) is published; filters only limit delivery")
        for st in object_stages:
            est.add(f"{st.spec.name}-trigger", "Event Grid operations (deliveries)", st.invocations, ops, free=grid_grant.take(st.invocations),
                    note="one delivery per source object; retries (failures) not included")

    # ---- observability --------------------------------------------------------------------------
    log_grant = _Grant(LOG_FREE_GB)
    for st in stages:
        gb = st.invocations * TELEMETRY_BYTES_PER_INVOCATION / GB
        est.add("observability", f"Log Analytics ingestion (telemetry of {st.spec.name})", gb, sheet["log_analytics_ingestion"],
                free=log_grant.take(gb), note=f"~{TELEMETRY_BYTES_PER_INVOCATION // 1024} KB per invocation (assumed), no sampling")
    log_rules = len(stages) + sum(1 for st in stages if not st.spec.trigger.objects)  # errors per stage + log dead-letter alerts
    metric_series = 1 + len(object_stages)  # stream throttling + Event Grid dead letters per object stage
    est.add("observability", "Log search alert rules (5-minute frequency)", log_rules, sheet["monitor_log_alert_5min"])
    est.add("observability", "Metric alert time series", metric_series, sheet["monitor_metric_alert_series"])

    est.assumptions.extend(_assumptions(spec, sizing, stages, free_tier))
    return est


def _invocation_note(st: _Stage) -> str:
    trigger = st.spec.trigger
    if trigger.stream and st.batch is not None:
        return (f"Event Hubs trigger: effective batch {st.batch:,.1f} events (batch_size {trigger.stream.batch_size}, "
                f"window {trigger.stream.max_batching_window_s} s, per partition)")
    if trigger.objects:
        return f"one invocation per object stage {trigger.objects.from_stage} writes (Event Grid, one event per delivery)"
    return f"timer: {st.invocations:,.1f} runs a month"


def _assumptions(spec: PipelineSpec, sizing: StreamSizing, stages: list[_Stage], free_tier: bool) -> list[str]:
    notes = [
        f"a month is {HOURS_PER_MONTH} hours ({SECONDS_PER_MONTH:,} s), as Azure's calculator assumes",
        f"steady workload: {spec.workload.records_per_second:,.0f} records/s of {spec.workload.record_bytes} B; stream sized at "
        f"{sizing.units} TU, {sizing.partitions} partitions",
        "Flex Consumption on demand only: no always-ready instances are configured, so no baseline charge; "
        "instance memory is the Flex size the backend configures (512/2048/4096 MB), not the spec's memory_mb",
        "Flex billed time assumes one instance carries a sparse stage; the Event Hubs trigger may spread partitions over "
        "several instances, each with its own 1 s minimum periods",
        "each output row is about one input record in size; one output object per invocation",
        "no failures: retries, dead letters and Event Grid redeliveries are not priced",
        f"telemetry ~{TELEMETRY_BYTES_PER_INVOCATION // 1024} KB per invocation (assumed); Log Analytics retention is the "
        "included 31 days (30 configured)",
        "not priced (negligible or free): the functions storage account's code packages and model artifacts, "
        "the resource group, identities, role assignments, Flex plans themselves, egress within the region",
    ]
    if free_tier:
        notes.append("free grants applied once per subscription/billing account: Flex 100,000 GB-s + 250,000 executions, "
                     "Event Grid 100,000 operations, Log Analytics 5 GB; other workloads in the subscription share them")
    else:
        notes.append("free grants not applied (they are per subscription or billing account and may be used elsewhere)")
    return notes
