"""Alarms an operator needs: dead letters arriving, function errors, stream consumers falling behind."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi_aws as aws

from pipeline.backend import RoleContext, StageResources

ITERATOR_AGE_ALARM_MS = 5 * 60 * 1000


def observability(role: RoleContext, stages: Sequence[StageResources]) -> None:
    topic = aws.sns.Topic(role.name("alerts"), kms_master_key_id="alias/aws/sns", opts=role.opts())
    actions = [topic.arn]
    for built in stages:
        name = built.stage.name
        aws.cloudwatch.MetricAlarm(
            role.name(f"{name}-dead-letters"), alarm_description=f"Events of stage {name} were dead-lettered",
            namespace="AWS/SQS", metric_name="ApproximateNumberOfMessagesVisible", dimensions={"QueueName": built.dead_letter.name},
            statistic="Maximum", period=300, evaluation_periods=1, threshold=0, comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching", alarm_actions=actions, opts=role.opts(),
        )
        aws.cloudwatch.MetricAlarm(
            role.name(f"{name}-errors"), alarm_description=f"Stage {name} raised errors",
            namespace="AWS/Lambda", metric_name="Errors", dimensions={"FunctionName": built.function.name},
            statistic="Sum", period=300, evaluation_periods=1, threshold=0, comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching", alarm_actions=actions, opts=role.opts(),
        )
        if built.stage.trigger.stream:
            aws.cloudwatch.MetricAlarm(
                role.name(f"{name}-lag"), alarm_description=f"Stage {name} is more than 5 minutes behind the stream",
                namespace="AWS/Lambda", metric_name="IteratorAge", dimensions={"FunctionName": built.function.name},
                statistic="Maximum", period=60, evaluation_periods=5, threshold=ITERATOR_AGE_ALARM_MS,
                comparison_operator="GreaterThanThreshold", treat_missing_data="notBreaching", alarm_actions=actions, opts=role.opts(),
            )
