"""azure-native resources as the ARM resources they manage, for scanners (see pipeline.scan).

azure-native names each resource's inputs after the ARM request body with `properties` flattened,
and takes the resource's name and its parents' names as inputs too (`accountName`,
`containerName`, ...). The table below gives each token's ARM type and how its ARM name is built;
the API version is read from the installed SDK (the one each resource is deployed with), so it
follows SDK upgrades. A planned type missing here fails the conversion loudly.
"""

from __future__ import annotations

import importlib
import re
import typing
from functools import cache
from typing import Any

from pipeline.scan import ArmMapping, ArmType

_API_VERSION = re.compile(r"Uses Azure REST API version (\S+?)\.(?:\s|$)")


@cache
def api_version(token: str) -> str:
    """The ARM API version azure-native deploys `token` with, from the SDK resource's docstring
    ("Uses Azure REST API version 2024-01-01."), kept on its typed `__init__` overloads."""
    _, module, name = token.split(":")
    cls = getattr(importlib.import_module(f"pulumi_azure_native.{module}"), name)
    for overload in typing.get_overloads(cls.__init__):
        found = _API_VERSION.search(overload.__doc__ or "")
        if found:
            return found.group(1)
    raise LookupError(f"{token}: the installed pulumi-azure-native SDK does not say which API version it uses")


# token -> (ARM type, name segments parent first; '=x' is a literal segment, other names are inputs)
_ARM: dict[str, tuple[str, tuple[str, ...]]] = {
    "azure-native:applicationinsights:Component": ("Microsoft.Insights/components", ("resourceName",)),
    "azure-native:authorization:RoleAssignment": ("Microsoft.Authorization/roleAssignments", ("roleAssignmentName",)),
    "azure-native:authorization:RoleDefinition": ("Microsoft.Authorization/roleDefinitions", ("roleDefinitionId",)),
    "azure-native:eventgrid:SystemTopic": ("Microsoft.EventGrid/systemTopics", ("systemTopicName",)),
    "azure-native:eventgrid:SystemTopicEventSubscription": ("Microsoft.EventGrid/systemTopics/eventSubscriptions", ("systemTopicName", "eventSubscriptionName")),
    "azure-native:eventhub:ConsumerGroup": ("Microsoft.EventHub/namespaces/eventhubs/consumergroups", ("namespaceName", "eventHubName", "consumerGroupName")),
    "azure-native:eventhub:EventHub": ("Microsoft.EventHub/namespaces/eventhubs", ("namespaceName", "eventHubName")),
    "azure-native:eventhub:Namespace": ("Microsoft.EventHub/namespaces", ("namespaceName",)),
    "azure-native:managedidentity:UserAssignedIdentity": ("Microsoft.ManagedIdentity/userAssignedIdentities", ("resourceName",)),
    "azure-native:managedidentity:FederatedIdentityCredential": (
        "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials", ("resourceName", "federatedIdentityCredentialResourceName")),
    "azure-native:monitor:ActionGroup": ("Microsoft.Insights/actionGroups", ("actionGroupName",)),
    "azure-native:monitor:MetricAlert": ("Microsoft.Insights/metricAlerts", ("ruleName",)),
    "azure-native:monitor:ScheduledQueryRule": ("Microsoft.Insights/scheduledQueryRules", ("ruleName",)),
    "azure-native:operationalinsights:Workspace": ("Microsoft.OperationalInsights/workspaces", ("workspaceName",)),
    "azure-native:resources:Deployment": ("Microsoft.Resources/deployments", ("deploymentName",)),
    "azure-native:resources:ResourceGroup": ("Microsoft.Resources/resourceGroups", ("resourceGroupName",)),
    "azure-native:storage:BlobContainer": ("Microsoft.Storage/storageAccounts/blobServices/containers", ("accountName", "=default", "containerName")),
    "azure-native:storage:BlobServiceProperties": ("Microsoft.Storage/storageAccounts/blobServices", ("accountName", "blobServicesName")),
    "azure-native:storage:ManagementPolicy": ("Microsoft.Storage/storageAccounts/managementPolicies", ("accountName", "managementPolicyName")),
    "azure-native:storage:Queue": ("Microsoft.Storage/storageAccounts/queueServices/queues", ("accountName", "=default", "queueName")),
    "azure-native:storage:StorageAccount": ("Microsoft.Storage/storageAccounts", ("accountName",)),
    "azure-native:web:AppServicePlan": ("Microsoft.Web/serverfarms", ("name",)),
    "azure-native:web:WebApp": ("Microsoft.Web/sites", ("name",)),
    # App Service Authentication (Easy Auth v2) of HTTP stages: the site's config/authsettingsV2 child resource.
    "azure-native:web:WebAppAuthSettingsV2": ("Microsoft.Web/sites/config", ("name", "=authsettingsV2")),
    # Basic publishing credentials (FTP, SCM user/password) off: the site's two policy child resources.
    "azure-native:web:WebAppFtpAllowed": ("Microsoft.Web/sites/basicPublishingCredentialsPolicies", ("name", "=ftp")),
    "azure-native:web:WebAppScmAllowed": ("Microsoft.Web/sites/basicPublishingCredentialsPolicies", ("name", "=scm")),
}

