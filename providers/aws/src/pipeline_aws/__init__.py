"""AWS backend: Kinesis, Firehose, S3, Lambda, EventBridge and SQS through pulumi-aws v7."""
