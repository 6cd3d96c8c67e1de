"""Monthly cost of the Azure plan, one line per billing line and role, from `prices.json`.

The formulas follow how each service bills (sources on every price in the sheet):

* Event Hubs Standard: throughput units x 730 hours; ingress events per million, an event counting once
  per started 64 KB; events kept beyond the 84 GB per TU the tier includes are billed at the LRS blob
  rate (Event Hubs pricing FAQ).
* The raw archive (`archive_lines`), as `pipeline_azure.archive_choice` chose it: Capture per TU-hour (metered
  with the namespace's TUs) with its Avro files; or the archiver function's Flex lines, host storage
  operations, gzip blobs, telemetry and alerts, and any TUs its consumer group's reads add. Both ways are
  priced by the same function, so the choice compares exactly what the estimate bills.
* Flex Consumption on demand: executions and GB-seconds of *instance* memory (the 512/2048/4096 MB
  size the backend configures, not the spec's memory) while an instance executes; each activity
  period bills at least 1,000 ms (https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#billing).
  Free grant per subscription and month: 100,000 GB-s and 250,000 executions. No always-ready
  instances are configured, so there is no baseline charge.
* Event Grid: every BlobCreated the data account raises is an ingress operation of the system topic
  (filters do not reduce ingress), every delivery to an object stage's queue another; first 100,000 free.
* Storage queues (object stages): per object Event Grid's Put Message, the trigger's Get Messages and
  Delete Message, and an Update Message per 5 minutes of a run (visibility renewal); plus an estimated
  queue read every 10 s around the clock (polling by a warm instance, queue-length reads for scaling).
* Blob storage (Hot ZRS, data account): GB-months at steady state from each container's retention,
  plus the soft-deleted copy each expired blob leaves for `SOFT_DELETE_DAYS`; write operations (one
  per Capture file, upload, stage output, watermark); read operations (object stages, schedules over
  accumulated outputs); list operations (a schedule with `from` walks its source prefix each run);
  Functions host operations (Event Hubs checkpoints and partition leases, in each app's host storage).
* HTTP stages: the same Flex meters (one execution per request); the execution meter is the
  per-request price.
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
    uploads_per_month,
)
from pipeline.sizing import Sizing, StageSizing, StreamSizing, erlang_b
from pipeline.spec.model import PipelineSpec, StageSpec
from pipeline_azure import functions, stream, telemetry
from pipeline_azure.platform import SOFT_DELETE_DAYS
from pipeline_azure.sizing import ARCHIVE_MS_PER_INVOCATION, ARCHIVE_US_PER_EVENT, ARCHIVE_US_PER_KIB, RawArchive

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
# Telemetry per invocation, with the host logging `telemetry` configures: one AppRequests row and the runtime's line.
TELEMETRY_BYTES_PER_INVOCATION = telemetry.BYTES_PER_INVOCATION
HOST_LEASE_RENEWALS_PER_PARTITION_S = 1 / 10  # the Event Hubs processor renews each partition lease about every 10 s
SINGLE_PUT_BYTES = 64 * 1024 * 1024  # azure-storage-blob max_single_put_size default
BLOCK_BYTES = 4 * 1024 * 1024  # azure-storage-blob max_block_size default
LIST_PAGE = 5000  # List Blobs returns at most 5,000 blobs per call
QUEUE_OPS_PER_OBJECT = 3  # Put Message (Event Grid) + Get Messages + Delete Message (the trigger, batchSize 1)
QUEUE_RENEWAL_S = 300  # the trigger takes a message for 10 minutes and renews it at half that while the run goes on
QUEUE_PROBE_S = 10  # estimate (no published cadence): one queue read every 10 s - idle polling or a scale-controller length read
# Raw JSON records compress about 4:1 with gzip: 3.6-4.9:1 measured by benchmarks/azure_archiver.py, and the figure the
# AWS backend uses for the same objects (the same work priced the same way).
GZIP_RATIO = 4.0
# Windowed runs (a schedule or an HTTP stage with `from`): per run the runtime lists the whole source prefix, GETs its
# watermark and its lease, PUTs the lease twice (take, release) and the watermark once (pipeline.runtime's windows).
WINDOW_READS_PER_RUN = 2
WINDOW_WRITES_PER_RUN = 3
ARCHIVER_ASSUMPTION = (
    f"raw archiver: {ARCHIVE_MS_PER_INVOCATION:g} ms per batch + {ARCHIVE_US_PER_EVENT:g} us per event + {ARCHIVE_US_PER_KIB:g} us per KiB "
    "at one vCPU (512 MB = 0.25 vCPU, 2,048 MB = 1), from benchmarks/azure_archiver.py with a margin for the Functions host's own "
    f"work; its blobs are gzip JSON lines at {GZIP_RATIO:g}:1; the choice against Capture is made at list prices (no free grants)")


class _Grant:
    """A monthly free grant shared by several lines (per subscription, not per resource)."""

    def __init__(self, amount: float):
        self.left = amount

    def take(self, quantity: float) -> float:
        used = min(self.left, quantity)
        self.left -= used
        return used


class _Grants:
    """Every free grant the estimate draws down, each once across all lines."""

    def __init__(self) -> None:
        self.gb_s = _Grant(FLEX_FREE_GB_S)
        self.executions = _Grant(FLEX_FREE_EXECUTIONS)
        self.event_grid = _Grant(EVENT_GRID_FREE_OPERATIONS)
        self.logs = _Grant(LOG_FREE_GB)


def per_unit(price: Price, per: float, unit: str) -> Price:
    """A price quoted per block (per million, per 10,000) as a price per single unit, so quantities and
    free grants stay in plain counts (a grant of 250,000 executions, not 0.25 "1M executions")."""
    return replace(price, usd=price.usd / per, unit=unit)


# ---- the formulas, each usable on its own (the tests reproduce published examples with them) ----------


def billable_events(records: float, record_bytes: int) -> float:
    """Event Hubs ingress events: one per started 64 KB of each event."""
    return records * max(1, math.ceil(record_bytes / EVENT_BILLING_BYTES))


def flex_billed_seconds(invocations: float, duration_s: float, instances: int = 1) -> float:
    """Instance-seconds Flex bills on demand for `invocations` runs of `duration_s` spread over `instances`.

    Flex bills an instance's activity periods (concurrent executions on one instance count once), at
    least 1 s each, rounded up to 100 ms. Busy stages are one long activity period: their billed time is
    the execution time. Sparse stages start a new period per invocation, billed at least 1 s each, but
    those periods cannot add up to more than the instances the plan runs being active all month (an
    object stage's queue trigger, an HTTP stage's requests and an Event Hubs trigger's partitions are spread
    over `instances`, each with its own 1 s minimum periods). Hence
    max(execution time, min(invocations x per-period time, instances x one month))."""
    period = max(FLEX_MIN_PERIOD_S, math.ceil(round(duration_s / FLEX_ROUNDING_S, 9)) * FLEX_ROUNDING_S)
    return max(invocations * duration_s, min(invocations * period, max(1, instances) * float(SECONDS_PER_MONTH)))


def http_billed_seconds(requests_per_second: float, duration_s: float, servers: int) -> float:
    """Instance-seconds Flex bills a month for an HTTP stage answering `requests_per_second` requests of `duration_s`, one
    per instance at a time on up to `servers` instances.

    A request goes to an instance that is free (per-instance concurrency 1), so instance k takes the requests the first
    k - 1 find busy: rate x (B(k-1) - B(k)) with Erlang B (`pipeline.sizing.erlang_b`). Each of its requests starts an
    activity period billed at least 1 s (rounded up to 100 ms); an instance taking one or more requests a second is
    billed all month. So sum over k of min(1, rate_k x period) instance-months, and never less than the execution time."""
    period = max(FLEX_MIN_PERIOD_S, math.ceil(round(duration_s / FLEX_ROUNDING_S, 9)) * FLEX_ROUNDING_S)
    offered = requests_per_second * duration_s
    months, blocked_before = 0.0, 1.0
    for k in range(1, max(1, servers) + 1):
        blocked = erlang_b(k, offered)
        months += min(1.0, requests_per_second * (blocked_before - blocked) * period)
        blocked_before = blocked
        if blocked_before < 1e-12:
            break
    return max(requests_per_second * SECONDS_PER_MONTH * duration_s, months * SECONDS_PER_MONTH)


def gb_seconds(memory_mb: int, seconds: float) -> float:
    """GB-seconds of `memory_mb` held for `seconds` (billing GB = 1,024 MB)."""
    return memory_mb / 1024 * seconds


def event_grid_operations(published: float, deliveries: float) -> float:
    """Event Grid operations: each event published to a topic (system topics too) plus each delivery attempt."""
    return published + deliveries


def capture_files(spec: PipelineSpec, partitions: int) -> float:
    """Capture files a month: one per partition per window, the window closing at the time or size limit."""
    per_partition_bytes_s = spec.workload.bytes_per_second / max(1, partitions)
    window_s = min(float(stream.CAPTURE_INTERVAL_S), stream.CAPTURE_SIZE_BYTES / per_partition_bytes_s if per_partition_bytes_s else math.inf)
    return partitions * SECONDS_PER_MONTH / window_s


def host_operations(invocations: float, partitions: int) -> float:
    """Operations on a Functions host's storage by an Event Hubs trigger: a checkpoint per batch
    (batchCheckpointFrequency 1) and a lease renewal per partition about every 10 s."""
    return invocations + partitions * HOST_LEASE_RENEWALS_PER_PARTITION_S * SECONDS_PER_MONTH


@dataclass(frozen=True)
class _Stage:
    """What the estimate needs of one stage."""

    spec: StageSpec
    sized: StageSizing
    memory_mb: int

    @property
    def invocations(self) -> float:
        return self.sized.invocations_per_month

    @property
    def duration_s(self) -> float:
        return self.sized.invocation_ms / 1000


def _stages(spec: PipelineSpec, sizing: Sizing) -> list[_Stage]:
    return [_Stage(stage, sizing.stages[stage.name], functions.flex_memory(stage.memory_mb) or functions.FLEX_MEMORY_MB[-1])
            for stage in spec.stages]  # check() rejects sizes above the largest instance


def write_operations(object_bytes: float) -> float:
    """Blob write operations for one upload: a single Put Blob up to the SDK's 64 MiB single-put limit,
    otherwise one Put Block per 4 MiB block plus Put Block List (azure-storage-blob defaults)."""
    if object_bytes <= SINGLE_PUT_BYTES:
        return 1.0
    return math.ceil(object_bytes / BLOCK_BYTES) + 1.0


def list_calls(objects_kept: float) -> float:
    """List Blobs calls to walk a prefix holding `objects_kept` blobs (5,000 per page)."""
    return max(1.0, math.ceil(objects_kept / LIST_PAGE))


class _Storage:
    """Blob lines of the data account (ZRS): storage at steady state, soft-deleted copies after expiry, operations."""

    def __init__(self, est: CostEstimate, sheet: PriceSheet):
        self.est = est
        self.stored = sheet["blob_hot_zrs_stored"]
        self.writes = per_unit(sheet["blob_hot_zrs_write_ops"], 1e4, "operation")
        self.reads = per_unit(sheet["blob_hot_zrs_read_ops"], 1e4, "operation")
        self.lists = per_unit(sheet["blob_hot_zrs_list_ops"], 1e4, "operation")
        self.other = per_unit(sheet["blob_hot_other_ops"], 1e4, "operation")
        self.blob_created = 0.0  # BlobCreated events the data account publishes (Event Grid ingress)

    def keep(self, role: str, what: str, bytes_month: float, days: int) -> None:
        self.est.add(role, f"Blob Hot ZRS storage ({what})", stored_gb_months(bytes_month, days), self.stored,
                     note=f"{bytes_month / GB:,.2f} GB a month kept {days} days")
        # Lifecycle deletion with soft delete on: each expired blob stays (billed) SOFT_DELETE_DAYS more.
        self.est.add(role, f"Blob Hot ZRS storage (soft-deleted {what}, {SOFT_DELETE_DAYS} days after expiry)",
                     stored_gb_months(bytes_month, SOFT_DELETE_DAYS), self.stored,
                     note="soft delete keeps expired, deleted or overwritten blobs recoverable for a week")

    def write(self, role: str, what: str, operations: float, creates: float) -> None:
        self.est.add(role, f"Blob write operations ({what})", operations, self.writes)
        self.blob_created += creates


def estimate(spec: PipelineSpec, full: Sizing, free_tier: bool, sheet: PriceSheet | None = None,
             archive: RawArchive | None = None) -> CostEstimate:
    """The monthly estimate of the plan the backend builds for `spec` with `full` (its sizing); `archive` is the
    plan's raw archive (`pipeline_azure.archive_choice.plan_archive`); it is required when the stream is archived.

    Raises the core's PipelineError when the location has no price sheet (never a silent zero)."""
    location = str(spec.clouds.azure.location)
    sheet = sheet or load_price_sheet(PRICES, "Azure", location)
    est = CostEstimate("azure", location, free_tier)
    stages = _stages(spec, full)
    blobs = _Storage(est, sheet)
    grants = _Grants()

    if spec.stream is not None and full.stream is not None:
        archived = None
        if spec.stream.archive:
            if archive is None:  # the choice prices both ways with this module, so it cannot be made here
                raise ValueError("the stream is archived: pass the plan's RawArchive (pipeline_azure.archive_choice.plan_archive)")
            archived = archive
        _stream_lines(est, spec, full.stream, sheet, archived)
        if archived is not None:
            archive_lines(est, spec, archived, full.stream.partitions, sheet, blobs, grants)
            est.assumptions.extend(archived.reasoning)
            if archived.kind == "function":
                est.assumptions.append(ARCHIVER_ASSUMPTION)
    files, upload_bytes = uploads_per_month(spec)
    if spec.uploads is not None:
        name = spec.uploads.name
        per_file = upload_bytes / files if files else 0.0
        blobs.keep(f"{name}-bucket", "uploaded files", upload_bytes, spec.storage.uploads_days)
        blobs.write(f"{name}-bucket", "producers upload files", files * write_operations(per_file), files)

    for st in stages:
        _stage_lines(est, spec, st, full, sheet, blobs, grants)

    # ---- Event Grid: the data account's system topic exists only with an object stage ------------------
    object_stages = [st for st in stages if st.spec.trigger.objects]
    if object_stages:
        ops = per_unit(sheet["eventgrid_operations"], 1e6, "operation")
        published = event_grid_operations(blobs.blob_created, 0)
        est.add("platform", "Event Grid operations (BlobCreated published by the data account)", published, ops,
                free=grants.event_grid.take(published),
                note="every blob created in the data account (uploads, stage outputs, watermarks) is published; filters only limit "
                     "delivery; the raw archive's blobs are counted under raw-archive")
        queue_ops = per_unit(sheet["queue_operations"], 1e4, "operation")
        for st in object_stages:
            role = f"{st.spec.name}-trigger"
            est.add(role, "Event Grid operations (deliveries to the stage's queue)", st.invocations, ops, free=grants.event_grid.take(st.invocations),
                    note="one delivery per source object; retries (failures) not included")
            per_object = QUEUE_OPS_PER_OBJECT + math.floor(st.duration_s / QUEUE_RENEWAL_S)
            est.add(role, "Storage queue operations (per object)", st.invocations * per_object, queue_ops,
                    note=f"{per_object} per object: Event Grid's Put Message, the trigger's Get and Delete Message"
                         + (", visibility renewals of a long run" if per_object > QUEUE_OPS_PER_OBJECT else ""))
            est.add(role, "Storage queue operations (polling and queue-length reads, estimate)", SECONDS_PER_MONTH / QUEUE_PROBE_S, queue_ops,
                    note=f"one read every {QUEUE_PROBE_S} s around the clock (assumed: no published scale-controller cadence)")

    _observability_lines(est, spec, stages, sheet, grants)
    est.assumptions.extend(_assumptions(spec, full.stream, free_tier))
    est.unpriced.extend(UNPRICED)
    return est


