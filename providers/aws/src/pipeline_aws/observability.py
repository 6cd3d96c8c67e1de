"""Alarms an operator needs, and the people and systems they reach.

* Dead letters: the SQS queues (events Lambda or EventBridge gave up on) and, from the function logs,
  every record the runtime itself dead-lettered: a poison record goes to the dead-letter bucket while
  the invocation succeeds, so neither the queues nor the Errors metric ever see it. A metric filter
  on the runtime's JSON log line (`{"message": "batch done", ..., "dead_letters": N}` and
  `"retries exhausted; input dead-lettered"`, see pipeline.runtime.invoke) turns it into a metric.
* Function errors, throttles (no function reserves concurrency by default, so a throttle means the account's
  unreserved pool ran out: pipeline_aws.concurrency), and stream consumers falling behind (iterator age).
* The alarm topic is encrypted with a customer-managed KMS key whose policy lets CloudWatch use it:
  CloudWatch cannot publish to a topic encrypted with the AWS-managed `alias/aws/sns` key, so with that
  key no alarm would ever notify (https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services).
* The topic policy lets only this account's CloudWatch alarms publish; `alerts.emails` get e-mail
  subscriptions and `alerts.webhook` an HTTPS subscription whose URL is kept as a secret.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from pipeline.roles import Handle, RoleContext, StageResources
from pipeline.spec.model import AlertsSpec
from pipeline_aws import iam
from pipeline_aws.naming import partition

ITERATOR_AGE_ALARM_MS = 5 * 60 * 1000
DEAD_LETTER_PATTERN = "{ $.dead_letters > 0 }"  # CloudWatch Logs JSON filter pattern on the runtime's log lines
DEAD_LETTER_METRIC = "DeadLetters"
KEY_DELETION_DAYS = 30
ARCHIVER_ALARMS = 4  # the raw archiver's failed batches, errors, throttles and iterator age


@dataclass(frozen=True)
class ArchiverResources:
    """What observability watches of the raw archiver (pipeline_aws.archive_choice), when the plan has one."""

    label: str  # its name in alarm names, like a stage's
    function: Handle[Any]
    failed_batches: Handle[Any]  # the mapping's on-failure SQS queue


def metric_namespace(pipeline: str, stack: str) -> str:
    return f"Pipeline/{pipeline}/{stack}"


def alarm_name(role: RoleContext, stage: str, what: str) -> str:
    """Explicit names, `<pipeline>-<stack>-<stage>-<what>`, so the key and topic policies can name exactly this stack's alarms."""
    return f"{role.pipeline}-{role.stack}-{stage}-{what}"


def _alarm_arns(role: RoleContext, account: pulumi.Output[str], region: str) -> pulumi.Output[str]:
    return pulumi.Output.concat("arn:", partition(region), ":cloudwatch:", region, ":", account, ":alarm:", role.pipeline, "-", role.stack, "-*")


def _from_these_alarms(role: RoleContext, account: pulumi.Output[str], region: str) -> dict[str, object]:
    """Confused-deputy guard: CloudWatch acts only for this stack's alarms in this account (both keys are
    supported for CloudWatch alarm actions on SNS and on the topic's KMS key)."""
    return {"StringEquals": {"aws:SourceAccount": account}, "ArnLike": {"aws:SourceArn": _alarm_arns(role, account, region)}}


def _alarm_key(role: RoleContext, account: pulumi.Output[str], region: str) -> aws.kms.Key:
    """A customer-managed key for the alarm topic: the account administers it; CloudWatch may use it
    (GenerateDataKey*, Decrypt) for this stack's alarms only."""
    key_policy = pulumi.Output.json_dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "AccountAdministersTheKey", "Effect": "Allow",
             "Principal": {"AWS": pulumi.Output.concat("arn:", partition(region), ":iam::", account, ":root")}, "Action": "kms:*", "Resource": "*"},
            {"Sid": "CloudWatchAlarmsPublish", "Effect": "Allow", "Principal": {"Service": "cloudwatch.amazonaws.com"},
             "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*", "Condition": _from_these_alarms(role, account, region)},
        ],
    })
    return aws.kms.Key(role.name("alerts-key"), description=f"Encrypts the alarm topic of {role.pipeline} ({role.stack})",
                       enable_key_rotation=True, deletion_window_in_days=KEY_DELETION_DAYS, policy=key_policy, opts=role.opts())


def _topic(role: RoleContext, region: str, alerts: AlertsSpec) -> aws.sns.Topic:
    account = iam.account_id(role)
    key = _alarm_key(role, account, region)
    topic = aws.sns.Topic(role.name("alerts"), kms_master_key_id=key.arn, opts=role.opts())
    aws.sns.TopicPolicy(role.name("alerts-policy"), arn=topic.arn, policy=pulumi.Output.json_dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "CloudWatchAlarmsPublish", "Effect": "Allow", "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Action": "sns:Publish", "Resource": topic.arn, "Condition": _from_these_alarms(role, account, region),
        }],
    }), opts=role.opts())
    for index, email in enumerate(alerts.emails):
        # Each address gets a confirmation mail from SNS and receives alerts once it confirms.
        aws.sns.TopicSubscription(role.name(f"email-{index}"), topic=topic.arn, protocol="email", endpoint=email, opts=role.opts())
    if alerts.webhook:
        # The endpoint must confirm the subscription (SNS POSTs a SubscriptionConfirmation with a SubscribeURL).
        aws.sns.TopicSubscription(role.name("webhook"), topic=topic.arn, protocol="https", endpoint=pulumi.Output.secret(alerts.webhook),
                                  opts=role.opts())
    return topic


