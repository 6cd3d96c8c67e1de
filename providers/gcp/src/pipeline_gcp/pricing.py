"""Monthly cost of the GCP plan: one line per billing line and role, from `prices.json`, priced from the Sizing.

The formulas are Google's published billing rules, applied to the resources this backend plans:

* Pub/Sub bills throughput per TiB (2^40 bytes) for the publish and again for every subscription's
  delivery, with at least 1000 bytes per publish/push/pull request (https://cloud.google.com/pubsub/pricing).
  Cloud Storage subscriptions (the raw archive and each stream stage's batch files) bill their own rate
  per TiB of message bytes instead of the delivery rate.
* Stream stages run once per batch file (`Sizing.records_per_invocation` records), so invocations, reads,
  output objects, events and log lines scale with batches, not records.
* Object events are Cloud Storage notifications: one Pub/Sub publish plus one push delivery per object,
  each a request of at least 1000 bytes.
* Cloud Run functions (gen2) use Cloud Run request-based billing: requests, vCPU-seconds and GiB-seconds of
  the configured CPU and memory while a request runs, rounded up to 100 ms (https://cloud.google.com/run/pricing).
* Cloud Storage bills GB-months of Standard storage (plus 7 days of soft-deleted objects on data buckets) and
  Class A (writes) / Class B (reads) operations (https://cloud.google.com/storage/pricing).
* Cloud Scheduler bills per job; Cloud Logging per GiB ingested; Cloud Monitoring per alert condition and per
  time series its queries return.

Free tiers are monthly allowances shared by every line that draws on them (per billing account, or per
project for Logging), so they are handed out to lines in order by `FreePool`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from pipeline.cost import (
    GB,
    HOURS_PER_MONTH,
    SECONDS_PER_MONTH,
    TB,
    CostEstimate,
    CostLine,
    Price,
    PriceSheet,
    load_price_sheet,
    output_rows_per_month,
    records_per_month,
    stored_gb_months,
    uploads_per_month,
)
from pipeline.sizing import Sizing, StageSizing
from pipeline.spec.model import PipelineSpec, StageSpec
from pipeline.wiring import bucket_plan
from pipeline_gcp import batching, functions, observability, storage, triggers

PRICE_FILE = Path(__file__).with_name("prices.json")

# ---- published billing rules -------------------------------------------------------------
# https://cloud.google.com/pubsub/pricing: message size = body + attributes + 20 bytes timestamp + message_id
# length; at least 1000 bytes per publish, push or pull request; the first 10 GiB of Message Delivery Basic free.
PUBSUB_MIN_REQUEST_BYTES = 1000
PUBSUB_TIMESTAMP_BYTES = 20
PUBSUB_MESSAGE_ID_BYTES = 16  # assumed: message IDs are ~16-17 digit decimal strings
PUBSUB_FREE_TIB = 10 * GB / TB
# https://cloud.google.com/run/pricing (request-based billing, Tier 1): free per billing account per month.
RUN_FREE_MILLION_REQUESTS = 2.0
RUN_FREE_VCPU_S = 180_000.0
RUN_FREE_GIB_S = 360_000.0
RUN_BILLING_INCREMENT_MS = 100  # "rounded up to the nearest 100 millisecond"
# Always Free (https://cloud.google.com/free/docs/free-cloud-features#storage; reference gcp.md §5.3 from a
# secondary copy): 5 GB-months of regional Standard storage in US regions only, 5,000 Class A and 50,000 Class B.
GCS_FREE_REGIONS = frozenset({"us-central1", "us-east1", "us-west1"})
GCS_FREE_GB_MONTHS = 5.0
GCS_FREE_THOUSAND_CLASS_A = 5.0
GCS_FREE_THOUSAND_CLASS_B = 50.0
SCHEDULER_FREE_JOBS = 3.0  # per billing account (https://cloud.google.com/scheduler/pricing)
LOGGING_FREE_GIB = 50.0  # per project (https://cloud.google.com/stackdriver/pricing)
# Alerting (https://cloud.google.com/monitoring/alerts/cost-control): per condition (metric reference) plus per
# million time-series points its query returns; one condition per policy here, each evaluated every 30 s.
ALERT_EXECUTION_PERIOD_S = 30

# What the runtime does per windowed run (pipeline.runtime): one list of the whole source prefix, paged; GETs of the
# watermark and the lease; PUTs of the lease (taken, released) and the watermark. GCS lists return 1,000 keys a page.
LIST_PAGE_KEYS = 1000
STATE_READS_PER_RUN = 2
STATE_WRITES_PER_RUN = 3

# ---- workload assumptions (stated in every estimate) -----------------------------------------
NOTIFICATION_BYTES = 1200  # a JSON_API_V1 notification: the object resource JSON plus attributes (assumed)
REQUEST_LOG_BYTES = 1000  # one Cloud Run request log entry (assumed)
RUNTIME_LOG_BYTES = 400  # the runtime's one "batch done" line per invocation (assumed)
SOFT_DELETE_DAYS = storage.SOFT_DELETE_DATA_S / 86_400


@dataclass
class FreePool:
    """A monthly free allowance that several lines draw on; handed out in the order lines are added."""

    left: float

    def take(self, quantity: float) -> float:
        used = min(self.left, max(quantity, 0.0))
        self.left -= used
        return used


# ---- formulas (pure, so tests can check them against Google's published examples) --------------


def pubsub_message_bytes(body_bytes: float, attribute_bytes: float = 0.0) -> float:
    """Billed size of one message: body, attributes, 20-byte timestamp and message_id."""
    return body_bytes + attribute_bytes + PUBSUB_TIMESTAMP_BYTES + PUBSUB_MESSAGE_ID_BYTES


def pubsub_billable_bytes(messages: float, message_bytes: float, messages_per_request: float = 1.0) -> float:
    """Throughput bytes billed for `messages` sent in requests of `messages_per_request`: each request counts at least 1000 bytes."""
    requests = messages / messages_per_request
    return requests * max(PUBSUB_MIN_REQUEST_BYTES, messages_per_request * message_bytes)


def run_billable_seconds(duration_ms: float) -> float:
    """One request's billed time: rounded up to the next 100 ms (e.g. 260 ms -> 0.3 s)."""
    return math.ceil(duration_ms / RUN_BILLING_INCREMENT_MS) * RUN_BILLING_INCREMENT_MS / 1000


