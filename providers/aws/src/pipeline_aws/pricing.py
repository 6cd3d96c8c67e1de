"""Monthly cost of the AWS plan, one line per billing line and role, from `prices.json`.

The estimate prices exactly what the plan builds, from the very sizing the plan is built with
(`pipeline.sizing` + `pipeline_aws.sizing`): a Kinesis stream (provisioned shards or on-demand), the raw
archive to S3 (Firehose, or a Lambda archiver where Firehose's per-record rounding would cost more than a
little: `pipeline_aws.archive_choice`, which compares both with `archive_costs`), one arm64 Lambda per stage
(invocations and their duration as sized), S3 buckets (storage for their retention, PUT/GET/LIST
requests), S3 -> EventBridge events for buckets that trigger stages, EventBridge Scheduler invocations,
SQS dead-letter queues, and under `observability` the CloudWatch Logs, alarms, the dead-letter metric and
the alarm topic's KMS key.

The billing formulas are small pure functions (`kinesis_provisioned`, `firehose_gb`, ...) so the
tests can reproduce the worked examples AWS publishes on its pricing pages with them.

Free allowances that AWS gives per account (Lambda's 1 M requests and 400,000 GB-s, SQS's 1 M
requests, Scheduler's 14 M invocations, CloudWatch's 10 alarms, 10 metrics and 5 GB of logs) are
applied once across the pipeline, shared between roles in proportion to their use; with
`free_tier=False` we model an account whose allowances are already spent elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline.cost import (
    GB,
    HOURS_PER_MONTH,
    SECONDS_PER_MONTH,
    CostEstimate,
    PriceSheet,
    bytes_per_month,
    ceil_units,
    load_price_sheet,
    output_rows_per_month,
    records_per_month,
    stored_gb_months,
    uploads_per_month,
)
from pipeline.sizing import Sizing, StreamSizing
from pipeline.spec.model import PipelineSpec
from pipeline.wiring import bucket_plan
from pipeline_aws import functions, observability, storage, stream
from pipeline_aws import sizing as aws_sizing
from pipeline_aws.sizing import ArchiverSizing, RawArchive

PRICES_FILE = Path(__file__).with_name("prices.json")
KB = 1024

# ---- billing units (pricing pages) -----------------------------------------------------------
# Kinesis: "A PUT Payload Unit is counted in 25KB payload chunks ... a 1MB record contains 40 PUT Payload
# Units": 40 units in 1 MB only works with decimal KB, so a unit is 25,000 bytes.
PUT_PAYLOAD_UNIT_BYTES = 25_000
ON_DEMAND_ROUNDING_BYTES = KB  # Kinesis on-demand: each record rounded up to the nearest 1 KB (1,024 bytes)
FIREHOSE_ROUNDING_BYTES = 5 * KB  # Firehose: each record rounded up to 5 KB
DEFAULT_RETENTION_HOURS = 24  # Kinesis retention included in the shard-hour / stream-hour price
LIST_PAGE_KEYS = 1000  # ListObjectsV2 returns at most 1,000 keys a request
# A windowed run (a schedule or an HTTP stage over accumulated outputs) lists its whole source prefix, GETs the
# watermark and the lease, PUTs the lease twice (take, release) and the watermark once (pipeline.runtime).
STATE_PUTS_PER_RUN = 3
STATE_GETS_PER_RUN = 2

# ---- free allowances per account and month (applied once, only when free_tier is on) ---------
LAMBDA_FREE_REQUESTS = 1_000_000
LAMBDA_FREE_GB_SECONDS = 400_000
SQS_FREE_REQUESTS = 1_000_000
SCHEDULER_FREE_INVOCATIONS = 14_000_000
CLOUDWATCH_FREE_ALARMS = 10
CLOUDWATCH_FREE_METRICS = 10
LOGS_FREE_GB = 5.0  # 5 GB of log data (ingestion + archive + scan) per the Price List dump

# ---- documented workload assumptions ----------------------------------------------------------
GZIP_RATIO = 4.0  # raw JSON records compress about 4:1 with gzip (Firehose writes GZIP objects)
OUTPUT_BYTES_PER_ROW_FACTOR = 1.0  # a stage's output row (JSON line) is about as big as the input record
# Every cloud's estimate prices a healthy pipeline: no failed records, retries or dead letters (GCP and Azure
# price none either), so the comparison does not charge one cloud for failures the others leave out. The
# dead-letter lines stay in the estimate, at zero, so their formulas are visible and tested.
FAILURE_RATE = 0.0
DEAD_LETTER_OVERHEAD_BYTES = 1 * KB  # error, traceback and identity stored with each dead record
SQS_REQUESTS_PER_DEAD_LETTER = 3  # SendMessage by Lambda/EventBridge, then ReceiveMessage + DeleteMessage by an operator
LOG_BYTES_PER_INVOCATION = 1 * KB  # Lambda's platform start/report lines (JSON) plus the runtime's "batch done" line
LOG_RETENTION_DAYS = functions.LOG_RETENTION_DAYS
DAYS_PER_MONTH = HOURS_PER_MONTH / 24
RAW_ARCHIVER = "raw archiver"  # the archiver among the functions sharing allowances: a space never appears in a stage name


def price_sheet(region: str) -> PriceSheet:
    """The region's prices; a region without a sheet is the core's PipelineError naming known regions."""
    return load_price_sheet(PRICES_FILE, "aws", region)


# ---- the billing formulas ---------------------------------------------------------------------


@dataclass(frozen=True)
class Kinesis:
    """Billable quantities of a Kinesis stream for one period."""

    shard_hours: float = 0.0
    put_payload_units: float = 0.0
    extended_retention_shard_hours: float = 0.0
    stream_hours: float = 0.0
    gb_in: float = 0.0
    gb_out: float = 0.0
    extended_retention_gb_months: float = 0.0


def put_payload_units(record_bytes: int) -> int:
    """25 KB chunks per record: a 5 KB record is 1 unit, 45 KB is 2, 1 MB is 40."""
    return ceil_units(record_bytes, PUT_PAYLOAD_UNIT_BYTES)


def kinesis_provisioned(shards: int, hours: float, records: float, record_bytes: int, retention_hours: int) -> Kinesis:
    """Shard-hours + PUT payload units (+ extended-retention shard-hours above 24 h)."""
    extended = shards * hours if retention_hours > DEFAULT_RETENTION_HOURS else 0.0
    return Kinesis(shard_hours=shards * hours, put_payload_units=records * put_payload_units(record_bytes),
                   extended_retention_shard_hours=extended)


def kinesis_on_demand(hours: float, records: float, record_bytes: int, consumers: int, retention_hours: int) -> Kinesis:
    """Stream-hours + GB in (each record rounded up to 1 KB) + GB out per standard consumer (+ retention)."""
    billed_in = records * ceil_units(record_bytes, ON_DEMAND_ROUNDING_BYTES) * ON_DEMAND_ROUNDING_BYTES
    gb_out = records * record_bytes / GB * consumers
    # Steady state: the stream holds (retention - 24) hours of data beyond the included day.
    extra_hours = max(0, retention_hours - DEFAULT_RETENTION_HOURS)
    rate = billed_in / (hours * 3600) if hours else 0.0
    retained_gb_months = rate * extra_hours * 3600 / GB * (hours / HOURS_PER_MONTH)
    return Kinesis(stream_hours=hours, gb_in=billed_in / GB, gb_out=gb_out, extended_retention_gb_months=retained_gb_months)


def firehose_gb(records: float, record_bytes: int) -> float:
    """Ingested GB, each record rounded up to 5 KB (a 3 KB record bills as 5 KB, 12 KB as 15 KB)."""
    return records * ceil_units(record_bytes, FIREHOSE_ROUNDING_BYTES) * FIREHOSE_ROUNDING_BYTES / GB


def firehose_objects(seconds: float, bytes_in: float, buffer_mb: int, buffer_seconds: int) -> float:
    """Objects Firehose writes: it flushes when the buffer fills or the interval passes, whichever is first."""
    return max(seconds / buffer_seconds, bytes_in / (buffer_mb * 1024 * 1024))


def lambda_gb_seconds(memory_mb: int, duration_ms: float, invocations: float) -> float:
    """Configured memory in GB x billed duration in seconds x invocations."""
    return memory_mb / 1024 * duration_ms / 1000 * invocations


def shared_free(total_free: float, usage: Mapping[str, float]) -> dict[str, float]:
    """Split an account-wide allowance between roles in proportion to their use (never above it)."""
    used = sum(usage.values())
    if used <= 0:
        return dict.fromkeys(usage, 0.0)
    share = min(total_free, used) / used
    return {key: value * share for key, value in usage.items()}


def list_requests(runs: float, keys_in_prefix: float) -> float:
    """ListObjectsV2 requests of `runs` listings of a prefix holding `keys_in_prefix` keys (1,000 a page)."""
    return runs * max(1, math.ceil(keys_in_prefix / LIST_PAGE_KEYS))


def events_per_object(versioned: bool) -> int:
    """S3 events one object sends to EventBridge over its life.

    A bucket with EventBridge on sends *all* its events, and EventBridge bills S3's ("AWS opt-in data
    events") as they are ingested by the bus, matched by a rule or not: the pricing page lists only AWS
    management events as ingested for free (https://aws.amazon.com/eventbridge/pricing/, read 2026-11-30).
    An object sends Object Created, then Object Deleted when the lifecycle expires it: on an unversioned
    bucket a permanent deletion (`s3:LifecycleExpiration:Delete`); on a versioned one the expiry creates a
    delete marker (`LifecycleExpiration:DeleteMarkerCreated`) and the noncurrent version's removal days later
    is a second Object Deleted (`LifecycleExpiration:Delete`, "an object version is permanently deleted")
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/EventBridge.html,
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/lifecycle-configure-notification.html). Removing the
    expired delete marker afterwards is not documented as an event and is not counted."""
    return 3 if versioned else 2


# ---- the raw archive: Firehose or a Lambda archiver ------------------------------------------------


@dataclass(frozen=True)
class ArchiveCosts:
    """Both ways to archive the stream, in USD a month at list prices (no free tier): what the plan's choice
    compares (pipeline_aws.archive_choice). Storage is left out: the same gzip objects are kept either way."""

    firehose_billed_gb: float  # GB Firehose bills, each record rounded up to 5 KB
    firehose_ingestion: float
    firehose: float  # ingestion and the PUTs of its flushes
    archiver: float  # the Lambda archiver's requests, duration, PUTs, dead-letter requests, logs and alarms
    billed_share: float  # record bytes / bytes Firehose bills for them

    @property
    def firehose_rounding(self) -> float:
        """The part of Firehose's ingestion bill that pays for the rounding, not for the bytes."""
        return self.firehose_ingestion * (1 - self.billed_share)


