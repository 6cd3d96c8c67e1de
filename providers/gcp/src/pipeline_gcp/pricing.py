"""Monthly cost of the GCP plan: one line per billing line and role, from `prices.json`.

The formulas are Google's published billing rules, applied to the resources this backend plans:

* Pub/Sub bills throughput per TiB (2^40 bytes) for the publish and again for every subscription's
  delivery, with at least 1000 bytes per publish/push/pull request (https://cloud.google.com/pubsub/pricing).
  Our stream stages are invoked by a push subscription, and push delivers ONE message per request:
  a stream stage runs once per record, and every record is billed at least 1000 bytes on delivery.
  That is the main cost difference from clouds that hand a function a batch of records
  (Kinesis -> Lambda, Event Hubs -> Functions): invocations, requests, logs and output objects all
  scale with records here, not with batches.
* Cloud Run functions (gen2) use Cloud Run request-based billing: requests, vCPU-seconds and
  GiB-seconds of the configured CPU and memory while a request runs, rounded up to 100 ms
  (https://cloud.google.com/run/pricing). The CPU is the tier `functions.cpu_for` configures.
* Cloud Storage bills GB-months of Standard storage and Class A (writes) / Class B (reads)
  operations (https://cloud.google.com/storage/pricing).
* Eventarc events from Google sources are free, but ride on Pub/Sub (publish + push, billed);
  Cloud Scheduler bills per job; Cloud Logging per GiB ingested; Cloud Monitoring per alert condition.

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
)
from pipeline.program import bucket_plan
from pipeline.sizing import Sizing
from pipeline.spec.model import PipelineSpec, StageSpec
from pipeline_gcp import functions, stream, triggers

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
# Alerting (https://cloud.google.com/monitoring/alerts/cost-control): $ per condition plus $ per million time
# series returned; we assume each condition returns one series per 30 s execution period.
ALERT_EXECUTION_PERIOD_S = 30
ALERT_SERIES_PER_CONDITION = 1

# ---- workload assumptions (stated in every estimate) -----------------------------------------
STORAGE_EVENT_BYTES = 1500  # a Cloud Storage notification: object metadata JSON + attributes (assumed)
LOG_BYTES_PER_INVOCATION = 2000  # Cloud Run request log entry + the runtime's one "batch done" line (assumed)
ARCHIVE_NEWLINE_BYTES = 1  # the Cloud Storage subscription's text format: one message per line


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


def run_usage(invocations: float, duration_ms: float, memory_mb: int, vcpu: float) -> tuple[float, float]:
    """(vCPU-seconds, GiB-seconds) of `invocations` with concurrency 1: billed time x configured CPU / memory."""
    seconds = invocations * run_billable_seconds(duration_ms)
    return seconds * vcpu, seconds * memory_mb / 1024


def archive_objects(bytes_month: float, max_duration_s: int = stream.ARCHIVE_MAX_DURATION_S, max_bytes: int = stream.ARCHIVE_MAX_BYTES) -> float:
    """Files a Cloud Storage subscription writes a month: a new one when max_duration passes or max_bytes fill.

    A lower bound: Pub/Sub may write several files in parallel under load."""
    return max(SECONDS_PER_MONTH / max_duration_s, bytes_month / max_bytes)


def alert_time_series_millions(conditions: int, seconds: float = SECONDS_PER_MONTH, period_s: int = ALERT_EXECUTION_PERIOD_S,
                               series_per_condition: int = ALERT_SERIES_PER_CONDITION) -> float:
    """Millions of time series alert conditions return: one batch of series per execution period."""
    return conditions * series_per_condition * seconds / period_s / 1e6


def alert_conditions(spec: PipelineSpec) -> int:
    """Conditions `observability` creates: dead letters and errors per stage, lag per stream stage, failures per schedule."""
    return sum(2 + (1 if stage.trigger.stream else 0) + (1 if stage.trigger.schedule else 0) for stage in spec.stages)


# ---- the estimate -----------------------------------------------------------------------


def add_line(est: CostEstimate, role: str, item: str, quantity: float, price: Price, *, free: float = 0.0, note: str = "",
             free_label: str = "") -> None:
    """CostEstimate.add, with a readable free-tier label where the core's whole-unit one would say "0 TiB free"."""
    if not (free_label and est.free_tier and free):
        est.add(role, item, quantity, price, free=free, note=note)
        return
    billable = max(0.0, quantity - free)
    est.lines.append(CostLine(role, item, quantity, price.unit, price.usd, billable * price.usd, price.source,
                              "; ".join(x for x in (note, free_label) if x)))


