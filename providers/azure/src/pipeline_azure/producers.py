"""Producers: who may write to the pipeline's sources (the event hub, the uploads landing prefix), and nothing else.

Per source the plan makes a **producer identity** (a user-assigned identity, `id-<pipeline>-<stack>-<source>-in`,
its client id in the `producers` output) holding exactly the source's write role:

* stream: Azure Event Hubs Data Sender on the event hub itself (not the namespace);
* uploads: a custom **create-only** role, `blobs/add/action` and nothing else, on the landing container with an
  ABAC condition on the blob path (`<uploads>/` only). `add/action` authorizes Put Blob and Put Block List of a
  blob that does not exist yet; overwriting needs `blobs/write`, reading `read`, deleting `delete`, listing
  `read` with Blob.List: none of them is granted, so a producer can add files and never read, replace or remove
  any (AWS `s3:PutObject`-only and GCP `objectCreator` give producers the same). `az storage blob upload
  --auth-mode login` uploads without `--overwrite` (a conditional create, If-None-Match: *).

Outside parties (`clouds.azure.producers`) are wired to exactly the sources each feeds (`producer.feeds`):

* `principal` (an Entra object id of this tenant: a user, a guest, a group, a service principal of a
  multi-tenant app, a managed identity): the same role assignments as the producer identity, made to that
  principal directly, typed as the spec says (`principals`);
* `federated` (a workload outside Azure: GitHub Actions, another cloud, Kubernetes): a federated identity
  credential on the source's producer identity trusting exactly that issuer, subject and audience, so the
  workload exchanges its own token for one of the producer identity (no secret anywhere). Azure refuses
  concurrent writes of credentials on one identity, so they are created one after another
  (https://learn.microsoft.com/entra/workload-id/workload-identity-federation-considerations#concurrent-updates-arent-supported-user-assigned-managed-identities);
  an identity holds at most 20, the spec allows 20 producers.

An identity without a federated credential can only be used by Azure resources it is attached to (in this
tenant); it stays for in-Azure producers.
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
from pulumi_azure_native import authorization, managedidentity

from pipeline.roles import Access, Grant, Handle, RoleContext
from pipeline.spec.model import AzureProducer, PipelineSpec
from pipeline_azure import iam, principals
from pipeline_azure.platform import Platform


def source_roles(role: RoleContext, platform: Platform, grants: Sequence[Grant]) -> list[tuple[pulumi.Input[str], pulumi.Input[str], str | None, str]]:
    """(role definition id, scope, condition, reason) for each grant a producer holds on its source."""
    roles: list[tuple[pulumi.Input[str], pulumi.Input[str], str | None, str]] = []
    creator: authorization.RoleDefinition | None = None
    for g in grants:
        if g.access is Access.WRITE_STREAM:
            roles.append((platform.role_definition(iam.EVENT_HUBS_DATA_SENDER), g.target.extra["lazy"].hub().id, None,
                          f"{iam.ROLE_NAMES[iam.EVENT_HUBS_DATA_SENDER]}: {g.reason}"))
        elif g.access is Access.WRITE_OBJECTS:
            if creator is None:
                creator = iam.custom_role(role, platform, "create-only-role", f"{role.key}-create-only",
                                          f"Create new blobs (never read, replace, list or delete) for {role.pipeline} ({role.stack}) producers",
                                          data_actions=iam.BLOB_CREATE_ACTIONS)
            roles.append((creator.id, g.target.extra["id"], iam.path_condition(iam.BLOB_CREATE_ACTIONS, "StringStartsWith", g.prefix),
                          f"create-only under {g.prefix}: {g.reason}"))
        else:  # pragma: no cover - the core gives producers write grants only
            raise ValueError(f"a producer cannot be granted {g.access}")
    return roles


def producer(role: RoleContext, platform: Platform, spec: PipelineSpec, source: str, grants: Sequence[Grant]) -> Handle[managedidentity.UserAssignedIdentity]:
    """The source's producer identity with its write role, the outside principals' assignments and the federated
    credentials (see the module doc)."""
    uami = managedidentity.UserAssignedIdentity(
        role.name(), resource_name_=f"id-{role.pipeline}-{role.stack}-{source}-in", resource_group_name=platform.rg_name,
        location=platform.location, tags=platform.tags, opts=role.opts(),
    )
    roles = source_roles(role, platform, grants)
    assignments: list[authorization.RoleAssignment] = []
    for index, (definition, scope, condition, reason) in enumerate(roles):
        assignments.append(iam.assign_definition(role, f"write-{index}", uami.principal_id, definition, scope, f"producer identity: {reason}",
                                                 condition=condition))
    credentials: list[managedidentity.FederatedIdentityCredential] = []
    for number, entry in enumerate(spec.clouds.azure.producers):
        if not entry.feeds(source):
            continue
        if entry.principal is not None:
            assignments += _principal_roles(role, entry, number, roles)
        else:
            credentials.append(_federated(role, platform, uami, entry, credentials[-1] if credentials else None))
    return Handle(uami, uami.client_id, {"id": uami.id, "principal_id": uami.principal_id, "client_id": uami.client_id,
                                         "assignments": assignments, "credentials": credentials})


def _principal_roles(role: RoleContext, entry: AzureProducer, number: int,
                     roles: list[tuple[pulumi.Input[str], pulumi.Input[str], str | None, str]]) -> list[authorization.RoleAssignment]:
    assert entry.principal is not None
    who = principals.parse(entry.principal)
    return [iam.assign_definition(role, f"producer-{number}-{index}", who.object_id, definition, scope,
                                  f"clouds.azure.producers[{number}]: {reason}", condition=condition, principal_type=who.principal_type)
            for index, (definition, scope, condition, reason) in enumerate(roles)]


def _federated(role: RoleContext, platform: Platform, uami: managedidentity.UserAssignedIdentity, entry: AzureProducer,
               after: managedidentity.FederatedIdentityCredential | None) -> managedidentity.FederatedIdentityCredential:
    federated = entry.federated
    assert federated is not None
    name = principals.credential_name(federated)
    return managedidentity.FederatedIdentityCredential(
        role.name(name),
        federated_identity_credential_resource_name=name,
        resource_name_=uami.name,
        resource_group_name=platform.rg_name,
        issuer=federated.issuer,
        subject=federated.subject,
        audiences=[federated.audience],
        # One credential write at a time per identity: Azure refuses concurrent ones.
        opts=role.opts(depends_on=[after] if after is not None else []),
    )
