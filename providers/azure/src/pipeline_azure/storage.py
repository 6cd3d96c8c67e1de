"""Buckets are private blob containers; one lifecycle policy per account covers them all.

Azure allows a single management policy per storage account (its name must be `default`), and
the core asks for buckets one at a time. So `bucket()` only records each container's retention,
and `lifecycle_policy()` - called from `observability()`, the last role the core calls - creates the
one policy with a delete rule per container, parented to the platform role where the account lives
and depending on every container. Adding a stage later updates that policy in place.

A rule's `prefixMatch` is `<container>/<blob prefix>` (the filter "must start with a container name",
https://learn.microsoft.com/azure/storage/blobs/lifecycle-management-policy-structure). A stage's container
also holds its window state (`_state/<stage>/`: watermark and lease, `pipeline.wiring.state_prefix`), which a
run rewrites only when it has new data; so a stage container's rule matches only its data prefix
(`<container>/<stage>/`): a quiet source must never lose its watermark, or the next run would read again
everything the source still holds. Other containers hold only data and expire whole (`<container>/`).

Data containers (`BucketSpec.data`) and the policy are kept when the stack is destroyed unless the
backend's `delete_data` is set (see platform.py for why the account and resource group are kept
too); deleting a container deletes its blobs, so `delete_data` needs no force flag on Azure.
Retention rules delete blobs after `retention_days`; with soft delete on the account a deleted blob
stays recoverable (and billed) for `platform.SOFT_DELETE_DAYS` more days.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
from pulumi_azure_native import storage

from pipeline.roles import BucketSpec, Handle, RoleContext
from pipeline.wiring import stage_prefix
from pipeline_azure import naming
from pipeline_azure.platform import Platform, blob_endpoint


def bucket(role: RoleContext, platform: Platform, spec: BucketSpec, uploads: bool = False,
           stage: bool = False) -> Handle[storage.BlobContainer]:
    """`stage`: the container of a stage's outputs and window state, whose retention covers the outputs only."""
    # Model artifacts are uploaded by Pulumi, which needs shared-key access (see platform.py): they live
    # in the artifacts account. Everything else is pipeline data in the key-less data account.
    account = platform.data if spec.data else platform.artifacts
    name = naming.container_name(spec.key, uploads=uploads)
    container = storage.BlobContainer(
        role.name(), account_name=account.name, resource_group_name=platform.rg_name, container_name=name,
        public_access=storage.PublicAccess.NONE, metadata={"purpose": spec.purpose[:200]},
        opts=platform.data_opts(role) if spec.data else role.opts(),
    )
    handle = Handle(container, container.name, {
        "id": container.id, "container": name, "account": account.name, "account_id": account.id,
        "blob_endpoint": blob_endpoint(account), "key": spec.key, "retention_days": spec.retention_days,
        "in_data_account": account is platform.data,
        "expire_prefix": f"{name}/{stage_prefix(spec.key)}" if stage else f"{name}/",
    })
    platform.buckets[spec.key] = handle
    return handle


def lifecycle_rules(buckets: dict[str, Handle[Any]]) -> list[storage.ManagementPolicyRuleArgs]:
    """One delete rule per container with a retention, over its data prefix only (see the module docstring);
    rule names are alphanumeric and unique."""
    rules: list[storage.ManagementPolicyRuleArgs] = []
    seen: set[str] = set()
    for handle in buckets.values():
        days = handle.extra["retention_days"]
        if days is None or not handle.extra["in_data_account"]:
            continue
        container = handle.extra["container"]
        name = f"expire{naming.alnum(container)}"
        while name in seen:
            name += "x"
        seen.add(name)
        rules.append(storage.ManagementPolicyRuleArgs(
            name=name,
            type=storage.RuleType.LIFECYCLE,
            enabled=True,
            definition=storage.ManagementPolicyDefinitionArgs(
                filters=storage.ManagementPolicyFilterArgs(blob_types=["blockBlob", "appendBlob"], prefix_match=[handle.extra["expire_prefix"]]),
                actions=storage.ManagementPolicyActionArgs(
                    base_blob=storage.ManagementPolicyBaseBlobArgs(delete=storage.DateAfterModificationArgs(days_after_modification_greater_than=days)),
                ),
            ),
        ))
    return rules


def lifecycle_policy(platform: Platform) -> storage.ManagementPolicy | None:
    rules = lifecycle_rules(platform.buckets)
    if not rules:
        return None
    containers = [h.resource for h in platform.buckets.values() if h.extra["in_data_account"]]
    return storage.ManagementPolicy(
        platform.role.name("data-lifecycle"),
        account_name=platform.data.name,
        resource_group_name=platform.rg_name,
        management_policy_name="default",  # the only name Azure accepts: one policy per account
        policy=storage.ManagementPolicySchemaArgs(rules=rules),
        opts=platform.data_opts(depends_on=containers),
    )


def artifact(role: RoleContext, platform: Platform, target: Handle[storage.BlobContainer], path: Path, key: str) -> Handle[storage.Blob]:
    blob = storage.Blob(
        role.name(), account_name=target.extra["account"], container_name=target.extra["container"], resource_group_name=platform.rg_name,
        blob_name=key, source=pulumi.FileAsset(str(path)), type=storage.BlobType.BLOCK, content_type="application/octet-stream",
        opts=role.opts(depends_on=[target.resource]),
    )
    return Handle(blob, key, {"url": blob.url})
