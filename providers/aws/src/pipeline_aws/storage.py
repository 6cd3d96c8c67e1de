"""S3 buckets with every v7 side resource a reviewer expects, and artifact uploads.

Each bucket is private (public access blocked, ACLs disabled), encrypted (SSE-S3), TLS-only, expires its
data after the spec's retention and aborts multipart uploads left incomplete for a day. On top of that:

* every data bucket (uploads, raw archive, stage outputs, dead letters) is versioned, so an overwritten or
  deleted object stays recoverable for `NONCURRENT_DAYS` (the week GCS soft delete and Azure blob soft delete
  keep), while current objects still expire after the retention;
* a bucket several stages are triggered from sends its events to EventBridge (rules fan them out); a bucket
  one stage reads notifies that stage's function directly, which the trigger sets up
  (`pipeline_aws.triggers.object_trigger`): S3 event notifications cost nothing, EventBridge bills each event;
* data buckets survive `pipeline destroy` with their configuration (`retain_on_delete`), unless the
  backend's `delete_data` is set, in which case S3 deletes them with every object version
  (`force_destroy`).

Aborting incomplete multipart uploads after a day bounds how late an upload can appear: S3 dates a multipart
object when the upload starts (`CreateMultipartUpload`), so a windowed stage reading the uploads bucket keeps
the keys it read for 25 hours (`pipeline.wiring.UPLOAD_LATENESS_S`) and neither misses nor rereads one.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from pipeline.roles import BucketSpec, Handle, RoleContext

BUCKET_PREFIX_MAX = 37  # `bucket_prefix` limit: S3 names are 3-63 characters and the provider appends 26
NONCURRENT_DAYS = 7  # an overwritten or deleted object stays recoverable this long (GCS soft delete's default, Azure's SOFT_DELETE_DAYS)
ABORT_MULTIPART_DAYS = 1  # wiring.UPLOAD_LATENESS_S (25 h) relies on this


def bucket_prefix(pipeline: str, stack: str, key: str) -> str:
    """`<pipeline>-<stack>-<key>-`, shortened so the key (the bucket's role) always stays whole.

    Autonaming appends a 26-character suffix after at most 37 characters. A plain cut at 37 dropped the
    key for long pipeline and stack names, so every bucket of such a pipeline shared one prefix. Here the
    `<pipeline>-<stack>` head is cut instead, with 4 hex of its hash so two long stacks stay apart.
    """
    head = f"{pipeline}-{stack}"
    room = BUCKET_PREFIX_MAX - len(key) - 2  # "-" between head and key, "-" before the suffix
    if len(head) > room:
        digest = hashlib.sha256(head.encode()).hexdigest()[:4]
        head = f"{head[:max(1, room - 5)].rstrip('-')}-{digest}"
    return f"{head}-{key}-"


def bucket(role: RoleContext, spec: BucketSpec, *, versioned: bool, eventbridge: bool, delete_data: bool,
           expire_prefix: str | None = None) -> Handle[aws.s3.Bucket]:
    """A private, encrypted, TLS-only bucket with lifecycle expiry (see the module docstring); `expire_prefix`
    limits the retention to the data under it (see `lifecycle_rules`)."""
    keep = spec.data and not delete_data

    def opts(**kwargs: Any) -> pulumi.ResourceOptions:
        # A kept bucket keeps its protections and expiry too: deleting the public access block or the
        # lifecycle of a retained bucket would leave it less private, and its data forever.
        return role.opts(retain_on_delete=keep, **kwargs)

    b = aws.s3.Bucket(role.name(), bucket_prefix=bucket_prefix(role.pipeline, role.stack, spec.key),
                      force_destroy=spec.data and delete_data, opts=opts())
    block = aws.s3.BucketPublicAccessBlock(
        role.name("public-access"), bucket=b.id,
        block_public_acls=True, block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True,
        opts=opts(),
    )
    aws.s3.BucketOwnershipControls(role.name("ownership"), bucket=b.id,
                                   rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"), opts=opts())
    aws.s3.BucketServerSideEncryptionConfiguration(
        role.name("encryption"), bucket=b.id,
        rules=[aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
            apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                sse_algorithm="AES256"),
        )],
        opts=opts(),
    )
    versioning = None
    if versioned:
        versioning = aws.s3.BucketVersioning(
            role.name("versioning"), bucket=b.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"), opts=opts(),
        )
    aws.s3.BucketLifecycleConfiguration(role.name("lifecycle"), bucket=b.id, rules=lifecycle_rules(spec.retention_days, versioned, expire_prefix),
                                        opts=opts(depends_on=[versioning] if versioning else []))
    tls_only = pulumi.Output.json_dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": [b.arn, pulumi.Output.concat(b.arn, "/*")],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }],
    })
    # The policy waits for the public access block so S3 never sees a policy it would call public.
    aws.s3.BucketPolicy(role.name("tls-only"), bucket=b.id, policy=tls_only, opts=opts(depends_on=[block]))
    if eventbridge:
        # One BucketNotification per bucket (S3 replaces the whole configuration); EventBridge rules fan out from it.
        aws.s3.BucketNotification(role.name("eventbridge"), bucket=b.id, eventbridge=True, opts=opts())
    return Handle(b, b.bucket, {"arn": b.arn, "id": b.id, "eventbridge": eventbridge, "versioned": versioned})


def lifecycle_rules(retention_days: int | None, versioned: bool,
                    expire_prefix: str | None = None) -> list[aws.s3.BucketLifecycleConfigurationRuleArgs]:
    """Abort stale multipart uploads; expire objects after the retention; on a versioned bucket also delete
    versions NONCURRENT_DAYS after they were replaced or expired, and the delete markers left behind.

    With `expire_prefix` the retention covers only the objects under it: a windowed stage's bucket also holds
    its watermark and lease (`pipeline.wiring.state_prefix`, `_state/<stage>/`), which an idle window does not
    rewrite; expired, the next run would read every source object still kept again. S3 filters cannot exclude
    a prefix, so the rule names the data's prefix instead. The other rules stay bucket-wide (they never touch a
    current object)."""
    rule = aws.s3.BucketLifecycleConfigurationRuleArgs
    everything = aws.s3.BucketLifecycleConfigurationRuleFilterArgs()  # empty: every object (the SDK docstring example)
    data = everything if expire_prefix is None else aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=expire_prefix)
    rules = [rule(id="abort-incomplete-uploads", status="Enabled", filter=everything,
                  abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                      days_after_initiation=ABORT_MULTIPART_DAYS))]
    if retention_days is not None:
        rules.append(rule(id=f"expire-after-{retention_days}-days", status="Enabled", filter=data,
                          expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=retention_days)))
    if versioned:
        rules.append(rule(id=f"noncurrent-after-{NONCURRENT_DAYS}-days", status="Enabled", filter=everything,
                          noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                              noncurrent_days=NONCURRENT_DAYS)))
        # `expired_object_delete_marker` cannot share a rule with `days` (S3 rejects the combination).
        rules.append(rule(id="remove-expired-delete-markers", status="Enabled", filter=everything,
                          expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(expired_object_delete_marker=True)))
    return rules


def artifact(role: RoleContext, target: Handle[aws.s3.Bucket], path: Path, key: str) -> Handle[aws.s3.BucketObjectv2]:
    obj = aws.s3.BucketObjectv2(
        role.name(), bucket=target.extra["id"], key=key, source=pulumi.FileAsset(str(path)),
        server_side_encryption="AES256", opts=role.opts(),
    )
    return Handle(obj, key, {"arn": pulumi.Output.concat(target.extra["arn"], "/", key)})
