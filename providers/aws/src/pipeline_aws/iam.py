"""Identities and least-privilege policies, each scoped to exact ARNs and prefixes."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_aws as aws

from pipeline.roles import Access, Grant, Handle, RoleContext

# Lambda's event source mapping reads with the function's role
# (https://docs.aws.amazon.com/lambda/latest/dg/services-kinesis-create.html).
KINESIS_READ = ["kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:ListShards"]
# Producers put records; the SDKs and the KPL also describe the stream and list its shards. The stream is
# encrypted with the AWS-managed key, which needs no KMS permission from producers
# (https://docs.aws.amazon.com/streams/latest/dev/permissions-user-key-KMS.html).
KINESIS_WRITE = ["kinesis:DescribeStreamSummary", "kinesis:ListShards", "kinesis:PutRecord", "kinesis:PutRecords"]
# Function URLs created since October 2025 need both actions; InvokeFunction is limited to calls that come
# through the URL (https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html).
URL_AUTH_TYPE = "AWS_IAM"
# An IAM role or user of a commercial, China or GovCloud partition, with an optional path.
PRINCIPAL_ARN = re.compile(r"^arn:aws(-cn|-us-gov)?:iam::\d{12}:(role|user)/[A-Za-z0-9+=,.@_/-]{1,512}$")


def trust(service: str, condition: dict[str, Any] | None = None) -> pulumi.Output[str]:
    """A service may assume the role; `condition` narrows it (a confused-deputy guard, see `from_source`)."""
    body: dict[str, Any] = {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    if condition:
        body["Condition"] = condition
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": [body]})


def from_source(account: pulumi.Input[str], source_arn: pulumi.Input[str]) -> dict[str, Any]:
    """Confused-deputy guard for a service principal: it acts only for `source_arn` in this account
    (https://docs.aws.amazon.com/IAM/latest/UserGuide/confused-deputy.html)."""
    return {"StringEquals": {"aws:SourceAccount": account}, "ArnEquals": {"aws:SourceArn": source_arn}}


def account_id(role: RoleContext) -> pulumi.Output[str]:
    """The account the stack deploys into (a placeholder in offline plans)."""
    return aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=role.component)).account_id


def policy(statements: list[dict[str, Any]]) -> pulumi.Output[str]:
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": statements})


