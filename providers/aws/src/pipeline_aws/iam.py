"""Identities and least-privilege inline policies, each scoped to exact ARNs and prefixes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_aws as aws

from pipeline.backend import Access, Grant, Handle, RoleContext

# Lambda's event source mapping reads with the function's role
# (https://docs.aws.amazon.com/lambda/latest/dg/services-kinesis-create.html).
KINESIS_READ = ["kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:ListShards"]
# Producers put records; the SDKs and the KPL also describe the stream and list its shards. The stream is
# encrypted with the AWS-managed key, which needs no KMS permission from producers
# (https://docs.aws.amazon.com/streams/latest/dev/permissions-user-key-KMS.html).
KINESIS_WRITE = ["kinesis:DescribeStreamSummary", "kinesis:ListShards", "kinesis:PutRecord", "kinesis:PutRecords"]


def trust(service: str) -> str:
    return pulumi.Output.json_dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    })  # type: ignore[return-value]


def policy(statements: list[dict[str, Any]]) -> pulumi.Output[str]:
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": statements})


def statement(sid: str, actions: list[str], resources: list[Any], condition: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Action": sorted(actions), "Resource": resources}
    if condition:
        body["Condition"] = condition
    return body


def service_role(role: RoleContext, suffix: str, service: str, description: str) -> aws.iam.Role:
    return aws.iam.Role(role.name(suffix), assume_role_policy=trust(service), description=description, opts=role.opts())


def inline_policy(role: RoleContext, suffix: str, iam_role: aws.iam.Role, statements: list[dict[str, Any]]) -> aws.iam.RolePolicy:
    return aws.iam.RolePolicy(role.name(suffix), role=iam_role.id, policy=policy(statements), opts=role.opts())


def _sid(index: int, grant: Grant) -> str:
    return f"{''.join(p.title() for p in grant.access.value.split('_'))}{index}"


def grant_statements(grants: Sequence[Grant]) -> list[dict[str, Any]]:
    """Map the core's access decisions to IAM statements on exact resources."""
    statements = []
    for index, grant in enumerate(grants):
        arn = grant.target.extra["arn"]
        sid = _sid(index, grant)
        if grant.access is Access.READ_STREAM:
            statements.append(statement(sid, KINESIS_READ, [arn]))
        elif grant.access is Access.WRITE_STREAM:
            statements.append(statement(sid, KINESIS_WRITE, [arn]))
        elif grant.access is Access.READ_OBJECTS:
            statements.append(statement(sid, ["s3:GetObject"], [pulumi.Output.concat(arn, "/", grant.prefix, "*")]))
        elif grant.access is Access.LIST_OBJECTS:
            # ListBucket is a bucket action; the s3:prefix condition keeps it to the keys under the prefix.
            statements.append(statement(sid, ["s3:ListBucket"], [arn], {"StringLike": {"s3:prefix": [f"{grant.prefix}*"]}}))
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


def producer(role: RoleContext, source: str, grants: Sequence[Grant]) -> Handle[aws.iam.Policy]:
    """A customer-managed policy a producer's own role or user attaches: we cannot know who the producers
    are (an application role, a CI user, another account's role through its own trust), so rather than a
    role with a guessed trust policy we publish exactly the permission, and name it in the outputs."""
    document = aws.iam.Policy(role.name("policy"), description=f"Lets a producer feed {source} of pipeline {role.pipeline} ({role.stack})",
                              policy=policy(grant_statements(grants)), opts=role.opts())
    return Handle(document, document.arn, {"arn": document.arn})