def firehose_flushes(spec: PipelineSpec) -> float:
    """Objects Firehose writes to raw/ a month (one per 64 MB or 300 s buffer)."""
    return firehose_objects(SECONDS_PER_MONTH, bytes_per_month(spec), stream.ARCHIVE_BUFFER_MB, stream.ARCHIVE_BUFFER_SECONDS)


def archiver_log_gb(archiver: ArchiverSizing) -> float:
    return archiver.invocations_per_month * LOG_BYTES_PER_INVOCATION / GB


def archive_costs(spec: PipelineSpec, archiver: ArchiverSizing, prices: PriceSheet) -> ArchiveCosts:
    """Firehose's bill for the stream next to a Lambda archiver's, each priced like the estimate prices it."""
    records, record_bytes = records_per_month(spec), spec.workload.record_bytes
    billed = firehose_gb(records, record_bytes)
    ingestion = billed * prices["firehose-gb-ingested"].usd
    put = prices["s3-put-request"].usd
    invocations = archiver.invocations_per_month
    logs = archiver_log_gb(archiver)
    lambda_bill = (invocations * prices["lambda-request"].usd
                   + archiver.gb_seconds_per_month * prices["lambda-gb-second-arm64"].usd
                   + invocations * put
                   + invocations * FAILURE_RATE * SQS_REQUESTS_PER_DEAD_LETTER * prices["sqs-request"].usd
                   + logs * prices["logs-ingested-gb"].usd
                   + logs * LOG_RETENTION_DAYS / DAYS_PER_MONTH * prices["logs-stored-gb-month"].usd
                   + observability.ARCHIVER_ALARMS * prices["cloudwatch-alarm-month"].usd)
    share = record_bytes / (ceil_units(record_bytes, FIREHOSE_ROUNDING_BYTES) * FIREHOSE_ROUNDING_BYTES)
    return ArchiveCosts(billed, ingestion, ingestion + firehose_flushes(spec) * put, lambda_bill, share)


