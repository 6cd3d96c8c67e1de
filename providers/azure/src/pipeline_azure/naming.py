"""Azure physical names (globally unique where Azure needs it) and mock ids for the offline planner.

Name rules (https://learn.microsoft.com/azure/azure-resource-manager/management/resource-name-rules):
storage accounts 3-24 lowercase letters and digits, globally unique; Event Hubs namespaces 6-50
letters, digits and hyphens, starting with a letter, globally unique (`*.servicebus.windows.net`);
function apps (sites) 2-60, globally unique (`*.azurewebsites.net`); blob containers 3-63 lowercase
letters, digits and single hyphens.

Globally unique names end in a random suffix (`SUFFIX_CHARS` hex digits) that a `pulumi_random.RandomId`
resource draws once and keeps in the stack's state: a redeploy keeps every name, while two stacks
or two users deploying the same spec (the bundled example, say) never collide. Offline plans get a
deterministic mock value for it (`mock_resource`), so plans stay reproducible.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from typing import Any

from pipeline.roles import autoname

MOCK_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"  # plans are offline: the subscription is not known
MOCK_TENANT = "11111111-1111-1111-1111-111111111111"
STORAGE_ACCOUNT_MAX = 24
NAMESPACE_MAX = 50
FUNCTION_APP_MAX = 60
HOST_ID_MAX = 32  # the Functions host id (each app has its own host storage; explicit anyway, see host_id)
SUFFIX_BYTES = 4  # RandomId byte_length: 8 hex characters, 4 billion values per pipeline name
SUFFIX_CHARS = 2 * SUFFIX_BYTES
HOST_HASH_CHARS = 8  # the stage's hash in its host-storage account name (see host_account_name)
RANDOM_ID = "random:index/randomId:RandomId"


def short_hash(*parts: str, length: int = 8) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


def alnum(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def storage_account_name(pipeline: str, kind: str, suffix: str) -> str:
    """e.g. 'txnscoringdat1a2b3c4d': readable prefix (<= 13) + kind (3) + the stack's random suffix (8)."""
    name = f"{alnum(pipeline)[:STORAGE_ACCOUNT_MAX - 3 - SUFFIX_CHARS]}{kind[:3]}{suffix}"
    assert 3 <= len(name) <= STORAGE_ACCOUNT_MAX and name.isalnum() and name.islower(), name
    return name


def host_account_name(pipeline: str, stage: str, suffix: str) -> str:
    """A stage's own host-storage account: pipeline prefix 7 + 'h' + an 8-hex hash of the stage + suffix 8.

    The hash is what tells a pipeline's stages apart (the suffix is the stack's, the same for all of them), so it
    takes most of the 24 characters: with 8 hex digits two of n stages share a name with probability about
    n^2 / 2^33 (3e-7 at 50 stages; 4 digits gave 1.9 %). `checks` refuses the spec where it happens anyway.
    The 'h' keeps host accounts apart from the data and artifacts accounts, whose kind ('dat', 'art') has a
    't', which no hex hash has."""
    prefix = alnum(pipeline)[:STORAGE_ACCOUNT_MAX - 1 - HOST_HASH_CHARS - SUFFIX_CHARS]
    name = f"{prefix}h{short_hash(pipeline, stage, length=HOST_HASH_CHARS)}{suffix}"
    assert 3 <= len(name) <= STORAGE_ACCOUNT_MAX and name.isalnum() and name.islower(), name
    return name


def _bounded(readable: str, suffix: str, limit: int) -> str:
    head = readable[: limit - len(suffix) - 1].rstrip("-")
    return f"{head}-{suffix}"


def resource_group_name(pipeline: str, stack: str) -> str:
    return f"rg-{pipeline}-{stack}"


def namespace_name(pipeline: str, stack: str, suffix: str) -> str:
    """Event Hubs namespace: 6-50, letter first, letter/digit last, must not end in '-sb' or '-mgmt'
    (it ends in the hex suffix, so it never does)."""
    return _bounded(f"evhns-{pipeline}-{stack}", suffix, NAMESPACE_MAX)


def function_app_name(pipeline: str, stack: str, stage: str, suffix: str) -> str:
    """Sites: 2-60, letters, digits and hyphens; the stage is kept whole (readable in the portal)."""
    head = _bounded(f"func-{pipeline}-{stack}", short_hash(pipeline, stack, stage, length=4), FUNCTION_APP_MAX - len(stage) - len(suffix) - 2)
    return f"{head}-{stage}-{suffix}"


def plan_name(pipeline: str, stack: str, stage: str) -> str:
    """Flex plans are scoped to the resource group, so no suffix is needed (1-60 characters)."""
    return _bounded(f"plan-{pipeline}-{stack}-{stage}", short_hash(pipeline, stack, stage, length=6), FUNCTION_APP_MAX)