def _stream_lines(est: CostEstimate, spec: PipelineSpec, sizing: StreamSizing, sheet: PriceSheet, archive: RawArchive | None) -> None:
    """The namespace's TUs (those the raw archiver's reads add are under raw-archive: see `archive_lines`),
    ingress events, and retained storage above what the TUs include."""
    assert spec.stream is not None
    work = spec.workload
    tus = archive.capture_units if archive is not None else sizing.units
    records = records_per_month(spec)
    est.add("stream", "Event Hubs Standard throughput units", tus * HOURS_PER_MONTH, sheet["eventhubs_standard_tu"],
            note=f"{tus} TU x {HOURS_PER_MONTH} h (auto-inflate off)")
    per_event = max(1, math.ceil(work.record_bytes / EVENT_BILLING_BYTES))
    est.add("stream", "Event Hubs ingress events", billable_events(records, work.record_bytes),
            per_unit(sheet["eventhubs_standard_ingress"], 1e6, "event"),
            note=f"{records:,.0f} records x {per_event} billable event(s) each (64 KB units)")
    retained_gb = work.bytes_per_second * spec.stream.retention_hours * 3600 / GB
    # Storage included with the TUs the stream needs anyway: TUs an archiver adds would include more, which is
    # not credited, so the raw archive's comparison stays exactly the sum of its own lines.
    excess_gb = max(0.0, retained_gb - RETENTION_GB_PER_TU * tus)
    if excess_gb > 0:
        est.add("stream", "Event Hubs storage above the included 84 GB per TU", excess_gb, sheet["blob_hot_lrs_stored"],
                note=f"{retained_gb:,.1f} GB kept for {spec.stream.retention_hours} h - {RETENTION_GB_PER_TU * tus} GB included; "
                     "billed at the LRS blob rate per the Event Hubs pricing FAQ")


