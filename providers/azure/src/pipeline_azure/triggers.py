"""What invokes each stage and where its failures go.

* Stream stages: the Event Hubs trigger in the app reads the stage's own consumer group (created
  here); batch size, batching window, start position and a *finite* retry policy are app settings
  (`AzureFunctionsJobHost__extensions__eventHubs__*` override host.json; `PIPELINE_*` feed the shim).
  The trigger checkpoints even when a batch fails, so the runtime writes records that still fail
  after the retries to the dead-letter container under `<stage>/` (the stage's identity may write
  exactly there).
* Object stages: BlobCreated events from the data account's Event Grid system topic (one per
  account, created with the first object stage), filtered to the source container and prefix,
  written to the stage's Storage queue with the topic's identity (see `object_queue` for why a queue
  and how the queue trigger retries and dead-letters); what Event Grid cannot write is dead-lettered
  into the dead-letter container with the same identity.
* Schedule stages: a timer trigger in the app; the NCRONTAB expression (six fields, with seconds, in UTC:
  `ncrontab`) is the `PIPELINE_SCHEDULE` app setting that the binding reads as `%PIPELINE_SCHEDULE%`.
* HTTP stages: an HTTP trigger behind App Service Authentication (Entra ID tokens of allowed principals) and a
  function key; see `http_trigger` and `http_auth`.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi_azure_native import eventgrid, eventhub, managedidentity, web

from pipeline.roles import Handle, RoleContext
from pipeline.spec.model import StageSpec
from pipeline_azure import iam
from pipeline_azure.platform import Platform

EVENT_GRID_MAX_ATTEMPTS = 30
EVENT_GRID_MAX_TTL_MIN = 1440


# ---- dead letters --------------------------------------------------------------------------
def dead_letter(platform: Platform, stage: StageSpec) -> Handle[Any]:
    """The stage's dead letters: the `<stage>/` prefix of the shared dead-letter container (which the
    core created with the dead-letter retention). No resource of its own."""
    shared = platform.buckets["dead-letter"]
    return Handle(shared.resource, shared.name, {**shared.extra, "prefix": f"{stage.name}/", "stage": stage.name})


# ---- triggers ------------------------------------------------------------------------------
def consumer_group_name(stage: StageSpec) -> str:
    return str(stage.name)  # 1-50 characters; one per stream stage, so stages never steal each other's partitions


def stream_trigger(role: RoleContext, platform: Platform, stage: StageSpec, source: Handle[Any], function: Handle[web.WebApp]) -> None:
    from pipeline_azure import release, stream

    hub = stream.hub(source)
    group = eventhub.ConsumerGroup(
        role.name("consumer-group"),
        consumer_group_name=consumer_group_name(stage),
        event_hub_name=hub.name,
        namespace_name=source.extra["namespace"].name,
        resource_group_name=platform.rg_name,
        user_metadata=f"stage {stage.name} of {role.pipeline} ({role.stack})",
        opts=role.opts(),
    )
    # The code goes live only once its consumer group exists.
    release.release(function, after=[group])


def system_topic(platform: Platform) -> eventgrid.SystemTopic:
    """The data account's Event Grid system topic (Azure allows one per source), created once."""
    if platform.system_topic is None:
        topic = eventgrid.SystemTopic(
            platform.role.name("blob-events"),
            system_topic_name=f"evgt-{platform.role.pipeline}-{platform.role.stack}",
            resource_group_name=platform.rg_name,
            location=platform.location,
            source=platform.data.id,
            topic_type="Microsoft.Storage.StorageAccounts",
            identity=eventgrid.IdentityInfoArgs(type=eventgrid.IdentityType.SYSTEM_ASSIGNED),  # delivers and dead-letters with its own identity: no keys
            tags=platform.tags,
            opts=platform.opts(),
        )
        dead = platform.buckets["dead-letter"]
        principal: pulumi.Output[str] = topic.identity.apply(lambda i: (i.principal_id or "") if i else "")
        platform.system_topic_grant = iam.assign(
            platform.role, platform, "blob-events-dead-letters", principal, iam.STORAGE_BLOB_DATA_CONTRIBUTOR, dead.extra["id"],
            "Event Grid dead-letters undeliverable blob events", opts=platform.opts(),
        )
        platform.system_topic = topic
    topic_: eventgrid.SystemTopic = platform.system_topic
    return topic_


def subject_prefix(container: str, prefix: str) -> str:
    return f"/blobServices/default/containers/{container}/blobs/{prefix}"


EVENT_GRID_QUEUE_ATTEMPTS = EVENT_GRID_MAX_ATTEMPTS  # delivery to a queue fails only transiently (throttling, a role
EVENT_GRID_QUEUE_TTL_MIN = EVENT_GRID_MAX_TTL_MIN    # assignment still propagating): Event Grid's maximum, then dead-letter


