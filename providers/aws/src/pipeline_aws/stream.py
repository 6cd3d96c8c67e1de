"""The Kinesis stream and its Firehose archive to S3."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from pipeline.roles import Handle, RoleContext
from pipeline.sizing import StreamSizing
from pipeline.spec.model import PipelineSpec
from pipeline_aws import iam

SHARD_METRICS = ["IncomingBytes", "IncomingRecords", "IteratorAgeMilliseconds", "OutgoingBytes", "ReadProvisionedThroughputExceeded", "WriteProvisionedThroughputExceeded"]
ARCHIVE_BUFFER_MB = 64  # larger objects, fewer PUTs; Firehose flushes on size or interval
ARCHIVE_BUFFER_SECONDS = 300
LOG_RETENTION_DAYS = 30
RECORD_DELIMITER_PROCESSOR = "AppendDelimiterToRecord"  # a newline after every record


def stream(role: RoleContext, spec: PipelineSpec, sizing: StreamSizing) -> Handle[aws.kinesis.Stream]:
    """On-demand only when the workload fits a new on-demand stream (see pipeline_aws.sizing.size_stream);
    otherwise provisioned with the sized shard count."""
    assert spec.stream is not None
    on_demand = sizing.mode == "on-demand"
    args: dict[str, Any] = {
        "retention_period": spec.stream.retention_hours,
        "encryption_type": "KMS",
        "kms_key_id": "alias/aws/kinesis",  # AWS-managed key: encrypted at rest, no key policy to manage
        "stream_mode_details": aws.kinesis.StreamStreamModeDetailsArgs(stream_mode="ON_DEMAND" if on_demand else "PROVISIONED"),
    }
    if not on_demand:
        args["shard_count"] = sizing.units
        args["shard_level_metrics"] = SHARD_METRICS
    s = aws.kinesis.Stream(role.name(), opts=role.opts(), **args)
    return Handle(s, s.name, {"arn": s.arn})


def archive(role: RoleContext, source: Handle[aws.kinesis.Stream], target: Handle[aws.s3.Bucket], prefix: str) -> None:
    """Firehose reads the stream (as one more consumer) and writes gzip batches to S3, one record per line.

    Firehose concatenates records as they are; `AppendDelimiterToRecord` adds a newline after each, so an
    archive object splits back into its records (https://docs.aws.amazon.com/firehose/latest/APIReference/API_Processor.html:
    "You don't have to put a processor parameter when you select AppendDelimiterToRecord")."""
    log_group = aws.cloudwatch.LogGroup(role.name("logs"), name=f"/aws/kinesisfirehose/{role.name()}-{role.stack}",
                                        retention_in_days=LOG_RETENTION_DAYS, opts=role.opts())
    log_stream = aws.cloudwatch.LogStream(role.name("log-stream"), log_group_name=log_group.name, name="S3Delivery", opts=role.opts())
    firehose_role = iam.service_role(role, "role", "firehose.amazonaws.com", f"Archives raw records of {role.pipeline} ({role.stack})")
    bucket_arn = target.extra["arn"]
    access = iam.inline_policy(role, "access", firehose_role, [
        # From "Grant Firehose access to an Amazon S3 destination", limited to the archive prefixes.
        iam.statement("ReadStream", ["kinesis:DescribeStream", "kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:ListShards"], [source.extra["arn"]]),
        iam.statement("LocateBucket", ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"], [bucket_arn]),
        iam.statement("WriteArchive", ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"],
                      [pulumi.Output.concat(bucket_arn, "/", prefix, "*"), pulumi.Output.concat(bucket_arn, "/", "raw-errors/*")]),
        iam.statement("WriteErrorLogs", ["logs:PutLogEvents"], [pulumi.Output.concat(log_group.arn, ":log-stream:*")]),
    ])
    time_path = "year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/hour=!{timestamp:HH}/"
    aws.kinesis.FirehoseDeliveryStream(
        role.name(),
        destination="extended_s3",
        kinesis_source_configuration=aws.kinesis.FirehoseDeliveryStreamKinesisSourceConfigurationArgs(
            kinesis_stream_arn=source.extra["arn"], role_arn=firehose_role.arn),
        extended_s3_configuration=aws.kinesis.FirehoseDeliveryStreamExtendedS3ConfigurationArgs(
            bucket_arn=bucket_arn,
            role_arn=firehose_role.arn,
            prefix=prefix + time_path,
            error_output_prefix="raw-errors/!{firehose:error-output-type}/" + time_path,
            buffering_size=ARCHIVE_BUFFER_MB,
            buffering_interval=ARCHIVE_BUFFER_SECONDS,
            compression_format="GZIP",
            processing_configuration=aws.kinesis.FirehoseDeliveryStreamExtendedS3ConfigurationProcessingConfigurationArgs(
                enabled=True,
                processors=[aws.kinesis.FirehoseDeliveryStreamExtendedS3ConfigurationProcessingConfigurationProcessorArgs(
                    type=RECORD_DELIMITER_PROCESSOR)],
            ),
            cloudwatch_logging_options=aws.kinesis.FirehoseDeliveryStreamExtendedS3ConfigurationCloudwatchLoggingOptionsArgs(
                enabled=True, log_group_name=log_group.name, log_stream_name=log_stream.name),
        ),
        opts=role.opts(depends_on=[access]),
    )