# ---- the raw archive: Capture or the archiver function (pipeline_azure.archive_choice chooses) -------------


def archive_lines(est: CostEstimate, spec: PipelineSpec, archive: RawArchive, partitions: int, sheet: PriceSheet, blobs: _Storage,
                  grants: _Grants) -> None:
    """Every line the raw archive adds, under `raw-archive`, `raw-bucket` and (the function's telemetry and
    alerts) `observability`: what the estimate bills, and what `archive_costs` compares."""
    assert spec.stream is not None
    if archive.kind == "capture":
        tus = archive.capture_units
        est.add("raw-archive", "Event Hubs Capture", tus * HOURS_PER_MONTH, sheet["eventhubs_standard_capture"],
                note=f"{tus} TU x {HOURS_PER_MONTH} h, whatever the volume")
        raw_bytes = bytes_per_month(spec) + records_per_month(spec) * AVRO_OVERHEAD_BYTES_PER_EVENT
        blobs.keep("raw-bucket", "Capture Avro files", raw_bytes, spec.storage.raw_days)
        blobs_written = capture_files(spec, partitions)
        blobs.write("raw-bucket", f"Capture files: one per partition per {stream.CAPTURE_INTERVAL_S} s window x {partitions} partitions",
                    blobs_written, 0)
    else:
        blobs_written = _archiver_lines(est, spec, archive, sheet, blobs, grants)
    if any(stage.trigger.objects for stage in spec.stages):  # the data account's system topic publishes every blob
        est.add("raw-archive", "Event Grid operations (BlobCreated of the raw archive's blobs)", blobs_written,
                per_unit(sheet["eventgrid_operations"], 1e6, "operation"), free=grants.event_grid.take(blobs_written),
                note="the data account's system topic publishes every blob created (filters only limit delivery)")


