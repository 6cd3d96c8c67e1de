"""Cloud Storage buckets (private, uniform access, expiring), model artifacts and function sources."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pulumi_gcp as gcp

from pipeline.backend import BucketSpec, Handle, RoleContext
from pipeline.packaging import Package
from pipeline_gcp.platform import Env


def _bucket(role: RoleContext, env: Env, key: str, retention_days: int | None, suffix: str = "") -> gcp.storage.Bucket:
    rules: list[Any] = [
        {"action": {"type": "AbortIncompleteMultipartUpload"}, "condition": {"age": 1}},
    ]
    if retention_days is not None:
        rules.append({"action": {"type": "Delete"}, "condition": {"age": retention_days}})
    # No `name`: Pulumi autonames (logical name + random suffix), which keeps names globally unique and
    # under 63 characters (pipeline <= 20 + key <= 20 + "-bucket" + 8).
    return gcp.storage.Bucket(
        role.name(suffix),
        location=env.region,  # regional, in the functions' region: storage triggers must match the bucket location
        storage_class="STANDARD",
        uniform_bucket_level_access=True,  # IAM only (no ACLs); required for IAM Conditions on prefixes
        public_access_prevention="enforced",
        force_destroy=False,
        lifecycle_rules=rules,
        labels={"bucket-role": key},
        opts=env.opts(role),
    )


def bucket(role: RoleContext, env: Env, spec: BucketSpec) -> Handle[gcp.storage.Bucket]:
    b = _bucket(role, env, spec.key, spec.retention_days)
    handle: Handle[gcp.storage.Bucket] = Handle(b, b.name, {"url": b.url, "key": spec.key})
    env.buckets[spec.key] = handle
    return handle


def sources_bucket(role: RoleContext, env: Env) -> Handle[gcp.storage.Bucket]:
    """Holds function source packages; kept (no expiry) because a function's source must outlive its build."""
    b = _bucket(role, env, "sources", None, "sources")
    return Handle(b, b.name, {"url": b.url, "key": "sources"})


def artifact(role: RoleContext, env: Env, target: Handle[gcp.storage.Bucket], path: Path, key: str) -> Handle[gcp.storage.BucketObject]:
    obj = gcp.storage.BucketObject(role.name(), bucket=target.name, name=key, source=pulumi.FileAsset(str(path)), opts=env.opts(role))
    return Handle(obj, key, {"bucket": target.name})


def source_object(role: RoleContext, env: Env, stage: str, package: Package) -> gcp.storage.BucketObject:
    """Content-addressed object name: Cloud Functions only redeploys when the object name changes."""
    assert env.sources is not None
    return gcp.storage.BucketObject(
        role.name("source"), bucket=env.sources.name, name=f"{stage}/{package.sha256[:16]}.zip",
        source=pulumi.FileAsset(str(package.path)), content_type="application/zip", opts=env.opts(role),
    )
