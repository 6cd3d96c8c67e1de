"""S3 buckets with every v7 side resource a reviewer expects, and artifact uploads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from pipeline.backend import BucketSpec, Handle, RoleContext


def bucket(role: RoleContext, spec: BucketSpec) -> Handle[aws.s3.Bucket]:
    """Private (public access blocked, ACLs disabled), encrypted, TLS-only, expiring."""
    b = aws.s3.Bucket(role.name(), bucket_prefix=f"{role.pipeline}-{role.stack}-{spec.key}-"[:37], force_destroy=False, opts=role.opts())
    block = aws.s3.BucketPublicAccessBlock(
        role.name("public-access"), bucket=b.id,
        block_public_acls=True, block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True,
        opts=role.opts(),
    )
    aws.s3.BucketOwnershipControls(role.name("ownership"), bucket=b.id, rule={"object_ownership": "BucketOwnerEnforced"}, opts=role.opts())
    aws.s3.BucketServerSideEncryptionConfiguration(
        role.name("encryption"), bucket=b.id,
        rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
        opts=role.opts(),
    )
    rules: list[Any] = [{
        "id": "abort-incomplete-uploads", "status": "Enabled", "filter": {},
        "abort_incomplete_multipart_upload": {"days_after_initiation": 1},
    }]
    if spec.retention_days is not None:
        rules.append({"id": f"expire-after-{spec.retention_days}-days", "status": "Enabled", "filter": {}, "expiration": {"days": spec.retention_days}})
    aws.s3.BucketLifecycleConfiguration(role.name("lifecycle"), bucket=b.id, rules=rules, opts=role.opts())
    tls_only = pulumi.Output.json_dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": [b.arn, pulumi.Output.concat(b.arn, "/*")],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }],
    })
    # The policy waits for the public access block so S3 never sees a policy it would call public.
    aws.s3.BucketPolicy(role.name("tls-only"), bucket=b.id, policy=tls_only, opts=role.opts(depends_on=[block]))
    return Handle(b, b.bucket, {"arn": b.arn, "id": b.id, "role": role, "eventbridge": False})


def enable_eventbridge(source: Handle[aws.s3.Bucket]) -> None:
    """S3 -> EventBridge delivery; one BucketNotification per bucket (S3 replaces the whole config)."""
    if source.extra["eventbridge"]:
        return
    bucket_role: RoleContext = source.extra["role"]
    aws.s3.BucketNotification(bucket_role.name("eventbridge"), bucket=source.extra["id"], eventbridge=True, opts=bucket_role.opts())
    source.extra["eventbridge"] = True


def artifact(role: RoleContext, target: Handle[aws.s3.Bucket], path: Path, key: str) -> Handle[aws.s3.BucketObjectv2]:
    obj = aws.s3.BucketObjectv2(
        role.name(), bucket=target.extra["id"], key=key, source=pulumi.FileAsset(str(path)),
        server_side_encryption="AES256", opts=role.opts(),
    )
    return Handle(obj, key, {"arn": pulumi.Output.concat(target.extra["arn"], "/", key)})
