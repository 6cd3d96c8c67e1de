"""Object stages pull their BlobCreated events from a Storage queue: Blob Storage -> Event Grid -> queue -> function.

Why a queue, not a push to the function. Event Grid waits 30 s for a pushed delivery's answer and then
queues a retry (https://learn.microsoft.com/azure/event-grid/delivery-and-retry), so a push-triggered
stage that runs longer is delivered twice, and the app must accept inbound traffic from the
`AzureEventGrid` service tag. The documented answer for "a long running process that takes too long to
respond" is a Storage queue handler (https://learn.microsoft.com/azure/event-grid/handler-storage-queues):
Event Grid's delivery ends when the message is written, and the Functions queue trigger keeps the message
invisible (renewing its visibility) for as long as the run takes. So an object stage may run up to the Flex
limit, nothing is delivered twice while it runs, retries and dead-lettering are counted on the message
(`DequeueCount`) where the runtime can see them, and the app needs no inbound traffic at all.

Why not the blob trigger with `source: EventGrid` (the other documented Flex option,
https://learn.microsoft.com/azure/azure-functions/functions-event-grid-blob-trigger): it is still an
Event Grid *webhook* into the app (`/runtime/webhooks/blobs?code=<blobs_extension key>`), so the app keeps a
public endpoint, the subscription carries a host key (a secret in the stack state) that exists only after
the code is deployed, and the function cannot see the attempt number, so it cannot dead-letter an object's
records on the last attempt; its poison messages go to a `webjobs-blobtrigger-poison` queue shared by the
host, and blob receipts add writes per object. The queue design has none of these.

The wiring, per object stage (all identity-based, no keys):

* two queues in the stage's own host-storage account (which no other stage can reach): `objects` and
  `objects-poison` (the name the queue trigger derives, `<queue>-poison`; created here so the host only
  has to add to it);
* Event Grid's subscription delivers to `objects` with the system topic's managed identity, which holds
  Storage Queue Data Message Sender on that queue only (see `triggers.object_trigger`); messages never
  expire (`-1`): an event is dead-lettered, never dropped;
* the stage's identity holds a custom role on `objects` with exactly what the queue trigger calls: Get
  Queue Metadata (queue length for target-based scaling), Get/Peek/Delete Messages, and Update Message,
  which the trigger uses to keep a running message invisible and to delay a failed one. The built-in
  pair the trigger docs list (Storage Queue Data Reader + Message Processor) lacks `messages/write`, the
  data action Update Message needs
  (https://learn.microsoft.com/rest/api/storageservices/authorize-with-azure-active-directory#permissions-for-calling-data-operations),
  and Storage Queue Data Contributor would add queue create/delete. On `objects-poison` it holds only
  Storage Queue Data Message Sender;
* host.json `extensions.queues` (see `host_settings`): one message per instance at a time, `maxDequeueCount`
  = retries + 1, a fixed `visibilityTimeout` between attempts, a 2 s `maxPollingInterval`, and
  `messageEncoding: none` (the runtime accepts the event as JSON or Base64 JSON: Event Grid's encoding of
  queue messages changed over time, see MicrosoftDocs/azure-docs#102923).

The runtime dead-letters the object (a pointer to it, with the error) on the last dequeue and completes the
message, like the stream path on the last retry; the poison queue only catches what never returned (a
crash or timeout on the last attempt), and an alert fires when the host moves a message there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi_azure_native import authorization, eventgrid, storage

from pipeline.roles import RoleContext
from pipeline.sizing import StageSizing
from pipeline.spec.model import StageSpec
from pipeline_azure import iam
from pipeline_azure.platform import Platform

QUEUE_NAME = "objects"
POISON_QUEUE_NAME = f"{QUEUE_NAME}-poison"  # QueueListenerFactory: the poison queue is "<queue>-poison"
CONNECTION = "ObjectQueue"  # the trigger's identity-based connection: ObjectQueue__queueServiceUri, __credential, __clientId
QUEUE_SETTING = "PIPELINE_OBJECT_QUEUE"  # the binding reads the queue name as %PIPELINE_OBJECT_QUEUE%
DEQUEUE_SETTING = "PIPELINE_MAX_DEQUEUE_COUNT"  # the runtime's "last attempt" = host.json maxDequeueCount
MESSAGE_TTL_S = -1  # Event Grid's queue message time to live: -1 = never expires
# batchSize + newBatchThreshold is what one instance runs at once and what target-based scaling divides the
# queue length by (QueueTargetScaler). One: the handlers are CPU-bound Python (as HTTP stages' perInstanceConcurrency).
BATCH_SIZE = 1
NEW_BATCH_THRESHOLD = 0
MAX_POLLING_INTERVAL_S = 2  # an idle instance looks again within 2 s (default 1 min; minimum 100 ms)
# "When a message is found, the runtime waits 100 milliseconds and then checks for another message"
# (functions-bindings-storage-queue-trigger#polling-algorithm; QueuePollingIntervals.Minimum): per message on a busy instance.
POLL_GAP_S = 0.1
RETRY_DELAY_MIN_S, RETRY_DELAY_MAX_S = 10, 300

# Data actions (and the one action) the queue trigger uses on its queue; see the module doc.
_QUEUE = "Microsoft.Storage/storageAccounts/queueServices/queues"
CONSUMER_ACTIONS = (f"{_QUEUE}/read",)
CONSUMER_DATA_ACTIONS = (f"{_QUEUE}/messages/read", f"{_QUEUE}/messages/process/action", f"{_QUEUE}/messages/write")


def max_dequeue_count(stage: StageSpec) -> int:
    """Attempts per object: the first and `retries` more (host.json maxDequeueCount, at least 1)."""
    return stage.retries + 1


def retry_delay_s(stage: StageSpec) -> int:
    """visibilityTimeout: the wait before a failed message is tried again (the trigger's delay is fixed, not
    exponential). The attempts are spread over half of max_event_age_s, between 10 s and 5 minutes."""
    spread = stage.max_event_age_s // (2 * max_dequeue_count(stage))
    return max(RETRY_DELAY_MIN_S, min(RETRY_DELAY_MAX_S, spread))


def timespan(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def host_settings(stage: StageSpec, sized: StageSizing) -> dict[str, Any]:
    """host.json `extensions.queues` of an object stage (https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue#host-json)."""
    return {
        "batchSize": int(sized.settings.get("batchSize", BATCH_SIZE)),
        "newBatchThreshold": int(sized.settings.get("newBatchThreshold", NEW_BATCH_THRESHOLD)),
        "maxDequeueCount": max_dequeue_count(stage),
        "visibilityTimeout": timespan(retry_delay_s(stage)),
        "maxPollingInterval": timespan(MAX_POLLING_INTERVAL_S),
        "messageEncoding": "none",
    }


def queue_endpoint(account: storage.StorageAccount) -> pulumi.Output[str]:
    """The account's queue service URI (https://<account>.queue.core.windows.net/ in the public cloud)."""
    queue: pulumi.Output[str | None] = account.primary_endpoints.apply(lambda e: e.queue)
    return pulumi.Output.all(account.name, queue).apply(lambda values: values[1] or f"https://{values[0]}.queue.core.windows.net/")


def app_settings(account: storage.StorageAccount, stage: StageSpec, client_id: pulumi.Input[str]) -> dict[str, Any]:
    """The trigger's identity-based connection (queue extension 5.x) and what the runtime compares the dequeue count with."""
    return {
        f"{CONNECTION}__queueServiceUri": queue_endpoint(account),
        f"{CONNECTION}__credential": "managedidentity",
        f"{CONNECTION}__clientId": client_id,
        QUEUE_SETTING: QUEUE_NAME,
        DEQUEUE_SETTING: str(max_dequeue_count(stage)),
    }


@dataclass
class StageQueue:
    """An object stage's queue, its poison queue and the stage identity's access to them."""

    account: storage.StorageAccount
    queue: storage.Queue
    poison: storage.Queue
    assignments: list[authorization.RoleAssignment]

    @property
    def queue_id(self) -> pulumi.Output[str]:
        return self.queue.id

    def destination(self) -> eventgrid.DeliveryWithResourceIdentityArgs:
        """Where Event Grid writes each event: this queue, with the system topic's own identity."""
        return eventgrid.DeliveryWithResourceIdentityArgs(
            identity=eventgrid.EventSubscriptionIdentityArgs(type=eventgrid.EventSubscriptionIdentityType.SYSTEM_ASSIGNED),
            # A union-typed input: the typed Args class is what makes the SDK send endpointType/resourceId/queueName.
            destination=eventgrid.StorageQueueEventSubscriptionDestinationArgs(
                endpoint_type="StorageQueue", resource_id=self.account.id, queue_name=QUEUE_NAME,
                queue_message_time_to_live_in_seconds=MESSAGE_TTL_S),
        )


def stage_queue(role: RoleContext, platform: Platform, stage: StageSpec, account: storage.StorageAccount,
                principal: pulumi.Input[str]) -> StageQueue:
    """The queues in the stage's host account and the stage identity's roles on them (made before the app starts)."""
    rg = platform.rg_name
    queue = storage.Queue(role.name("queue"), account_name=account.name, resource_group_name=rg, queue_name=QUEUE_NAME,
                          metadata={"stage": stage.name, "purpose": "BlobCreated events from Event Grid"}, opts=role.opts())
    poison = storage.Queue(role.name("poison-queue"), account_name=account.name, resource_group_name=rg, queue_name=POISON_QUEUE_NAME,
                           metadata={"stage": stage.name, "purpose": "messages the queue trigger gave up on"}, opts=role.opts())
    consumer = iam.custom_role(
        role, platform, "queue-consumer-role", f"{stage.name}-queue-consumer",
        f"Consume the object queue of stage {stage.name} of {role.pipeline} ({role.stack}): read its length, "
        "get, hide (update) and delete messages", CONSUMER_ACTIONS, CONSUMER_DATA_ACTIONS)
    assignments = [
        iam.assign_definition(role, "queue-consumer", principal, consumer.id, queue.id,
                              f"queue trigger of stage {stage.name}: consume the object queue"),
        iam.assign(role, platform, "poison-sender", principal, iam.STORAGE_QUEUE_DATA_MESSAGE_SENDER, poison.id,
                   f"queue trigger of stage {stage.name}: move messages it gave up on to the poison queue"),
    ]
    return StageQueue(account, queue, poison, assignments)
