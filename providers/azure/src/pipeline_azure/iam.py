"""User-assigned identities and role assignments on the narrowest scope, with ABAC path conditions.

Each stage gets its own user-assigned managed identity, created before its function app so every
role assignment exists before the app starts. Built-in role GUIDs from
https://learn.microsoft.com/azure/role-based-access-control/built-in-roles. Blob access is scoped to
the container and narrowed to the core's prefix with an attribute-based condition on the blob path
(https://learn.microsoft.com/azure/storage/blobs/storage-auth-abac-attributes); every data action of
the role is listed in the condition, so none escapes it. Listing blobs carries no path, so a path
condition denies it; the one grant that lists (LIST_OBJECTS, schedules over accumulated outputs)
conditions it on the request's prefix instead (`list_condition`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
from pulumi_azure_native import authorization, managedidentity

from pipeline.roles import Access, Grant, Handle, RoleContext
from pipeline_azure.platform import Platform

EVENT_HUBS_DATA_RECEIVER = "a638d3c7-ab3a-418d-83e6-5f17a39d4fde"
EVENT_HUBS_DATA_SENDER = "2b629674-e913-4c01-ae53-ef4638d8f975"
STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
STORAGE_BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
STORAGE_QUEUE_DATA_MESSAGE_SENDER = "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
# Not a GUID: the stack's own custom role (see blob_writer) that `role_for` gives for writes.
BLOB_WRITER = "custom:blob-writer"

ROLE_NAMES = {
    EVENT_HUBS_DATA_RECEIVER: "Azure Event Hubs Data Receiver",
    EVENT_HUBS_DATA_SENDER: "Azure Event Hubs Data Sender",
    STORAGE_BLOB_DATA_OWNER: "Storage Blob Data Owner",
    STORAGE_BLOB_DATA_CONTRIBUTOR: "Storage Blob Data Contributor",
    STORAGE_BLOB_DATA_READER: "Storage Blob Data Reader",
    STORAGE_QUEUE_DATA_MESSAGE_SENDER: "Storage Queue Data Message Sender",
    MONITORING_METRICS_PUBLISHER: "Monitoring Metrics Publisher",
    BLOB_WRITER: "Blob data writer (custom role: blob data actions only)",
}

_BLOBS = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs"
BLOB_READ_ACTIONS = (f"{_BLOBS}/read",)
BLOB_WRITE_ACTIONS = (f"{_BLOBS}/read", f"{_BLOBS}/write", f"{_BLOBS}/add/action", f"{_BLOBS}/delete", f"{_BLOBS}/move/action")
# Create, never replace: `add/action` authorizes Put Blob and Put Block List for a blob that does not exist yet
# ("Create a blob or snapshot, or append data"; https://learn.microsoft.com/azure/storage/blobs/storage-auth-abac-attributes),
# and overwriting an existing blob needs `write`, which this role lacks (no read, list or delete either).
BLOB_CREATE_ACTIONS = (f"{_BLOBS}/add/action",)
PATH = f"@Resource[{_BLOBS}:path]"
LIST_PREFIX = f"@Request[{_BLOBS}:prefix]"
CONDITION_VERSION = "2.0"


def path_condition(actions: Sequence[str], operator: str, value: str) -> str:
    """'These actions only where the blob path <operator> <value>' in the role assignment condition language."""
    if "'" in value:
        raise ValueError(f"a blob path in a condition cannot contain a quote: {value!r}")
    not_actions = " AND ".join(f"!(ActionMatches{{'{action}'}})" for action in actions)
    return f"(({not_actions}) OR ({PATH} {operator} '{value}'))"


def list_condition(prefix: str) -> str:
    """List blobs only with a `prefix` request parameter under `prefix`, and read blobs only under it.

    This is the documented "Read or list blobs in named containers with a path" condition for Storage
    Blob Data Reader (https://learn.microsoft.com/azure/storage/blobs/storage-auth-abac-examples), without
    the container-name clause because the assignment's scope is the container itself. List Blobs is the
    `blobs/read` data action with the `Blob.List` suboperation and has no blob path, so it is matched by
    the request's prefix; every other read (no `Blob.List`) by the blob's path. A listing without a
    prefix, or with a prefix outside `prefix`, is denied. The read half grants nothing beyond the
    READ_OBJECTS grant the core gives alongside (same prefix); it keeps the condition in the documented,
    validated form (a condition must end in an attribute expression, not a bare action test)."""
    if "'" in prefix:
        raise ValueError(f"a blob prefix in a condition cannot contain a quote: {prefix!r}")
    read = f"ActionMatches{{'{_BLOBS}/read'}}"
    reads = f"((!({read} AND NOT SubOperationMatches{{'Blob.List'}})) OR ({PATH} StringStartsWith '{prefix}'))"
    lists = f"((!({read} AND SubOperationMatches{{'Blob.List'}})) OR ({LIST_PREFIX} StringStartsWith '{prefix}'))"
    return f"{reads} AND {lists}"


def assign(role: RoleContext, platform: Platform, suffix: str, principal_id: pulumi.Input[str], guid: str, scope: pulumi.Input[str],
           description: str, condition: str | None = None, opts: pulumi.ResourceOptions | None = None) -> authorization.RoleAssignment:
    """A built-in role (by GUID) for a managed identity on `scope`, optionally with an ABAC condition."""
    return assign_definition(role, suffix, principal_id, platform.role_definition(guid), scope, f"{ROLE_NAMES.get(guid, guid)}: {description}",
                             condition=condition, principal_type="ServicePrincipal", opts=opts)


def assign_definition(role: RoleContext, suffix: str, principal_id: pulumi.Input[str], definition_id: pulumi.Input[str], scope: pulumi.Input[str],
                      description: str, condition: str | None = None, principal_type: str | None = "ServicePrincipal",
                      opts: pulumi.ResourceOptions | None = None) -> authorization.RoleAssignment:
    """Any role definition (built-in or custom). `principal_type` must match the principal or be None (ARM refuses
    a mismatch, `UnmatchedPrincipalType`, and looks an untyped principal up itself; see `principals`):
    "ServicePrincipal" for the managed identities this plan creates, which also avoids failures while a new
    principal replicates."""
    if principal_type is None:
        opts = pulumi.ResourceOptions.merge(opts or role.opts(), pulumi.ResourceOptions(transformations=[_untyped]))
    return authorization.RoleAssignment(
        role.name(suffix),
        principal_id=principal_id,
        principal_type=principal_type,
        role_definition_id=definition_id,
        scope=scope,
        description=description[:1024],
        condition=condition,
        condition_version=CONDITION_VERSION if condition else None,
        opts=opts or role.opts(),
    )


def custom_role(role: RoleContext, platform: Platform, suffix: str, name: str, description: str, actions: Sequence[str] = (),
                data_actions: Sequence[str] = (), opts: pulumi.ResourceOptions | None = None) -> authorization.RoleDefinition:
    """A custom role definition made for this stack, in its resource group.

    Its assignable scope is the resource group: `AssignableScopes` takes management groups, subscriptions or
    resource groups, not single resources (https://learn.microsoft.com/azure/role-based-access-control/role-definitions#assignablescopes);
    each assignment still names the exact resource (an app, a queue, a container). The name must be unique in the
    tenant, hence the stack's random suffix. Creating one needs Microsoft.Authorization/roleDefinitions/write
    (Owner or User Access Administrator; Role Based Access Control Administrator only assigns)."""
    rg_id = platform.resource_group.id
    return authorization.RoleDefinition(
        role.name(suffix),
        role_name=platform.name(lambda s: f"{role.pipeline}-{role.stack}-{name}-{s}"),
        description=description,
        role_type="CustomRole",
        permissions=[authorization.PermissionArgs(actions=list(actions) or None, data_actions=list(data_actions) or None)],
        assignable_scopes=[rg_id],
        scope=rg_id,
        opts=opts or role.opts(),
    )


def blob_writer(platform: Platform) -> authorization.RoleDefinition:
    """The stack's one custom role for writing blobs: Storage Blob Data Contributor's data actions (BLOB_WRITE_ACTIONS)
    without its control-plane actions.

    The built-in role also grants `Microsoft.Storage/storageAccounts/blobServices/containers/delete|read|write` and
    `.../generateUserDelegationKey/action` (https://learn.microsoft.com/azure/role-based-access-control/built-in-roles/storage#storage-blob-data-contributor),
    which an ABAC condition cannot narrow (conditions apply to data actions). So every stage's write grant on the shared
    `dead-letter` container let a misbehaving handler delete that container through ARM, with every stage's dead letters.
    The runtime needs none of them: it reads, writes and deletes blobs through the data plane. Made once, under the
    platform role (it outlives any one stage), with the first write grant."""
    if platform.blob_writer is None:
        platform.blob_writer = custom_role(
            platform.role, platform, "blob-writer-role", "blob-writer",
            f"Read, create, overwrite, move and delete blobs (no container management) for {platform.role.pipeline} "
            f"({platform.role.stack}); each assignment narrows it to one container and prefix", data_actions=BLOB_WRITE_ACTIONS,
            opts=platform.opts())  # the platform role made the provider, so it is not inherited: name it
    definition: authorization.RoleDefinition = platform.blob_writer
    return definition


def _untyped(args: pulumi.ResourceTransformationArgs) -> pulumi.ResourceTransformationResult:
    """Send a role assignment without `principalType`, so ARM looks the principal up. The SDK cannot: it fills in
    "User" for a missing type (the 2022-04-01 API description's default, Azure/azure-rest-api-specs#21664), which
    ARM then refuses for any group or service principal (`UnmatchedPrincipalType`)."""
    props = {key: value for key, value in args.props.items() if key not in ("principal_type", "principalType")}
    return pulumi.ResourceTransformationResult(props, args.opts)


def identity(role: RoleContext, platform: Platform, name: str) -> Handle[managedidentity.UserAssignedIdentity]:
    """The user-assigned identity of one app: a stage's (`name` = the stage's name) or the raw archiver's."""
    uami = managedidentity.UserAssignedIdentity(
        role.name(), resource_name_=f"id-{role.pipeline}-{role.stack}-{name}", resource_group_name=platform.rg_name,
        location=platform.location, tags=platform.tags, opts=role.opts(),
    )
    extra: dict[str, Any] = {"id": uami.id, "principal_id": uami.principal_id, "client_id": uami.client_id, "tenant_id": uami.tenant_id,
                             "assignments": []}
    return Handle(uami, uami.name, extra)


def grant(role: RoleContext, platform: Platform, who: Handle[managedidentity.UserAssignedIdentity], grants: Sequence[Grant]) -> None:
    """One role assignment per grant, on the exact event hub or container, narrowed to the prefix."""
    for index, g in enumerate(grants):
        # The stream handle's event hub is built lazily (see stream.py); grants scope to the hub itself.
        scope = g.target.extra["lazy"].hub().id if "lazy" in g.target.extra else g.target.extra["id"]
        reason = g.reason or g.access.value
        guid, condition = role_for(g)
        if condition is not None and not g.prefix:
            condition = None  # the whole container was granted
        definition = blob_writer(platform).id if guid == BLOB_WRITER else platform.role_definition(guid)
        assignment = assign_definition(role, f"{g.access.value.replace('_', '-')}-{index}", who.extra["principal_id"], definition, scope,
                                       f"{ROLE_NAMES[guid]}: {reason}", condition)
        who.extra["assignments"].append(assignment)


def role_for(g: Grant) -> tuple[str, str | None]:
    """The role (a built-in role's GUID, or BLOB_WRITER) and blob-path condition that give exactly this grant."""
    if g.access is Access.READ_STREAM:
        guid, condition = EVENT_HUBS_DATA_RECEIVER, None
    elif g.access is Access.WRITE_STREAM:
        guid, condition = EVENT_HUBS_DATA_SENDER, None
    elif g.access is Access.LIST_OBJECTS:
        guid, condition = STORAGE_BLOB_DATA_READER, list_condition(g.prefix)
    elif g.access is Access.READ_OBJECTS:
        guid, condition = STORAGE_BLOB_DATA_READER, path_condition(BLOB_READ_ACTIONS, "StringStartsWith", g.prefix)
    elif g.access is Access.WRITE_OBJECTS:
        guid, condition = BLOB_WRITER, path_condition(BLOB_WRITE_ACTIONS, "StringStartsWith", g.prefix)
    elif g.access is Access.READ_OBJECT:
        guid, condition = STORAGE_BLOB_DATA_READER, path_condition(BLOB_READ_ACTIONS, "StringEquals", g.prefix)
    else:  # pragma: no cover - exhaustive over Access
        raise ValueError(g.access)
    return guid, condition