class _Estimator:
    """Adds the lines of one estimate; keeps the shared free-tier pools between lines."""

    def __init__(self, spec: PipelineSpec, sizing: Sizing, sheet: PriceSheet, est: CostEstimate):
        self.spec, self.sizing, self.sheet, self.est = spec, sizing, sheet, est
        self.records = records_per_month(spec)
        self.message_bytes = pubsub_message_bytes(spec.workload.record_bytes)
        self.invocations = {name: stage.invocations_per_month for name, stage in sizing.stages.items()}
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

    def free(self, pool: FreePool, quantity: float) -> float:
        return pool.take(quantity) if self.est.free_tier else 0.0

    def pubsub(self, role: str, item: str, billable_bytes: float, note: str) -> None:
        """A Message Delivery Basic line ($/TiB), drawing on the shared 10 GiB."""
        tib = billable_bytes / TB
        free = self.free(self.pubsub_free, tib)
        add_line(self.est, role, item, tib, self.sheet["pubsub_throughput"], free=free, note=note,
                 free_label=f"{free * TB / GB:,.2f} GiB of the 10 GiB free tier" if free else "")

    # -- stream and archive --
    def stream(self) -> None:
        spec, sheet = self.spec, self.sheet
        self.pubsub("stream", "Pub/Sub publish throughput", pubsub_billable_bytes(self.records, self.message_bytes),
                    f"{self.records:,.0f} records x max(1000, {self.message_bytes:,.0f}) B, one record per publish request")
        retained_gib = spec.workload.records_per_second * self.message_bytes * spec.stream.retention_hours * 3600 / GB
        self.est.add("stream", "Pub/Sub topic retention storage", retained_gib, sheet["pubsub_storage"],
                     note=f"the topic keeps {spec.stream.retention_hours} h of messages (message_retention_duration)")
        if spec.stream.archive:
            archived = self.records * self.message_bytes
            self.est.add("raw-archive", "Pub/Sub Cloud Storage subscription throughput", archived / TB, sheet["pubsub_cloud_storage_subscription"],
                         note="message bytes, no free tier; billed instead of the $40/TiB delivery")

    # -- functions --
    def function(self, stage: StageSpec) -> None:
        role = f"{stage.name}-function"
        invocations = self.invocations[stage.name]
        vcpu = float(functions.cpu_for(stage.memory_mb))
        duration = self.sizing.stages[stage.name].invocation_ms
        vcpu_s, gib_s = run_usage(invocations, duration, stage.memory_mb, vcpu)
        why = ("one invocation per record (push delivers one message per request)" if stage.trigger.stream else
               "one invocation per object the source stage writes" if stage.trigger.objects else "one invocation per scheduled run")
        self.est.add(role, "Cloud Run functions requests", invocations / 1e6, self.sheet["run_requests"],
                     free=self.free(self.run_requests_free, invocations / 1e6), note=f"{invocations:,.0f} invocations: {why}")
        billed = run_billable_seconds(duration)
        self.est.add(role, "Cloud Run functions CPU", vcpu_s, self.sheet["run_vcpu_second"], free=self.free(self.run_vcpu_free, vcpu_s),
                     note=f"{duration:,.0f} ms billed as {billed:.1f} s x {vcpu} vCPU ({stage.memory_mb} MiB tier)")
        self.est.add(role, "Cloud Run functions memory", gib_s, self.sheet["run_gib_second"], free=self.free(self.run_gib_free, gib_s),
                     note=f"{billed:.1f} s x {stage.memory_mb / 1024:g} GiB")

    # -- triggers --
    def trigger(self, stage: StageSpec) -> None:
        role = f"{stage.name}-trigger"
        if stage.trigger.stream:
            self.pubsub(role, "Pub/Sub push delivery throughput", pubsub_billable_bytes(self.records, self.message_bytes),
                        f"{self.records:,.0f} pushes, one message each, billed at least 1000 B per request")
        elif stage.trigger.objects:
            events = self.invocations[stage.name]
            self.est.add(role, "Eventarc events (Cloud Storage source)", events, self.sheet["eventarc_google_events"],
                         note="free for Google sources; its Pub/Sub transport is billed below")
            self.pubsub(role, "Pub/Sub transport for storage events (publish + push)", 2 * pubsub_billable_bytes(events, STORAGE_EVENT_BYTES),
                        f"{events:,.0f} events x 2 requests x max(1000, {STORAGE_EVENT_BYTES}) B (event size assumed)")
        else:
            self.est.add(role, "Cloud Scheduler job", 1, self.sheet["scheduler_job"], free=self.free(self.scheduler_free, 1),
                         note="executions are not billed")

    # -- buckets --
    def buckets(self) -> None:
        spec = self.spec
        for bucket in bucket_plan(spec):
            role = f"{bucket.key}-bucket"
            if bucket.key == "raw":
                stored = self.records * (spec.workload.record_bytes + ARCHIVE_NEWLINE_BYTES)
                writes = archive_objects(stored)
                reads = 0.0
                what = ("the Cloud Storage subscription writes uncompressed text (one record per line, no gzip)",
                        f"a file every {stream.ARCHIVE_MAX_DURATION_S} s or {stream.ARCHIVE_MAX_BYTES // 2**20} MiB (a lower bound)")
            elif bucket.key in {s.name for s in spec.stages}:
                stage = spec.stage(bucket.key)
                rows = output_rows_per_month(self.sizing.stages[stage.name])
                stored = rows * spec.workload.record_bytes
                writes = self.sizing.stages[stage.name].output_objects_per_month
                reads = sum(self.invocations[c.name] for c in spec.consumers_of(stage.name))
                what = (f"{rows:,.0f} output rows of ~{spec.workload.record_bytes} B (assumed record-sized)",
                        "one object per invocation")
            else:
                continue  # dead letters (empty when healthy) and model artifacts (a few MB): cents at most
            assert bucket.retention_days is not None
            gb_months = stored_gb_months(stored, bucket.retention_days)
            self.est.add(role, "Cloud Storage Standard storage", gb_months, self.sheet["gcs_standard_storage"],
                         free=self.free(self.gcs_storage_free, gb_months), note=f"{what[0]}, kept {bucket.retention_days} days")
            free_a = self.free(self.gcs_a_free, writes / 1000)
            add_line(self.est, role, "Cloud Storage Class A operations (object writes)", writes / 1000, self.sheet["gcs_class_a"],
                     free=free_a, note=f"{writes:,.0f} objects: {what[1]}", free_label=f"{free_a * 1000:,.0f} operations free")
            if reads:
                free_b = self.free(self.gcs_b_free, reads / 1000)
                add_line(self.est, role, "Cloud Storage Class B operations (object reads)", reads / 1000, self.sheet["gcs_class_b"],
                         free=free_b, note=f"{reads:,.0f} reads: one per consuming invocation", free_label=f"{free_b * 1000:,.0f} operations free")

    # -- observability --
    def observability(self) -> None:
        total = sum(self.invocations.values())
        gib = total * LOG_BYTES_PER_INVOCATION / GB
        self.est.add("observability", "Cloud Logging ingestion", gib, self.sheet["logging_ingestion"], free=self.free(self.logging_free, gib),
                     note=f"{total:,.0f} invocations x {LOG_BYTES_PER_INVOCATION} B (assumed: request log + one runtime line)")
        conditions = alert_conditions(self.spec)
        self.est.add("observability", "Cloud Monitoring alert conditions", conditions, self.sheet["monitoring_alert_condition"],
                     note="dead letters and errors per stage, lag per stream stage, failures per schedule")
        self.est.add("observability", "Cloud Monitoring alert time series returned", alert_time_series_millions(conditions),
                     self.sheet["monitoring_alert_time_series"],
                     note=f"{ALERT_SERIES_PER_CONDITION} series per condition every {ALERT_EXECUTION_PERIOD_S} s (assumed)")


