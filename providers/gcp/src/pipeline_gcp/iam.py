"""Service accounts and IAM members, each bound to the narrowest resource that works.

Roles and scopes follow reference gcp.md §2. Object access on a bucket is narrowed to a prefix (or one
object) with an IAM Condition on `resource.name`, which uniform bucket-level access supports
(https://cloud.google.com/storage/docs/access-control/iam#conditions).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_gcp as gcp

from pipeline.roles import Access, Grant, Handle, RoleContext
from pipeline_gcp import naming
from pipeline_gcp.env import Env

OBJECT_READER = "roles/storage.objectViewer"  # storage.objects.get (+ list, which a prefix condition does not reach)
# Outputs are idempotent: a retried invocation overwrites its own object, and overwriting needs
# storage.objects.delete as well as .create (objectCreator alone fails with 403 on an existing name).
# objectUser is the narrowest predefined role with both; the prefix condition keeps it to the stage's own prefix.
OBJECT_WRITER = "roles/storage.objectUser"
OBJECT_CREATOR = "roles/storage.objectCreator"  # producers drop new files: create only, no overwrite or delete
PUBLISHER = "roles/pubsub.publisher"


def member(email: pulumi.Input[str]) -> pulumi.Output[str]:
    return pulumi.Output.concat("serviceAccount:", email)


def service_account(role: RoleContext, env: Env, suffix: str, account_id: str, display: str, description: str) -> Handle[gcp.serviceaccount.Account]:
    sa = gcp.serviceaccount.Account(role.name(suffix), account_id=account_id, display_name=display[:100],
                                    description=description[:256], opts=env.opts(role))
    return Handle(sa, sa.email, {"email": sa.email, "member": member(sa.email), "bindings": [], "stream_grants": []})


def stage_identity(role: RoleContext, env: Env, stage: str) -> Handle[gcp.serviceaccount.Account]:
    account_id = naming.service_account_id(role.pipeline, role.stack, stage)
    return service_account(role, env, "sa", account_id, f"{role.pipeline} {stage} ({role.stack})",
                           f"Runs stage {stage} of pipeline {role.pipeline} ({role.stack}); starts with no permissions")


def _object_path(bucket: pulumi.Input[str], key: pulumi.Input[str]) -> pulumi.Output[str]:
    return pulumi.Output.concat("projects/_/buckets/", bucket, "/objects/", key)


def prefix_condition(bucket: pulumi.Input[str], prefix: str, title: str) -> gcp.storage.BucketIAMMemberConditionArgs:
    return gcp.storage.BucketIAMMemberConditionArgs(
        title=title[:100], description=f"objects under {prefix}",
        expression=pulumi.Output.concat('resource.name.startsWith("', _object_path(bucket, prefix), '")'))


def object_condition(bucket: pulumi.Input[str], key: pulumi.Input[str], title: str) -> gcp.storage.BucketIAMMemberConditionArgs:
    return gcp.storage.BucketIAMMemberConditionArgs(
        title=title[:100], description="one object", expression=pulumi.Output.concat('resource.name == "', _object_path(bucket, key), '"'))


def bucket_member(role: RoleContext, env: Env, suffix: str, bucket: pulumi.Input[str], iam_role: pulumi.Input[str], who: pulumi.Input[str],
                  condition: gcp.storage.BucketIAMMemberConditionArgs | None = None, *after: Any) -> gcp.storage.BucketIAMMember:
    return gcp.storage.BucketIAMMember(role.name(suffix), bucket=bucket, role=iam_role, member=who, condition=condition, opts=env.opts(role, *after))


def grant(role: RoleContext, env: Env, identity: Handle[gcp.serviceaccount.Account], grants: Sequence[Grant]) -> None:
    """Map the core's access decisions to bucket-level members, each conditioned on its prefix or object."""
    who = identity.extra["member"]
    for index, g in enumerate(grants):
        suffix = f"{g.access.value.replace('_', '-')}-{index}"
        if g.access is Access.READ_STREAM:
            # The stage never reads Pub/Sub itself: its Cloud Storage subscription writes batch files to the stage's
            # batch bucket (triggers.stream_trigger), where this access is realised as object reads under the stage's
            # prefix, once that bucket exists.
            identity.extra["stream_grants"].append(g)
            continue
        bucket = g.target.name
        binding: pulumi.Resource
        if g.access is Access.WRITE_STREAM:
            binding = gcp.pubsub.TopicIAMMember(role.name(suffix), topic=g.target.extra["id"], role=PUBLISHER, member=who, opts=env.opts(role))
        elif g.access is Access.LIST_OBJECTS:
            # storage.objects.list only (platform._lister_role), on the source bucket, which holds only that source's
            # outputs: a list request is checked against the bucket, so an object-prefix condition could never match it.
            assert env.lister_role is not None, "platform() creates the lister role when a schedule reads a source"
            binding = bucket_member(role, env, suffix, bucket, env.lister_role, who)
        elif g.access is Access.READ_OBJECTS:
            binding = bucket_member(role, env, suffix, bucket, OBJECT_READER, who, prefix_condition(bucket, g.prefix, f"read {g.prefix}"))
        elif g.access is Access.WRITE_OBJECTS:
            binding = bucket_member(role, env, suffix, bucket, OBJECT_WRITER, who, prefix_condition(bucket, g.prefix, f"write {g.prefix}"))
        elif g.access is Access.READ_OBJECT:
            binding = bucket_member(role, env, suffix, bucket, OBJECT_READER, who, object_condition(bucket, g.prefix, "read model"))
        else:  # pragma: no cover - exhaustive over Access
            raise ValueError(g.access)
        identity.extra["bindings"].append(binding)


