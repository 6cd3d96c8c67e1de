"""The Lambda archiver's resources, where `pipeline_aws.archive_choice` chose it over Firehose: its package (the
runtime modules `pipeline_aws.archive` imports, no user code), its function, role, log group, event source mapping
and failure queue. The function's code is `pipeline_aws.archive` (its handler path is fixed by deployed stacks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from pipeline.packaging import Package, build, runtime_sources
from pipeline.roles import Handle, RoleContext
from pipeline.spec.model import PipelineSpec
from pipeline_aws import functions, iam, triggers
from pipeline_aws import sizing as aws_sizing
from pipeline_aws.observability import ArchiverResources
from pipeline_aws.sizing import ArchiverSizing

LABEL = "raw_archive"  # the archiver's name in function and alarm names: never a stage's (stage names have no '_')
HANDLER = "pipeline_aws.archive.handler"
RUNTIME_MODULES = ("pipeline.runtime.keys", "pipeline.runtime.logs", "pipeline_aws.archive")  # what the archiver imports
ARCHIVER_RETRIES = 10  # the mapping retries a failed batch (bisecting it) this often before sending it to SQS
MAX_RECORD_AGE_S = 604_800  # the longest MaximumRecordAgeInSeconds of a Kinesis mapping


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
