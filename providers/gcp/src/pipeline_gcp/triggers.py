"""What invokes each stage, and where its failures go: push subscriptions, Eventarc, Cloud Scheduler, dead-letter topics."""

from __future__ import annotations

import base64
import json
import re

import pulumi_gcp as gcp

from pipeline.backend import Handle, RoleContext
from pipeline.errors import PipelineError
from pipeline.spec.model import PipelineSpec, StageSpec
from pipeline.spec.schedule import Cron, Rate, Schedule
from pipeline_gcp import iam, naming
from pipeline_gcp.platform import Env
from pipeline_gcp.stream import seconds

# Pub/Sub bounds (reference gcp.md §1.3, §4).
MIN_DELIVERY_ATTEMPTS, MAX_DELIVERY_ATTEMPTS = 5, 100
MAX_ACK_DEADLINE_S = 600
MIN_BACKOFF, MAX_BACKOFF = "10s", "600s"
# Cloud Scheduler bounds: retry_count 0-5; HTTP attempt deadline 15 s - 30 min.
SCHEDULER_MAX_RETRIES = 5
SCHEDULER_MAX_DEADLINE_S = 1800
EVENTARC_RETENTION_S = 86_400  # Eventarc's own subscription keeps a failing event 24 h, then drops it
_MONTHS = {m: str(i + 1) for i, m in enumerate(["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"])}
_DAYS = {d: str(i) for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}
RATE_HINT = ("use a rate that divides an hour (1, 2, 3, 4, 5, 6, 10, 12, 15, 20 or 30 minutes), whole hours that divide a day "
             "(1, 2, 3, 4, 6, 8, 12 hours), rate(1 day), or write five cron fields")


def delivery_attempts(retries: int) -> int:
    """Pub/Sub counts deliveries, not retries (1 + retries), and accepts 5-100."""
    return max(MIN_DELIVERY_ATTEMPTS, min(MAX_DELIVERY_ATTEMPTS, retries + 1))


def ack_deadline(stage: StageSpec) -> int:
    """For push, the ack deadline is the request timeout: longer than the function may run, or Pub/Sub redelivers mid-run."""
    timeout: int = stage.timeout_s
    return max(10, min(MAX_ACK_DEADLINE_S, timeout + 30))


def dead_letter(role: RoleContext, env: Env, spec: PipelineSpec, stage: StageSpec) -> Handle[gcp.pubsub.Topic]:
    """A topic plus a subscription that holds its messages: messages published to a topic with no subscription are lost."""
    topic = gcp.pubsub.Topic(role.name(), opts=env.opts(role))
    hold = gcp.pubsub.Subscription(
        role.name("hold"),
        topic=topic.id,
        message_retention_duration=seconds(spec.storage.dead_letter_days * 86_400),
        ack_deadline_seconds=MAX_ACK_DEADLINE_S,
        expiration_policy={"ttl": ""},  # an unread dead-letter subscription must not expire after 31 idle days
        opts=env.opts(role),
    )
    handle: Handle[gcp.pubsub.Topic] = Handle(topic, topic.name, {"id": topic.id, "subscription": hold.name, "hold": hold})
    env.dead_letters[stage.name] = handle
    return handle


def _shim_dead_letters(role: RoleContext, env: Env, identity: Handle[gcp.serviceaccount.Account], dlq: Handle[gcp.pubsub.Topic]) -> None:
    """The stage may publish what it gives up on (PIPELINE_DEAD_LETTER_TOPIC) to its own dead-letter topic only."""
    gcp.pubsub.TopicIAMMember(role.name("dead-letter-publisher"), topic=dlq.extra["id"], role="roles/pubsub.publisher",
                              member=identity.extra["member"], opts=env.opts(role))