def invoker(role: RoleContext, env: Env, suffix: str, function: Handle[Any], who: pulumi.Input[str]) -> gcp.cloudrunv2.ServiceIamMember:
    """roles/run.invoker on this function's Cloud Run service only (a gen2 function is a Cloud Run service)."""
    return gcp.cloudrunv2.ServiceIamMember(role.name(suffix), project=env.project, location=env.region,
                                           name=function.extra["service"], role="roles/run.invoker", member=who, opts=env.opts(role))


def topic_publisher(role: RoleContext, env: Env, suffix: str, topic: pulumi.Input[str], who: pulumi.Input[str],
                    *after: pulumi.Resource) -> gcp.pubsub.TopicIAMMember:
    """`after`: what must exist first (e.g. whatever creates the service agent `who` names)."""
    return gcp.pubsub.TopicIAMMember(role.name(suffix), topic=topic, role=PUBLISHER, member=who, opts=env.opts(role, *after))


def producer(role: RoleContext, env: Env, source: str, grants: Sequence[Grant], outside: Sequence[str] = ()) -> Handle[gcp.serviceaccount.Account]:
    """Who may feed `source` ("stream" or the uploads bucket): publish on the topic, or create objects under the landing
    prefix, nothing else.

    * `outside` (`clouds.gcp.producers` members that feed this source: users, groups, service accounts of any project,
      workload identity federation principals) get the write-only role **directly**, each its own binding: no
      impersonation chain, and audit logs name the real caller.
    * The in-project service account is for producers running inside this project (attach it to a Cloud Run job, a VM,
      a GKE workload). Nobody is granted `roles/iam.serviceAccountTokenCreator` or `serviceAccountUser` on it, so only
      principals with those roles on the project (owners and IAM admins) can impersonate it.

    Create, never replace: `storage.objectCreator` allows `storage.objects.create` only, and replacing an existing object
    also needs `storage.objects.delete` (https://cloud.google.com/storage/docs/access-control/iam-roles), so an upload
    under a name that exists is refused (403): producers upload each file under a new name. The prefix condition uses
    the object's IAM resource name, `projects/_/buckets/<bucket>/objects/<name>`, which Cloud Storage evaluates for
    object creation (https://cloud.google.com/iam/docs/conditions-resource-attributes#resource-name)."""
    sa = service_account(role, env, "sa", naming.service_account_id(role.pipeline, role.stack, source, "in"),
                         f"{role.pipeline} {source} producer ({role.stack})",
                         f"Feeds {source} of pipeline {role.pipeline} ({role.stack}); may only publish or upload")
    members: list[tuple[str, pulumi.Input[str]]] = [("", sa.extra["member"]), *((f"-outside-{n}", who) for n, who in enumerate(outside))]
    for index, g in enumerate(grants):
        for suffix, who in members:
            if g.access is Access.WRITE_STREAM:
                gcp.pubsub.TopicIAMMember(role.name(f"publisher-{index}{suffix}"), topic=g.target.extra["id"], role=PUBLISHER, member=who,
                                          opts=env.opts(role))
            elif g.access is Access.WRITE_OBJECTS:
                bucket_member(role, env, f"uploader-{index}{suffix}", g.target.name, OBJECT_CREATOR, who,
                              prefix_condition(g.target.name, g.prefix, f"upload to {g.prefix}"))
            else:  # pragma: no cover - the core grants producers only these
                raise ValueError(g.access)
    sa.extra["outside"] = list(outside)
    return sa
