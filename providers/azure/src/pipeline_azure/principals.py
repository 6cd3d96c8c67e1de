"""Outside Entra ID principals in the spec (`http_invokers`, producers' `principal`): their role-assignment type.

A role assignment may state the principal's type, and ARM refuses one that does not match the principal
(`UnmatchedPrincipalType`): a group or a service principal assigned as "User" fails the deploy. So the
spec's typed forms map to ARM's types (`user:` -> User, `group:` -> Group, `sp:` -> ServicePrincipal; a
managed identity is a service principal), and an untyped object id gets no type at all: ARM then looks
the principal up itself (https://learn.microsoft.com/azure/role-based-access-control/role-assignments-template#principaltype).
The identities this plan creates are always assigned as ServicePrincipal (iam.assign), which also spares
a new identity the lookup while it replicates.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from pipeline_azure import naming

PRINCIPAL_TYPES = {"user": "User", "group": "Group", "sp": "ServicePrincipal"}


class Principal(NamedTuple):
    """An object id and the role-assignment type it is assigned with (None: let ARM find out)."""

    object_id: str
    principal_type: str | None

    @property
    def is_group(self) -> bool:
        return self.principal_type == "Group"


def parse(entry: str) -> Principal:
    """'group:<oid>' -> Principal(<oid>, 'Group'); a bare '<oid>' -> Principal(<oid>, None).

    The spec already checked the form (`AZURE_PRINCIPAL`: an optional lowercase kind, then a GUID)."""
    kind, sep, object_id = entry.partition(":")
    if not sep:
        return Principal(entry.lower(), None)
    if kind not in PRINCIPAL_TYPES:
        raise ValueError(f"{entry!r}: unknown principal kind {kind!r} (use user:, group: or sp:)")
    return Principal(object_id.lower(), PRINCIPAL_TYPES[kind])


# Federated identity credential names: 3-120 characters, letters, digits, '-' and '_', starting with a letter or digit.
FIC_PREFIX = "producer-"


def credential_name(federated: Any) -> str:
    """A producer's federated credential, named after what it trusts (issuer, subject, audience), so reordering
    `producers` does not recreate credentials and a duplicate shows as the same name."""
    return FIC_PREFIX + naming.short_hash(federated.issuer, federated.subject, federated.audience, length=12)