def stream_trigger(role: RoleContext, env: Env, spec: PipelineSpec, stage: StageSpec, source: Handle[gcp.pubsub.Topic],
                   function: Handle[gcp.cloudfunctionsv2.Function], identity: Handle[gcp.serviceaccount.Account],
                   dlq: Handle[gcp.pubsub.Topic]) -> None:
    """Our own push subscription to the function's URL, not an Eventarc Pub/Sub trigger.

    An Eventarc trigger (the function's `event_trigger`) creates and owns its subscription, which cannot take a
    dead-letter policy: a message that keeps failing is retried for 24 h and then silently dropped. Our own
    subscription gets a dead-letter topic after `retries`+1 deliveries, exponential backoff, an ack deadline
    longer than the function's timeout, and an OIDC identity that may invoke this one function only.
    functions-framework turns the raw push body into the same `messagePublished` CloudEvent Eventarc would send.
    """
    if not identity.extra["stream_grants"]:
        raise PipelineError(f"stage {stage.name!r} has a stream trigger but the core granted it no READ_STREAM access")
    pusher = iam.service_account(role, env, "push-sa", naming.service_account_id(role.pipeline, role.stack, stage.name, "push"),
                                 f"{role.pipeline} {stage.name} push ({role.stack})",
                                 f"Pub/Sub push identity for stage {stage.name} of {role.pipeline} ({role.stack}); may invoke only that function")
    invoke = iam.invoker(role, env, "push-invoker", function, pusher.extra["member"])
    agent = iam.member(env.pubsub_agent)
    # Pub/Sub mints the push OIDC token as `pusher`: token creator on that one account (automatic for Pub/Sub agents
    # created after 2021-04-08 through a project-level grant; explicit and narrower here, for older projects too).
    token = gcp.serviceaccount.IAMMember(role.name("push-token-creator"), service_account_id=pusher.resource.name,
                                         role="roles/iam.serviceAccountTokenCreator", member=agent, opts=env.opts(role))
    # Dead-lettering runs as the Pub/Sub service agent: publish to the dead-letter topic, ack on the source subscription
    # (without both, delivery attempts are not even counted: reliability.md §2.3).
    forward = gcp.pubsub.TopicIAMMember(role.name("agent-dead-letter-publisher"), topic=dlq.extra["id"], role="roles/pubsub.publisher",
                                        member=agent, opts=env.opts(role))
    assert stage.trigger.stream is not None
    subscription = gcp.pubsub.Subscription(
        role.name(),
        topic=source.extra["id"],
        ack_deadline_seconds=ack_deadline(stage),
        message_retention_duration=seconds(spec.stream.retention_hours * 3600),
        expiration_policy={"ttl": ""},
        push_config={
            "push_endpoint": function.extra["uri"],
            "oidc_token": {"service_account_email": pusher.extra["email"], "audience": function.extra["uri"]},
        },
        dead_letter_policy={"dead_letter_topic": dlq.extra["id"], "max_delivery_attempts": delivery_attempts(stage.retries)},
        retry_policy={"minimum_backoff": MIN_BACKOFF, "maximum_backoff": MAX_BACKOFF},
        opts=env.opts(role, invoke, token, forward),
    )
    gcp.pubsub.SubscriptionIAMMember(role.name("agent-subscriber"), subscription=subscription.name, role="roles/pubsub.subscriber",
                                     member=agent, opts=env.opts(role))
    _shim_dead_letters(role, env, identity, dlq)
    env.push_subscriptions[stage.name] = subscription.name


def object_trigger(role: RoleContext, env: Env, stage: StageSpec, source: Handle[gcp.storage.Bucket], prefix: str,
                   function: Handle[gcp.cloudfunctionsv2.Function], identity: Handle[gcp.serviceaccount.Account],
                   dlq: Handle[gcp.pubsub.Topic]) -> None:
    """The Eventarc storage trigger itself is the function's `event_trigger` (see functions.function); here: who may deliver.

    Dead letters: Eventarc's managed subscription retries (RETRY_POLICY_RETRY, backoff 10-600 s) for 24 h and
    accepts no dead-letter policy. The runtime shim therefore acknowledges an event older than
    PIPELINE_MAX_EVENT_AGE_S (= max_event_age_s, below those 24 h) after publishing it to this stage's dead-letter
    topic (PIPELINE_DEAD_LETTER_TOPIC); the dead-letter alert watches that topic's subscription.
    """
    assert stage.trigger.objects is not None
    expected = env.buckets.get(stage.trigger.objects.from_stage)
    if expected is not source:
        raise PipelineError(f"stage {stage.name!r}: the object trigger's bucket is not the output bucket of {stage.trigger.objects.from_stage!r}")
    iam.invoker(role, env, "events-invoker", function, identity.extra["trigger_sa"].extra["member"])
    _shim_dead_letters(role, env, identity, dlq)


