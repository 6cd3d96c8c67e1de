"""What invokes each stage, and where its failures go.

* **Object events** (a stage's outputs, the uploads bucket, a stream stage's batch files) travel as Cloud
  Storage Pub/Sub notifications to a topic shared by the stages that read the same bucket and prefix (one
  notification: a bucket takes at most 10 per event type), and from there through **each stage's own push
  subscription** to its function: a dead-letter topic after bounded delivery attempts, exponential
  backoff, an ack deadline longer than the function may run, and an OIDC identity allowed to invoke that
  one function. (Eventarc's storage trigger owns its subscription, which takes no dead-letter topic: a
  failing event would be retried for 24 h and dropped.)
* **Stream stages**: a Cloud Storage subscription writes the stream as Avro batch files (batching.py: sized by
  `batch_size`, the window at the workload's rate and the stage's memory), into the raw archive or a batch bucket;
  each finished file is an object event as above, so the stage gets the whole batch in one invocation.
* **Schedules**: Cloud Scheduler calls the function with an OIDC token of its own account.
* **HTTP stages**: authenticated callers only (the pipeline's caller account and `http_invokers`).
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pulumi
import pulumi_gcp as gcp

from pipeline import wiring
from pipeline.errors import PipelineError
from pipeline.roles import Handle, RoleContext
from pipeline.spec.model import PipelineSpec, StageSpec
from pipeline.spec.schedule import Cron, Rate, Schedule
from pipeline_gcp import batching, iam, naming, regions, storage, stream
from pipeline_gcp.env import Env

# Pub/Sub bounds (reference gcp.md §1.3, §4).
MIN_DELIVERY_ATTEMPTS, MAX_DELIVERY_ATTEMPTS = 5, 100
MAX_ACK_DEADLINE_S = 600
MIN_RETENTION_S, MAX_RETENTION_S = 600, 31 * 86_400
MIN_BACKOFF, MAX_BACKOFF = "10s", "600s"
# Cloud Scheduler bounds: retry_count 0-5; HTTP attempt deadline 15 s - 30 min.
SCHEDULER_MAX_RETRIES = 5
SCHEDULER_MAX_DEADLINE_S = 1800
_MONTHS = {m: str(i + 1) for i, m in enumerate(["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"])}
_DAYS = {d: str(i) for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}
RATE_HINT = ("use a rate that divides an hour (1, 2, 3, 4, 5, 6, 10, 12, 15, 20 or 30 minutes), whole hours that divide a day "
             "(1, 2, 3, 4, 6, 8, 12 hours), rate(1 day), or write five cron fields")
# IAM principal identifiers a caller list may name (https://cloud.google.com/iam/docs/principal-identifiers).
INVOKER = re.compile(r"^(user|group|serviceAccount|domain):[^\s:]+$|^principal(Set)?://[^\s]+$")
PUBLIC = ("allUsers", "allAuthenticatedUsers")


def seconds(value: int) -> str:
    return f"{value}s"


def delivery_attempts(retries: int) -> int:
    """Pub/Sub counts deliveries, not retries (1 + retries), and accepts 5-100. The runtime gives up itself after
    `retries + 1` (dead-lettering record by record); Pub/Sub's dead-letter topic catches what never reached it."""
    return max(MIN_DELIVERY_ATTEMPTS, min(MAX_DELIVERY_ATTEMPTS, retries + 1))


def ack_deadline(stage: StageSpec) -> int:
    """For push, the ack deadline is the request timeout: longer than the function may run, or Pub/Sub redelivers mid-run."""
    timeout: int = stage.timeout_s
    return max(10, min(MAX_ACK_DEADLINE_S, timeout + 30))


RETENTION_MARGIN_S = 3600


def event_retention_s(stage: StageSpec) -> int:
    """How long the push subscription keeps an unacknowledged event: past its retries by age (max_event_age_s), and
    past the last delivery attempt even when the function never answers (a crash or a timeout: the runtime's age
    check never runs), so Pub/Sub dead-letters it rather than dropping it at retention. The last attempt starts at
    most `attempts x (ack deadline + maximum backoff)` after publishing; Pub/Sub keeps unacknowledged messages
    10 minutes to 31 days (pulumi-gcp SubscriptionArgs.message_retention_duration)."""
    attempts = delivery_attempts(stage.retries) * (ack_deadline(stage) + int(MAX_BACKOFF.rstrip("s")))
    return max(MIN_RETENTION_S, min(MAX_RETENTION_S, max(stage.max_event_age_s, attempts) + RETENTION_MARGIN_S))