def run_usage(invocations: float, duration_ms: float, memory_mb: int, vcpu: float, per_instance: int = 1) -> tuple[float, float]:
    """(vCPU-seconds, GiB-seconds) of `invocations`: billed time x configured CPU / memory. An instance serving
    `per_instance` requests at once (one per vCPU) is billed once for the time they overlap: divided here."""
    seconds = invocations * run_billable_seconds(duration_ms)
    return seconds * vcpu / per_instance, seconds * memory_mb / 1024 / per_instance


def files_written(records_month: float, files: batching.Files) -> float:
    """Files a Cloud Storage subscription writes a month at the workload (batching.files_for).

    A lower bound: Pub/Sub may write several files in parallel under load."""
    return records_month / max(files.records_per_file, 1.0)


def alert_points_millions(conditions: int, series_per_condition: float = 1.0, seconds: float = SECONDS_PER_MONTH,
                          period_s: int = ALERT_EXECUTION_PERIOD_S) -> float:
    """Millions of time-series points alert conditions return: one per series per execution period."""
    return conditions * series_per_condition * seconds / period_s / 1e6


def soft_deleted_gb_months(bytes_month: float) -> float:
    """Objects deleted by lifecycle (or overwritten) stay billable for the soft-delete window."""
    return stored_gb_months(bytes_month, int(SOFT_DELETE_DAYS))


# ---- the estimate -----------------------------------------------------------------------


def add_line(est: CostEstimate, role: str, item: str, quantity: float, price: Price, *, free: float = 0.0, note: str = "",
             free_label: str = "") -> None:
    """CostEstimate.add, with a readable free-tier label where the core's whole-unit one would say "0 TiB free"."""
    if not (free_label and est.free_tier and free):
        est.add(role, item, quantity, price, free=free, note=note)
        return
    billable = max(0.0, quantity - free)
    est.lines.append(CostLine(role, item, quantity, price.unit, price.usd, billable * price.usd, price.source,
                              "; ".join(x for x in (note, free_label) if x), price.verify))


