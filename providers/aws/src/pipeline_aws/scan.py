"""pulumi-aws resources as the Terraform resources they are bridged from, for scanners (see pipeline.scan).

Each token maps to the `hashicorp/aws` v6 resource of the same schema (pulumi-aws 7 bridges it);
fields are camelCased Terraform names except where listed in `renames` (the bridge pluralises
list blocks such as `rule` and names a few fields differently). Only the types the backend plans,
plus those the scan tests plan on purpose, are listed: a new type must be added here, or planning
it for a scanner fails loudly.
"""

from __future__ import annotations

from pipeline.scan import TerraformMapping, TerraformType

PROVIDER = "registry.terraform.io/hashicorp/aws"

TYPES: dict[str, TerraformType] = {
    "aws:cloudwatch/eventRule:EventRule": TerraformType("aws_cloudwatch_event_rule"),
    "aws:cloudwatch/eventTarget:EventTarget": TerraformType("aws_cloudwatch_event_target"),
    "aws:cloudwatch/logGroup:LogGroup": TerraformType("aws_cloudwatch_log_group"),
    "aws:cloudwatch/logMetricFilter:LogMetricFilter": TerraformType("aws_cloudwatch_log_metric_filter"),
    "aws:cloudwatch/logStream:LogStream": TerraformType("aws_cloudwatch_log_stream"),
    "aws:cloudwatch/metricAlarm:MetricAlarm": TerraformType("aws_cloudwatch_metric_alarm"),
    "aws:iam/policy:Policy": TerraformType("aws_iam_policy"),
    "aws:iam/role:Role": TerraformType("aws_iam_role"),
    "aws:iam/rolePolicy:RolePolicy": TerraformType("aws_iam_role_policy"),
    "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream": TerraformType("aws_kinesis_firehose_delivery_stream"),
    "aws:kinesis/stream:Stream": TerraformType("aws_kinesis_stream"),
    "aws:kms/key:Key": TerraformType("aws_kms_key"),
    "aws:lambda/eventSourceMapping:EventSourceMapping": TerraformType("aws_lambda_event_source_mapping"),
    # `code` is Pulumi's archive in place of Terraform's local `filename`.
    "aws:lambda/function:Function": TerraformType("aws_lambda_function", {"code": "filename"}),
    "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig": TerraformType("aws_lambda_function_event_invoke_config"),
    "aws:lambda/functionUrl:FunctionUrl": TerraformType("aws_lambda_function_url"),
    "aws:lambda/permission:Permission": TerraformType("aws_lambda_permission", {"function": "function_name"}),
    # pulumi-aws 7's Bucket is the v6 provider's aws_s3_bucket (the former BucketV2).
    "aws:s3/bucket:Bucket": TerraformType("aws_s3_bucket"),
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": TerraformType(
        "aws_s3_bucket_lifecycle_configuration", {"rules": "rule", "rules.transitions": "transition",
                                                  "rules.noncurrentVersionTransitions": "noncurrent_version_transition"}),
    "aws:s3/bucketNotification:BucketNotification": TerraformType(
        "aws_s3_bucket_notification", {"lambdaFunctions": "lambda_function", "queues": "queue", "topics": "topic"}),
    "aws:s3/bucketObjectv2:BucketObjectv2": TerraformType("aws_s3_object"),
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": TerraformType("aws_s3_bucket_ownership_controls"),
    "aws:s3/bucketPolicy:BucketPolicy": TerraformType("aws_s3_bucket_policy"),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": TerraformType("aws_s3_bucket_public_access_block"),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": TerraformType(
        "aws_s3_bucket_server_side_encryption_configuration", {"rules": "rule"}),
    "aws:s3/bucketVersioning:BucketVersioning": TerraformType("aws_s3_bucket_versioning"),
    "aws:scheduler/schedule:Schedule": TerraformType("aws_scheduler_schedule"),
    "aws:scheduler/scheduleGroup:ScheduleGroup": TerraformType("aws_scheduler_schedule_group"),
    "aws:sns/topic:Topic": TerraformType("aws_sns_topic"),
    "aws:sns/topicPolicy:TopicPolicy": TerraformType("aws_sns_topic_policy"),
    "aws:sns/topicSubscription:TopicSubscription": TerraformType("aws_sns_topic_subscription"),
    "aws:sqs/queue:Queue": TerraformType("aws_sqs_queue"),
    "aws:sqs/queuePolicy:QueuePolicy": TerraformType("aws_sqs_queue_policy"),
}

# Attributes the Terraform schema types as maps (keys are data), not nested blocks.
MAPS = frozenset({"tags", "tags_all", "variables", "dimensions", "input_paths", "default_tags"})

MAPPING = TerraformMapping(PROVIDER, TYPES, MAPS)