# ---- the estimate -----------------------------------------------------------------------------


def stream_consumers(spec: PipelineSpec) -> int:
    """Standard (shared-throughput) readers of the stream: each stream stage's ESM and the archive."""
    assert spec.stream is not None
    return sum(1 for s in spec.stages if s.trigger.stream) + (1 if spec.stream.archive else 0)


def estimate(spec: PipelineSpec, sizing: Sizing, free_tier: bool, archive: RawArchive | None = None) -> CostEstimate:
    """Monthly cost of the planned AWS resources for `spec.workload`, line by line. `archive` is the raw archive
    the plan builds (pipeline_aws.archive_choice.plan_archive); it is required when the stream is archived."""
    region = spec.clouds.aws.region
    prices = price_sheet(region)
    est = CostEstimate("aws", region, free_tier)
    records = records_per_month(spec)
    if spec.stream is None or not spec.stream.archive:
        archive = None
    elif archive is None:
        raise ValueError("the stream is archived: pass the plan's RawArchive (pipeline_aws.archive_choice.plan_archive)")

    if sizing.stream is not None and spec.stream is not None:
        _stream(est, prices, spec, sizing.stream, records)
        if archive is not None:
            _raw_archive(est, prices, spec, archive)
    _functions(est, prices, spec, sizing, archive)
    _storage(est, prices, spec, sizing, archive)
    _triggers(est, prices, spec, sizing, archive)
    _observability(est, prices, spec, sizing, archive)

    est.assumptions.extend([
        f"a month is {HOURS_PER_MONTH} hours ({SECONDS_PER_MONTH:,} s); the workload is steady at the spec's rates",
        f"prices: {region} list prices from prices.json (sources and retrieval dates on every line); tiered prices use their first tier",
        "free tier " + ("on: AWS's per-account allowances (Lambda 1 M requests + 400,000 GB-s, SQS 1 M requests, Scheduler 14 M "
                        "invocations, 10 alarms, 10 metrics, 5 GB logs) are applied once and shared between roles in proportion to use"
                        if free_tier else "off: the account's free allowances are assumed to be used elsewhere"),
        "invocations, records per invocation and output objects are the plan's sizing (see each stage's reasoning); "
        "every invocation that yields rows writes one object, which triggers each consumer once",
        f"raw archive objects are gzip JSON at {GZIP_RATIO:g}:1; stage outputs and uploads are uncompressed JSON lines of about the record's size",
        f"every data bucket is versioned (deletion protection): data stays {storage.NONCURRENT_DAYS} days longer as a noncurrent "
        "version after it expires or is overwritten",
        "a healthy pipeline, as on every cloud: no failed records, retries or dead letters are priced (the dead-letter lines show "
        f"{FAILURE_RATE:.0%}; each would cost {SQS_REQUESTS_PER_DEAD_LETTER} SQS requests, or an S3 object per invocation with a failed row)",
        f"{LOG_BYTES_PER_INVOCATION:,} bytes of CloudWatch Logs per invocation, kept {LOG_RETENTION_DAYS} days",
        "a bucket one stage reads notifies that stage through S3 event notifications (free); a bucket several stages read sends "
        "its events to EventBridge, where every event is billed as an ingested opt-in data event, matched or not (Object Created, "
        "the lifecycle's Object Deleted, and the noncurrent version's deletion)",
        f"a windowed stage (a schedule or an HTTP stage over accumulated outputs) lists its whole source prefix every run "
        f"({LIST_PAGE_KEYS:,} keys a request) and makes {STATE_GETS_PER_RUN} GETs and {STATE_PUTS_PER_RUN} PUTs for its lease and watermark",
        "HTTP stages: a Lambda function URL adds no charge of its own beyond Lambda's requests and duration",
    ])
    est.unpriced.extend([
        "model artifacts in S3 and their GETs on cold starts (a few objects)",
        "KMS requests: the alarm topic's key on each alarm notification, the AWS-managed stream key (Kinesis caches data keys)",
        "SNS deliveries of alarms (e-mail: first 1,000 a month free; HTTPS: $0.60 per million)",
        *(["Firehose's error logs in CloudWatch Logs (only on delivery errors)"] if archive is not None and archive.kind == "firehose" else []),
        f"noncurrent versions of objects overwritten by a redelivery or a re-upload (rare, kept {storage.NONCURRENT_DAYS} days)",
        "data transfer out to the internet of HTTP responses (billed per GB like every cloud's egress)",
    ])
    return est


