"""What invokes each stage, and where its failures go: ESM, EventBridge rules, Scheduler, SQS."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from pipeline.backend import Handle, RoleContext
from pipeline.spec.model import PipelineSpec, StageSpec
from pipeline.spec.schedule import Cron, Rate, Schedule
from pipeline_aws import iam, storage

# EventBridge / Lambda async invocation bounds (eb-rule-retry-policy, invocation-retries docs).
LAMBDA_ASYNC_MAX_RETRIES = 2
LAMBDA_ASYNC_MAX_AGE_S = 21_600
ESM_MAX_RECORD_AGE_S = 604_800
_DAY_NAMES = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"]


def dead_letter(role: RoleContext, spec: PipelineSpec) -> Handle[aws.sqs.Queue]:
    queue = aws.sqs.Queue(
        role.name(),
        sqs_managed_sse_enabled=True,
        message_retention_seconds=spec.storage.dead_letter_days * 86_400,
        opts=role.opts(),
    )
    return Handle(queue, queue.name, {"arn": queue.arn, "url": queue.url})


def _send_to_dead_letter(role: RoleContext, identity: Handle[aws.iam.Role], dlq: Handle[aws.sqs.Queue]) -> aws.iam.RolePolicy:
    """Lambda itself sends failure records with the function's role (ESM and async on-failure)."""
    return iam.inline_policy(role, "dead-letter", identity.resource, [iam.statement("SendFailures", ["sqs:SendMessage"], [dlq.extra["arn"]])])


def _async_failures(role: RoleContext, stage: StageSpec, function: Handle[aws.lambda_.Function], dlq: Handle[aws.sqs.Queue],
                    after: list[pulumi.Resource]) -> None:
    """Bound Lambda's own retries of asynchronous invocations and keep what still fails."""
    aws.lambda_.FunctionEventInvokeConfig(
        role.name("async"),
        function_name=function.name,
        maximum_retry_attempts=min(stage.retries, LAMBDA_ASYNC_MAX_RETRIES),
        maximum_event_age_in_seconds=min(stage.max_event_age_s, LAMBDA_ASYNC_MAX_AGE_S),
        destination_config={"on_failure": {"destination": dlq.extra["arn"]}},
        opts=role.opts(depends_on=after),
    )


def stream_trigger(role: RoleContext, stage: StageSpec, spec: PipelineSpec, source: Handle[aws.kinesis.Stream],
                   function: Handle[aws.lambda_.Function], identity: Handle[aws.iam.Role], dlq: Handle[aws.sqs.Queue]) -> None:
    assert stage.trigger.stream is not None
    trigger = stage.trigger.stream
    send = _send_to_dead_letter(role, identity, dlq)
    max_age = min(stage.max_event_age_s, spec.stream.retention_hours * 3600, ESM_MAX_RECORD_AGE_S)
    aws.lambda_.EventSourceMapping(
        role.name(),
        event_source_arn=source.extra["arn"],
        function_name=function.extra["arn"],
        starting_position="LATEST" if trigger.starting_position == "latest" else "TRIM_HORIZON",
        batch_size=trigger.batch_size,
        maximum_batching_window_in_seconds=trigger.max_batching_window_s,
        function_response_types=["ReportBatchItemFailures"],
        bisect_batch_on_function_error=True,
        maximum_retry_attempts=stage.retries,
        maximum_record_age_in_seconds=max(60, max_age),
        destination_config={"on_failure": {"destination_arn": dlq.extra["arn"]}},
        # The mapping validates the role's Kinesis and SQS permissions when it is created.
        opts=role.opts(depends_on=[send, *identity.extra["policies"]]),
    )


def _allow_events_to_queue(role: RoleContext, dlq: Handle[aws.sqs.Queue], source_arn: pulumi.Input[str]) -> None:
    """EventBridge delivers undeliverable events to SQS under the queue's resource policy."""
    aws.sqs.QueuePolicy(
        role.name("dead-letter-policy"),
        queue_url=dlq.extra["url"],
        policy=pulumi.Output.json_dumps({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "EventBridgeDeadLetters", "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage", "Resource": dlq.extra["arn"],
                "Condition": {"ArnEquals": {"aws:SourceArn": source_arn}},
            }],
        }),
        opts=role.opts(),
    )