def gcp_cron(schedule: Schedule) -> str:
    """Translate the neutral schedule to Cloud Scheduler's unix-cron; ValueError if it cannot be expressed."""
    if isinstance(schedule, Rate):
        minutes = schedule.minutes
        if minutes < 60 and 60 % minutes == 0:
            return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"
        if minutes % 60 == 0 and minutes < 1440 and 24 % (minutes // 60) == 0:
            hours = minutes // 60
            return "0 * * * *" if hours == 1 else f"0 */{hours} * * *"
        if minutes == 1440:
            return "0 0 * * *"
        text = f"rate({schedule.value} {schedule.unit})"
        if minutes > 1440:
            raise ValueError(f"{text} cannot be written as unix-cron: a day-of-month step restarts every month, so the gap is not constant")
        raise ValueError(f"{text} cannot be written as unix-cron: a step restarts every {'hour' if minutes < 60 else 'day'}, "
                         f"so the runs would not be {schedule.value} {schedule.unit} apart")
    assert isinstance(schedule, Cron)
    return " ".join([
        schedule.minute, schedule.hour, schedule.day_of_month,
        _names(schedule.month, _MONTHS),
        _sunday(_names(schedule.day_of_week, _DAYS)),
    ])


def _names(expr: str, names: dict[str, str]) -> str:
    return re.sub(r"[A-Za-z]{3}", lambda m: names[m.group(0).upper()], expr)


def _sunday(expr: str) -> str:
    """unix-cron day-of-week is 0-6: a lone 7 is 0, a range ending in 7 ends at 6 plus 0."""
    parts = []
    for part in expr.split(","):
        if part == "7":
            part = "0"
        elif re.fullmatch(r"\d-7", part):
            part = f"{part[0]}-6,0"
        parts.append(part)
    return ",".join(parts)


def schedule_problems(schedule: Schedule) -> list[tuple[str, str]]:
    try:
        gcp_cron(schedule)
    except ValueError as exc:
        return [(str(exc), RATE_HINT)]
    return []


def schedule_trigger(role: RoleContext, env: Env, stage: StageSpec, schedule: Schedule, function: Handle[gcp.cloudfunctionsv2.Function],
                     identity: Handle[gcp.serviceaccount.Account], dlq: Handle[gcp.pubsub.Topic]) -> None:
    """Cloud Scheduler calls the function over HTTPS with an OIDC token of its own account, allowed to invoke only it.

    Scheduler has no dead-letter destination: a run that still fails after its retries is recorded in the job's
    logs (alerted on in observability) and the shim may publish what it gives up on to the dead-letter topic.
    """
    caller = iam.service_account(role, env, "scheduler-sa", naming.service_account_id(role.pipeline, role.stack, stage.name, "cron"),
                                 f"{role.pipeline} {stage.name} scheduler ({role.stack})",
                                 f"Cloud Scheduler identity for stage {stage.name} of {role.pipeline} ({role.stack}); may invoke only that function")
    invoke = iam.invoker(role, env, "scheduler-invoker", function, caller.extra["member"])
    body = json.dumps({"pipeline": role.pipeline, "stage": stage.name, "schedule": stage.trigger.schedule}, sort_keys=True)
    job = gcp.cloudscheduler.Job(
        role.name(),
        region=env.region,
        description=f"Runs stage {stage.name} of {role.pipeline} ({role.stack}) on {stage.trigger.schedule}",
        schedule=gcp_cron(schedule),
        time_zone="UTC",
        attempt_deadline=seconds(min(SCHEDULER_MAX_DEADLINE_S, stage.timeout_s + 30)),
        retry_config={
            "retry_count": min(stage.retries, SCHEDULER_MAX_RETRIES),
            "max_retry_duration": seconds(stage.max_event_age_s),
            "min_backoff_duration": MIN_BACKOFF,
            "max_backoff_duration": MAX_BACKOFF,
            "max_doublings": 5,
        },
        http_target={
            "uri": function.extra["uri"],
            "http_method": "POST",
            "body": base64.b64encode(body.encode()).decode(),
            "headers": {"Content-Type": "application/json"},
            "oidc_token": {"service_account_email": caller.extra["email"], "audience": function.extra["uri"]},
        },
        opts=env.opts(role, invoke),
    )
    _shim_dead_letters(role, env, identity, dlq)
    env.scheduler_jobs[stage.name] = job.name


def notes(spec: PipelineSpec) -> list[str]:
    """What GCP expresses differently from the spec's words; shown in the plan (via stream sizing), never dropped silently."""
    out: list[str] = []
    for stage in spec.stages:
        name = stage.name
        if stage.trigger.stream:
            t = stage.trigger.stream
            if t.batch_size > 1:
                out.append(f"{name}: Pub/Sub push delivers one message per invocation, so batch_size {t.batch_size} acts as 1 "
                           f"(and max_batching_window_s {t.max_batching_window_s} as 0)")
            attempts = delivery_attempts(stage.retries)
            if attempts != stage.retries + 1:
                out.append(f"{name}: retries {stage.retries} -> {attempts} delivery attempts before dead-lettering "
                           f"(Pub/Sub allows {MIN_DELIVERY_ATTEMPTS}-{MAX_DELIVERY_ATTEMPTS})")
            if t.starting_position == "earliest":
                out.append(f"{name}: starting_position earliest: a new subscription receives messages published after it is "
                           f"created (all of them on a first deploy); replay older ones with a subscription seek (topic keeps "
                           f"{spec.stream.retention_hours} h)")
            out.append(f"{name}: max_event_age_s {stage.max_event_age_s}: Pub/Sub dead-letters by attempts, not age; the shim "
                       f"dead-letters older messages itself")
        elif stage.trigger.objects:
            out.append(f"{name}: Eventarc retries for at most 24 h and takes no dead-letter topic; the shim dead-letters events "
                       f"older than {min(stage.max_event_age_s, EVENTARC_RETENTION_S)} s (retries {stage.retries} are bounded by age, not count)")
        elif stage.retries > SCHEDULER_MAX_RETRIES:
            out.append(f"{name}: retries {stage.retries} -> {SCHEDULER_MAX_RETRIES} (Cloud Scheduler's maximum)")
    return out