def _stream(est: CostEstimate, prices: PriceSheet, spec: PipelineSpec, sizing: StreamSizing, records: float) -> None:
    assert spec.stream is not None
    work, retention = spec.workload, spec.stream.retention_hours
    if sizing.mode == "provisioned":
        k = kinesis_provisioned(sizing.units, HOURS_PER_MONTH, records, work.record_bytes, retention)
        est.add("stream", "Kinesis shard-hours", k.shard_hours, prices["kinesis-shard-hour"],
                note=f"{sizing.units} shard(s) x {HOURS_PER_MONTH} h")
        est.add("stream", "Kinesis PUT payload units (25 KB)", k.put_payload_units, prices["kinesis-put-payload-unit"],
                note=f"{put_payload_units(work.record_bytes)} unit(s) per {work.record_bytes:,}-byte record")
        if k.extended_retention_shard_hours:
            est.add("stream", "Kinesis extended retention shard-hours", k.extended_retention_shard_hours,
                    prices["kinesis-extended-retention-shard-hour"], note=f"retention {retention} h > 24 h")
        return
    k = kinesis_on_demand(HOURS_PER_MONTH, records, work.record_bytes, stream_consumers(spec), retention)
    est.add("stream", "Kinesis on-demand stream-hours", k.stream_hours, prices["kinesis-on-demand-stream-hour"])
    est.add("stream", "Kinesis on-demand data in (1 KB rounding per record)", k.gb_in, prices["kinesis-on-demand-gb-in"])
    est.add("stream", "Kinesis on-demand data out", k.gb_out, prices["kinesis-on-demand-gb-out"],
            note=f"{stream_consumers(spec)} standard consumer(s) each read every record")
    if k.extended_retention_gb_months:
        est.add("stream", "Kinesis on-demand extended retention", k.extended_retention_gb_months,
                prices["kinesis-on-demand-extended-retention-gb-month"], note=f"retention {retention} h > 24 h")