def host_id(pipeline: str, stack: str, stage: str) -> str:
    """Explicit Functions host id (<= 32 chars, lowercase letters, digits and hyphens). The default is
    the app name cut to 32 characters; each app has its own host storage, so this only keeps the id
    stable and readable (it names the app's keys and leases in that storage)."""
    return _bounded(stage, short_hash(pipeline, stack, stage, length=10), HOST_ID_MAX)


def container_name(key: str, uploads: bool = False) -> str:
    """Stage outputs get 'out-<stage>' and the uploads landing container 'in-<name>', so neither can collide
    with 'raw', 'dead-letter' or 'artifacts' and two-letter names still meet the 3-character minimum."""
    if uploads:
        return f"in-{key}"
    return key if key in {"raw", "dead-letter", "artifacts"} else f"out-{key}"


def role_definition_id(subscription_id: str, guid: str) -> str:
    return f"/subscriptions/{subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{guid}"


# ---- offline planner -----------------------------------------------------------------------
_RG = "/subscriptions/{sub}/resourceGroups/{rg}/providers/"
# type token -> (name input, resource id template). {name} is the physical name; other fields are inputs.
_KNOWN: dict[str, tuple[str, str]] = {
    "azure-native:resources:ResourceGroup": ("resourceGroupName", "/subscriptions/{sub}/resourceGroups/{name}"),
    "azure-native:storage:StorageAccount": ("accountName", _RG + "Microsoft.Storage/storageAccounts/{name}"),
    "azure-native:storage:BlobContainer": ("containerName", _RG + "Microsoft.Storage/storageAccounts/{accountName}/blobServices/default/containers/{name}"),
    "azure-native:storage:ManagementPolicy": ("managementPolicyName", _RG + "Microsoft.Storage/storageAccounts/{accountName}/managementPolicies/{name}"),
    "azure-native:storage:Queue": ("queueName", _RG + "Microsoft.Storage/storageAccounts/{accountName}/queueServices/default/queues/{name}"),
    "azure-native:storage:Blob": ("blobName", "https://{accountName}.blob.core.windows.net/{containerName}/{name}"),
    "azure-native:eventhub:Namespace": ("namespaceName", _RG + "Microsoft.EventHub/namespaces/{name}"),
    "azure-native:eventhub:EventHub": ("eventHubName", _RG + "Microsoft.EventHub/namespaces/{namespaceName}/eventhubs/{name}"),
    "azure-native:eventhub:ConsumerGroup": (
        "consumerGroupName", _RG + "Microsoft.EventHub/namespaces/{namespaceName}/eventhubs/{eventHubName}/consumergroups/{name}"),
    "azure-native:managedidentity:UserAssignedIdentity": ("resourceName", _RG + "Microsoft.ManagedIdentity/userAssignedIdentities/{name}"),
    "azure-native:managedidentity:FederatedIdentityCredential": (
        "federatedIdentityCredentialResourceName", _RG + "Microsoft.ManagedIdentity/userAssignedIdentities/{resourceName}/federatedIdentityCredentials/{name}"),
    "azure-native:web:AppServicePlan": ("name", _RG + "Microsoft.Web/serverfarms/{name}"),
    "azure-native:web:WebApp": ("name", _RG + "Microsoft.Web/sites/{name}"),
    "azure-native:eventgrid:SystemTopic": ("systemTopicName", _RG + "Microsoft.EventGrid/systemTopics/{name}"),
    "azure-native:eventgrid:SystemTopicEventSubscription": (
        "eventSubscriptionName", _RG + "Microsoft.EventGrid/systemTopics/{systemTopicName}/eventSubscriptions/{name}"),
    "azure-native:operationalinsights:Workspace": ("workspaceName", _RG + "Microsoft.OperationalInsights/workspaces/{name}"),
    "azure-native:applicationinsights:Component": ("resourceName", _RG + "Microsoft.Insights/components/{name}"),
    "azure-native:monitor:ActionGroup": ("actionGroupName", _RG + "Microsoft.Insights/actionGroups/{name}"),
    "azure-native:monitor:MetricAlert": ("ruleName", _RG + "Microsoft.Insights/metricAlerts/{name}"),
    "azure-native:monitor:ScheduledQueryRule": ("ruleName", _RG + "Microsoft.Insights/scheduledQueryRules/{name}"),
    "azure-native:resources:Deployment": ("deploymentName", _RG + "Microsoft.Resources/deployments/{name}"),
    "azure-native:storage:BlobServiceProperties": ("blobServicesName", _RG + "Microsoft.Storage/storageAccounts/{accountName}/blobServices/{name}"),
    "azure-native:web:WebAppAuthSettingsV2": ("name", _RG + "Microsoft.Web/sites/{name}/config/authsettingsV2"),
    "azure-native:web:WebAppFtpAllowed": ("name", _RG + "Microsoft.Web/sites/{name}/basicPublishingCredentialsPolicies/ftp"),
    "azure-native:web:WebAppScmAllowed": ("name", _RG + "Microsoft.Web/sites/{name}/basicPublishingCredentialsPolicies/scm"),
}


