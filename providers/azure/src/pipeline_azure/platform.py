"""Provider, resource group, the two storage accounts and the monitoring workspace.

Storage: two accounts, both StorageV2 / Standard_LRS / HTTPS only / TLS 1.2 / no public blob access.

* The **data** account holds every bucket the core asks for except model artifacts (raw Capture
  files, stage outputs, dead letters). Shared-key access is **disabled**: everything that touches it
  authenticates with Entra ID - the functions through their user-assigned identities
  (`PipelineData__credential=managedidentity`), Event Hubs Capture through the namespace's
  system-assigned identity, Event Grid dead-lettering through the system topic's identity.
* The **functions** account holds what Pulumi itself uploads - code packages (Flex deployment
  containers) and model artifacts - plus the Functions host state (`AzureWebJobsStorage`, reached
  with `AzureWebJobsStorage__accountName` + managed identity). Shared-key access stays **enabled**
  here only because the azure-native `storage.Blob` resource uploads with the account key and fails
  on accounts without it (pulumi/pulumi-azure-native#2015, open). `default_to_o_auth_authentication`
  makes the portal and tools use Entra ID, and a one-day SAS expiry policy is set. Nothing in this
  account is pipeline data; once the provider supports Entra ID uploads, flip `allow_shared_key_access`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_azure_native as azure_native
from pulumi_azure_native import applicationinsights, operationalinsights, resources, storage

from pipeline.backend import Handle, RoleContext
from pipeline_azure import naming

LOG_RETENTION_DAYS = 30
# The Functions host's fixed containers: leases, timer schedule monitor, keys, Event Hubs checkpoints (extension 5+).
# Pre-created so each app's host role can be scoped to them instead of the whole account.
HOST_CONTAINERS = ("azure-webjobs-hosts", "azure-webjobs-secrets", "azure-webjobs-eventhub")


@dataclass
class Platform:
    """What later roles share; kept on the backend instance between role calls."""

    role: RoleContext
    provider: azure_native.Provider
    location: str
    tags: dict[str, str]
    resource_group: resources.ResourceGroup
    subscription_id: pulumi.Output[str]
    data: storage.StorageAccount
    functions: storage.StorageAccount
    host_containers: list[storage.BlobContainer]
    workspace: operationalinsights.Workspace
    insights: applicationinsights.Component
    buckets: dict[str, Handle[Any]] = field(default_factory=dict)
    system_topic: Any = None  # eventgrid.SystemTopic, created with the first object trigger
    system_topic_grant: Any = None

    @property
    def rg_name(self) -> pulumi.Output[str]:
        return self.resource_group.name

    def opts(self, **kwargs: Any) -> pulumi.ResourceOptions:
        """Options for account-level resources made after platform() (lifecycle policy, system topic):
        parented to the platform role, where the account lives, with the explicit provider."""
        return pulumi.ResourceOptions(parent=self.role.component, provider=self.provider, **kwargs)

    def role_definition(self, guid: str) -> pulumi.Output[str]:
        return self.subscription_id.apply(lambda sub: naming.role_definition_id(sub, guid))


def blob_endpoint(account: storage.StorageAccount) -> pulumi.Output[str]:
    return account.primary_endpoints.apply(lambda e: e.blob)


def _account(role: RoleContext, suffix: str, name: str, rg: resources.ResourceGroup, location: str, tags: dict[str, str],
             shared_key: bool, opts: pulumi.ResourceOptions) -> storage.StorageAccount:
    sas_policy: Any = {"expiration_action": "Log", "sas_expiration_period": "1.00:00:00"} if shared_key else None
    return storage.StorageAccount(
        role.name(suffix),
        account_name=name,
        resource_group_name=rg.name,
        location=location,
        kind="StorageV2",
        sku={"name": "Standard_LRS"},
        access_tier=storage.AccessTier.HOT,
        enable_https_traffic_only=True,
        minimum_tls_version="TLS1_2",
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


def platform(role: RoleContext, location: str, tags: dict[str, str]) -> Platform:
    provider = azure_native.Provider(role.name("azure-native"), location=location, opts=role.opts())
    opts = role.opts(provider=provider)
    rg = resources.ResourceGroup(role.name("rg"), resource_group_name=naming.resource_group_name(role.pipeline, role.stack),
                                 location=location, tags=tags, opts=opts)
    subscription_id = rg.id.apply(lambda rid: rid.split("/")[2])
    data = _account(role, "data", naming.storage_account_name(role.pipeline, role.stack, "dat"), rg, location, tags, False, opts)
    functions = _account(role, "functions", naming.storage_account_name(role.pipeline, role.stack, "fun"), rg, location, tags, True, opts)
    host_containers = [
        storage.BlobContainer(role.name(name), account_name=functions.name, resource_group_name=rg.name, container_name=name,
                              public_access=storage.PublicAccess.NONE, opts=opts)
        for name in HOST_CONTAINERS
    ]
    workspace = operationalinsights.Workspace(
        role.name("logs"), workspace_name=f"log-{role.pipeline}-{role.stack}", resource_group_name=rg.name, location=location,
        sku={"name": "PerGB2018"}, retention_in_days=LOG_RETENTION_DAYS, tags=tags, opts=opts,
    )
    insights = applicationinsights.Component(
        role.name("insights"), resource_name_=f"appi-{role.pipeline}-{role.stack}", resource_group_name=rg.name, location=location,
        kind="web", application_type="web", workspace_resource_id=workspace.id, ingestion_mode="LogAnalytics",
        disable_local_auth=True,  # apps authenticate telemetry with their identity (Monitoring Metrics Publisher)
        tags=tags, opts=opts,
    )
    return Platform(role, provider, location, tags, rg, subscription_id, data, functions, host_containers, workspace, insights)