def topic_retention_s(stage: StageSpec) -> int:
    """The events topic keeps its messages for replay by seek (billed as topic storage): the retries by age."""
    return max(MIN_RETENTION_S, min(MAX_RETENTION_S, stage.max_event_age_s + RETENTION_MARGIN_S))


def pushed(stage: StageSpec) -> bool:
    """Stages fed by our push subscriptions (and so with a dead-letter topic)."""
    return bool(stage.trigger.stream or stage.trigger.objects)


def dead_letter(role: RoleContext, env: Env, spec: PipelineSpec, stage: StageSpec) -> Handle[Any]:
    """Push-fed stages: a topic plus a subscription that holds its messages (a topic with no subscription loses them).

    Schedules and HTTP stages have no queue to dead-letter from: what they give up on is the runtime's dead-letter
    bucket prefix (records), the scheduler job's logs and the caller's 5xx (all alerted in observability)."""
    if not pushed(stage):
        dlq_bucket = env.buckets["dead-letter"]
        handle: Handle[Any] = Handle(dlq_bucket.resource, pulumi.Output.concat("gs://", dlq_bucket.name, "/", stage.name, "/"), {})
        env.dead_letters[stage.name] = handle
        return handle
    topic = gcp.pubsub.Topic(role.name(), name=env.pubsub_name(role.name()), message_retention_duration=seconds(spec.storage.dead_letter_days * 86_400), opts=env.opts(role))
    hold = gcp.pubsub.Subscription(
        role.name("hold"),
        name=env.pubsub_name(role.name("hold")),
        topic=topic.id,
        message_retention_duration=seconds(spec.storage.dead_letter_days * 86_400),
        ack_deadline_seconds=MAX_ACK_DEADLINE_S,
        expiration_policy=gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl=""),  # an unread dead-letter subscription must not expire
        opts=env.opts(role),
    )
    handle = Handle(topic, topic.name, {"id": topic.id, "subscription": hold.name, "hold": hold})
    env.dead_letters[stage.name] = handle
    return handle


def event_source(spec: PipelineSpec, stage: StageSpec) -> tuple[str, str, tuple[str, ...]]:
    """(bucket key, prefix, every stage that reads it, in spec order) for a push-fed stage: its object events.

    Cloud Storage allows at most 10 notification configurations per bucket for one event type (100 in all;
    https://cloud.google.com/storage/docs/pubsub-notifications), so the readers of one (bucket, prefix) share one
    notification and its topic, each with its own push subscription (and dead-letter topic) on it."""
    if stage.trigger.stream:
        batch = batching.sources(spec)[stage.name]
        return batch.key, batch.prefix, batch.stages
    assert stage.trigger.objects is not None
    source = stage.trigger.objects.from_stage
    readers = tuple(s.name for s in spec.stages if s.trigger.objects and s.trigger.objects.from_stage == source)
    return source, wiring.stage_prefix(source), readers


def _events_topic(role: RoleContext, env: Env, spec: PipelineSpec, stage: StageSpec, bucket: pulumi.Input[str], prefix: str) -> gcp.pubsub.Topic:
    """The one notification topic of this stage's (bucket, prefix), made by its first reader; later readers subscribe to it."""
    key, _, readers = event_source(spec, stage)
    found: gcp.pubsub.Topic | None = env.event_topics.get((key, prefix))
    if found is not None:
        return found
    assert env.gcs_agent is not None, "platform() looks up the Cloud Storage agent when a stage is fed by object events"
    # Kept for the reader whose events may be retried the longest (replay by seek).
    retention = max(topic_retention_s(spec.stage(name)) for name in readers)
    topic = gcp.pubsub.Topic(role.name("events"), name=env.pubsub_name(role.name("events")), message_retention_duration=seconds(retention), opts=env.opts(role))
    # The Cloud Storage service agent publishes the notifications: on this topic only.
    gcs_publisher = iam.topic_publisher(role, env, "gcs-agent-publisher", topic.id, iam.member(env.gcs_agent))
    gcp.storage.Notification(
        role.name("notification"), bucket=bucket, topic=topic.id, payload_format="JSON_API_V1", event_types=["OBJECT_FINALIZE"],
        object_name_prefix=prefix, opts=env.opts(role, gcs_publisher),
    )
    env.event_topics[(key, prefix)] = topic
    return topic