def _archiver_lines(est: CostEstimate, spec: PipelineSpec, archive: RawArchive, sheet: PriceSheet, blobs: _Storage, grants: _Grants) -> float:
    """The archiver function's lines; returns the blobs it writes a month."""
    sized = archive.archiver
    extra = archive.archiver_units - archive.capture_units
    if extra > 0:
        est.add("raw-archive", "Event Hubs throughput units for the archiver's reads (egress)", extra * HOURS_PER_MONTH,
                sheet["eventhubs_standard_tu"], note=f"+{extra} TU x {HOURS_PER_MONTH} h: its consumer group reads against the TUs' egress")
    invocations = sized.invocations_per_month
    billed_s = flex_billed_seconds(invocations, sized.invocation_ms / 1000, sized.partitions)
    gbs = gb_seconds(sized.memory_mb, billed_s)
    est.add("raw-archive", "Flex Consumption on-demand execution time", gbs, sheet["flex_on_demand_execution_time"], free=grants.gb_s.take(gbs),
            note=f"archiver: {invocations:,.0f} batches x {sized.invocation_ms:,.0f} ms at the {sized.memory_mb} MB instance size; "
                 f"{billed_s:,.0f} instance-s billed over up to {sized.partitions} instance(s), one per partition")
    est.add("raw-archive", "Flex Consumption on-demand executions", invocations, per_unit(sheet["flex_on_demand_executions"], 1e6, "execution"),
            free=grants.executions.take(invocations), note=f"archiver: {sized.records_per_invocation:,.0f} events a batch, per partition")
    est.add("raw-archive", "Host storage operations (checkpoints, partition leases)", host_operations(invocations, sized.partitions),
            blobs.other, note="the archiver's own host storage: a checkpoint per batch + a lease renewal per partition every ~10 s")
    raw_bytes = records_per_month(spec) * (spec.workload.record_bytes + 1) / GZIP_RATIO
    blobs.keep("raw-bucket", f"gzip JSON-lines blobs, {GZIP_RATIO:g}:1", raw_bytes, spec.storage.raw_days)
    per_blob = raw_bytes / invocations if invocations else 0.0
    blobs.write("raw-bucket", "one gzip blob per archiver batch", invocations * write_operations(per_blob), 0)
    gb = invocations * TELEMETRY_BYTES_PER_INVOCATION / GB
    est.add("observability", "Log Analytics ingestion (telemetry of the raw archiver)", gb, sheet["log_analytics_ingestion"],
            free=grants.logs.take(gb), note=telemetry.NOTE)
    return invocations