class _Estimator:
    """Adds the lines of one estimate; keeps the shared free-tier pools between lines."""

    def __init__(self, spec: PipelineSpec, sizing_: Sizing, sheet: PriceSheet, est: CostEstimate, stack: str):
        self.spec, self.sizing, self.sheet, self.est = spec, sizing_, sheet, est
        self.stack = stack  # this stack's names are in its alert filters (observability.alert_conditions)
        self.records = records_per_month(spec)
        self.message_bytes = pubsub_message_bytes(spec.workload.record_bytes)
        gcs_free = sheet.region in GCS_FREE_REGIONS
        self.pubsub_free = FreePool(PUBSUB_FREE_TIB)
        self.run_requests_free = FreePool(RUN_FREE_MILLION_REQUESTS)
        self.run_vcpu_free = FreePool(RUN_FREE_VCPU_S)
        self.run_gib_free = FreePool(RUN_FREE_GIB_S)
        self.gcs_storage_free = FreePool(GCS_FREE_GB_MONTHS if gcs_free else 0.0)
        self.gcs_a_free = FreePool(GCS_FREE_THOUSAND_CLASS_A if gcs_free else 0.0)
        self.gcs_b_free = FreePool(GCS_FREE_THOUSAND_CLASS_B if gcs_free else 0.0)
        self.scheduler_free = FreePool(SCHEDULER_FREE_JOBS)
        self.logging_free = FreePool(LOGGING_FREE_GIB)

    def stage(self, name: str) -> StageSizing:
        return self.sizing.stages[name]

    def free(self, pool: FreePool, quantity: float) -> float:
        return pool.take(quantity) if self.est.free_tier else 0.0

    def pubsub(self, role: str, item: str, billable_bytes: float, note: str) -> None:
        """A Message Delivery Basic line ($/TiB), drawing on the shared 10 GiB."""
        tib = billable_bytes / TB
        free = self.free(self.pubsub_free, tib)
        add_line(self.est, role, item, tib, self.sheet["pubsub_throughput"], free=free, note=note,
                 free_label=f"{free * TB / GB:,.2f} GiB of the 10 GiB free tier" if free else "")

    def class_a(self, role: str, item: str, operations: float, note: str) -> None:
        free = self.free(self.gcs_a_free, operations / 1000)
        add_line(self.est, role, item, operations / 1000, self.sheet["gcs_class_a"], free=free, note=note,
                 free_label=f"{free * 1000:,.0f} operations free")

    def class_b(self, role: str, item: str, operations: float, note: str) -> None:
        free = self.free(self.gcs_b_free, operations / 1000)
        add_line(self.est, role, item, operations / 1000, self.sheet["gcs_class_b"], free=free, note=note,
                 free_label=f"{free * 1000:,.0f} operations free")

    def storage(self, role: str, bytes_month: float, days: int, what: str, *, soft_delete: bool) -> None:
        gb_months = stored_gb_months(bytes_month, days)
        self.est.add(role, "Cloud Storage Standard storage", gb_months, self.sheet["gcs_standard_storage"],
                     free=self.free(self.gcs_storage_free, gb_months), note=f"{what}, kept {days} days")
        if soft_delete:
            self.est.add(role, "Cloud Storage soft-deleted objects", soft_deleted_gb_months(bytes_month), self.sheet["gcs_standard_storage"],
                         note=f"expired and overwritten objects stay restorable {SOFT_DELETE_DAYS:g} days (soft delete), billed as storage")

    def notifications(self, stage: StageSpec, role: str, events: float, what: str) -> None:
        """Cloud Storage notifications: one publish per object on the topic the source's readers share (billed to its
        first reader, which owns it: triggers.event_source) and one push per object to each reader; each at least 1000 B."""
        readers = triggers.event_source(self.spec, stage)[2]
        if readers[0] == stage.name:
            shared = f"; the publish is shared by {', '.join(readers)}" if len(readers) > 1 else ""
            self.pubsub(role, "Pub/Sub object notifications (publish + push)", 2 * pubsub_billable_bytes(events, NOTIFICATION_BYTES),
                        f"{events:,.0f} {what} x 2 requests x max(1000, {NOTIFICATION_BYTES}) B (notification size assumed){shared}")
        else:
            self.pubsub(role, "Pub/Sub object notifications (push)", pubsub_billable_bytes(events, NOTIFICATION_BYTES),
                        f"{events:,.0f} {what} x 1 push x max(1000, {NOTIFICATION_BYTES}) B; the publish is billed to {readers[0]}'s trigger")

    # -- stream and archive --
    def stream(self) -> None:
        spec, sheet = self.spec, self.sheet
        assert spec.stream is not None
        self.pubsub("stream", "Pub/Sub publish throughput", self.records * self.message_bytes,
                    f"{self.records:,.0f} records x {self.message_bytes:,.0f} B, published in client-library batches (above the 1000 B minimum)")
        if not spec.stream.archive:
            retained_gib = spec.workload.records_per_second * self.message_bytes * spec.stream.retention_hours * 3600 / GB
            self.est.add("stream", "Pub/Sub topic retention storage", retained_gib, sheet["pubsub_storage"],
                         note=f"without an archive the topic keeps {spec.stream.retention_hours} h of messages for replay (message_retention_duration)")
        else:
            self.est.add("raw-archive", "Pub/Sub Cloud Storage subscription throughput", self.records * self.message_bytes / TB,
                         sheet["pubsub_cloud_storage_subscription"], note="message bytes, no free tier; billed instead of the delivery rate")

    # -- functions --
    def function(self, stage: StageSpec) -> None:
        role = f"{stage.name}-function"
        sized = self.stage(stage.name)
        invocations = sized.invocations_per_month
        vcpu = float(functions.cpu_for(stage.memory_mb))
        per_instance = int(sized.settings.get("max_instance_request_concurrency", 1))
        vcpu_s, gib_s = run_usage(invocations, sized.invocation_ms, stage.memory_mb, vcpu, per_instance)
        why = {"stream": f"one per batch file of ~{sized.records_per_invocation:,.0f} records",
               "objects": "one per object of the source", "schedule": "one per scheduled run",
               "http": "one per HTTPS request"}[stage.trigger.kind]
        self.est.add(role, "Cloud Run functions requests", invocations / 1e6, self.sheet["run_requests"],
                     free=self.free(self.run_requests_free, invocations / 1e6), note=f"{invocations:,.0f} invocations: {why}")
        billed = run_billable_seconds(sized.invocation_ms)
        shared = f", {per_instance} requests share an instance" if per_instance > 1 else ""
        self.est.add(role, "Cloud Run functions CPU", vcpu_s, self.sheet["run_vcpu_second"], free=self.free(self.run_vcpu_free, vcpu_s),
                     note=f"{sized.invocation_ms:,.0f} ms billed as {billed:.1f} s x {vcpu} vCPU ({stage.memory_mb} MiB tier){shared}")
        self.est.add(role, "Cloud Run functions memory", gib_s, self.sheet["run_gib_second"], free=self.free(self.run_gib_free, gib_s),
                     note=f"{billed:.1f} s x {stage.memory_mb / 1024:g} GiB{shared}")

    # -- triggers --
    def trigger(self, stage: StageSpec) -> None:
        role = f"{stage.name}-trigger"
        sized = self.stage(stage.name)
        events = sized.invocations_per_month
        if stage.trigger.stream:
            self.batch_files(role, stage)
            self.class_b(role, "Cloud Storage Class B operations (batch file reads)", events, "one read per invocation")
            self.notifications(stage, role, events, "batch files")
        elif stage.trigger.objects:
            self.notifications(stage, role, events, "objects")
            self.class_b(role, "Cloud Storage Class B operations (object reads)", events, "one read per invocation")
        elif stage.trigger.schedule:
            self.est.add(role, "Cloud Scheduler job", 1, self.sheet["scheduler_job"], free=self.free(self.scheduler_free, 1),
                         note="executions are not billed")
        # HTTP stages: the requests are the function's request line; Cloud Run has no separate trigger charge.
        window = stage.trigger.window_source
        if window:
            self.window_reads(stage.name, window, events)

    def batch_files(self, role: str, stage: StageSpec) -> None:
        """The group's own Cloud Storage subscription, once, on its first stage: throughput, the files' storage and writes.
        Files of the raw archive are billed with the archive (stream, raw bucket)."""
        source = batching.sources(self.spec)[stage.name]
        if source.archive or source.owner != stage.name:
            return
        files = source.files
        written = self.records / max(files.records_per_file, 1.0)
        readers = f", read by {', '.join(source.stages)}" if len(source.stages) > 1 else ""
        self.est.add(role, "Pub/Sub Cloud Storage subscription throughput (batch files)", self.records * self.message_bytes / TB,
                     self.sheet["pubsub_cloud_storage_subscription"],
                     note=f"{self.records:,.0f} records written as Avro batch files of ~{files.records_per_file:,.0f}{readers}")
        days = batching.files_days(self.spec, source.stages)
        self.storage(role, self.records * batching.avro_record_bytes(self.spec), days, "batch files (Avro, with metadata)", soft_delete=False)
        self.class_a(role, "Cloud Storage Class A operations (batch file writes)", written, f"{written:,.0f} batch files")

    def window_reads(self, stage: str, source: str, runs: float) -> None:
        """What the runtime does per windowed run: list the WHOLE source prefix (keys are not time-ordered; 1,000 keys a
        page) and read each new object, billed to the source's bucket; read the watermark and the lease, write the lease
        twice and the watermark once, billed to the stage's own bucket (as on the other clouds)."""
        held = self._objects_kept(source)
        pages = max(1, math.ceil(held / LIST_PAGE_KEYS))
        self.class_a(f"{source}-bucket", f"Cloud Storage Class A operations (list, {stage})", runs * pages,
                     f"each of {runs:,.0f} runs lists the whole prefix in {pages:,} page(s) (~{held:,.0f} objects kept, "
                     f"keys are not in time order; {LIST_PAGE_KEYS:,} keys a page)")
        objects = self._objects_per_month(source)
        self.class_b(f"{source}-bucket", f"Cloud Storage Class B operations (object reads, {stage})", objects,
                     f"{stage} reads each accumulated object once")
        self.class_a(f"{stage}-bucket", "Cloud Storage Class A operations (window lease and watermark writes)", runs * STATE_WRITES_PER_RUN,
                     f"{runs:,.0f} runs x {STATE_WRITES_PER_RUN} (the lease twice, the watermark once)")
        self.class_b(f"{stage}-bucket", "Cloud Storage Class B operations (window lease and watermark reads)", runs * STATE_READS_PER_RUN,
                     f"{runs:,.0f} runs x {STATE_READS_PER_RUN} (the watermark and the lease)")

    def _objects_kept(self, source: str) -> float:
        """Objects under the source's prefix at any time: written per second x the bucket's retention (lifecycle delete)."""
        days = next(b.retention_days for b in bucket_plan(self.spec) if b.key == source)
        assert days is not None
        return self._objects_per_month(source) / SECONDS_PER_MONTH * days * 86_400

    def _objects_per_month(self, source: str) -> float:
        if source == self.spec.uploads_name:
            return uploads_per_month(self.spec)[0]
        return self.stage(source).output_objects_per_month

    # -- buckets --
    def buckets(self) -> None:
        spec = self.spec
        record = spec.workload.record_bytes
        for bucket in bucket_plan(spec):
            role = f"{bucket.key}-bucket"
            if bucket.key == batching.ARCHIVE_KEY:
                stored = self.records * batching.avro_record_bytes(spec)
                assert bucket.retention_days is not None
                self.storage(role, stored, bucket.retention_days, "raw Avro files (each record with its metadata)", soft_delete=True)
                archive = batching.archive_files(spec)
                written = files_written(self.records, archive)
                readers = [s for s in batching.sources(spec).values() if s.archive]
                why = f"the batch files of {', '.join(readers[0].stages)}" if readers else f"{archive.max_bytes // 2**20} MiB or {archive.duration_s} s each"
                self.class_a(role, "Cloud Storage Class A operations (object writes)", written, f"{written:,.0f} files: {why}")
            elif bucket.key == spec.uploads_name:
                files, data = uploads_per_month(spec)
                assert bucket.retention_days is not None
                self.storage(role, data, bucket.retention_days, f"{files:,.0f} uploaded files", soft_delete=True)
                self.class_a(role, "Cloud Storage Class A operations (uploads)", files, "one write per uploaded file (by producers)")
            elif bucket.key in {s.name for s in spec.stages}:
                sized = self.stage(bucket.key)
                rows = output_rows_per_month(sized)
                writes = sized.output_objects_per_month
                if writes <= 0:
                    continue
                assert bucket.retention_days is not None
                self.storage(role, rows * record, bucket.retention_days, f"{rows:,.0f} output rows of ~{record} B (assumed record-sized)",
                             soft_delete=True)
                self.class_a(role, "Cloud Storage Class A operations (object writes)", writes, f"{writes:,.0f} objects: one per invocation")

    # -- observability --
    def observability(self) -> None:
        total = sum(s.invocations_per_month for s in self.sizing.stages.values())
        gib = total * (REQUEST_LOG_BYTES + RUNTIME_LOG_BYTES) / GB
        self.est.add("observability", "Cloud Logging ingestion", gib, self.sheet["logging_ingestion"], free=self.free(self.logging_free, gib),
                     note=f"{total:,.0f} invocations x {REQUEST_LOG_BYTES + RUNTIME_LOG_BYTES:,} B (assumed: request log + the runtime's line)")
        conditions = observability.alert_conditions(self.spec, self.stack)
        policies = list(conditions)
        split = [f"{kind} in {count}" for kind, count in conditions.items() if count > 1]
        self.est.add("observability", "Cloud Monitoring alert conditions", sum(conditions.values()), self.sheet["monitoring_alert_condition"],
                     note="one condition per policy, each over every stage: " + ", ".join(policies)
                     + (f" (filters of at most {observability.MAX_FILTER_CHARS} characters: " + ", ".join(split) + ")" if split else ""))
        series = len(self.spec.stages)  # grouped by stage / service / subscription: about one series per stage each
        self.est.add("observability", "Cloud Monitoring alert time-series points returned", alert_points_millions(len(policies), series),
                     self.sheet["monitoring_alert_time_series"],
                     note=f"~{series} series per condition every {ALERT_EXECUTION_PERIOD_S} s (assumed)")


