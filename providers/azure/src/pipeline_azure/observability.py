"""Alerts an operator needs (function failures, dead letters, stream throttling), who is told, and the
one storage lifecycle policy, which can only be assembled once every bucket exists (see storage.py).

Who is told: one action group with an e-mail receiver per `alerts.emails` address and a webhook
receiver for `alerts.webhook` (the URL is a secret in the stack state: it often carries a token).
With neither, the group still exists (alerts fire in the portal) and the plan says nobody is told.

One log search rule per kind (errors, dead letters, poison messages) watches every app: a rule is billed per month
whatever it watches, and the query's results name the app.

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

from pipeline.roles import Handle, RoleContext, StageResources
from pipeline.spec.model import AlertsSpec
from pipeline_azure import credentials, object_queue, storage, stream
from pipeline_azure.platform import Platform

DEAD_LETTER_FIELD = "dead_letters"  # the runtime's count of inputs it dead-lettered, on every "batch done" line


def _apps(app_names: Sequence[str]) -> str:
    if any("'" in name for name in app_names):
        raise ValueError(f"an app name cannot contain a quote: {app_names!r}")
    return ", ".join(f"'{name}'" for name in app_names)


def dead_letter_query(*app_names: str) -> str:
    """KQL over AppTraces: runtime log lines of any of `app_names` whose JSON says it dead-lettered something."""
    return (f"AppTraces | where AppRoleName in~ ({_apps(app_names)}) and Message contains '\"{DEAD_LETTER_FIELD}\"' "
            f"| extend entry = parse_json(Message) | where toint(entry.{DEAD_LETTER_FIELD}) > 0")


def error_query(*app_names: str) -> str:
    """KQL over AppRequests: invocations of any of `app_names` that failed (the app shows in the alert's results)."""
    return f"AppRequests | where AppRoleName in~ ({_apps(app_names)}) and Success == false | project TimeGenerated, AppRoleName, Name, ResultCode"


POISON_MARKER = "Moving message to queue"


def poison_query(poison_queue: str, *app_names: str) -> str:
    """KQL over AppTraces: the queue trigger of any of `app_names` moved a message to `poison_queue`."""
    return (f"AppTraces | where AppRoleName in~ ({_apps(app_names)}) and Message has '{POISON_MARKER}' "
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


LOG_ALERT_KINDS = ("errors", "dead-letters", "poison")  # the log search rules a plan can have (poison: with an object stage)


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
    # One log search rule per kind of failure across every app, not one per app: a rule is billed per month whatever it
    # watches, and the query's results name the app (AppRoleName), so nothing is lost by sharing it.
    apps = [built.function.extra["app_name"] for built in stages] + ([archiver.extra["app_name"]] if archiver is not None else [])
    object_apps = [built.function.extra["app_name"] for built in stages if built.stage.trigger.objects]
    who = ", ".join([s.stage.name for s in stages] + (["the raw archiver"] if archiver is not None else []))
    _log_alert(role, platform, "errors", f"A function failed (one of: {who}); the results name the app",
               pulumi.Output.all(*apps).apply(lambda names: error_query(*names)), actions)
    _log_alert(role, platform, "dead-letters", f"Records or inputs were dead-lettered (one of: {who}); the results name the app",
               pulumi.Output.all(*apps).apply(lambda names: dead_letter_query(*names)), actions)
    if object_apps:
        _log_alert(role, platform, "poison", "An object stage's queue message never completed and went to its poison queue",
                   pulumi.Output.all(*object_apps).apply(lambda names: poison_query(object_queue.POISON_QUEUE_NAME, *names)), actions)
    for built in stages:
        name = built.stage.name
        if built.stage.trigger.objects:
            subscription = f"{name}-objects"
            _metric_alert(role, platform, f"{name}-undelivered", f"Event Grid dead-lettered blob events it could not queue for stage {name}",
                          platform.system_topic.id, "Microsoft.EventGrid/systemTopics", "DeadLetteredCount", actions,
                          [monitor.MetricDimensionArgs(name="EventSubscriptionName", operator="Include", values=[subscription.upper(), subscription])])