def observability(role: RoleContext, region: str, alerts: AlertsSpec, stages: Sequence[StageResources],
                  archiver: ArchiverResources | None = None) -> None:
    topic = _topic(role, region, alerts)
    actions = [topic.arn]
    namespace = metric_namespace(role.pipeline, role.stack)
    for built in stages:
        name = built.stage.name
        _queue_alarm(role, name, "dead-letters", f"Events of stage {name} were dead-lettered (SQS)", built.dead_letter, actions)
        log_group = built.function.extra["log_group"]
        aws.cloudwatch.LogMetricFilter(
            role.name(f"{name}-dead-letter-records"), log_group_name=log_group.name, pattern=DEAD_LETTER_PATTERN,
            metric_transformation=aws.cloudwatch.LogMetricFilterMetricTransformationArgs(
                name=DEAD_LETTER_METRIC, namespace=namespace, value="$.dead_letters", unit="Count", dimensions={"Stage": "$.stage"}),
            opts=role.opts(),
        )
        aws.cloudwatch.MetricAlarm(
            role.name(f"{name}-dead-letter-records"), name=alarm_name(role, name, "dead-letter-records"), alarm_description=f"Stage {name} wrote records to the dead-letter bucket",
            namespace=namespace, metric_name=DEAD_LETTER_METRIC, dimensions={"Stage": name},
            statistic="Sum", period=300, evaluation_periods=1, threshold=0, comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching", alarm_actions=actions, opts=role.opts(),
        )
        _lambda_alarm(role, name, "Errors", f"Stage {name} raised errors", built.function, actions)
        _lambda_alarm(role, name, "Throttles", f"Stage {name} was throttled: the account's concurrency ran out (or its reservation is too small)",
                      built.function, actions)
        if built.stage.trigger.stream:
            _lag_alarm(role, name, f"Stage {name} is more than 5 minutes behind the stream", built.function, actions)
    if archiver is not None:
        label = archiver.label
        _queue_alarm(role, label, "failed-batches", "The raw archiver gave up on batches (their shard and sequence range are in SQS; "
                                                    "the records stay in the stream until its retention ends)", archiver.failed_batches, actions)
        _lambda_alarm(role, label, "Errors", "The raw archiver failed to write batches to S3 (the mapping retries them)", archiver.function, actions)
        _lambda_alarm(role, label, "Throttles", "The raw archiver was throttled: the account's concurrency ran out", archiver.function, actions)
        _lag_alarm(role, label, "The raw archiver is more than 5 minutes behind the stream", archiver.function, actions)


def _queue_alarm(role: RoleContext, name: str, what: str, description: str, queue: Handle[Any], actions: list[Any]) -> None:
    aws.cloudwatch.MetricAlarm(
        role.name(f"{name}-{what}"), name=alarm_name(role, name, what), alarm_description=description,
        namespace="AWS/SQS", metric_name="ApproximateNumberOfMessagesVisible", dimensions={"QueueName": queue.name},
        statistic="Maximum", period=300, evaluation_periods=1, threshold=0, comparison_operator="GreaterThanThreshold",
        treat_missing_data="notBreaching", alarm_actions=actions, opts=role.opts(),
    )


def _lambda_alarm(role: RoleContext, name: str, metric: str, description: str, function: Handle[Any], actions: list[Any]) -> None:
    """Any `metric` ("Errors", "Throttles") of one function in a 5-minute period."""
    kind = metric.lower()
    aws.cloudwatch.MetricAlarm(
        role.name(f"{name}-{kind}"), name=alarm_name(role, name, kind), alarm_description=description,
        namespace="AWS/Lambda", metric_name=metric, dimensions={"FunctionName": function.name},
        statistic="Sum", period=300, evaluation_periods=1, threshold=0, comparison_operator="GreaterThanThreshold",
        treat_missing_data="notBreaching", alarm_actions=actions, opts=role.opts(),
    )


def _lag_alarm(role: RoleContext, name: str, description: str, function: Handle[Any], actions: list[Any]) -> None:
    aws.cloudwatch.MetricAlarm(
        role.name(f"{name}-lag"), name=alarm_name(role, name, "lag"), alarm_description=description,
        namespace="AWS/Lambda", metric_name="IteratorAge", dimensions={"FunctionName": function.name},
        statistic="Maximum", period=60, evaluation_periods=5, threshold=ITERATOR_AGE_ALARM_MS,
        comparison_operator="GreaterThanThreshold", treat_missing_data="notBreaching", alarm_actions=actions, opts=role.opts(),
    )


def alarms_per_stage(stream: bool) -> int:
    """Alarms observability() creates for one stage (pricing counts them the same way)."""
    return 5 if stream else 4
