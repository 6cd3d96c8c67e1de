"""Provider, resource group, the shared storage accounts and the monitoring workspace.

Storage accounts (all StorageV2, HTTPS only, TLS 1.2, no public blob access, Entra ID by default):

* **data** (Standard_ZRS): every bucket the core asks for except model artifacts - the raw archive
  (Capture files or the archiver function's blobs), uploads, stage outputs, dead letters. Shared-key
  access is **disabled**: the functions (and the raw archiver) use their user-assigned identities,
  Event Hubs Capture (where chosen) the namespace's identity, Event Grid
  dead-lettering the system topic's identity, producers their own identity. Blob soft delete and
  container soft delete (`SOFT_DELETE_DAYS`) make an overwritten or deleted output recoverable.
  ZRS (three zones) because S3 and GCS regional buckets are multi-zone by default: the clouds are
  compared like for like.
* **artifacts** (Standard_ZRS): what Pulumi itself uploads - each stage's code package (the Flex
  deployment container) and model files. Shared-key access stays **on** here and only here,
  because the azure-native `storage.Blob` resource uploads with the account key
  (pulumi/pulumi-azure-native#2015 is open; PR #3719 moved the v3 provider back to keys). Nothing
  secret and no pipeline data lives here; the apps read it with their identities, a one-day SAS
  expiry policy is set and the portal defaults to Entra ID.
* **host storage**: each stage's app gets an account of its own (created by `functions.function`),
  so no stage can read another app's keys, leases or Event Hubs checkpoints.

Destroy: the resource group, the data account, its containers, soft-delete settings and lifecycle
policy are created with `retain_on_delete` unless the backend's `delete_data` is set. Deleting a
resource group deletes everything in it, so keeping the containers alone would not keep the data:
Pulumi removes every other resource one by one and leaves the group holding the data account.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_azure_native as azure_native
import pulumi_random as random
from pulumi_azure_native import applicationinsights, operationalinsights, resources, storage

from pipeline.roles import Handle, RoleContext
from pipeline_azure import naming

LOG_RETENTION_DAYS = 30
SOFT_DELETE_DAYS = 7  # deleted or overwritten blobs (and deleted containers) stay recoverable this long (1-365)
REDUNDANCY = "Standard_ZRS"


@dataclass
class Platform:
    """What later roles share; kept on the backend instance between role calls."""

    role: RoleContext
    provider: azure_native.Provider
    location: str
    tags: dict[str, str]
    resource_group: resources.ResourceGroup
    subscription_id: pulumi.Output[str]
    suffix: pulumi.Output[str]  # the stack's random name suffix (globally unique names)
    data: storage.StorageAccount
    artifacts: storage.StorageAccount
    workspace: operationalinsights.Workspace
    insights: applicationinsights.Component
    retain_data: bool
    buckets: dict[str, Handle[Any]] = field(default_factory=dict)
    system_topic: Any = None  # eventgrid.SystemTopic, created with the first object trigger
    system_topic_grant: Any = None
    blob_writer: Any = None  # authorization.RoleDefinition, the custom role of every write grant (iam.blob_writer)
    http_audiences: dict[str, Any] = field(default_factory=dict)  # HTTP stage -> the token audience callers ask for (http_auth)

    @property
    def rg_name(self) -> pulumi.Output[str]:
        return self.resource_group.name

    def opts(self, **kwargs: Any) -> pulumi.ResourceOptions:
        """Options for account-level resources made after platform() (lifecycle policy, system topic):
        parented to the platform role, where the account lives, with the explicit provider."""
        return pulumi.ResourceOptions(parent=self.role.component, provider=self.provider, **kwargs)

    def data_opts(self, role: RoleContext | None = None, **kwargs: Any) -> pulumi.ResourceOptions:
        """Options for what holds pipeline data: kept on destroy unless `delete_data` (see module doc)."""
        if role is None:
            return self.opts(retain_on_delete=self.retain_data, **kwargs)
        return role.opts(retain_on_delete=self.retain_data, **kwargs)

    def role_definition(self, guid: str) -> pulumi.Output[str]:
        return self.subscription_id.apply(lambda sub: naming.role_definition_id(sub, guid))

    def name(self, build: Any) -> pulumi.Output[str]:
        """A globally unique name from the stack's random suffix: `build(suffix) -> str`."""
        return self.suffix.apply(build)


def blob_endpoint(account: storage.StorageAccount) -> pulumi.Output[str]:
    return account.primary_endpoints.apply(lambda e: e.blob)