def archive_costs(spec: PipelineSpec, archive: RawArchive, partitions: int, sheet: PriceSheet) -> dict[str, float]:
    """Both ways to archive the stream, in USD a month at list prices (free grants are per subscription and may
    be spent elsewhere): {"capture": ..., "function": ...}, each the sum of the lines `archive_lines` bills."""
    totals = {}
    for kind in ("capture", "function"):
        est = CostEstimate("azure", sheet.region, free_tier=False)
        archive_lines(est, spec, replace(archive, kind=kind), partitions, sheet, _Storage(est, sheet), _Grants())
        totals[kind] = est.total
    return totals


def _stage_lines(est: CostEstimate, spec: PipelineSpec, st: _Stage, full: Sizing, sheet: PriceSheet, blobs: _Storage,
                 grants: _Grants) -> None:
    name, role = st.spec.name, f"{st.spec.name}-function"
    instances = int(st.sized.settings.get("instances", 1))
    synchronous = st.spec.trigger.http is not None and not st.spec.trigger.http.from_stage
    if synchronous:
        billed_s = http_billed_seconds(st.sized.invocations_per_second, st.duration_s, int(st.sized.settings["maximumInstanceCount"]))
        over = (f"over the instances requests find free (instance k takes what the first k-1 find busy, Erlang B; "
                f"{billed_s / SECONDS_PER_MONTH:,.2f} instance-months)")
    else:
        billed_s = flex_billed_seconds(st.invocations, st.duration_s, instances)
        over = f"over the {instances} instance(s) the workload runs"
    gbs = gb_seconds(st.memory_mb, billed_s)
    how = (f"{st.invocations:,.0f} invocations x {st.duration_s * 1000:,.0f} ms at the {st.memory_mb} MB instance size "
           f"(spec asks {st.spec.memory_mb} MB); {billed_s:,.0f} instance-s billed {over} (1 s minimum per activity period of each)")
    est.add(role, "Flex Consumption on-demand execution time", gbs, sheet["flex_on_demand_execution_time"], free=grants.gb_s.take(gbs), note=how)
    est.add(role, "Flex Consumption on-demand executions", st.invocations, per_unit(sheet["flex_on_demand_executions"], 1e6, "execution"),
            free=grants.executions.take(st.invocations), note=_invocation_note(st))

    work = spec.workload
    rows = output_rows_per_month(st.sized)
    objects = st.sized.output_objects_per_month
    if objects > 0:
        consumed = bool(spec.consumers_of(name))
        days = spec.storage.intermediate_days if consumed else spec.storage.final_days
        # Each output row is assumed to be about one input record in size.
        blobs.keep(f"{name}-bucket", "stage outputs", rows * work.record_bytes, days)
        blobs.write(f"{name}-bucket", "one output object per invocation", objects, objects)

    trigger = st.spec.trigger
    source = trigger.source
    if trigger.objects and source:
        est.add(f"{source}-bucket", f"Blob read operations (stage {name} reads each object)", st.invocations, blobs.reads)
    window = trigger.window_source
    if window:
        # Each run lists the whole source prefix (keys are not time-ordered), reads the new objects, GETs its watermark and
        # lease and PUTs the lease twice and the watermark once.
        kept_days = spec.storage.uploads_days if window == spec.uploads_name else (
            spec.storage.intermediate_days if spec.consumers_of(window) else spec.storage.final_days)
        objects_per_s = (work.uploads.files_per_hour / 3600) if window == spec.uploads_name else full.stages[window].output_objects_per_second
        kept = objects_per_s * kept_days * 86_400
        est.add(f"{window}-bucket", f"Blob list operations (stage {name} lists the whole prefix each run)",
                st.invocations * list_calls(kept), blobs.lists, note=f"~{kept:,.0f} objects kept, {LIST_PAGE:,} per List Blobs page")
        est.add(f"{window}-bucket", f"Blob read operations (stage {name} reads each new object)", objects_per_s * SECONDS_PER_MONTH, blobs.reads)
        est.add(f"{name}-bucket", f"Blob read operations (stage {name} reads its watermark and lease each run)",
                st.invocations * WINDOW_READS_PER_RUN, blobs.reads)
        writes = st.invocations * WINDOW_WRITES_PER_RUN
        blobs.write(f"{name}-bucket", "the lease taken and released, the watermark advanced, each run", writes, writes)
    if trigger.stream and full.stream is not None:
        # The Functions host checkpoints every batch (batchCheckpointFrequency 1) and renews partition leases, in the app's host storage.
        est.add(f"{name}-trigger", "Host storage operations (checkpoints, partition leases)", host_operations(st.invocations, full.stream.partitions),
                blobs.other,
                note="one checkpoint (blob metadata update) per batch + a lease renewal per partition every ~10 s")