def deliver_objects(role: RoleContext, env: Env, spec: PipelineSpec, stage: StageSpec, bucket: pulumi.Input[str], prefix: str,
                    function: Handle[Any], dlq: Handle[Any]) -> gcp.pubsub.Subscription:
    """Objects finalized in `bucket` under `prefix` -> the shared notification topic -> our push subscription -> `function`."""
    topic = _events_topic(role, env, spec, stage, bucket, prefix)
    pusher = iam.service_account(role, env, "push-sa", naming.service_account_id(role.pipeline, role.stack, stage.name, "push"),
                                 f"{role.pipeline} {stage.name} push ({role.stack})",
                                 f"Pub/Sub push identity for stage {stage.name} of {role.pipeline} ({role.stack}); may invoke only that function")
    invoke = iam.invoker(role, env, "push-invoker", function, pusher.extra["member"])
    agent = iam.member(env.pubsub_agent)
    # Pub/Sub mints the push OIDC token as `pusher`: token creator on that one account (automatic for Pub/Sub agents
    # created after 2021-04-08 through a project-level grant; explicit and narrower here, for older projects too).
    token = gcp.serviceaccount.IAMMember(role.name("push-token-creator"), service_account_id=pusher.resource.name,
                                         role="roles/iam.serviceAccountTokenCreator", member=agent, opts=env.opts(role))
    # Dead-lettering runs as the Pub/Sub service agent: publish to the dead-letter topic, ack on this subscription
    # (without both, delivery attempts are not even counted: reliability.md §2.3).
    forward = iam.topic_publisher(role, env, "agent-dead-letter-publisher", dlq.extra["id"], agent)
    subscription = gcp.pubsub.Subscription(
        role.name(),
        name=env.pubsub_name(role.name()),
        topic=topic.id,
        ack_deadline_seconds=ack_deadline(stage),
        message_retention_duration=seconds(event_retention_s(stage)),
        expiration_policy=gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl=""),  # never expire, even through a quiet month
        push_config=gcp.pubsub.SubscriptionPushConfigArgs(
            push_endpoint=function.extra["uri"],
            oidc_token=gcp.pubsub.SubscriptionPushConfigOidcTokenArgs(service_account_email=pusher.extra["email"], audience=function.extra["uri"]),
        ),
        dead_letter_policy=gcp.pubsub.SubscriptionDeadLetterPolicyArgs(dead_letter_topic=dlq.extra["id"],
                                                                       max_delivery_attempts=delivery_attempts(stage.retries)),
        retry_policy=gcp.pubsub.SubscriptionRetryPolicyArgs(minimum_backoff=MIN_BACKOFF, maximum_backoff=MAX_BACKOFF),
        opts=env.opts(role, invoke, token, forward),
    )
    gcp.pubsub.SubscriptionIAMMember(role.name("agent-subscriber"), subscription=subscription.name, role="roles/pubsub.subscriber",
                                     member=agent, opts=env.opts(role))
    env.event_subscriptions[stage.name] = subscription.name
    return subscription


def stream_trigger(role: RoleContext, env: Env, spec: PipelineSpec, stage: StageSpec, source: Handle[gcp.pubsub.Topic],
                   function: Handle[Any], identity: Handle[gcp.serviceaccount.Account], dlq: Handle[Any]) -> None:
    """Batches: the stage runs once per Avro batch file (batching.py). Its files are the raw archive's (the archive
    subscription writes them), or those of a Cloud Storage subscription the first stage of its group creates here,
    into a batch bucket of its own; a later stage of the same group reads that bucket."""
    if not identity.extra["stream_grants"]:
        raise PipelineError(f"stage {stage.name!r} has a stream trigger but the core granted it no READ_STREAM access")
    assert stage.trigger.stream is not None and spec.stream is not None
    batch = batching.sources(spec)[stage.name]
    if batch.archive:
        files = env.buckets[batching.ARCHIVE_KEY]
    elif batch.owner == stage.name:
        files = _batch_files(role, env, spec, source, batch)
    else:
        files = env.batch_buckets[batch.key]
    prefix = batch.prefix
    # READ_STREAM, realised: the stage reads the batch files under their prefix.
    identity.extra["bindings"].append(iam.bucket_member(role, env, "read-batches", files.name, iam.OBJECT_READER, identity.extra["member"],
                                                        iam.prefix_condition(files.name, prefix, f"read {prefix} batches")))
    deliver_objects(role, env, spec, stage, files.name, prefix, function, dlq)