def object_trigger(role: RoleContext, stage: StageSpec, source: Handle[aws.s3.Bucket], prefix: str,
                   function: Handle[aws.lambda_.Function], identity: Handle[aws.iam.Role], dlq: Handle[aws.sqs.Queue]) -> None:
    """S3 -> EventBridge 'Object Created' on the source bucket and prefix only (no CloudTrail)."""
    storage.enable_eventbridge(source)
    pattern = pulumi.Output.json_dumps({
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": [source.name]}, "object": {"key": [{"prefix": prefix}]}},
    })
    rule = aws.cloudwatch.EventRule(role.name(), description=f"New objects under {prefix} trigger stage {stage.name}",
                                    event_pattern=pattern, state="ENABLED", opts=role.opts())
    aws.cloudwatch.EventTarget(
        role.name("target"),
        rule=rule.name,
        arn=function.extra["arn"],
        retry_policy={"maximum_retry_attempts": stage.retries, "maximum_event_age_in_seconds": stage.max_event_age_s},
        dead_letter_config={"arn": dlq.extra["arn"]},
        opts=role.opts(),
    )
    aws.lambda_.Permission(role.name("invoke"), action="lambda:InvokeFunction", function=function.name,
                           principal="events.amazonaws.com", source_arn=rule.arn, opts=role.opts())
    _allow_events_to_queue(role, dlq, rule.arn)
    _async_failures(role, stage, function, dlq, [_send_to_dead_letter(role, identity, dlq)])


def aws_schedule_expression(schedule: Schedule) -> str:
    """Translate the neutral schedule to EventBridge Scheduler syntax."""
    if isinstance(schedule, Rate):
        unit = schedule.unit[:-1] if schedule.value == 1 else schedule.unit
        return f"rate({schedule.value} {unit})"
    assert isinstance(schedule, Cron)
    dom, dow = schedule.day_of_month, schedule.day_of_week
    if dow == "*":
        dow = "?"
    else:
        dom = "?"  # AWS needs '?' in one of the two day fields
        dow = "".join(_DAY_NAMES[int(tok)] if tok.isdigit() else tok for tok in _split_keep(dow))
    return f"cron({schedule.minute} {schedule.hour} {dom} {schedule.month} {dow} *)"


def _split_keep(expr: str) -> list[str]:
    out, token = [], ""
    for ch in expr:
        if ch in ",-":
            out.extend([token, ch])
            token = ""
        else:
            token += ch
    return [*out, token]


def schedule_problems(schedule: Schedule) -> list[str]:
    if isinstance(schedule, Cron):
        if schedule.day_of_month != "*" and schedule.day_of_week != "*":
            return ["cron cannot restrict both day-of-month and day-of-week; set one of them to '*'"]
        if "/" in schedule.day_of_week:
            return ["cron does not allow steps ('/') in day-of-week; list the days instead"]
    return []


def schedule_trigger(role: RoleContext, stage: StageSpec, schedule: Schedule, function: Handle[aws.lambda_.Function],
                     identity: Handle[aws.iam.Role], dlq: Handle[aws.sqs.Queue]) -> None:
    """EventBridge Scheduler with its own role allowed to invoke only this function."""
    scheduler_role = iam.service_role(role, "role", "scheduler.amazonaws.com", f"Invokes stage {stage.name} of {role.pipeline} on schedule")
    invoke = iam.inline_policy(role, "invoke", scheduler_role, [
        iam.statement("InvokeStage", ["lambda:InvokeFunction"], [function.extra["arn"]]),
        iam.statement("SendUndelivered", ["sqs:SendMessage"], [dlq.extra["arn"]]),
    ])
    aws.scheduler.Schedule(
        role.name(),
        schedule_expression=aws_schedule_expression(schedule),
        schedule_expression_timezone="UTC",
        flexible_time_window={"mode": "OFF"},
        target={
            "arn": function.extra["arn"],
            "role_arn": scheduler_role.arn,
            "retry_policy": {"maximum_retry_attempts": stage.retries, "maximum_event_age_in_seconds": stage.max_event_age_s},
            "dead_letter_config": {"arn": dlq.extra["arn"]},
        },
        opts=role.opts(depends_on=[invoke]),
    )
    _async_failures(role, stage, function, dlq, [_send_to_dead_letter(role, identity, dlq)])