def _observability_lines(est: CostEstimate, spec: PipelineSpec, stages: list[_Stage], sheet: PriceSheet, grants: _Grants) -> None:
    for st in stages:
        gb = st.invocations * TELEMETRY_BYTES_PER_INVOCATION / GB
        est.add("observability", f"Log Analytics ingestion (telemetry of {st.spec.name})", gb, sheet["log_analytics_ingestion"],
                free=grants.logs.take(gb), note=telemetry.NOTE)
    # One log search rule per kind across every app (observability.py): errors, dead letters, and poison messages with an object stage.
    object_stages = sum(1 for st in stages if st.spec.trigger.objects)
    log_rules = 2 + (1 if object_stages else 0)
    metric_series = (1 if spec.stream is not None else 0) + object_stages
    est.add("observability", "Log search alert rules (5-minute frequency)", log_rules, sheet["monitor_log_alert_5min"],
            note="errors, dead letters" + (", poison messages" if object_stages else "") + ": one rule each over every app")
    if metric_series:
        est.add("observability", "Metric alert time series", metric_series, sheet["monitor_metric_alert_series"])


def _invocation_note(st: _Stage) -> str:
    trigger = st.spec.trigger
    if trigger.stream:
        return (f"Event Hubs trigger: {st.sized.records_per_invocation:,.1f} events per batch (batch_size {trigger.stream.batch_size}, "
                f"window {trigger.stream.max_batching_window_s} s, per partition)")
    if trigger.objects:
        return f"one invocation per object of {trigger.objects.from_stage} (one queue message per object, one message per instance at a time)"
    if trigger.http:
        return f"one invocation per HTTP request ({st.sized.records_per_invocation:,.0f} rows each)"
    return f"timer: {st.invocations:,.1f} runs a month"