def _batch_files(role: RoleContext, env: Env, spec: PipelineSpec, topic: Handle[gcp.pubsub.Topic], batch: batching.Source) -> Handle[Any]:
    """A batch bucket and the Cloud Storage subscription that writes the group's files into it."""
    assert spec.stream is not None
    bucket = storage.batch_bucket(role, env, batch.key, batching.files_days(spec, batch.stages))
    agent = iam.member(env.pubsub_agent)
    # The Pub/Sub agent writes the files: create objects and read the bucket's metadata, on this bucket only
    # (https://cloud.google.com/pubsub/docs/create-cloudstorage-subscription#assign_roles).
    writer = iam.bucket_member(role, env, "agent-writer", bucket.name, iam.OBJECT_CREATOR, agent)
    reader = iam.bucket_member(role, env, "agent-bucket-reader", bucket.name, "roles/storage.legacyBucketReader", agent)
    subscription = gcp.pubsub.Subscription(
        role.name("batches"),
        name=env.pubsub_name(role.name("batches")),
        topic=topic.extra["id"],
        ack_deadline_seconds=stream.ack_deadline_s(batch.files),
        message_retention_duration=seconds(spec.stream.retention_hours * 3600),
        expiration_policy=gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl=""),
        cloud_storage_config=stream.storage_config(bucket.name, batch.prefix, batch.files),
        opts=env.opts(role, writer, reader),
    )
    env.batch_subscriptions[batch.key] = subscription.name
    env.batch_buckets[batch.key] = bucket
    return bucket


def object_trigger(role: RoleContext, env: Env, spec: PipelineSpec, stage: StageSpec, source: Handle[gcp.storage.Bucket], prefix: str,
                   function: Handle[Any], identity: Handle[gcp.serviceaccount.Account], dlq: Handle[Any]) -> None:
    """New objects of the source stage (or uploads) under its prefix, one invocation each."""
    assert stage.trigger.objects is not None
    expected = env.buckets.get(stage.trigger.objects.from_stage)
    if expected is not source:
        raise PipelineError(f"stage {stage.name!r}: the object trigger's bucket is not the bucket of {stage.trigger.objects.from_stage!r}")
    deliver_objects(role, env, spec, stage, source.name, prefix, function, dlq)


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


def schedule_trigger(role: RoleContext, env: Env, stage: StageSpec, schedule: Schedule, function: Handle[Any],
                     identity: Handle[gcp.serviceaccount.Account], dlq: Handle[Any]) -> None:
    """Cloud Scheduler calls the function over HTTPS with an OIDC token of its own account, allowed to invoke only it.

    Scheduler has no dead-letter destination: a run that still fails after its retries is logged by the job
    (alerted in observability); rows the handler could not take are in the dead-letter bucket (alerted too)."""
    caller = iam.service_account(role, env, "scheduler-sa", naming.service_account_id(role.pipeline, role.stack, stage.name, "cron"),
                                 f"{role.pipeline} {stage.name} scheduler ({role.stack})",
                                 f"Cloud Scheduler identity for stage {stage.name} of {role.pipeline} ({role.stack}); may invoke only that function")
    invoke = iam.invoker(role, env, "scheduler-invoker", function, caller.extra["member"])
    body = json.dumps({"pipeline": role.pipeline, "stage": stage.name, "schedule": stage.trigger.schedule}, sort_keys=True)
    zone = stage.trigger.timezone or "UTC"
    job = gcp.cloudscheduler.Job(
        role.name(),
        region=regions.scheduler_region(env.region),
        description=f"Runs stage {stage.name} of {role.pipeline} ({role.stack}) on {stage.trigger.schedule} ({zone})",
        schedule=gcp_cron(schedule),
        # The cron fields are read in this IANA zone (tz database names, https://cloud.google.com/scheduler/docs/configuring/cron-job-schedules);
        # Cloud Scheduler follows its daylight-saving changes. Without `timezone` in the spec: UTC, as on every cloud.
        time_zone=zone,
        attempt_deadline=seconds(min(SCHEDULER_MAX_DEADLINE_S, stage.timeout_s + 30)),
        retry_config=gcp.cloudscheduler.JobRetryConfigArgs(
            retry_count=min(stage.retries, SCHEDULER_MAX_RETRIES),
            max_retry_duration=seconds(stage.max_event_age_s),
            min_backoff_duration=MIN_BACKOFF,
            max_backoff_duration=MAX_BACKOFF,
            max_doublings=5,
        ),
        http_target=gcp.cloudscheduler.JobHttpTargetArgs(
            uri=function.extra["uri"],
            http_method="POST",
            body=base64.b64encode(body.encode()).decode(),
            headers={"Content-Type": "application/json"},
            oidc_token=gcp.cloudscheduler.JobHttpTargetOidcTokenArgs(service_account_email=caller.extra["email"], audience=function.extra["uri"]),
        ),
        opts=env.opts(role, invoke),
    )
    env.scheduler_jobs[stage.name] = job.name