# Inputs azure-native names differently from the ARM property (its schema renames a few).
_RENAMES: dict[str, dict[str, str]] = {
    "azure-native:storage:StorageAccount": {"enableHttpsTrafficOnly": "supportsHttpsTrafficOnly"},
    # A role definition's kind is its `type` property in ARM ("CustomRole"); azure-native calls the input roleType.
    "azure-native:authorization:RoleDefinition": {"roleType": "type"},
    # Application Insights' ARM properties keep their historical capitalisation.
    "azure-native:applicationinsights:Component": {
        "applicationType": "Application_Type", "flowType": "Flow_Type", "requestSource": "Request_Source",
        "workspaceResourceId": "WorkspaceResourceId", "ingestionMode": "IngestionMode", "disableLocalAuth": "DisableLocalAuth",
        "disableIpMasking": "DisableIpMasking", "retentionInDays": "RetentionInDays", "samplingPercentage": "SamplingPercentage",
        "immediatePurgeDataOn30Days": "ImmediatePurgeDataOn30Days", "forceCustomerStorageForProfiler": "ForceCustomerStorageForProfiler",
    },
}
# A Log Analytics workspace's sku sits inside `properties`, unlike most resources'.
_IN_PROPERTIES: dict[str, frozenset[str]] = {"azure-native:operationalinsights:Workspace": frozenset({"sku"})}

# Not ARM resources: nothing a template scanner could check.
UNSCANNED = {
    "azure-native:storage:Blob": "a blob's content is uploaded through the storage data plane, not deployed as an ARM resource",
    "random:index/randomId:RandomId": "the stack's name suffix, drawn by Pulumi's random provider and kept in the stack state: no Azure resource",
}

# Event Grid destinations are discriminated unions: ARM nests all but the discriminator in `properties`.
_NESTED_DESTINATIONS = (("destination",), ("deadLetterWithResourceIdentity", "deadLetterDestination"),
                        ("deliveryWithResourceIdentity", "destination"), ("deadLetterDestination",))


def adjust(token: str, resource: dict[str, Any]) -> None:
    """Shapes azure-native changes beyond flattening `properties`."""
    identity = resource.get("identity")
    if isinstance(identity, dict) and isinstance(identity.get("userAssignedIdentities"), list):
        # azure-native takes the identities' ids as a list; ARM wants them as the keys of a map.
        identity["userAssignedIdentities"] = {rid: {} for rid in identity["userAssignedIdentities"]}
    properties = resource.get("properties", {})
    for path in _NESTED_DESTINATIONS:
        parent: Any = properties
        for key in path[:-1]:
            parent = parent.get(key, {}) if isinstance(parent, dict) else {}
        target = parent.get(path[-1]) if isinstance(parent, dict) else None
        if isinstance(target, dict) and "endpointType" in target and "properties" not in target:
            parent[path[-1]] = {"endpointType": target["endpointType"], "properties": {k: v for k, v in target.items() if k != "endpointType"}}
    criteria = properties.get("criteria")
    if token == "azure-native:monitor:MetricAlert" and isinstance(criteria, dict) and "odataType" in criteria:
        criteria["odata.type"] = criteria.pop("odataType")


@cache
def mapping() -> ArmMapping:
    types = {
        token: ArmType(arm_type, api_version(token), name, _RENAMES.get(token, {}), _IN_PROPERTIES.get(token, frozenset()))
        for token, (arm_type, name) in _ARM.items()
    }
    return ArmMapping(types, UNSCANNED, adjust)
