"""Cloud Storage buckets (private, uniform access, expiring), model artifacts and function sources.

Destroy: data buckets (`BucketSpec.data`: outputs, uploads, raw archive, dead letters) outlive `pipeline
destroy` (`retain_on_delete`) unless the backend's `delete_data` is set, which `pipeline destroy
--delete-data` deploys first: then they are `force_destroy` (deleted with their objects) and not retained.
Deploy artifacts (function sources, models) and the internal batch buckets are always deletable.

Soft delete: Cloud Storage keeps deleted and overwritten objects for 7 days by default, billed as storage
(https://cloud.google.com/storage/docs/soft-delete). Set explicitly: 7 days on data buckets (an output a
redelivery overwrote, or an expired one, can still be restored), off on buckets whose objects are copies
(batch files: the stream and the raw archive hold the records; sources and models: rebuilt from the spec).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pulumi
import pulumi_gcp as gcp

from pipeline.packaging import Package
from pipeline.roles import BucketSpec, Handle, RoleContext
from pipeline_gcp.env import Env

SOFT_DELETE_DATA_S = 7 * 86_400  # the default, made explicit; 7-90 days or 0 (pulumi-gcp BucketSoftDeletePolicyArgs)
SOFT_DELETE_OFF = 0


def _bucket(role: RoleContext, env: Env, key: str, retention_days: int | None, *, data: bool, suffix: str = "",
            expiring: Sequence[str] = ()) -> gcp.storage.Bucket:
    """`expiring`: when set, only objects under these prefixes expire by age (see `bucket`); else the whole bucket."""
    rules = [gcp.storage.BucketLifecycleRuleArgs(action=gcp.storage.BucketLifecycleRuleActionArgs(type="AbortIncompleteMultipartUpload"),
                                                 condition=gcp.storage.BucketLifecycleRuleConditionArgs(age=1))]
    if retention_days is not None:
        rules.append(gcp.storage.BucketLifecycleRuleArgs(action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
                                                         condition=gcp.storage.BucketLifecycleRuleConditionArgs(
                                                             age=retention_days, matches_prefixes=list(expiring) or None)))
    keep = data and not env.delete_data
    # An explicit name (Pulumi's autoname would be the logical name + 8 characters: up to 20 + 20 + 16 + 8 = 64 and
    # beyond, over the 63 a bucket allows): `<pipeline>-<stack>-<key>-<the stack's random suffix>`, shortened with a
    # hash when long (naming.bucket_name).
    return gcp.storage.Bucket(
        role.name(suffix),
        name=env.bucket_name(key),
        location=env.region,  # regional, in the functions' region
        storage_class="STANDARD",
        uniform_bucket_level_access=True,  # IAM only (no ACLs); required for IAM Conditions on prefixes
        public_access_prevention="enforced",
        force_destroy=not keep,
        soft_delete_policy=gcp.storage.BucketSoftDeletePolicyArgs(retention_duration_seconds=SOFT_DELETE_DATA_S if data else SOFT_DELETE_OFF),
        lifecycle_rules=rules,
        labels={"bucket-role": key, "data": "true" if data else "false"},
        opts=env.opts(role, retain_on_delete=keep),
    )


def bucket(role: RoleContext, env: Env, spec: BucketSpec, expiring: Sequence[str] = ()) -> Handle[gcp.storage.Bucket]:
    """`expiring`: the data prefixes that expire by age, when the bucket also keeps state that must not (a window
    stage's `_state/<stage>/` watermark and lease: an empty window writes nothing, so a source quiet for longer than
    the retention would otherwise lose the watermark and the next run re-read everything). Cloud Storage's lifecycle
    condition `matchesPrefix` (https://cloud.google.com/storage/docs/lifecycle#matchesprefix-matchessuffix)."""
    b = _bucket(role, env, spec.key, spec.retention_days, data=spec.data, expiring=expiring)
    handle: Handle[gcp.storage.Bucket] = Handle(b, b.name, {"url": b.url, "key": spec.key})
    env.buckets[spec.key] = handle
    return handle


def batch_bucket(role: RoleContext, env: Env, stage: str, retention_days: int) -> Handle[gcp.storage.Bucket]:
    """A stream stage's internal batch bucket (shared by the stages whose files come out the same): its Cloud Storage
    subscription writes batch files here, each reader reads each once. Kept as long as a dead letter (batching.files_days), no
    soft delete, deletable on destroy: the records also live in the stream (and the raw archive); a batch that gives up
    is dead-lettered record by record by the runtime."""
    b = _bucket(role, env, f"{stage}-batches", retention_days, data=False, suffix="batches")
    return Handle(b, b.name, {"url": b.url, "key": f"{stage}-batches"})


def sources_bucket(role: RoleContext, env: Env) -> Handle[gcp.storage.Bucket]:
    """Holds function source packages; kept (no expiry) because a function's source must outlive its build."""
    b = _bucket(role, env, "sources", None, data=False, suffix="sources")
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