def object_trigger(role: RoleContext, platform: Platform, stage: StageSpec, source: Handle[Any], prefix: str,
                   function: Handle[web.WebApp]) -> None:
    """BlobCreated events of the source container (a stage's outputs or the uploads landing container),
    filtered to its prefix, written by Event Grid to the stage's queue with the system topic's identity,
    which may send to that queue only. The app's queue trigger reads them (see `object_queue`).

    The stage's own retries are counted on the queue message (maxDequeueCount), not by Event Grid: its retry
    policy only covers writing to the queue, and what it cannot write is dead-lettered with the same identity."""
    from pipeline_azure import release
    from pipeline_azure.object_queue import StageQueue

    if not source.extra["in_data_account"]:
        raise ValueError(f"stage {stage.name}: object triggers watch the data account only")
    queue: StageQueue = function.extra["queue"]
    topic = system_topic(platform)
    release.release(function, after=[])
    principal: pulumi.Output[str] = topic.identity.apply(lambda i: (i.principal_id or "") if i else "")
    sender = iam.assign(role, platform, "queue-sender", principal, iam.STORAGE_QUEUE_DATA_MESSAGE_SENDER, queue.queue_id,
                        f"Event Grid writes BlobCreated events for stage {stage.name} to its queue")
    eventgrid.SystemTopicEventSubscription(
        role.name(),
        event_subscription_name=f"{stage.name}-objects",
        system_topic_name=topic.name,
        resource_group_name=platform.rg_name,
        delivery_with_resource_identity=queue.destination(),
        filter=eventgrid.EventSubscriptionFilterArgs(
            included_event_types=["Microsoft.Storage.BlobCreated"],
            subject_begins_with=subject_prefix(source.extra["container"], prefix),
            is_subject_case_sensitive=True,
        ),
        event_delivery_schema=eventgrid.EventDeliverySchema.EVENT_GRID_SCHEMA,
        retry_policy=eventgrid.RetryPolicyArgs(max_delivery_attempts=EVENT_GRID_QUEUE_ATTEMPTS,
                                               event_time_to_live_in_minutes=EVENT_GRID_QUEUE_TTL_MIN),
        dead_letter_with_resource_identity=eventgrid.DeadLetterWithResourceIdentityArgs(
            identity=eventgrid.EventSubscriptionIdentityArgs(type=eventgrid.EventSubscriptionIdentityType.SYSTEM_ASSIGNED),
            dead_letter_destination=eventgrid.StorageBlobDeadLetterDestinationArgs(
                endpoint_type="StorageBlob", resource_id=platform.buckets["dead-letter"].extra["account_id"],
                blob_container_name=platform.buckets["dead-letter"].extra["container"]),
        ),
        # Event Grid validates the destination on creation: the queue and the topic's right to send to it come first.
        opts=role.opts(depends_on=[queue.queue, sender, platform.system_topic_grant]),
    )


# Listing a function's keys through Azure Resource Manager (POST .../functions/stage/listkeys) is what a caller
# needs for the function key; nothing else of the app (no host or master keys).
LIST_FUNCTION_KEYS = ("Microsoft.Web/sites/functions/listkeys/action", "Microsoft.Web/sites/functions/read")


def http_trigger(role: RoleContext, platform: Platform, stage: StageSpec, function: Handle[web.WebApp], identity: Handle[Any],
                 invokers: list[str]) -> Handle[Any]:
    """An HTTPS endpoint that takes a request only with an Entra ID token of an allowed principal *and* the
    function's key (see `http_auth`): the pipeline's caller identity and each `clouds.azure.http_invokers` entry
    are the allowed principals and hold a custom role that reads only this function's key. The code is released
    after authentication is configured, so the function never serves an unauthenticated request."""
    from pipeline_azure import http_auth, iam, principals, release

    caller = managedidentity.UserAssignedIdentity(
        role.name("caller"), resource_name_=f"id-{role.pipeline}-{role.stack}-{stage.name}-caller", resource_group_name=platform.rg_name,
        location=platform.location, tags=platform.tags, opts=role.opts(),
    )
    callers = [principals.parse(entry) for entry in invokers]  # check() refused groups: a token names no group
    auth = http_auth.easy_auth(role, platform, function, audience=identity.extra["client_id"], tenant_id=identity.extra["tenant_id"],
                               principals=[caller.principal_id, *(c.object_id for c in callers)])
    released = release.release(function, after=[auth])
    app_id = function.extra["id"]
    definition = iam.custom_role(role, platform, "invoke-role", f"{stage.name}-invoke",
                                 f"Read the function key of HTTP stage {stage.name} of {role.pipeline} ({role.stack}), to call it",
                                 actions=LIST_FUNCTION_KEYS)
    assignments = [iam.assign_definition(role, "caller-invoke", caller.principal_id, definition.id, app_id,
                                         f"call HTTP stage {stage.name}", principal_type="ServicePrincipal", opts=role.opts(depends_on=[released]))]
    for index, who in enumerate(callers):
        assignments.append(iam.assign_definition(role, f"invoker-{index}", who.object_id, definition.id, app_id,
                                                 f"clouds.azure.http_invokers: call HTTP stage {stage.name}", principal_type=who.principal_type,
                                                 opts=role.opts(depends_on=[released])))
    url = pulumi.Output.concat("https://", function.extra["app_name"], ".azurewebsites.net/api/", stage.name)
    platform.http_audiences[stage.name] = identity.extra["client_id"]
    return Handle(function.resource, url, {"caller": caller.client_id, "caller_id": caller.id, "assignments": assignments,
                                           "audience": identity.extra["client_id"], "auth": auth})


def schedule_trigger(function: Handle[web.WebApp]) -> None:
    """The timer lives in the app (PIPELINE_SCHEDULE); this role only releases the code."""
    from pipeline_azure import release

    release.release(function, after=[])
