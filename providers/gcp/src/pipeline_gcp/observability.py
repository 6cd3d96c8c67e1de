"""Alert policies an operator needs: dead letters arriving, function errors, consumers falling behind, failed schedules.

Notifications go to a Pub/Sub topic (like the AWS backend's SNS topic), from which any paging tool can subscribe.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_gcp as gcp

from pipeline.backend import RoleContext, StageResources
from pipeline_gcp import iam, naming
from pipeline_gcp.platform import Env

PERIOD = "300s"
LAG_ALERT_S = 5 * 60


def _threshold(display: str, filter_: pulumi.Input[str], aligner: str, threshold: float, duration: str = "0s") -> dict[str, Any]:
    return {
        "display_name": display,
        "condition_threshold": {
            "filter": filter_,
            "comparison": "COMPARISON_GT",
            "threshold_value": threshold,
            "duration": duration,
            "aggregations": [{"alignment_period": PERIOD if duration == "0s" else "60s", "per_series_aligner": aligner}],
            "trigger": {"count": 1},
        },
    }


def _policy(role: RoleContext, env: Env, suffix: str, display: str, doc: str, conditions: list[Any],
            channels: list[Any], alert_strategy: Any = None) -> gcp.monitoring.AlertPolicy:
    return gcp.monitoring.AlertPolicy(
        role.name(suffix), display_name=f"{role.pipeline} ({role.stack}): {display}", combiner="OR", conditions=conditions,
        notification_channels=channels, documentation={"content": doc, "mime_type": "text/markdown"}, severity="ERROR",
        user_labels={"pipeline": naming.label_value(role.pipeline), "stack": naming.label_value(role.stack)},
        alert_strategy=alert_strategy, opts=env.opts(role),
    )


def observability(role: RoleContext, env: Env, stages: Sequence[StageResources]) -> None:
    topic = gcp.pubsub.Topic(role.name("alerts"), opts=env.opts(role))
    channel = gcp.monitoring.NotificationChannel(
        role.name("alerts"), display_name=f"{role.pipeline} ({role.stack}) alerts", type="pubsub", labels={"topic": topic.id},
        opts=env.opts(role),
    )
    # Monitoring publishes as its notification service agent, created with the first Pub/Sub channel (hence after it).
    gcp.pubsub.TopicIAMMember(
        role.name("alerts-publisher"), topic=topic.id, role="roles/pubsub.publisher",
        member=iam.member(env.project_number.apply(lambda n: naming.service_agent(n, "monitoring"))),
        opts=env.opts(role, channel),
    )
    channels = [channel.name]
    for built in stages:
        name = built.stage.name
        dead = built.dead_letter.extra["subscription"]
        _policy(role, env, f"{name}-dead-letters", f"{name} dead letters",
                f"Events of stage `{name}` were dead-lettered; inspect the dead-letter subscription, fix, then replay.",
                [_threshold("dead-letter backlog > 0", pulumi.Output.concat(
                    'resource.type = "pubsub_subscription" AND resource.labels.subscription_id = "', dead,
                    '" AND metric.type = "pubsub.googleapis.com/subscription/num_undelivered_messages"'), "ALIGN_MAX", 0)],
                channels)
        # A gen2 function is a Cloud Run service of the same name: its 5xx responses are failed invocations.
        _policy(role, env, f"{name}-errors", f"{name} errors", f"Stage `{name}` failed invocations (HTTP 5xx).",
                [_threshold("function errors > 0", pulumi.Output.concat(
                    'resource.type = "cloud_run_revision" AND resource.labels.service_name = "', built.function.name,
                    '" AND metric.type = "run.googleapis.com/request_count" AND metric.labels.response_code_class = "5xx"'),
                    "ALIGN_DELTA", 0)],
                channels)
        push = env.push_subscriptions.get(name)
        if push is not None:
            _policy(role, env, f"{name}-lag", f"{name} lag", f"Stage `{name}` is more than {LAG_ALERT_S // 60} minutes behind the stream.",
                    [_threshold("oldest unacked message age", pulumi.Output.concat(
                        'resource.type = "pubsub_subscription" AND resource.labels.subscription_id = "', push,
                        '" AND metric.type = "pubsub.googleapis.com/subscription/oldest_unacked_message_age"'),
                        "ALIGN_MAX", LAG_ALERT_S, duration="300s")],
                    channels)
        job = env.scheduler_jobs.get(name)
        if job is not None:
            _policy(role, env, f"{name}-schedule-failures", f"{name} schedule failures",
                    f"A scheduled run of stage `{name}` failed after its retries (Cloud Scheduler has no dead-letter destination).",
                    [{"display_name": "scheduler job error logs", "condition_matched_log": {"filter": pulumi.Output.concat(
                        'resource.type = "cloud_scheduler_job" AND resource.labels.job_id = "', job, '" AND severity >= ERROR')}}],
                    channels, alert_strategy={"notification_rate_limit": {"period": PERIOD}})
