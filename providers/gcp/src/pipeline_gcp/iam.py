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

from pipeline.backend import Access, Grant, Handle, RoleContext
from pipeline_gcp import naming
from pipeline_gcp.platform import Env

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


def prefix_condition(bucket: pulumi.Input[str], prefix: str, title: str) -> dict[str, Any]:
    return {"title": title[:100], "description": f"objects under {prefix}",
            "expression": pulumi.Output.concat('resource.name.startsWith("', _object_path(bucket, prefix), '")')}


def object_condition(bucket: pulumi.Input[str], key: pulumi.Input[str], title: str) -> dict[str, Any]:
    return {"title": title[:100], "description": "one object",
            "expression": pulumi.Output.concat('resource.name == "', _object_path(bucket, key), '"')}


def bucket_member(role: RoleContext, env: Env, suffix: str, bucket: pulumi.Input[str], iam_role: str, who: pulumi.Input[str],
                  condition: Any = None, *after: Any) -> gcp.storage.BucketIAMMember:
    return gcp.storage.BucketIAMMember(role.name(suffix), bucket=bucket, role=iam_role, member=who, condition=condition, opts=env.opts(role, *after))


def grant(role: RoleContext, env: Env, identity: Handle[gcp.serviceaccount.Account], grants: Sequence[Grant]) -> None:
    """Map the core's access decisions to bucket-level members, each conditioned on its prefix or object."""
    who = identity.extra["member"]
    for index, g in enumerate(grants):
        suffix = f"{g.access.value.replace('_', '-')}-{index}"
        if g.access is Access.READ_STREAM:
            # Delivery is a push subscription (see triggers.stream_trigger): Pub/Sub calls the function,
            # so the runtime identity needs no Pub/Sub role at all. The access is realised there as
            # roles/run.invoker for the subscription's own push identity on this function only.
            identity.extra["stream_grants"].append(g)
            continue
        bucket = g.target.name
        if g.access is Access.WRITE_STREAM:
            binding = gcp.pubsub.TopicIAMMember(role.name(suffix), topic=g.target.extra["id"], role=PUBLISHER, member=who, opts=env.opts(role))
        elif g.access is Access.LIST_OBJECTS:
            # A list request is checked against the bucket, not an object, so an object-prefix condition cannot
            # match it: the condition admits the bucket resource itself (listing its keys), and no object reads.
            condition = {"title": f"list {g.prefix}"[:100], "description": "list keys; the runtime lists with this prefix",
                         "expression": pulumi.Output.concat('resource.name == "projects/_/buckets/', bucket, '"')}
            binding = bucket_member(role, env, suffix, bucket, OBJECT_READER, who, condition)
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


def trigger_identity(role: RoleContext, env: Env, stage: str, identity: Handle[gcp.serviceaccount.Account]) -> None:
    """Object stages: Eventarc delivers as its own service account, created before the function that names it."""
    sa = service_account(role, env, "events-sa", naming.service_account_id(role.pipeline, role.stack, stage, "ev"),
                         f"{role.pipeline} {stage} events ({role.stack})",
                         f"Delivers storage events to stage {stage} of {role.pipeline} ({role.stack})")
    # Required to receive Cloud Storage direct events, and project-level by design: an Eventarc trigger has
    # no IAM policy of its own (https://cloud.google.com/eventarc/docs/roles-permissions; reference gcp.md §2).
    receiver = gcp.projects.IAMMember(role.name("events-receiver"), project=env.project, role="roles/eventarc.eventReceiver",
                                      member=sa.extra["member"], opts=env.opts(role))
    identity.extra["trigger_sa"] = sa
    identity.extra["trigger_bindings"] = [receiver]


def producer(role: RoleContext, env: Env, source: str, grants: Sequence[Grant]) -> Handle[gcp.serviceaccount.Account]:
    """A service account producers impersonate (or run as): publish on the topic, or create objects under the
    landing prefix, nothing else."""
    sa = service_account(role, env, "sa", naming.service_account_id(role.pipeline, role.stack, source, "in"),
                         f"{role.pipeline} {source} producer ({role.stack})",
                         f"Feeds {source} of pipeline {role.pipeline} ({role.stack}); may only publish or upload")
    who = sa.extra["member"]
    for index, g in enumerate(grants):
        if g.access is Access.WRITE_STREAM:
            gcp.pubsub.TopicIAMMember(role.name(f"publisher-{index}"), topic=g.target.extra["id"], role=PUBLISHER, member=who, opts=env.opts(role))
        elif g.access is Access.WRITE_OBJECTS:
            bucket_member(role, env, f"uploader-{index}", g.target.name, OBJECT_CREATOR, who,
                          prefix_condition(g.target.name, g.prefix, f"upload to {g.prefix}"))
        else:  # pragma: no cover - the core grants producers only these
            raise ValueError(g.access)
    return sa
