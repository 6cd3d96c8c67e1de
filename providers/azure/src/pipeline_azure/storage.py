"""Buckets are private blob containers; one lifecycle policy per account covers them all.

Azure allows a single management policy per storage account (its name must be `default`), and
the core asks for buckets one at a time. So `bucket()` only records each container's retention,
and `lifecycle_policy()` - called from `observability()`, the last role the core calls - creates the
one policy with a delete rule per container (`prefix_match=["<container>/"]`), parented to the
platform role where the account lives and depending on every container. Adding a stage later
updates that policy in place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
from pulumi_azure_native import storage

from pipeline.backend import BucketSpec, Handle, RoleContext
from pipeline_azure import naming
from pipeline_azure.platform import Platform, blob_endpoint


def bucket(role: RoleContext, platform: Platform, spec: BucketSpec) -> Handle[storage.BlobContainer]:
    # Model artifacts are uploaded by Pulumi, which needs shared-key access (see platform.py): they live
    # in the functions account. Everything else is pipeline data in the key-less data account.
    account = platform.functions if spec.key == "artifacts" else platform.data
    name = naming.container_name(spec.key)
    container = storage.BlobContainer(
        role.name(), account_name=account.name, resource_group_name=platform.rg_name, container_name=name,
        public_access=storage.PublicAccess.NONE, metadata={"purpose": spec.purpose[:200]}, opts=role.opts(),
    )
    handle = Handle(container, container.name, {
        "id": container.id, "container": name, "account": account.name, "account_id": account.id,
        "blob_endpoint": blob_endpoint(account), "key": spec.key, "retention_days": spec.retention_days,
        "in_data_account": account is platform.data,
    })
    platform.buckets[spec.key] = handle
    return handle


def lifecycle_rules(buckets: dict[str, Handle[Any]]) -> list[dict[str, Any]]:
    """One delete rule per container with a retention; rule names are alphanumeric and unique."""
    rules: list[dict[str, Any]] = []
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
        rules.append({
            "name": name,
            "type": "Lifecycle",
            "enabled": True,
            "definition": {
                "filters": {"blob_types": ["blockBlob", "appendBlob"], "prefix_match": [f"{container}/"]},
                "actions": {"base_blob": {"delete": {"days_after_modification_greater_than": days}}},
            },
        })
    return rules


def lifecycle_policy(platform: Platform) -> storage.ManagementPolicy | None:
    rules = lifecycle_rules(platform.buckets)
    if not rules:
        return None
    policy: Any = {"rules": rules}
    containers = [h.resource for h in platform.buckets.values() if h.extra["in_data_account"]]
    return storage.ManagementPolicy(
        platform.role.name("data-lifecycle"),
        account_name=platform.data.name,
        resource_group_name=platform.rg_name,
        management_policy_name="default",  # the only name Azure accepts: one policy per account
        policy=policy,
        opts=platform.opts(depends_on=containers),
    )


def artifact(role: RoleContext, platform: Platform, target: Handle[storage.BlobContainer], path: Path, key: str) -> Handle[storage.Blob]:
    blob = storage.Blob(
        role.name(), account_name=target.extra["account"], container_name=target.extra["container"], resource_group_name=platform.rg_name,
        blob_name=key, source=pulumi.FileAsset(str(path)), type=storage.BlobType.BLOCK, content_type="application/octet-stream",
        opts=role.opts(depends_on=[target.resource]),
    )
    return Handle(blob, key, {"url": blob.url})