def statement(sid: str, actions: list[str], resources: list[Any], condition: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Action": sorted(actions), "Resource": resources}
    if condition:
        body["Condition"] = condition
    return body


def service_role(role: RoleContext, suffix: str, service: str, description: str, condition: dict[str, Any] | None = None) -> aws.iam.Role:
    return aws.iam.Role(role.name(suffix), assume_role_policy=trust(service, condition), description=description, opts=role.opts())


def inline_policy(role: RoleContext, suffix: str, iam_role: aws.iam.Role, statements: list[dict[str, Any]]) -> aws.iam.RolePolicy:
    return aws.iam.RolePolicy(role.name(suffix), role=iam_role.id, policy=policy(statements), opts=role.opts())


def _sid(index: int, access: Access, suffix: str = "") -> str:
    return f"{''.join(p.title() for p in access.value.split('_'))}{suffix}{index}"


def _list_under(sid: str, bucket_arn: Any, prefix: str) -> dict[str, Any]:
    """ListBucket is a bucket action: the s3:prefix condition keeps it to keys under `prefix` (a request
    without that prefix is denied)."""
    return statement(sid, ["s3:ListBucket"], [bucket_arn], {"StringLike": {"s3:prefix": [f"{prefix}*"]}})


def grant_statements(grants: Sequence[Grant]) -> list[dict[str, Any]]:
    """Map the core's access decisions to IAM statements on exact resources.

    A prefix the identity both reads and writes is state it keeps (a schedule's watermark): it also gets
    ListBucket on that prefix, because without ListBucket S3 answers a GetObject of a missing key with
    403 AccessDenied instead of 404 NoSuchKey (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html),
    and the runtime must tell "no watermark yet" from "denied".
    """
    written = {(id(g.target), g.prefix) for g in grants if g.access is Access.WRITE_OBJECTS}
    statements = []
    for index, grant in enumerate(grants):
        arn = grant.target.extra["arn"]
        sid = _sid(index, grant.access)
        if grant.access is Access.READ_STREAM:
            statements.append(statement(sid, KINESIS_READ, [arn]))
        elif grant.access is Access.WRITE_STREAM:
            statements.append(statement(sid, KINESIS_WRITE, [arn]))
        elif grant.access is Access.READ_OBJECTS:
            statements.append(statement(sid, ["s3:GetObject"], [pulumi.Output.concat(arn, "/", grant.prefix, "*")]))
            if (id(grant.target), grant.prefix) in written:
                statements.append(_list_under(_sid(index, Access.LIST_OBJECTS, "State"), arn, grant.prefix))
        elif grant.access is Access.LIST_OBJECTS:
            statements.append(_list_under(sid, arn, grant.prefix))
        elif grant.access is Access.WRITE_OBJECTS:
            statements.append(statement(sid, ["s3:PutObject"], [pulumi.Output.concat(arn, "/", grant.prefix, "*")]))
        elif grant.access is Access.READ_OBJECT:
            statements.append(statement(sid, ["s3:GetObject"], [pulumi.Output.concat(arn, "/", grant.prefix)]))
        else:  # pragma: no cover - exhaustive over Access
            raise ValueError(grant.access)
    return statements


def lambda_identity(role: RoleContext, stage_name: str) -> Handle[aws.iam.Role]:
    iam_role = service_role(role, "role", "lambda.amazonaws.com", f"Runs stage {stage_name} of pipeline {role.pipeline} ({role.stack})")
    return Handle(iam_role, iam_role.name, {"arn": iam_role.arn, "policies": []})


def grant(role: RoleContext, identity: Handle[aws.iam.Role], grants: Sequence[Grant]) -> None:
    attached = inline_policy(role, "data-access", identity.resource, grant_statements(grants))
    identity.extra["policies"].append(attached)


def managed_policy(role: RoleContext, description: str, statements: list[dict[str, Any]]) -> Handle[aws.iam.Policy]:
    """A customer-managed policy that outside principals attach; its ARN goes into the deploy outputs."""
    document = aws.iam.Policy(role.name("policy"), description=description, policy=policy(statements), opts=role.opts())
    return Handle(document, document.arn, {"arn": document.arn})


def producer(role: RoleContext, source: str, grants: Sequence[Grant]) -> Handle[aws.iam.Policy]:
    """A customer-managed policy a producer's own role or user attaches: we cannot know who the producers
    are (an application role, a CI user, another account's role through its own trust), so rather than a
    role with a guessed trust policy we publish exactly the permission, and name it in the outputs.

    Uploads need only s3:PutObject under the landing prefix: multipart uploads (`aws s3 cp` of large
    files) are covered by it, and the bucket uses SSE-S3, so no KMS permission is involved."""
    return managed_policy(role, f"Lets a producer feed {source} of pipeline {role.pipeline} ({role.stack})", grant_statements(grants))


def url_invoke_statements(function_arn: Any) -> list[dict[str, Any]]:
    """What a caller's identity needs to call one function URL with IAM auth: both actions since October 2025,
    on exactly this function. InvokeFunctionUrl is held to IAM-authenticated URLs; InvokeFunction carries no
    `lambda:InvokedViaFunctionUrl` condition here, because AWS documents that key for the function's resource
    policy (AddPermission's InvokedViaFunctionUrl) and a condition on a key absent from the request would deny
    every call. The resource-policy grants for `http_invokers` do carry it."""
    return [
        statement("InvokeThroughTheUrl", ["lambda:InvokeFunctionUrl"], [function_arn],
                  {"StringEquals": {"lambda:FunctionUrlAuthType": URL_AUTH_TYPE}}),
        statement("InvokeTheFunction", ["lambda:InvokeFunction"], [function_arn]),
    ]


# ---- counting grants the same way on every cloud ------------------------------------------------------

# Resources whose `policy` input is an IAM document; a resource policy's Allow statements grant too.
POLICY_DOCUMENTS = frozenset({"aws:iam/rolePolicy:RolePolicy", "aws:iam/policy:Policy", "aws:sqs/queuePolicy:QueuePolicy",
                              "aws:sns/topicPolicy:TopicPolicy", "aws:kms/key:Key"})
ONE_GRANT_EACH = frozenset({"aws:lambda/permission:Permission"})


def grants_in(type_: str, inputs: dict[str, Any]) -> int:
    """Grants one planned resource holds: an Allow statement counts once per resource it names."""
    if type_ in ONE_GRANT_EACH:
        return 1
    if type_ not in POLICY_DOCUMENTS or not isinstance(inputs.get("policy"), str):
        return 0
    try:
        document = json.loads(inputs["policy"])
    except ValueError:
        return 0
    count = 0
    for entry in document.get("Statement", []):
        if entry.get("Effect") != "Allow":
            continue
        resources = entry.get("Resource", [])
        count += len(resources) if isinstance(resources, list) else 1
    return count