def _raw_archive(est: CostEstimate, prices: PriceSheet, spec: PipelineSpec, archive: RawArchive) -> None:
    """Firehose's ingestion line (a Lambda archiver's lines go with the functions, buckets and logs), and why this archive."""
    est.assumptions.extend(archive.reasoning)
    if archive.kind == "firehose":
        records, record_bytes = records_per_month(spec), spec.workload.record_bytes
        est.add("raw-archive", "Firehose ingestion (5 KB rounding per record)", firehose_gb(records, record_bytes),
                prices["firehose-gb-ingested"],
                note=f"{records:,.0f} records x {ceil_units(record_bytes, FIREHOSE_ROUNDING_BYTES) * 5} KB billed")


def _functions(est: CostEstimate, prices: PriceSheet, spec: PipelineSpec, sizing: Sizing, archive: RawArchive | None) -> None:
    invocations = {name: stage.invocations_per_month for name, stage in sizing.stages.items()}
    gb_s = {s.name: lambda_gb_seconds(s.memory_mb, sizing.stages[s.name].invocation_ms, invocations[s.name]) for s in spec.stages}
    archiver = archive.archiver if archive is not None and archive.kind == "lambda" else None
    if archiver is not None:
        invocations[RAW_ARCHIVER] = archiver.invocations_per_month
        gb_s[RAW_ARCHIVER] = archiver.gb_seconds_per_month
    free_requests = shared_free(LAMBDA_FREE_REQUESTS, invocations)
    free_gb_s = shared_free(LAMBDA_FREE_GB_SECONDS, gb_s)
    share = "account free tier shared between functions in proportion to use"
    if archiver is not None:
        est.add("raw-archive", "Lambda requests", invocations[RAW_ARCHIVER], prices["lambda-request"], free=free_requests[RAW_ARCHIVER],
                note=f"archiver: {archiver.records_per_invocation:,.0f} records per invocation" + (f"; {share}" if est.free_tier else ""))
        est.add("raw-archive", "Lambda duration (arm64)", gb_s[RAW_ARCHIVER], prices["lambda-gb-second-arm64"], free=free_gb_s[RAW_ARCHIVER],
                note=f"archiver: {aws_sizing.ARCHIVER_MEMORY_MB} MB x {archiver.invocation_ms:,.0f} ms x {invocations[RAW_ARCHIVER]:,.0f} invocations"
                     + (f"; {share}" if est.free_tier else ""))
    for s in spec.stages:
        role, sized = f"{s.name}-function", sizing.stages[s.name]
        est.add(role, "Lambda requests", invocations[s.name], prices["lambda-request"], free=free_requests[s.name],
                note=f"{sized.records_per_invocation:,.1f} records per invocation" + (f"; {share}" if est.free_tier else ""))
        est.add(role, "Lambda duration (arm64)", gb_s[s.name], prices["lambda-gb-second-arm64"], free=free_gb_s[s.name],
                note=f"{s.memory_mb} MB x {sized.invocation_ms:,.0f} ms x {invocations[s.name]:,.0f} invocations"
                     + (f"; {share}" if est.free_tier else ""))


