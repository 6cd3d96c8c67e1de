"""What invokes each stage, and where its failures go: ESM, EventBridge rules, Scheduler, function URLs, SQS."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import pulumi
import pulumi_aws as aws

from pipeline.roles import Handle, RoleContext, autoname
from pipeline.sizing import StageSizing
from pipeline.spec.model import PipelineSpec, StageSpec
from pipeline.spec.schedule import Cron, Rate, Schedule
from pipeline_aws import iam

# EventBridge / Lambda async invocation bounds (eb-rule-retry-policy, invocation-retries docs).
LAMBDA_ASYNC_MAX_RETRIES = 2
LAMBDA_ASYNC_MAX_AGE_S = 21_600
ESM_MAX_RECORD_AGE_S = 604_800
OBJECT_CREATED = "s3:ObjectCreated:*"  # Put, Post, Copy and CompleteMultipartUpload
# EventBridge Scheduler replaces this context attribute in the target input with the run's scheduled time, so a
# retried run keeps its name (https://docs.aws.amazon.com/scheduler/latest/UserGuide/managing-schedule-context-attributes.html).
SCHEDULED_TIME_INPUT = '{"scheduled_time": "<aws.scheduler.scheduled-time>"}'
DEFAULT_TIMEZONE = "UTC"  # what a schedule without `timezone` fires in, on every cloud
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
        destination_config=aws.lambda_.FunctionEventInvokeConfigDestinationConfigArgs(
            on_failure=aws.lambda_.FunctionEventInvokeConfigDestinationConfigOnFailureArgs(destination=dlq.extra["arn"])),
        opts=role.opts(depends_on=after),
    )


def stream_trigger(role: RoleContext, stage: StageSpec, spec: PipelineSpec, sized: StageSizing, source: Handle[aws.kinesis.Stream],
                   function: Handle[aws.lambda_.Function], identity: Handle[aws.iam.Role], dlq: Handle[aws.sqs.Queue]) -> None:
    """A Kinesis event source mapping with the ParallelizationFactor the sizing chose (see pipeline_aws.sizing)."""
    assert stage.trigger.stream is not None and spec.stream is not None
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
        parallelization_factor=int(sized.settings["parallelization_factor"]),
        function_response_types=["ReportBatchItemFailures"],
        bisect_batch_on_function_error=True,
        maximum_retry_attempts=stage.retries,
        maximum_record_age_in_seconds=max(60, max_age),
        destination_config=aws.lambda_.EventSourceMappingDestinationConfigArgs(
            on_failure=aws.lambda_.EventSourceMappingDestinationConfigOnFailureArgs(destination_arn=dlq.extra["arn"])),
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
    """Each object created under `prefix` invokes the function asynchronously, with Lambda's bounded retries and its
    on-failure queue either way:

    * the only stage reading the bucket gets an S3 event notification (free; its function's entry point reads it,
      pipeline_aws.s3_notification);
    * where several stages read the bucket, S3 sends its events to EventBridge (storage.bucket) and one rule per stage
      matches its bucket and prefix (EventBridge bills each event; S3 cannot send overlapping notifications of one
      event type and prefix to several functions)."""
    send = _send_to_dead_letter(role, identity, dlq)
    if source.extra["eventbridge"]:
        _eventbridge_rule(role, stage, source, prefix, function, dlq)
    else:
        _s3_notification(role, source, prefix, function)
    _async_failures(role, stage, function, dlq, [send])


def _s3_notification(role: RoleContext, source: Handle[aws.s3.Bucket], prefix: str, function: Handle[aws.lambda_.Function]) -> None:
    """S3 -> Lambda. S3 checks that it may invoke the function when the notification is saved ("Unable to validate the
    following destination configurations" otherwise), so the notification waits for the permission; the permission names
    the bucket and this account, as a bucket name can later belong to another account
    (https://docs.aws.amazon.com/lambda/latest/dg/with-s3.html). It is the bucket's only notification configuration
    (S3 replaces the whole configuration on each save), which holds because only one stage reads this bucket."""
    permission = aws.lambda_.Permission(role.name("invoke"), action="lambda:InvokeFunction", function=function.name,
                                        principal="s3.amazonaws.com", source_arn=source.extra["arn"],
                                        source_account=iam.account_id(role), opts=role.opts())
    aws.s3.BucketNotification(
        role.name("notification"), bucket=source.extra["id"],
        lambda_functions=[aws.s3.BucketNotificationLambdaFunctionArgs(
            lambda_function_arn=function.extra["arn"], events=[OBJECT_CREATED], filter_prefix=prefix)],
        opts=role.opts(depends_on=[permission]),
    )


def _eventbridge_rule(role: RoleContext, stage: StageSpec, source: Handle[aws.s3.Bucket], prefix: str,
                      function: Handle[aws.lambda_.Function], dlq: Handle[aws.sqs.Queue]) -> None:
    """S3 -> EventBridge 'Object Created' on the source bucket and prefix only (no CloudTrail)."""
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
        retry_policy=aws.cloudwatch.EventTargetRetryPolicyArgs(maximum_retry_attempts=stage.retries,
                                                               maximum_event_age_in_seconds=stage.max_event_age_s),
        dead_letter_config=aws.cloudwatch.EventTargetDeadLetterConfigArgs(arn=dlq.extra["arn"]),
        opts=role.opts(),
    )
    aws.lambda_.Permission(role.name("invoke"), action="lambda:InvokeFunction", function=function.name,
                           principal="events.amazonaws.com", source_arn=rule.arn, opts=role.opts())
    _allow_events_to_queue(role, dlq, rule.arn)


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
    """EventBridge Scheduler, in a schedule group of its own, with a role allowed to invoke only this function.

    The role trusts scheduler.amazonaws.com only for this account and this group (aws:SourceAccount, aws:SourceArn):
    Scheduler passes the *schedule group's* ARN as the source ("Do not scope the aws:SourceArn statement to a specific
    schedule ... The ARN you specify must be a schedule group",
    https://docs.aws.amazon.com/scheduler/latest/UserGuide/cross-service-confused-deputy-prevention.html), so each
    schedule gets its own group and its role can serve no other schedule. Cron fields are read in the trigger's
    `timezone` (an IANA name, daylight saving included), UTC by default."""
    group = aws.scheduler.ScheduleGroup(role.name("group"), name=schedule_group_name(role, stage), opts=role.opts())
    scheduler_role = iam.service_role(role, "role", "scheduler.amazonaws.com", f"Invokes stage {stage.name} of {role.pipeline} on schedule",
                                      condition=iam.from_source(iam.account_id(role), group.arn))
    invoke = iam.inline_policy(role, "invoke", scheduler_role, [
        iam.statement("InvokeStage", ["lambda:InvokeFunction"], [function.extra["arn"]]),
        iam.statement("SendUndelivered", ["sqs:SendMessage"], [dlq.extra["arn"]]),
    ])
    aws.scheduler.Schedule(
        role.name(),
        group_name=group.name,
        schedule_expression=aws_schedule_expression(schedule),
        schedule_expression_timezone=stage.trigger.timezone or DEFAULT_TIMEZONE,
        flexible_time_window=aws.scheduler.ScheduleFlexibleTimeWindowArgs(mode="OFF"),
        target=aws.scheduler.ScheduleTargetArgs(
            arn=function.extra["arn"],
            role_arn=scheduler_role.arn,
            input=SCHEDULED_TIME_INPUT,
            retry_policy=aws.scheduler.ScheduleTargetRetryPolicyArgs(maximum_retry_attempts=stage.retries,
                                                                     maximum_event_age_in_seconds=stage.max_event_age_s),
            dead_letter_config=aws.scheduler.ScheduleTargetDeadLetterConfigArgs(arn=dlq.extra["arn"]),
        ),
        opts=role.opts(depends_on=[invoke]),
    )
    _async_failures(role, stage, function, dlq, [_send_to_dead_letter(role, identity, dlq)])


def schedule_group_name(role: RoleContext, stage: StageSpec) -> str:
    """`<pipeline>-<stack>-<stage>`: at most 20 + 16 + 20 + 2 = 58 of the 64 characters a group name may have."""
    return f"{role.pipeline}-{role.stack}-{stage.name}"


# ---- HTTP ----------------------------------------------------------------------------------------------
# Why a Lambda function URL and not an API Gateway HTTP API with IAM authorization (both authenticate the
# caller's SigV4 signature against IAM; https://docs.aws.amazon.com/lambda/latest/dg/furls-http-invoke-decision.html):
# * timeout: a function URL runs for the function's own timeout (up to 900 s); an HTTP API integration
#   stops after 30 s (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-quotas.html),
#   shorter than the timeout_s a stage may ask for;
# * price: a function URL adds nothing to the Lambda request and duration; an HTTP API bills every request
#   on top ($1.00 per million in us-east-1);
# * throttling: the stage's reserved concurrency caps a function URL (callers beyond it get 429), which is
#   what the sizing provisions; an HTTP API would add per-route throttles of its own;
# * payload: a function URL takes 6 MB each way (a buffered invocation), an HTTP API 10 MB; limits() reports 6 MB.
URL_PAYLOAD_BYTES = 6 * 1024 * 1024
URL_TIMEOUT_S = 900
# Regions without function URLs (https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html).
NO_FUNCTION_URLS = frozenset({"ap-south-2", "ap-southeast-4", "ap-southeast-5", "ap-southeast-6", "ap-southeast-7", "ap-east-2",
                              "ca-west-1", "eu-south-2", "eu-central-2", "il-central-1", "me-central-1"})


# Each `http_invokers` principal adds two statements to the function's resource policy (AddPermission): the
# permission's suffix, its action, its arguments, and the condition Lambda writes into the statement for them
# (https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html).
INVOKER_GRANTS: tuple[tuple[str, str, dict[str, Any], dict[str, Any]], ...] = (
    ("url", "lambda:InvokeFunctionUrl", {"function_url_auth_type": iam.URL_AUTH_TYPE},
     {"StringEquals": {"lambda:FunctionUrlAuthType": iam.URL_AUTH_TYPE}}),
    ("invoke", "lambda:InvokeFunction", {"invoked_via_function_url": True}, {"Bool": {"lambda:InvokedViaFunctionUrl": "true"}}),
)
# "Function resource-based policy: 20 KB" (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html);
# AddPermission past it fails with PolicyLengthExceededException, part-way through a deploy.
RESOURCE_POLICY_LIMIT_BYTES = 20 * 1024
# A Permission without `statement_id` gets a generated one: measured as the longer of Pulumi's autoname of the
# logical name and the Terraform provider's "terraform-" + 26-digit id, so the size is never under-counted.
GENERATED_STATEMENT_ID = len("terraform-") + 26


def invoker_permission(index: int, suffix: str) -> str:
    return f"invoker-{index}-{suffix}"


def invoker_policy(function_arn: str, invokers: Sequence[str], logical: Callable[[str], str]) -> dict[str, Any]:
    """The resource policy the `http_invokers` permissions give an HTTP stage's function (`logical` names a
    permission as `RoleContext.name` does), as Lambda stores it."""
    statements = []
    for index, principal in enumerate(invokers):
        for suffix, action, _, condition in INVOKER_GRANTS:
            sid = autoname(logical(invoker_permission(index, suffix))).ljust(GENERATED_STATEMENT_ID, "0")
            statements.append({"Sid": sid, "Effect": "Allow", "Principal": {"AWS": principal}, "Action": action,
                               "Resource": function_arn, "Condition": condition})
    return {"Version": "2012-10-17", "Id": "default", "Statement": statements}


def invoker_policy_bytes(function_arn: str, invokers: Sequence[str], logical: Callable[[str], str]) -> int:
    return len(json.dumps(invoker_policy(function_arn, invokers, logical), separators=(",", ":")).encode())


def invokers_problem(function_arn: str, invokers: Sequence[str], logical: Callable[[str], str]) -> tuple[str, str] | None:
    """(message, hint) when the invokers' statements would not fit in the function's resource policy, else None."""
    size = invoker_policy_bytes(function_arn, invokers, logical)
    if size <= RESOURCE_POLICY_LIMIT_BYTES:
        return None
    fit = max((n for n in range(len(invokers) + 1) if invoker_policy_bytes(function_arn, invokers[:n], logical) <= RESOURCE_POLICY_LIMIT_BYTES),
              default=0)
    return (f"{len(invokers)} invokers give each HTTP function {2 * len(invokers)} resource-policy statements, about {size:,} bytes, over "
            f"Lambda's 20 KB ({RESOURCE_POLICY_LIMIT_BYTES:,} bytes) for a function's resource policy: the deploy would fail part-way "
            "(PolicyLengthExceededException)",
            f"list at most {fit} invokers (with these ARNs); for more callers, grant one role here and let them assume it")


def http_trigger(role: RoleContext, stage: StageSpec, invokers: list[str], function: Handle[aws.lambda_.Function]) -> Handle[aws.lambda_.FunctionUrl]:
    """A function URL with IAM auth (never NONE); the pipeline's own caller policy; `http_invokers` by exact ARN."""
    url = aws.lambda_.FunctionUrl(role.name(), function_name=function.name, authorization_type=iam.URL_AUTH_TYPE,
                                  invoke_mode="BUFFERED", opts=role.opts())
    caller = iam.managed_policy(role, f"Lets its holder call the HTTP stage {stage.name} of {role.pipeline} ({role.stack})",
                                iam.url_invoke_statements(function.extra["arn"]))
    for index, principal in enumerate(invokers):
        # Another account's principal needs this resource policy as well as its own identity policy; a
        # same-account one could do with the identity policy alone, but the grant is explicit either way.
        for suffix, action, args, _ in INVOKER_GRANTS:
            aws.lambda_.Permission(role.name(invoker_permission(index, suffix)), function=function.name, action=action,
                                   principal=principal, opts=role.opts(), **args)
    return Handle(url, url.function_url, {"caller": caller.name, "policy": caller.resource})