def assumptions(spec: PipelineSpec) -> list[str]:
    out = [
        f"a month is {HOURS_PER_MONTH} hours ({SECONDS_PER_MONTH:,} s), as Google's calculator uses",
        "Pub/Sub has no capacity units to pay for; it bills bytes moved and stored",
        f"a Pub/Sub message is the record plus {PUBSUB_TIMESTAMP_BYTES} B timestamp and ~{PUBSUB_MESSAGE_ID_BYTES} B message_id, no attributes; "
        "producers publish with the client library's default batching, so requests bill message bytes",
        "stream stages get whole batch files (Cloud Storage subscription, Avro with metadata): one invocation, read, output object, "
        "two notification requests and two log lines per batch, not per record",
        f"every invocation that yields rows writes one object of record-sized rows; a notification is ~{NOTIFICATION_BYTES} B; "
        f"each invocation logs ~{REQUEST_LOG_BYTES + RUNTIME_LOG_BYTES} B",
        f"Cloud Run bills each request rounded up to {RUN_BILLING_INCREMENT_MS} ms with the CPU of the memory tier; cold starts are not included",
        "stream retention: subscriptions keep unacknowledged messages for retention_hours (billed only for a backlog older than a "
        "day, none when healthy); with archive on, replay comes from the raw archive, so the topic keeps no retained copy",
        "free tiers (when used) are per billing account (Pub/Sub 10 GiB, Cloud Run, Scheduler 3 jobs, Cloud Storage Always Free in US regions) "
        "or per project (Logging 50 GiB) and are assumed unused by other workloads",
    ]
    attempts = sorted({triggers.delivery_attempts(s.retries) for s in spec.stages if triggers.pushed(s)})
    if attempts:
        out.append("retries and dead letters cost nothing when healthy: a failed delivery is billed again like the first")
    return out


UNPRICED = [
    "Cloud Build and Artifact Registry for function builds (per deploy, not per month of traffic; first 2,500 build-minutes free)",
    "function source archives and model artifacts (a few MB of storage)",
    "dead-letter topics and buckets (empty when healthy; a dead letter is billed like any message or object)",
    "the log-based dead-letter metric's samples (a few per month when healthy; within Monitoring's free metric allotment)",
    "same-region network traffic (free)",
]


def estimate(spec: PipelineSpec, sizing_: Sizing, free_tier: bool, stack: str) -> CostEstimate:
    """Monthly cost of the planned GCP resources for `spec.workload`; a region without prices raises PipelineError."""
    region = spec.clouds.gcp.region
    sheet = load_price_sheet(PRICE_FILE, "GCP", region)
    est = CostEstimate("gcp", region, free_tier, assumptions=assumptions(spec), unpriced=list(UNPRICED))
    builder = _Estimator(spec, sizing_, sheet, est, stack)
    if spec.stream is not None:
        builder.stream()
    for stage in spec.stages:
        builder.function(stage)
        builder.trigger(stage)
    builder.buckets()
    builder.observability()
    return est