def account(name: str, account_name: pulumi.Input[str], rg: pulumi.Input[str], location: str, tags: dict[str, str], *,
            shared_key: bool, opts: pulumi.ResourceOptions) -> storage.StorageAccount:
    """A hardened StorageV2 account (ZRS). `shared_key` only for the artifacts account (see module doc)."""
    sas_policy = storage.SasPolicyArgs(expiration_action="Log", sas_expiration_period="1.00:00:00") if shared_key else None
    return storage.StorageAccount(
        name,
        account_name=account_name,
        resource_group_name=rg,
        location=location,
        kind=storage.Kind.STORAGE_V2,
        sku=storage.SkuArgs(name=REDUNDANCY),
        access_tier=storage.AccessTier.HOT,
        enable_https_traffic_only=True,
        minimum_tls_version=storage.MinimumTlsVersion.TLS1_2,
        allow_blob_public_access=False,
        allow_shared_key_access=shared_key,
        default_to_o_auth_authentication=True,
        allow_cross_tenant_replication=False,
        is_local_user_enabled=False,
        is_sftp_enabled=False,
        is_hns_enabled=False,  # Capture, Event Grid blob events and ABAC path conditions all work on flat namespace
        sas_policy=sas_policy,
        tags=tags,
        opts=opts,
    )


def soft_delete(name: str, account_: storage.StorageAccount, rg: pulumi.Input[str], opts: pulumi.ResourceOptions) -> storage.BlobServiceProperties:
    """Blob and container soft delete: an overwritten output keeps its previous content as a
    soft-deleted snapshot, a deleted blob or container can be undeleted, for SOFT_DELETE_DAYS."""
    return storage.BlobServiceProperties(
        name,
        account_name=account_.name,
        resource_group_name=rg,
        blob_services_name="default",
        delete_retention_policy=storage.DeleteRetentionPolicyArgs(enabled=True, days=SOFT_DELETE_DAYS),
        container_delete_retention_policy=storage.DeleteRetentionPolicyArgs(enabled=True, days=SOFT_DELETE_DAYS),
        opts=opts,
    )


def platform(role: RoleContext, location: str, tags: dict[str, str], retain_data: bool) -> Platform:
    provider = azure_native.Provider(role.name("azure-native"), location=location, opts=role.opts())
    opts = role.opts(provider=provider)
    keep = role.opts(provider=provider, retain_on_delete=retain_data)
    rg = resources.ResourceGroup(role.name("rg"), resource_group_name=naming.resource_group_name(role.pipeline, role.stack),
                                 location=location, tags=tags, opts=keep)
    subscription_id = rg.id.apply(lambda rid: rid.split("/")[2])
    randomness = random.Provider(role.name("random"), opts=role.opts())
    suffix = random.RandomId(role.name("suffix"), byte_length=naming.SUFFIX_BYTES, opts=role.opts(provider=randomness)).hex
    data = account(role.name("data"), suffix.apply(lambda s: naming.storage_account_name(role.pipeline, "dat", s)), rg.name, location, tags,
                   shared_key=False, opts=keep)
    soft_delete(role.name("data-soft-delete"), data, rg.name, keep)
    artifacts = account(role.name("artifacts"), suffix.apply(lambda s: naming.storage_account_name(role.pipeline, "art", s)), rg.name,
                        location, tags, shared_key=True, opts=opts)
    workspace = operationalinsights.Workspace(
        role.name("logs"), workspace_name=f"log-{role.pipeline}-{role.stack}", resource_group_name=rg.name, location=location,
        sku=operationalinsights.WorkspaceSkuArgs(name=operationalinsights.WorkspaceSkuNameEnum.PER_GB2018),
        retention_in_days=LOG_RETENTION_DAYS, tags=tags, opts=opts,
    )
    insights = applicationinsights.Component(
        role.name("insights"), resource_name_=f"appi-{role.pipeline}-{role.stack}", resource_group_name=rg.name, location=location,
        kind="web", application_type=applicationinsights.ApplicationType.WEB, workspace_resource_id=workspace.id,
        ingestion_mode=applicationinsights.IngestionMode.LOG_ANALYTICS,
        disable_local_auth=True,  # apps authenticate telemetry with their identity (Monitoring Metrics Publisher)
        tags=tags, opts=opts,
    )
    return Platform(role, provider, location, tags, rg, subscription_id, suffix, data, artifacts, workspace, insights, retain_data)