@dataclass(frozen=True)
class _Source:
    """What one bucket holds and gets: objects and bytes written a month, and how long they stay."""

    objects: float
    bytes: float
    days: int
    versioned: bool

    @property
    def keys_kept(self) -> float:
        """Keys under the prefix at any time (what a listing walks)."""
        return self.objects / SECONDS_PER_MONTH * self.days * 86_400


def _sources(spec: PipelineSpec, sizing: Sizing) -> dict[str, _Source]:
    """Every bucket other stages read from: the uploads bucket and each stage that writes objects (every data bucket is
    versioned: storage.bucket)."""
    retention = {b.key: b.retention_days or 0 for b in bucket_plan(spec)}
    found: dict[str, _Source] = {}
    if spec.uploads is not None:
        files, upload_bytes = uploads_per_month(spec)
        found[spec.uploads.name] = _Source(files, upload_bytes, retention[spec.uploads.name], True)
    for s in spec.stages:
        if s.name in retention:
            sized = sizing.stages[s.name]
            out_bytes = output_rows_per_month(sized) * spec.workload.record_bytes * OUTPUT_BYTES_PER_ROW_FACTOR
            found[s.name] = _Source(sized.output_objects_per_month, out_bytes, retention[s.name], True)
    return found


def _storage(est: CostEstimate, prices: PriceSheet, spec: PipelineSpec, sizing: Sizing, archive: RawArchive | None) -> None:
    storage_price, put, get = prices["s3-standard-gb-month"], prices["s3-put-request"], prices["s3-get-request"]
    retention = {b.key: b.retention_days or 0 for b in bucket_plan(spec)}
    if archive is not None:
        raw_bytes, days = bytes_per_month(spec), retention["raw"]
        est.add("raw-bucket", "S3 Standard storage", stored_gb_months(raw_bytes / GZIP_RATIO, days + storage.NONCURRENT_DAYS), storage_price,
                note=f"gzip {GZIP_RATIO:g}:1, kept {days} days + {storage.NONCURRENT_DAYS} as noncurrent versions")
        if archive.kind == "firehose":
            est.add("raw-bucket", "S3 PUT requests", firehose_flushes(spec), put,
                    note=f"one object per Firehose flush ({stream.ARCHIVE_BUFFER_MB} MB or {stream.ARCHIVE_BUFFER_SECONDS} s)")
        else:
            est.add("raw-bucket", "S3 PUT requests", archive.archiver.invocations_per_month, put,
                    note=f"one gzip object per archiver batch of {archive.archiver.records_per_invocation:,.0f} records")
    for key, source in _sources(spec, sizing).items():
        role = f"{key}-bucket"
        days = source.days + (storage.NONCURRENT_DAYS if source.versioned else 0)
        est.add(role, "S3 Standard storage", stored_gb_months(source.bytes, days), storage_price,
                note=f"kept {source.days} days" + (f" + {storage.NONCURRENT_DAYS} as noncurrent versions" if source.versioned else ""))
        uploaded = spec.uploads is not None and key == spec.uploads.name
        est.add(role, "S3 PUT requests", source.objects, put,
                note="producers' uploads (billed to the bucket owner)" if uploaded else "one output object per invocation")
        for reader in spec.consumers_of(key):
            est.add(role, f"S3 GET requests ({reader.name})", source.objects, get, note=f"{reader.name} reads each object once")
            if reader.trigger.window_source:
                runs = sizing.stages[reader.name].invocations_per_month
                est.add(role, f"S3 LIST requests ({reader.name})", list_requests(runs, source.keys_kept), put,
                        note=f"each of {runs:,.0f} runs lists all {source.keys_kept:,.0f} keys kept under {key}/ (keys are not in time "
                             f"order; {LIST_PAGE_KEYS:,} a request)")
    for s in spec.stages:
        if s.trigger.window_source:
            runs = sizing.stages[s.name].invocations_per_month
            est.add(f"{s.name}-bucket", "S3 PUT requests (window lease and watermark)", runs * STATE_PUTS_PER_RUN, put,
                    note=f"{runs:,.0f} runs x {STATE_PUTS_PER_RUN}: the lease taken and released, the watermark advanced")
            est.add(f"{s.name}-bucket", "S3 GET requests (window lease and watermark)", runs * STATE_GETS_PER_RUN, get,
                    note=f"{runs:,.0f} runs x {STATE_GETS_PER_RUN}: the watermark and the lease read")
    failed_records, dead_objects = dead_letters(spec, sizing)
    dead_bytes = failed_records * (spec.workload.record_bytes + DEAD_LETTER_OVERHEAD_BYTES)
    days = retention["dead-letter"]
    est.add("dead-letter-bucket", "S3 Standard storage", stored_gb_months(dead_bytes, days + storage.NONCURRENT_DAYS), storage_price,
            note=f"{FAILURE_RATE:.1%} of input rows dead-lettered, kept {days} days + {storage.NONCURRENT_DAYS} as noncurrent versions")
    est.add("dead-letter-bucket", "S3 PUT requests", dead_objects, put, note="one dead-letter object per invocation with at least one failed row")


