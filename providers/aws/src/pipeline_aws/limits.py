"""The AWS limits a user weighs when choosing a cloud, as this backend's plan configures them.

Every figure is the service's documented limit for what the plan actually builds: a Kinesis
stream at its default maximum record size (the plan does not raise `max_record_size_in_kib`),
Lambda functions (900 s for every trigger kind the plan uses: Kinesis ESM, EventBridge rule,
Scheduler, function URL), function URLs for HTTP stages (6 MB buffered payload each way), and the
ESM / EventBridge / Scheduler failure handling set up in `triggers.py`.
"""

from __future__ import annotations

from pipeline.faces import Limits
from pipeline.sizing import Sizing
from pipeline.spec.model import PipelineSpec
from pipeline_aws import triggers

KINESIS_MAX_RECORD_BYTES = 1024 * 1024  # 1 MiB default; raisable to 10 MiB per stream, which the plan does not do
LAMBDA_MAX_TIMEOUT_S = 900
KINESIS_MAX_RETENTION_HOURS = 8760  # 365 days

SOURCES = (
    "https://docs.aws.amazon.com/streams/latest/dev/service-sizes-and-limits.html",
    "https://docs.aws.amazon.com/streams/latest/dev/large-records.html",
    "https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html",
    "https://docs.aws.amazon.com/lambda/latest/dg/with-kinesis.html",
    "https://docs.aws.amazon.com/lambda/latest/api/API_OnFailure.html",
    "https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rule-retry-policy.html",
)
HTTP_SOURCES = (
    "https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html",
    "https://docs.aws.amazon.com/lambda/latest/dg/furls-http-invoke-decision.html",
)


def limits(spec: PipelineSpec, sizing: Sizing) -> Limits:
    """Limits of the services the plan uses; the poison-record text names the spec's retry bounds."""
    retries = sorted({s.retries for s in spec.stages})
    bound = f"{retries[0]}" if len(retries) == 1 else f"{retries[0]}-{retries[-1]}"
    http = any(stage.trigger.http for stage in spec.stages)
    streaming = sizing.stream is not None
    return Limits(
        max_record_bytes=KINESIS_MAX_RECORD_BYTES,
        max_stage_timeout_s=LAMBDA_MAX_TIMEOUT_S,
        max_retention_hours=KINESIS_MAX_RETENTION_HOURS,
        delivery="at least once",
        ordering="per partition key within a shard" if streaming else "none (objects and requests are handled independently)",
        poison_records=(f"bisect, bounded retries ({bound}), then on-failure record to SQS; "
                        "runtime dead-letters single records to S3 and alarms on them"),
        sources=SOURCES + (HTTP_SOURCES if http else ()),
        http_max_request_bytes=triggers.URL_PAYLOAD_BYTES if http else None,
        http_max_response_bytes=triggers.URL_PAYLOAD_BYTES if http else None,
        http_max_timeout_s=triggers.URL_TIMEOUT_S if http else None,
        max_stage_timeout_s_by_trigger={stage.trigger.kind: LAMBDA_MAX_TIMEOUT_S for stage in spec.stages},
    )
