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

from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from pipeline.cost import GB, PriceSheet
from pipeline.errors import PipelineError
from pipeline.packaging import Package, build, runtime_sources
from pipeline.roles import Handle, RoleContext
from pipeline.sizing import StreamSizing
from pipeline.spec.model import PipelineSpec
from pipeline_aws import functions, iam, pricing, triggers
from pipeline_aws import sizing as aws_sizing
from pipeline_aws.observability import ArchiverResources
from pipeline_aws.sizing import ArchiverSizing, RawArchive

REFERENCE_REGION = "us-east-1"  # prices the choice in a region without a price sheet
LABEL = "raw_archive"  # the archiver's name in function and alarm names: never a stage's (stage names have no '_')
HANDLER = "pipeline_aws.archive.handler"
RUNTIME_MODULES = ("pipeline.runtime.keys", "pipeline.runtime.logs", "pipeline_aws.archive")  # what the archiver imports
ARCHIVER_RETRIES = 10  # the mapping retries a failed batch (bisecting it) this often before sending it to SQS
MAX_RECORD_AGE_S = 604_800  # the longest MaximumRecordAgeInSeconds of a Kinesis mapping


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


# ---- the Lambda archiver's resources ---------------------------------------------------------------


def function_name(role: RoleContext) -> str:
    return f"{role.pipeline}-{role.stack}-{LABEL}"


def package(base_dir: Path, stack: str) -> Package:
    """The archiver's deterministic zip: the runtime modules it imports, no user code, no requirements (boto3 is in
    the Lambda runtime)."""
    target = base_dir / ".pipeline" / "build" / "aws" / stack / f"{LABEL}.zip"
    return build(LABEL, runtime_sources(RUNTIME_MODULES), target, functions.PACKAGE_LIMIT_ZIPPED, functions.PACKAGE_LIMIT_UNZIPPED, "aws")


def lambda_archive(role: RoleContext, spec: PipelineSpec, archiver: ArchiverSizing, source: Handle[aws.kinesis.Stream],
                   bucket: Handle[aws.s3.Bucket], prefix: str, code: Package) -> ArchiverResources:
    """The archiver function, its role (read the stream, put under `prefix` only), log group, mapping and failure queue."""
    assert spec.stream is not None
    name = function_name(role)
    log_group = aws.cloudwatch.LogGroup(role.name("logs"), name=f"/aws/lambda/{name}", retention_in_days=functions.LOG_RETENTION_DAYS,
                                        opts=role.opts())
    failed = triggers.dead_letter(role, spec)
    identity = iam.service_role(role, "role", "lambda.amazonaws.com", f"Archives raw records of {role.pipeline} ({role.stack})")
    access = iam.inline_policy(role, "access", identity, [
        iam.statement("ReadStream", iam.KINESIS_READ, [source.extra["arn"]]),
        iam.statement("WriteArchive", ["s3:PutObject"], [pulumi.Output.concat(bucket.extra["arn"], "/", prefix, "*")]),
        iam.statement("WriteLogs", ["logs:CreateLogStream", "logs:PutLogEvents"], [pulumi.Output.concat(log_group.arn, ":*")]),
        iam.statement("SendFailedBatches", ["sqs:SendMessage"], [failed.extra["arn"]]),
    ])
    fn = aws.lambda_.Function(
        role.name("function"),
        name=name,
        description=f"Archives every raw record of {role.pipeline} ({role.stack}) to S3 under {prefix}",
        runtime=functions.RUNTIME,
        architectures=[functions.ARCHITECTURE],
        handler=HANDLER,
        role=identity.arn,
        code=pulumi.FileArchive(str(code.path)),
        memory_size=aws_sizing.ARCHIVER_MEMORY_MB,
        timeout=aws_sizing.ARCHIVER_TIMEOUT_S,
        reserved_concurrent_executions=functions.UNRESERVED,  # its mapping bounds it (shards x ParallelizationFactor)
        environment=aws.lambda_.FunctionEnvironmentArgs(variables={"PIPELINE_RAW_BUCKET": bucket.name, "PIPELINE_RAW_PREFIX": prefix}),
        logging_config=aws.lambda_.FunctionLoggingConfigArgs(log_format="JSON", log_group=log_group.name,
                                                             application_log_level="INFO", system_log_level="WARN"),
        opts=role.opts(depends_on=[log_group, access]),
    )
    max_age = min(spec.stream.retention_hours * 3600, MAX_RECORD_AGE_S)
    aws.lambda_.EventSourceMapping(
        role.name("mapping"),
        event_source_arn=source.extra["arn"],
        function_name=fn.arn,
        starting_position="TRIM_HORIZON",  # everything the stream still holds when the archive starts
        batch_size=aws_sizing.ARCHIVER_BATCH_SIZE,
        maximum_batching_window_in_seconds=aws_sizing.ARCHIVER_WINDOW_S,
        parallelization_factor=archiver.parallelization,
        bisect_batch_on_function_error=True,
        maximum_retry_attempts=ARCHIVER_RETRIES,
        maximum_record_age_in_seconds=max_age,
        destination_config=aws.lambda_.EventSourceMappingDestinationConfigArgs(
            on_failure=aws.lambda_.EventSourceMappingDestinationConfigOnFailureArgs(destination_arn=failed.extra["arn"])),
        # The mapping checks the role's Kinesis and SQS permissions when it is created.
        opts=role.opts(depends_on=[access]),
    )
    function: Handle[Any] = Handle(fn, fn.name, {"arn": fn.arn, "log_group": log_group})
    return ArchiverResources(LABEL, function, failed)