def dead_letters(spec: PipelineSpec, sizing: Sizing) -> tuple[float, float]:
    """Rows the runtime dead-letters a month, and the objects that takes.

    Each stage fails `FAILURE_RATE` of its input rows; the runtime writes one dead-letter object per
    invocation that had any failure, so an invocation of n rows writes one with probability 1-(1-p)^n.
    """
    rows = objects = 0.0
    for stage in spec.stages:
        sized = sizing.stages[stage.name]
        calls = sized.invocations_per_month
        inputs = sized.records_per_month
        per_call = inputs / calls if calls else 0.0
        rows += inputs * FAILURE_RATE
        objects += calls * (1 - (1 - FAILURE_RATE) ** per_call)
    return rows, objects


def _triggers(est: CostEstimate, prices: PriceSheet, spec: PipelineSpec, sizing: Sizing, archive: RawArchive | None) -> None:
    invocations = {name: stage.invocations_per_month for name, stage in sizing.stages.items()}
    sqs_usage = {s.name: invocations[s.name] * FAILURE_RATE * SQS_REQUESTS_PER_DEAD_LETTER for s in spec.stages}
    if archive is not None and archive.kind == "lambda":
        sqs_usage[RAW_ARCHIVER] = archive.archiver.invocations_per_month * FAILURE_RATE * SQS_REQUESTS_PER_DEAD_LETTER
    sqs_free = shared_free(SQS_FREE_REQUESTS, sqs_usage)
    for s in spec.stages:
        est.add(f"{s.name}-dead-letter", "SQS requests", sqs_usage[s.name], prices["sqs-request"], free=sqs_free[s.name],
                note=f"{FAILURE_RATE:.1%} of invocations fail after retries; {SQS_REQUESTS_PER_DEAD_LETTER} requests each")
    if RAW_ARCHIVER in sqs_usage:
        est.add("raw-archive", "SQS requests (failed batches)", sqs_usage[RAW_ARCHIVER], prices["sqs-request"], free=sqs_free[RAW_ARCHIVER],
                note=f"{FAILURE_RATE:.1%} of archiver batches fail after retries; {SQS_REQUESTS_PER_DEAD_LETTER} requests each")
    # A bucket several stages read sends its events to EventBridge, each once however many rules match; a bucket one
    # stage reads notifies that stage's function directly, at no charge (S3 event notifications are free).
    sources = _sources(spec, sizing)
    billed: set[str] = set()
    schedules = {s.name: invocations[s.name] for s in spec.stages if s.trigger.schedule}
    scheduler_free = shared_free(SCHEDULER_FREE_INVOCATIONS, schedules)
    for s in spec.stages:
        source_key = s.trigger.objects.from_stage if s.trigger.objects else None
        if source_key is not None and source_key not in billed and aws_sizing.fans_out(spec, source_key):
            billed.add(source_key)
            source = sources[source_key]
            per_object = events_per_object(source.versioned)
            events = source.objects * per_object
            note = f"{source.objects:,.0f} objects in {source_key} x {per_object} events (created, expired" + (", noncurrent deleted)" if source.versioned else ")")
            writer = next((t for t in spec.stages if t.name == source_key), None)
            if writer is not None and writer.trigger.window_source:
                # A windowed stage rewrites its lease and watermark in its own (versioned) bucket every run: each PUT is an
                # Object Created, and the version it replaces is deleted days later.
                runs = invocations[source_key]
                events += runs * STATE_PUTS_PER_RUN * 2
                note += f"; its lease and watermark, {STATE_PUTS_PER_RUN} PUTs in each of {runs:,.0f} runs, 2 events each"
            est.add(f"{s.name}-trigger", "EventBridge S3 events", events, prices["eventbridge-event"],
                    note=f"{note}; EventBridge because {len(aws_sizing.object_readers(spec, source_key))} stages read {source_key}")
        elif s.trigger.schedule:
            est.add(f"{s.name}-trigger", "EventBridge Scheduler invocations", invocations[s.name], prices["scheduler-invocation"],
                    free=scheduler_free[s.name])


