"""Alerts an operator needs (function failures, dead letters, stream throttling), who is told, and the
one storage lifecycle policy, which can only be assembled once every bucket exists (see storage.py).

Who is told: one action group with an e-mail receiver per `alerts.emails` address and a webhook
receiver for `alerts.webhook` (the URL is a secret in the stack state: it often carries a token).
With neither, the group still exists (alerts fire in the portal) and the plan says nobody is told.

Dead letters, two sources:
* the runtime writes poison records, and whole inputs whose retries ran out, to the dead-letter
  container and logs one JSON line per input with `"dead_letters": N` (N > 0): "batch done" and
  "retries exhausted; input dead-lettered" (pipeline.runtime.invoke). The shim hands those lines to
  Python logging, so they land in AppTraces with the line as `Message`; the log alert parses it
  (`dead_letter_query`). Every stage gets this alert, and so does the raw archiver function (a batch
  it could not write on the retry policy's last attempt), with an errors alert like a stage's.
* Event Grid dead-letters the BlobCreated events it could not write to a stage's queue (metric
  DeadLetteredCount of the system topic, per subscription): object stages get this alert too.
* The queue trigger moves a message that never completed (a crash or timeout on its last attempt) to
  the poison queue and logs a warning, "Message has reached MaxDequeueCount of N. Moving message to
  queue 'objects-poison'." (QueueProcessor in the queue extension); the log alert `poison_query`
  fires on that line. Storage's queue metrics cannot: QueueMessageCount is per account, hourly, and
  would count the stage's work queue too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pulumi
from pulumi_azure_native import monitor

from pipeline.backend import Handle, RoleContext, StageResources
from pipeline.spec.model import AlertsSpec
from pipeline_azure import credentials, object_queue, storage, stream
from pipeline_azure.platform import Platform

DEAD_LETTER_FIELD = "dead_letters"  # the runtime's count of inputs it dead-lettered, on every "batch done" line


def dead_letter_query(app_name: str) -> str:
    """KQL over AppTraces: runtime log lines of `app_name` whose JSON says it dead-lettered something."""
    return (f"AppTraces | where AppRoleName =~ '{app_name}' and Message contains '\"{DEAD_LETTER_FIELD}\"' "
            f"| extend entry = parse_json(Message) | where toint(entry.{DEAD_LETTER_FIELD}) > 0")


def error_query(app_name: pulumi.Input[str]) -> pulumi.Output[str]:
    """KQL over AppRequests: invocations of `app_name` that failed."""
    return pulumi.Output.concat("AppRequests | where AppRoleName =~ '", app_name, "' and Success == false")


POISON_MARKER = "Moving message to queue"


def poison_query(app_name: str, poison_queue: str) -> str:
    """KQL over AppTraces: the queue trigger of `app_name` moved a message to `poison_queue`."""
    return (f"AppTraces | where AppRoleName =~ '{app_name}' and Message has '{POISON_MARKER}' "
            f"and Message has '{poison_queue}'")


def dead_letter_line(message: str) -> bool:
    """What `dead_letter_query` selects, for one AppTraces Message (used by tests against real runtime lines):
    `contains` is a case-insensitive substring test; parse_json of a non-JSON line gives no field."""
    if f'"{DEAD_LETTER_FIELD}"'.lower() not in message.lower():
        return False
    try:
        entry = json.loads(message)
        return int(entry.get(DEAD_LETTER_FIELD) or 0) > 0
    except (ValueError, TypeError, AttributeError):
        return False


def _log_alert(role: RoleContext, platform: Platform, suffix: str, description: str, query: pulumi.Input[str], actions: pulumi.Input[str]) -> None:
    monitor.ScheduledQueryRule(
        role.name(suffix),
        rule_name=role.name(suffix),
        resource_group_name=platform.rg_name,
        location=platform.location,
        kind=monitor.Kind.LOG_ALERT,
        description=description,
        severity=2,
        enabled=True,
        scopes=[platform.workspace.id],
        evaluation_frequency="PT5M",
        window_size="PT5M",
        criteria=monitor.ScheduledQueryRuleCriteriaArgs(all_of=[monitor.ConditionArgs(
            query=query,
            time_aggregation=monitor.TimeAggregation.COUNT,
            operator=monitor.ConditionOperator.GREATER_THAN,
            threshold=0,
            failing_periods=monitor.ConditionFailingPeriodsArgs(number_of_evaluation_periods=1, min_failing_periods_to_alert=1),
        )]),
        auto_mitigate=True,
        actions=monitor.ActionsArgs(action_groups=[actions]),
        tags=platform.tags,
        opts=role.opts(),
    )


def _metric_alert(role: RoleContext, platform: Platform, suffix: str, description: str, scope: pulumi.Input[str], namespace: str,
                  metric: str, actions: pulumi.Input[str], dimensions: list[monitor.MetricDimensionArgs] | None = None) -> None:
    monitor.MetricAlert(
        role.name(suffix),
        rule_name=role.name(suffix),
        resource_group_name=platform.rg_name,
        location="global",
        description=description,
        severity=2,
        enabled=True,
        scopes=[scope],
        evaluation_frequency="PT1M",
        window_size="PT5M",
        # A union-typed input: only the typed Args class is translated to odata.type/allOf/metricName.
        criteria=monitor.MetricAlertSingleResourceMultipleMetricCriteriaArgs(
            odata_type="Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria",
            all_of=[monitor.MetricCriteriaArgs(
                criterion_type="StaticThresholdCriterion", name=metric, metric_name=metric, metric_namespace=namespace,
                operator=monitor.Operator.GREATER_THAN, threshold=0, time_aggregation=monitor.AggregationTypeEnum.TOTAL,
                dimensions=dimensions or None,
            )],
        ),
        auto_mitigate=True,
        actions=[monitor.MetricAlertActionArgs(action_group_id=actions)],
        tags=platform.tags,
        opts=role.opts(),
    )


def action_group(role: RoleContext, platform: Platform, alerts: AlertsSpec) -> monitor.ActionGroup:
    """The receivers of every alert: `alerts.emails` and `alerts.webhook` (common alert schema)."""
    emails = [monitor.MicrosoftCommonEmailReceiverArgs(name=f"email-{index}", email_address=address, use_common_alert_schema=True)
              for index, address in enumerate(alerts.emails)]
    webhooks = [monitor.WebhookReceiverArgs(name="webhook", service_uri=pulumi.Output.secret(alerts.webhook), use_common_alert_schema=True)
                ] if alerts.webhook else []
    return monitor.ActionGroup(
        role.name("alerts"),
        action_group_name=f"ag-{role.pipeline}-{role.stack}",
        group_short_name=role.pipeline[:12],
        resource_group_name=platform.rg_name,
        location="Global",
        enabled=True,
        email_receivers=emails or None,
        webhook_receivers=webhooks or None,
        tags=platform.tags,
        opts=role.opts(),
    )


def observability(role: RoleContext, platform: Platform, source: Any, stages: Sequence[StageResources], alerts: AlertsSpec,
                  archiver: Handle[Any] | None = None) -> None:
    storage.lifecycle_policy(platform)
    # The data account's name carries the stack's random suffix: exported for the deploy summary's commands.
    pulumi.export(credentials.DATA_ACCOUNT_OUTPUT, platform.data.name)
    if platform.http_audiences:  # what a caller of each HTTP stage asks Entra ID a token for (http_auth)
        pulumi.export(credentials.HTTP_AUDIENCES_OUTPUT, platform.http_audiences)
    group = action_group(role, platform, alerts)
    actions = group.id
    if source is not None:
        _metric_alert(role, platform, "stream-throttled", "Producers or consumers are throttled: the namespace needs more throughput units",
                      source.extra["namespace"].id, "Microsoft.EventHub/namespaces", "ThrottledRequests", actions,
                      [monitor.MetricDimensionArgs(name="EntityName", operator="Include", values=[stream.EVENT_HUB_NAME])])
    if archiver is not None:  # the raw archiver function (pipeline_azure.archiver): alerts like a stream stage's
        app_name = archiver.extra["app_name"]
        _log_alert(role, platform, "raw_archive-errors", "The raw archiver failed to write a batch (its retry policy runs it again)",
                   error_query(app_name), actions)
        _log_alert(role, platform, "raw_archive-dead-letters", "The raw archiver dead-lettered a batch it could not write",
                   pulumi.Output.from_input(app_name).apply(dead_letter_query), actions)
    for built in stages:
        name = built.stage.name
        app = built.function.extra["app_name"]
        _log_alert(role, platform, f"{name}-errors", f"Stage {name} raised errors", error_query(app), actions)
        _log_alert(role, platform, f"{name}-dead-letters", f"Stage {name} dead-lettered records or inputs",
                   pulumi.Output.from_input(app).apply(dead_letter_query), actions)
        if built.stage.trigger.objects:
            _log_alert(role, platform, f"{name}-poison", f"Stage {name}: a queue message never completed and went to the poison queue",
                       pulumi.Output.from_input(app).apply(lambda a: poison_query(a, object_queue.POISON_QUEUE_NAME)), actions)
            subscription = f"{name}-objects"
            _metric_alert(role, platform, f"{name}-undelivered", f"Event Grid dead-lettered blob events it could not queue for stage {name}",
                          platform.system_topic.id, "Microsoft.EventGrid/systemTopics", "DeadLetteredCount", actions,
                          [monitor.MetricDimensionArgs(name="EventSubscriptionName", operator="Include", values=[subscription.upper(), subscription])])