def invoker_problems(members: list[str]) -> list[tuple[int, str, str]]:
    """(index, message, hint) for each `http_invokers` entry that is not an IAM principal, or is public."""
    problems = []
    for index, who in enumerate(members):
        if who in PUBLIC:
            problems.append((index, f"{who!r} would make the HTTP stage public; HTTP stages only serve authenticated callers",
                             "name the users, groups or service accounts that may call it, e.g. 'serviceAccount:app@my-project.iam.gserviceaccount.com'"))
        elif not INVOKER.match(who):
            problems.append((index, f"{who!r} is not an IAM principal identifier",
                             "write user:EMAIL, group:EMAIL, serviceAccount:EMAIL, domain:DOMAIN or a principal:// / principalSet:// identifier"))
    return problems


def http_trigger(role: RoleContext, env: Env, spec: PipelineSpec, stage: StageSpec, function: Handle[Any],
                 identity: Handle[gcp.serviceaccount.Account]) -> Handle[Any]:
    """The function's HTTPS URL, callable only with a Google ID token of the pipeline's caller account or an `http_invokers` member.

    No `allUsers` binding exists, so Cloud Run rejects unauthenticated requests (403) before any code runs. Ingress is
    ALLOW_ALL (functions.function) because callers may be anywhere; the IAM check, not the network, keeps others out."""
    caller = iam.service_account(role, env, "caller-sa", naming.service_account_id(role.pipeline, role.stack, stage.name, "call"),
                                 f"{role.pipeline} {stage.name} caller ({role.stack})",
                                 f"May call HTTP stage {stage.name} of {role.pipeline} ({role.stack}); impersonate it to get an ID token")
    iam.invoker(role, env, "caller-invoker", function, caller.extra["member"])
    for index, who in enumerate(spec.clouds.gcp.http_invokers):
        iam.invoker(role, env, f"invoker-{index}", function, who)
    return Handle(function.resource, function.extra["uri"], {"caller": caller.extra["email"]})


def notes(spec: PipelineSpec) -> list[str]:
    """What GCP expresses differently from the spec's words; shown in the plan (via stream sizing), never dropped silently."""
    out: list[str] = []
    for stage in spec.stages:
        name = stage.name
        if pushed(stage):
            attempts = delivery_attempts(stage.retries)
            out.append(f"{name}: failing events are retried with backoff (10-600 s); after {stage.retries + 1} deliveries or "
                       f"{stage.max_event_age_s} s the runtime dead-letters them record by record; Pub/Sub's dead-letter topic takes what "
                       f"never reached the runtime after {attempts} deliveries (Pub/Sub allows {MIN_DELIVERY_ATTEMPTS}-{MAX_DELIVERY_ATTEMPTS})")
        if stage.trigger.stream and batching.sources(spec)[name].archive and spec.storage.raw_days < spec.storage.dead_letter_days:
            out.append(f"{name}: reads the raw archive's files, kept storage.raw_days {spec.storage.raw_days} days, but its dead letters are "
                       f"kept {spec.storage.dead_letter_days}: a dead-lettered batch older than {spec.storage.raw_days} days points at a "
                       f"deleted file and cannot be replayed; set storage.raw_days to at least {spec.storage.dead_letter_days} to replay them all")
        if stage.trigger.stream and stage.trigger.stream.starting_position == "earliest":
            assert spec.stream is not None
            out.append(f"{name}: starting_position earliest: a new subscription receives messages published after it is "
                       f"created; replay older ones with a subscription seek (the topic keeps {spec.stream.retention_hours} h)")
        elif stage.trigger.schedule and stage.retries > SCHEDULER_MAX_RETRIES:
            out.append(f"{name}: retries {stage.retries} -> {SCHEDULER_MAX_RETRIES} (Cloud Scheduler's maximum)")
    return out
