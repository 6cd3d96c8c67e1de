"""Alert policies an operator needs, and who is told.

What is watched (one condition each, over every stage of the stack: Monitoring bills per condition, so one
condition grouped by stage is cheaper than one per stage; https://cloud.google.com/monitoring/alerts/cost-control):

* **runtime dead letters**: a log-based metric on the runtime's own JSON lines: "batch done" with
  `dead_letters > 0` (poison records, while the invocation succeeds) and "retries exhausted; input
  dead-lettered" (an input the runtime gave up on); see `pipeline.runtime.invoke`;
* **dead-letter topics**: events that never reached the runtime (crashes, timeouts) pile up in a stage's hold subscription;
* **function errors**: 5xx answers of the stages' Cloud Run services;
* **backlog**: the oldest undelivered event or stream message is older than 5 minutes;
* **schedule failures**: Cloud Scheduler logged a failed run after its retries.

Who is told: a Pub/Sub topic channel (any paging tool can subscribe), every `alerts.emails` address and the
`alerts.webhook` URL (kept secret in the deploy state), on every policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_gcp as gcp

from pipeline.errors import PipelineError
from pipeline.roles import RoleContext, StageResources
from pipeline.spec.model import PipelineSpec
from pipeline_gcp import batching, iam, naming
from pipeline_gcp.env import Env

PERIOD = "300s"
LAG_ALERT_S = 5 * 60
RUN_RESOURCE = "cloud_run_revision"  # gen2 functions log and report metrics as their Cloud Run service
# The runtime's lines (pipeline.runtime.invoke): StageRunner._finish logs "batch done" with dead_letters, and
# dead_letter_all logs this message when it gives up on a whole input.
BATCH_DONE = "batch done"
GAVE_UP = "retries exhausted; input dead-lettered"


def dead_letter_log_filter(pipeline: str, functions: Sequence[str]) -> str:
    """Cloud Logging filter for the runtime's dead-letter lines of this stack's functions (tested against real lines)."""
    services = " OR ".join(f'"{name}"' for name in functions)
    return (f'resource.type="{RUN_RESOURCE}" AND resource.labels.service_name=({services}) AND jsonPayload.pipeline="{pipeline}" AND '
            f'((jsonPayload.message="{BATCH_DONE}" AND jsonPayload.dead_letters>0) OR jsonPayload.message="{GAVE_UP}")')


def alert_policies(spec: PipelineSpec) -> list[str]:
    """The kinds of policy `observability` creates for `spec` (see `alert_conditions` for how many conditions each)."""
    policies = ["runtime-dead-letters", "errors"]
    if any(s.trigger.stream or s.trigger.objects for s in spec.stages):
        policies += ["dead-letter-topics", "backlog"]
    if any(s.trigger.schedule for s in spec.stages):
        policies.append("schedule-failures")
    return policies


# Monitoring refuses a condition filter over 2,048 characters (pulumi-gcp AlertPolicyConditionConditionThresholdArgs.filter:
# "may not exceed 2048 Unicode characters") and a policy with more than 6 conditions
# (https://cloud.google.com/monitoring/quotas#alerting_uptime_check_limits). A filter names this stack's services or
# subscriptions with one_of(...) (names only this stack has: a shared prefix could match another stack's), so the
# names are split into as many conditions as fit, 6 to a policy.
MAX_FILTER_CHARS = 2048
MAX_CONDITIONS_PER_POLICY = 6
AUTONAME_EXTRA = 11  # a Pub/Sub name is its logical name + "-" + 7 random characters, or "p-" + logical + "-" + 8 (naming.pubsub_name)
ERRORS_HEAD = f'resource.type="{RUN_RESOURCE}" AND resource.labels.service_name='
ERRORS_TAIL = ' AND metric.type="run.googleapis.com/request_count" AND metric.labels.response_code_class="5xx"'
HOLDS_HEAD = 'resource.type="pubsub_subscription" AND resource.labels.subscription_id='
HOLDS_TAIL = ' AND metric.type="pubsub.googleapis.com/subscription/num_undelivered_messages"'
BACKLOG_HEAD = HOLDS_HEAD
BACKLOG_TAIL = ' AND metric.type="pubsub.googleapis.com/subscription/oldest_unacked_message_age"'


def one_of(names: Sequence[str]) -> str:
    return "one_of(" + ", ".join(f'"{n}"' for n in names) + ")"


def split(longest: Sequence[int], head: str, tail: str) -> list[int]:
    """How many names go into each condition, in order, so that `head + one_of(names) + tail` stays within
    MAX_FILTER_CHARS when each name is at most its `longest` length."""
    room = MAX_FILTER_CHARS - len(head) - len(tail) - len("one_of()")
    sizes: list[int] = []
    used = 0
    for length in longest:
        need = length + 2  # the name in quotes
        if sizes and used + 2 + need <= room:  # ", " then the name
            sizes[-1] += 1
            used += 2 + need
            continue
        if need > room:
            raise PipelineError(f"a name of {length} characters cannot fit an alert filter of {MAX_FILTER_CHARS}")
        sizes.append(1)
        used = need
    return sizes


def _pubsub_longest(logical: str) -> int:
    return len(logical) + AUTONAME_EXTRA


def filter_names(spec: PipelineSpec, stack: str) -> dict[str, list[int]]:
    """The longest each name in a split filter can be, per policy kind, in the order `observability` lists them
    (backlog: the push subscriptions in stage order, then the Cloud Storage subscriptions: the archive's, each group's)."""
    pushed = [s.name for s in spec.stages if s.trigger.stream or s.trigger.objects]
    archive = [_pubsub_longest(f"{spec.name}-raw-archive")] if spec.stream is not None and spec.stream.archive else []
    owners = [source.owner for source in batching.owned(spec)]
    return {
        "errors": [len(naming.function_name(spec.name, stack, s.name)) for s in spec.stages],
        "dead-letter-topics": [_pubsub_longest(f"{spec.name}-{name}-dead-letter-hold") for name in pushed],
        "backlog": [_pubsub_longest(f"{spec.name}-{name}-trigger") for name in pushed]
                   + archive + [_pubsub_longest(f"{spec.name}-{name}-trigger-batches") for name in owners],
    }


SPLIT_FILTERS = {"errors": (ERRORS_HEAD, ERRORS_TAIL), "dead-letter-topics": (HOLDS_HEAD, HOLDS_TAIL), "backlog": (BACKLOG_HEAD, BACKLOG_TAIL)}


def alert_conditions(spec: PipelineSpec, stack: str) -> dict[str, int]:
    """The conditions `observability` creates for `spec`, per policy kind: Monitoring bills per condition."""
    longest = filter_names(spec, stack)
    return {kind: len(split(longest[kind], *SPLIT_FILTERS[kind])) if kind in SPLIT_FILTERS else 1 for kind in alert_policies(spec)}


def _split_filters(kind: str, names: Sequence[pulumi.Input[str]], longest: Sequence[int]) -> list[pulumi.Output[str]]:
    """One filter per condition, each checked against MAX_FILTER_CHARS when the names are known (at plan time too)."""
    head, tail = SPLIT_FILTERS[kind]
    assert len(names) == len(longest), (kind, len(names), len(longest))

    def build(values: list[str]) -> str:
        text = head + one_of(values) + tail
        if len(text) > MAX_FILTER_CHARS:
            raise PipelineError(f"the {kind} alert filter is {len(text)} characters, over Monitoring's {MAX_FILTER_CHARS}")
        return text

    out, start = [], 0
    for size in split(longest, head, tail):
        out.append(pulumi.Output.all(*names[start:start + size]).apply(build))
        start += size
    return out


def _threshold(display: str, filter_: pulumi.Input[str], aligner: str, threshold: float, *, group_by: Sequence[str] = (),
               duration: str = "0s") -> gcp.monitoring.AlertPolicyConditionArgs:
    return gcp.monitoring.AlertPolicyConditionArgs(
        display_name=display,
        condition_threshold=gcp.monitoring.AlertPolicyConditionConditionThresholdArgs(
            filter=filter_, comparison="COMPARISON_GT", threshold_value=threshold, duration=duration,
            aggregations=[gcp.monitoring.AlertPolicyConditionConditionThresholdAggregationArgs(
                alignment_period=PERIOD if duration == "0s" else "60s", per_series_aligner=aligner,
                cross_series_reducer="REDUCE_SUM" if group_by else None, group_by_fields=list(group_by) or None)],
            trigger=gcp.monitoring.AlertPolicyConditionConditionThresholdTriggerArgs(count=1),
        ),
    )


def channels(role: RoleContext, env: Env, spec: PipelineSpec) -> list[pulumi.Output[str]]:
    """Notification channels: the alerts topic, each e-mail address, the webhook (its URL is a secret)."""
    topic = gcp.pubsub.Topic(role.name("alerts"), name=env.pubsub_name(role.name("alerts")), opts=env.opts(role))
    channel = gcp.monitoring.NotificationChannel(
        role.name("alerts"), display_name=f"{role.pipeline} ({role.stack}) alerts topic", type="pubsub", labels={"topic": topic.id},
        opts=env.opts(role),
    )
    # Monitoring publishes as its notification service agent, created with the first Pub/Sub channel (hence after it).
    # (https://cloud.google.com/monitoring/support/notification-options#pubsub): on a fresh project the grant
    # would otherwise race the channel and fail with "service account does not exist".
    iam.topic_publisher(role, env, "alerts-publisher", topic.id,
                        iam.member(env.project_number.apply(lambda n: naming.service_agent(n, "monitoring"))), channel)
    found = [channel.name]
    for index, address in enumerate(spec.alerts.emails):
        email = gcp.monitoring.NotificationChannel(
            role.name(f"email-{index}"), display_name=f"{role.pipeline} ({role.stack}) {address}"[:100], type="email",
            labels={"email_address": address}, opts=env.opts(role))
        found.append(email.name)
    if spec.alerts.webhook:
        hook = gcp.monitoring.NotificationChannel(
            role.name("webhook"), display_name=f"{role.pipeline} ({role.stack}) webhook", type="webhook_tokenauth",
            labels={"url": pulumi.Output.secret(spec.alerts.webhook)},  # the URL is the credential: secret in state and plans
            opts=env.opts(role, additional_secret_outputs=["labels"]))
        found.append(hook.name)
    return found


def observability(role: RoleContext, env: Env, spec: PipelineSpec, stages: Sequence[StageResources]) -> None:
    targets = channels(role, env, spec)
    functions = [naming.function_name(role.pipeline, role.stack, s.stage.name) for s in stages]
    labels = {"pipeline": naming.label_value(role.pipeline), "stack": naming.label_value(role.stack)}

    def policy(suffix: str, display: str, doc: str, condition: gcp.monitoring.AlertPolicyConditionArgs | list[gcp.monitoring.AlertPolicyConditionArgs],
               *after: Any, strategy: gcp.monitoring.AlertPolicyAlertStrategyArgs | None = None) -> None:
        conditions = condition if isinstance(condition, list) else [condition]
        # Over 6 conditions: more policies, the first keeping the name it always had (no replacement on upgrade).
        for number, start in enumerate(range(0, len(conditions), MAX_CONDITIONS_PER_POLICY)):
            part = f" ({number + 1})" if len(conditions) > MAX_CONDITIONS_PER_POLICY else ""
            gcp.monitoring.AlertPolicy(
                role.name(suffix if number == 0 else f"{suffix}-{number + 1}"), display_name=f"{role.pipeline} ({role.stack}): {display}{part}",
                combiner="OR", conditions=conditions[start:start + MAX_CONDITIONS_PER_POLICY],
                notification_channels=targets, severity="ERROR", user_labels=labels, alert_strategy=strategy,
                documentation=gcp.monitoring.AlertPolicyDocumentationArgs(content=doc, mime_type="text/markdown"),
                opts=env.opts(role, *after))

    longest = filter_names(spec, role.stack)

    metric_name = naming.fit([role.pipeline, role.stack, "dead-letters"], 100)
    metric = gcp.logging.Metric(
        role.name("dead-letters"), name=metric_name, filter=dead_letter_log_filter(role.pipeline, functions),
        description=f"Records and inputs the runtime of {role.pipeline} ({role.stack}) dead-lettered",
        label_extractors={"stage": "EXTRACT(jsonPayload.stage)"},
        metric_descriptor=gcp.logging.MetricMetricDescriptorArgs(
            metric_kind="DELTA", value_type="INT64",
            labels=[gcp.logging.MetricMetricDescriptorLabelArgs(key="stage", value_type="STRING", description="the stage")]),
        opts=env.opts(role))
    policy("runtime-dead-letters", "runtime dead letters",
           "The runtime dead-lettered records or whole inputs (see the `stage` label). They are in the dead-letter bucket under "
           "`<stage>/`, each with its error and original bytes: fix the handler or the data, then replay them.",
           _threshold("dead-lettered records > 0", f'metric.type="logging.googleapis.com/user/{metric_name}" AND resource.type="{RUN_RESOURCE}"',
                      "ALIGN_DELTA", 0, group_by=["metric.label.stage"]), metric)
    policy("errors", "function errors", "A stage answered 5xx (its input is retried, then dead-lettered). See the service's logs.",
           [_threshold("5xx responses > 0", text, "ALIGN_DELTA", 0, group_by=["resource.label.service_name"])
            for text in _split_filters("errors", functions, longest["errors"])])
    holds = [s.dead_letter.extra["subscription"] for s in stages if "subscription" in s.dead_letter.extra]
    if holds:
        policy("dead-letter-topics", "dead-letter topics",
               "Events reached a stage's dead-letter topic: they never got through to the runtime (crash, timeout, 4xx). "
               "Inspect the `hold` subscription, fix, then republish them to the stage's events topic.",
               [_threshold("dead-letter backlog > 0", text, "ALIGN_MAX", 0, group_by=["resource.label.subscription_id"])
                for text in _split_filters("dead-letter-topics", holds, longest["dead-letter-topics"])])
        backlog = [*env.event_subscriptions.values(), *env.batch_subscriptions.values()]
        policy("backlog", "backlog", f"Events or stream messages wait more than {LAG_ALERT_S // 60} minutes: a stage is failing or cannot keep up.",
               [_threshold("oldest unacked message age", text, "ALIGN_MAX", LAG_ALERT_S, group_by=["resource.label.subscription_id"], duration="300s")
                for text in _split_filters("backlog", backlog, longest["backlog"])])
    jobs = list(env.scheduler_jobs.values())
    if jobs:
        names = pulumi.Output.all(*jobs).apply(lambda ids: " OR ".join(f'"{i}"' for i in ids))
        policy("schedule-failures", "schedule failures",
               "A scheduled run failed after its retries (Cloud Scheduler has no dead-letter destination): see the job's logs.",
               gcp.monitoring.AlertPolicyConditionArgs(
                   display_name="scheduler job error logs",
                   condition_matched_log=gcp.monitoring.AlertPolicyConditionConditionMatchedLogArgs(
                       filter=pulumi.Output.concat('resource.type="cloud_scheduler_job" AND resource.labels.job_id=(', names, ') AND severity>=ERROR'))),
               strategy=gcp.monitoring.AlertPolicyAlertStrategyArgs(
                   notification_rate_limit=gcp.monitoring.AlertPolicyAlertStrategyNotificationRateLimitArgs(period=PERIOD)))