def _observability(est: CostEstimate, prices: PriceSheet, spec: PipelineSpec, sizing: Sizing, archive: RawArchive | None) -> None:
    invocations = {name: stage.invocations_per_month for name, stage in sizing.stages.items()}
    log_gb = {s.name: invocations[s.name] * LOG_BYTES_PER_INVOCATION / GB for s in spec.stages}
    archiver = archive is not None and archive.kind == "lambda"
    if archive is not None and archiver:
        log_gb[RAW_ARCHIVER] = archiver_log_gb(archive.archiver)
    stored = {name: gb * LOG_RETENTION_DAYS / DAYS_PER_MONTH for name, gb in log_gb.items()}
    # The 5 GB allowance covers ingestion first (the dearer line), then storage.
    free_ingest = shared_free(LOGS_FREE_GB, log_gb)
    left = max(0.0, LOGS_FREE_GB - sum(free_ingest.values()))
    free_store = shared_free(left, stored)
    for name in log_gb:
        est.add("observability", f"CloudWatch Logs ingestion ({name})", log_gb[name], prices["logs-ingested-gb"],
                free=free_ingest[name], note=f"{LOG_BYTES_PER_INVOCATION:,} bytes per invocation")
        est.add("observability", f"CloudWatch Logs storage ({name})", stored[name], prices["logs-stored-gb-month"],
                free=free_store[name], note=f"kept {LOG_RETENTION_DAYS} days")
    alarms = sum(observability.alarms_per_stage(bool(s.trigger.stream)) for s in spec.stages)
    alarms += observability.ARCHIVER_ALARMS if archiver else 0
    est.add("observability", "CloudWatch standard alarms", alarms, prices["cloudwatch-alarm-month"],
            free=min(alarms, CLOUDWATCH_FREE_ALARMS),
            note="per stage: SQS dead letters, runtime dead letters, errors, throttles (+ iterator age for stream stages)"
                 + ("; the raw archiver: failed batches, errors, throttles, iterator age" if archiver else ""))
    metrics = len(spec.stages)
    est.add("observability", "CloudWatch custom metrics (dead letters from logs)", metrics, prices["cloudwatch-custom-metric-month"],
            free=min(metrics, CLOUDWATCH_FREE_METRICS), note="one DeadLetters metric per stage, from its log metric filter")
    est.add("observability", "KMS customer-managed key (alarm topic)", 1, prices["kms-key-month"])