def mock_uuid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(parts)))


def _system_identity(logical: str, inputs: Mapping[str, Any]) -> dict[str, Any] | None:
    identity = inputs.get("identity")
    if not isinstance(identity, Mapping) or "SystemAssigned" not in str(identity.get("type", "")):
        return None
    return {**identity, "principalId": mock_uuid(logical, "principal"), "tenantId": MOCK_TENANT}


def mock_resource(type_: str, logical: str, inputs: Mapping[str, Any], location: str) -> tuple[str, dict[str, Any]]:
    """Id and outputs Azure would assign to a new resource of this type (deterministic)."""
    outputs: dict[str, Any] = dict(inputs)
    fields = {k: v for k, v in inputs.items() if isinstance(v, str)}
    fields.update(sub=MOCK_SUBSCRIPTION, rg=str(inputs.get("resourceGroupName", "")))
    if type_ == RANDOM_ID:
        # Deterministic offline stand-in for the random suffix (a real deploy draws it once per stack).
        digest = hashlib.sha256(logical.encode()).digest()[: int(inputs.get("byteLength", SUFFIX_BYTES))]
        outputs.update(hex=digest.hex(), dec=str(int.from_bytes(digest, "big")), b64Url=digest.hex())
        return f"{logical}-id", outputs
    if type_ == "azure-native:authorization:RoleAssignment":
        name = str(inputs.get("roleAssignmentName") or mock_uuid(logical))
        outputs["name"] = name
        rid = f"{inputs.get('scope', '')}/providers/Microsoft.Authorization/roleAssignments/{name}"
        outputs["id"] = rid
        return rid, outputs
    if type_ == "azure-native:authorization:RoleDefinition":
        guid = str(inputs.get("roleDefinitionId") or mock_uuid(logical))
        rid = f"{inputs.get('scope', '')}/providers/Microsoft.Authorization/roleDefinitions/{guid}"
        outputs.update(name=guid, id=rid)
        return rid, outputs
    if type_ not in _KNOWN:
        return f"{logical}-id", outputs
    name_key, template = _KNOWN[type_]
    name = str(inputs.get(name_key) or autoname(logical))
    outputs["name"] = name
    rid = template.format(name=name, **{k: v for k, v in fields.items() if k != "name"})
    outputs.setdefault("location", location)
    if type_ == "azure-native:storage:StorageAccount":
        outputs["primaryEndpoints"] = {svc: f"https://{name}.{svc}.core.windows.net/" for svc in ("blob", "queue", "table", "dfs", "file", "web")}
    elif type_ == "azure-native:storage:Blob":
        outputs["url"] = rid
    elif type_ == "azure-native:managedidentity:UserAssignedIdentity":
        outputs.update(principalId=mock_uuid(logical, "principal"), clientId=mock_uuid(logical, "client"), tenantId=MOCK_TENANT)
    elif type_ == "azure-native:eventhub:Namespace":
        outputs["serviceBusEndpoint"] = f"https://{name}.servicebus.windows.net:443/"
    elif type_ == "azure-native:web:WebApp":
        outputs["defaultHostName"] = f"{name}.azurewebsites.net"
    elif type_ == "azure-native:applicationinsights:Component":
        key = mock_uuid(logical, "ikey")
        outputs.update(
            instrumentationKey=key, appId=mock_uuid(logical, "app"),
            connectionString=f"InstrumentationKey={key};IngestionEndpoint=https://{location}-8.in.applicationinsights.azure.com/;"
                             f"LiveEndpoint=https://{location}.livediagnostics.monitor.azure.com/",
        )
    elif type_ == "azure-native:operationalinsights:Workspace":
        outputs["customerId"] = mock_uuid(logical, "workspace")
    identity = _system_identity(logical, inputs)
    if identity is not None:
        outputs["identity"] = identity
    if isinstance(inputs.get("identity"), Mapping) and isinstance(inputs["identity"].get("userAssignedIdentities"), list):
        # Inputs list the identity ids; Azure answers with a map id -> {principalId, clientId}.
        ids = inputs["identity"]["userAssignedIdentities"]
        outputs["identity"] = {**(identity or inputs["identity"]), "userAssignedIdentities": {
            str(i): {"principalId": mock_uuid(str(i), "principal"), "clientId": mock_uuid(str(i), "client")} for i in ids}}
    return rid, outputs