UNPRICED = [
    "artifacts account (ZRS): code packages and model files, a few MB per stage - cents a month",
    "host storage accounts (one per app: each stage's and the raw archiver's): the host's keys, leases and timer state - a few KB; "
    "the checkpoint and lease operations of Event Hubs triggers are priced",
    "retries, redeliveries, dead letters, poison-queue messages and the soft-deleted copies overwrites leave behind (failures only)",
    "Internet egress of HTTP responses (the first 100 GB a month are free) and Event Grid dead-letter writes",
    "identities, role assignments, custom roles, Flex plans, the resource group and action group: no charge",
    "alert notifications (e-mails and webhooks: the first 1,000 e-mails and 100,000 webhooks a month are free)",
]


def _assumptions(spec: PipelineSpec, sizing: StreamSizing | None, free_tier: bool) -> list[str]:
    notes = [f"a month is {HOURS_PER_MONTH} hours ({SECONDS_PER_MONTH:,} s), as Azure's calculator assumes"]
    if sizing is not None:
        notes.append(f"steady workload: {spec.workload.records_per_second:,.0f} records/s of {spec.workload.record_bytes} B; stream sized at "
                     f"{sizing.units} TU, {sizing.partitions} partitions")
    notes += [
        "Flex Consumption on demand only: no always-ready instances are configured, so no baseline charge; "
        "instance memory is the Flex size the backend configures (512/2048/4096 MB), not the spec's memory_mb",
        "Flex billed time: each instance's activity periods bill at least 1 s; a sparse stage is billed up to the instances its "
        "workload runs being active all month (the sizing's `instances`: partitions for Event Hubs triggers, the queue trigger's "
        "instances for object stages, the Erlang-sized instances of HTTP stages, one for timers and windowed runs)",
        "storage is Hot ZRS (three zones, like S3 Standard and GCS regional buckets); each output row is about one input record "
        "in size; one output object per invocation",
        "no failures: retries, dead letters and redeliveries are not priced",
        f"object stages: queue reads every {QUEUE_PROBE_S} s around the clock are an estimate (polling while an instance is up, "
        "queue-length reads for scaling); no published cadence",
        f"telemetry {TELEMETRY_BYTES_PER_INVOCATION:,} B per invocation (assumed: the rows host.json's logging sends); Log Analytics retention is the "
        "included 31 days (30 configured)",
    ]
    if free_tier:
        notes.append("free grants applied once per subscription/billing account: Flex 100,000 GB-s + 250,000 executions, "
                     "Event Grid 100,000 operations, Log Analytics 5 GB; other workloads in the subscription share them")
    else:
        notes.append("free grants not applied (they are per subscription or billing account and may be used elsewhere)")
    return notes
