"""The raw archive on AWS: Firehose, or a Lambda archiver where Firehose's per-record rounding costs more than a little.

Firehose bills a Kinesis-sourced delivery stream per GB ingested with each record rounded up to 5 KB
("Direct PUT and KDS as a source ingestion ... billed per GB ingested in 5 KB increments (a 3 KB record is
billed as 5 KB, a 12 KB record as 15 KB)", https://aws.amazon.com/firehose/pricing/, read 2026-11-30 in its
localized copy https://aws.amazon.com/de/kinesis/data-firehose/pricing/). Only vended-log and MSK sources
escape the rounding. So a 700-byte record bills as 5 KB: 7.3 times its bytes, a per-record charge for work
GCP (a Cloud Storage subscription, per byte) and Azure (Event Hubs Capture, per throughput unit) do per batch.

The plan therefore prices both ways for the workload (`pricing.archive_costs`) and builds the cheaper, keeping
Firehose, the managed service, on a tie. It keeps no tolerance for the managed service ("keep Firehose while the
archiver saves less than $X"): any such margin makes the bill step *down* where the choice flips as the load grows
(Firehose at A + X just below the flip, the archiver at A just above it), and a bill must never fall when only the
load rises. Each is priced exactly as the estimate prices it, so the flip happens where the two bills cross and the
total is continuous there. When the archiver wins, the stream is archived by a Lambda function
(`pipeline_aws.archive`) on its own event source mapping, with the largest batches a mapping allows (10,000 records
or 300 s, within the 6 MB payload), which writes one gzip object of newline-delimited records per batch, at a key
named by the batch (a redelivery overwrites it). The stream sizing's reasoning states the comparison either way.
"""

from __future__ import annotations

from pipeline.cost import GB, PriceSheet
from pipeline.errors import PipelineError
from pipeline.sizing import StreamSizing
from pipeline.spec.model import PipelineSpec
from pipeline_aws import pricing
from pipeline_aws import sizing as aws_sizing
from pipeline_aws.sizing import RawArchive

REFERENCE_REGION = "us-east-1"  # prices the choice in a region without a price sheet


def _prices(region: str) -> tuple[PriceSheet, str]:
    try:
        return pricing.price_sheet(region), ""
    except PipelineError:
        return pricing.price_sheet(REFERENCE_REGION), f" ({REFERENCE_REGION} prices: {region} has no price sheet)"


def _volume(gb: float) -> str:
    return f"{gb * GB / 1e12:,.1f} TB" if gb * GB >= 1e12 else f"{gb:,.0f} GB"


def plan_archive(spec: PipelineSpec, stream: StreamSizing) -> RawArchive:
    """Firehose or the Lambda archiver for this workload, with the comparison that decided it."""
    archiver = aws_sizing.size_archiver(spec, stream)
    prices, priced = _prices(spec.clouds.aws.region)
    costs = pricing.archive_costs(spec, archiver, prices)
    record_bytes = spec.workload.record_bytes
    billed_kb = record_bytes / costs.billed_share / 1024
    rounding, share = costs.firehose_rounding, 1 - costs.billed_share
    lines = [f"raw archive: Firehose would bill {_volume(costs.firehose_billed_gb)} a month ({billed_kb:,.0f} KB per {record_bytes:,}-byte "
             f"record) = ${costs.firehose:,.2f}; a Lambda archiver ({archiver.records_per_invocation:,.0f} records a batch, "
             f"{archiver.invocations_per_month:,.0f} invocations) bills ${costs.archiver:,.2f}{priced}"]
    if costs.archiver >= costs.firehose:
        lines.append(f"=> Firehose: a Lambda archiver would not cost less (its 5 KB rounding costs ${rounding:,.2f} a month, "
                     f"{share:.0%} of what it bills)")
        return RawArchive("firehose", archiver, lines)
    lines.append(f"=> Lambda archiver: ${costs.firehose - costs.archiver:,.2f} a month less than Firehose, whose 5 KB rounding costs "
                 f"${rounding:,.2f} ({share:.0%} of what it bills); the cheaper design is built, so the bill never falls as the load grows")
    lines.append(f"archiver: {archiver.shards} shard(s) x ParallelizationFactor {archiver.parallelization} = at most "
                 f"{archiver.concurrency} concurrent invocation(s) (not reserved); batches of up to {aws_sizing.ARCHIVER_BATCH_SIZE:,} "
                 f"records or {aws_sizing.ARCHIVER_WINDOW_S} s (6 MB payload), {archiver.invocation_ms:,.0f} ms each at "
                 f"{aws_sizing.ARCHIVER_MEMORY_MB} MB")
    if archiver.needed > archiver.concurrency:
        lines.append(f"the archiver needs {archiver.needed} concurrent batches, more than {archiver.shards} shard(s) x "
                     f"{aws_sizing.MAX_PARALLELIZATION}: it will fall behind")
    return RawArchive("lambda", archiver, lines)