def assumptions(spec: PipelineSpec, sizing: Sizing) -> list[str]:
    return [
        f"a month is {HOURS_PER_MONTH} hours ({SECONDS_PER_MONTH:,} s), as Google's calculator uses",
        "Pub/Sub has no capacity units to pay for; it bills bytes moved and stored",
        f"a Pub/Sub message is the record plus {PUBSUB_TIMESTAMP_BYTES} B timestamp and ~{PUBSUB_MESSAGE_ID_BYTES} B message_id, no attributes",
        "producers publish one record per request (as stream sizing assumes); client-library batching would bring the publish line down to the message bytes",
        "push subscriptions deliver one message per request, so a stream stage is invoked once per record (stream batch_size has no effect) and "
        "each delivery is billed at least 1000 B: the main cost difference from clouds that batch records into one invocation",
        "the raw archive is the Cloud Storage subscription's text output: uncompressed, one record per line",
        f"every stage invocation writes one object of record-sized rows; every object-stage invocation reads one object; "
        f"a Cloud Storage event is ~{STORAGE_EVENT_BYTES} B; each invocation logs ~{LOG_BYTES_PER_INVOCATION} B",
        f"Cloud Run bills each request rounded up to {RUN_BILLING_INCREMENT_MS} ms with the CPU of the memory tier; cold starts and startup CPU are not included",
        "not included: retries and dead letters (none when healthy), Cloud Build and Artifact Registry for function builds, "
        "function sources and model artifacts (a few MB), same-region network (free)",
        "free tiers (when used) are per billing account (Pub/Sub 10 GiB, Cloud Run, Scheduler 3 jobs, Cloud Storage Always Free in US regions) "
        "or per project (Logging 50 GiB) and are assumed unused by other workloads",
    ]


def estimate(spec: PipelineSpec, sizing: Sizing, free_tier: bool) -> CostEstimate:
    """Monthly cost of the planned GCP resources for `spec.workload`; a region without prices raises PipelineError."""
    region = spec.clouds.gcp.region
    sheet = load_price_sheet(PRICE_FILE, "GCP", region)
    est = CostEstimate("gcp", region, free_tier, assumptions=assumptions(spec, sizing))
    builder = _Estimator(spec, sizing, sheet, est)
    if spec.stream is not None:
        builder.stream()
    for stage in spec.stages:
        builder.function(stage)
        builder.trigger(stage)
    builder.buckets()
    builder.observability()
    attempts = sorted({triggers.delivery_attempts(s.retries) for s in spec.stages if s.trigger.stream})
    if attempts:
        est.assumptions.append(f"push subscriptions allow {', '.join(map(str, attempts))} delivery attempts; failed deliveries are billed again")
    return est
