"""The Event Hubs namespace and event hub, with Capture of raw events to the raw container where the plan
archives the stream with Capture (`pipeline_azure.archive_choice` chooses between Capture and an archiver function).

Capture is a property of the event hub itself, but the core calls `archive()` after `stream()` and
after the buckets. So with Capture, `stream()` creates the namespace (with a system-assigned identity
for Capture) and returns a handle whose event hub is created on first need: by `archive()`, after the
raw container and the namespace identity's role on it exist, so Capture can write from its first
window. Without Capture (no archive, or the archiver function) the hub is built at the end of
`stream()` and the namespace has no identity. The hub is parented to the stream role either way, so
plans group it there.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi_azure_native import eventhub

from pipeline.roles import Handle, RoleContext
from pipeline.sizing import StreamSizing
from pipeline.spec.model import PipelineSpec
from pipeline_azure import iam, naming
from pipeline_azure.platform import Platform

EVENT_HUB_NAME = "records"
CAPTURE_INTERVAL_S = 300  # 60-900 s
CAPTURE_SIZE_BYTES = 300 * 1024 * 1024  # 10-500 MiB; whichever window fills first
ARCHIVE_TOKENS = "{Namespace}/{EventHub}/{PartitionId}/{Year}/{Month}/{Day}/{Hour}/{Minute}/{Second}"  # all are required


class LazyHub:
    """Builds the event hub once; everything that needs its id goes through `hub()`."""

    def __init__(self, role: RoleContext, platform: Platform, spec: PipelineSpec, sizing: StreamSizing, namespace: eventhub.Namespace):
        self.role, self.platform, self.spec, self.sizing, self.namespace = role, platform, spec, sizing, namespace
        self._hub: eventhub.EventHub | None = None

    def build(self, capture: eventhub.CaptureDescriptionArgs | None = None, after: list[pulumi.Resource] | None = None) -> eventhub.EventHub:
        if self._hub is not None:
            raise RuntimeError("the event hub was already created")
        assert self.spec.stream is not None
        retention = eventhub.RetentionDescriptionArgs(cleanup_policy=eventhub.CleanupPolicyRetentionDescription.DELETE,
                                                      retention_time_in_hours=self.spec.stream.retention_hours)
        self._hub = eventhub.EventHub(
            self.role.name("hub"),
            event_hub_name=EVENT_HUB_NAME,
            namespace_name=self.namespace.name,
            resource_group_name=self.platform.rg_name,
            partition_count=self.sizing.partitions,  # fixed at creation on Standard: sizing keeps it across deploys
            # Hours exactly as the spec says (message_retention_in_days would round to whole days).
            retention_description=retention,
            capture_description=capture,
            opts=self.role.opts(depends_on=after or []),
        )
        return self._hub

    def hub(self) -> eventhub.EventHub:
        if self._hub is None:
            raise RuntimeError("the event hub is created by archive(); the core must call archive() before any stage role")
        return self._hub


def stream(role: RoleContext, platform: Platform, spec: PipelineSpec, sizing: StreamSizing, capture: bool) -> Handle[Any]:
    """The namespace and (unless Capture will be set on it, see module doc) the event hub."""
    assert spec.stream is not None
    sku = eventhub.SkuArgs(name=eventhub.SkuName.STANDARD, tier=eventhub.SkuTier.STANDARD, capacity=sizing.units)
    identity = eventhub.IdentityArgs(type=eventhub.ManagedServiceIdentityType.SYSTEM_ASSIGNED) if capture else None
    namespace = eventhub.Namespace(
        role.name("namespace"),
        namespace_name=platform.name(lambda s: naming.namespace_name(role.pipeline, role.stack, s)),
        resource_group_name=platform.rg_name,
        location=platform.location,
        sku=sku,
        is_auto_inflate_enabled=False,
        disable_local_auth=True,  # Entra ID only: no SAS keys to leak
        minimum_tls_version="1.2",
        public_network_access=eventhub.PublicNetworkAccess.ENABLED,  # producers (and Capture) reach it; Entra ID only
        identity=identity,
        tags=platform.tags,
        opts=role.opts(),
    )
    lazy = LazyHub(role, platform, spec, sizing, namespace)
    if not capture:
        lazy.build()
    fqdn = pulumi.Output.concat(namespace.name, ".servicebus.windows.net")
    extra: dict[str, Any] = {"lazy": lazy, "namespace": namespace, "fqdn": fqdn, "hub_name": EVENT_HUB_NAME}
    # The stream output names the hub with its namespace, which carries the stack's random suffix.
    return Handle(namespace, pulumi.Output.concat(fqdn, "/", EVENT_HUB_NAME), extra)


def hub(handle: Handle[Any]) -> eventhub.EventHub:
    lazy: LazyHub = handle.extra["lazy"]
    return lazy.hub()


def archive(role: RoleContext, platform: Platform, source: Handle[Any], target: Handle[Any], prefix: str) -> None:
    """Capture every event (Avro) into the raw container under `prefix`, as the namespace's identity."""
    namespace: eventhub.Namespace = source.extra["namespace"]
    principal: pulumi.Output[str] = namespace.identity.apply(lambda i: (i.principal_id or "") if i else "")
    write = iam.assign(
        role, platform, "capture-writer", principal, iam.STORAGE_BLOB_DATA_CONTRIBUTOR, target.extra["id"],
        f"Event Hubs Capture writes raw events under {prefix}",
        # Capture writes only below the prefix (the archive name format starts with it).
        iam.path_condition(iam.BLOB_WRITE_ACTIONS, "StringStartsWith", prefix),
    )
    capture = eventhub.CaptureDescriptionArgs(
        enabled=True,
        encoding=eventhub.EncodingCaptureDescription.AVRO,
        interval_in_seconds=CAPTURE_INTERVAL_S,
        size_limit_in_bytes=CAPTURE_SIZE_BYTES,
        skip_empty_archives=True,
        destination=eventhub.DestinationArgs(
            name="EventHubArchive.AzureBlockBlob",
            storage_account_resource_id=target.extra["account_id"],
            blob_container=target.extra["container"],
            archive_name_format=prefix + ARCHIVE_TOKENS,
            identity=eventhub.CaptureIdentityArgs(type=eventhub.CaptureIdentityType.SYSTEM_ASSIGNED),
        ),
    )
    source.extra["lazy"].build(capture, after=[target.resource, write])
