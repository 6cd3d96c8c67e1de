"""Alerts an operator needs (function failures, dead letters, stream throttling), and the one
storage lifecycle policy, which can only be assembled once every bucket exists (see storage.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
from pulumi_azure_native import monitor

from pipeline.backend import RoleContext, StageResources
from pipeline_azure import storage, stream
from pipeline_azure.platform import Platform

DEAD_LETTER_LOG = "pipeline.dead_letter"  # the runtime logs this line for every record it dead-letters


def _log_alert(role: RoleContext, platform: Platform, suffix: str, description: str, query: str, actions: list[Any]) -> None:
    monitor.ScheduledQueryRule(
        role.name(suffix),
        rule_name=role.name(suffix),
        resource_group_name=platform.rg_name,
        location=platform.location,
        kind="LogAlert",
        description=description,
        severity=2,
        enabled=True,
        scopes=[platform.workspace.id],
        evaluation_frequency="PT5M",
        window_size="PT5M",
        criteria={"all_of": [{
            "query": query,
            "time_aggregation": "Count",
            "operator": "GreaterThan",
            "threshold": 0,
            "failing_periods": {"number_of_evaluation_periods": 1, "min_failing_periods_to_alert": 1},
        }]},
        auto_mitigate=True,
        actions={"action_groups": actions},
        tags=platform.tags,
        opts=role.opts(),
    )


def _metric_alert(role: RoleContext, platform: Platform, suffix: str, description: str, scope: pulumi.Input[str], namespace: str,
                  metric: str, actions: list[Any], dimensions: list[dict[str, Any]] | None = None) -> None:
    criteria: Any = {
        "odata_type": "Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria",
        "all_of": [{
            "criterion_type": "StaticThresholdCriterion", "name": metric, "metric_name": metric, "metric_namespace": namespace,
            "operator": "GreaterThan", "threshold": 0, "time_aggregation": "Total", "dimensions": dimensions or [],
        }],
    }
    alert_actions: Any = [{"action_group_id": a} for a in actions]
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
        criteria=criteria,
        auto_mitigate=True,
        actions=alert_actions,
        tags=platform.tags,
        opts=role.opts(),
    )


def observability(role: RoleContext, platform: Platform, source: Any, stages: Sequence[StageResources]) -> None:
    storage.lifecycle_policy(platform)
    group = monitor.ActionGroup(
        role.name("alerts"),
        action_group_name=f"ag-{role.pipeline}-{role.stack}",
        group_short_name=role.pipeline[:12],
        resource_group_name=platform.rg_name,
        location="Global",
        enabled=True,  # receivers (e-mail, webhook, pager) are added per team; the group is what alerts point at
        tags=platform.tags,
        opts=role.opts(),
    )
    actions = [group.id]
    _metric_alert(role, platform, "stream-throttled", "Producers or consumers are throttled: the namespace needs more throughput units",
                  source.extra["namespace"].id, "Microsoft.EventHub/namespaces", "ThrottledRequests", actions,
                  [{"name": "EntityName", "operator": "Include", "values": [stream.EVENT_HUB_NAME]}])
    for built in stages:
        name = built.stage.name
        app = built.function.extra["app_name"]
        _log_alert(role, platform, f"{name}-errors", f"Stage {name} raised errors",
                   f"AppRequests | where AppRoleName =~ '{app}' and Success == false", actions)
        if built.stage.trigger.objects:
            subscription = f"{name}-objects"
            _metric_alert(role, platform, f"{name}-dead-letters", f"Event Grid dead-lettered blob events for stage {name}",
                          platform.system_topic.id, "Microsoft.EventGrid/systemTopics", "DeadLetteredCount", actions,
                          [{"name": "EventSubscriptionName", "operator": "Include", "values": [subscription.upper(), subscription]}])
        else:
            _log_alert(role, platform, f"{name}-dead-letters", f"Stage {name} dead-lettered records",
                       f"AppTraces | where AppRoleName =~ '{app}' and Message startswith '{DEAD_LETTER_LOG}'", actions)
