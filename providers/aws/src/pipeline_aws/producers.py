"""Outside producers (`clouds.aws.producers`): a role in the pipeline's account per outside party.

A customer-managed policy (`iam.producer`) serves producers inside the pipeline's account: they attach it. A
partner's principal lives in another account, where our policy cannot be attached, so each outside producer gets
a role here that trusts exactly its principal (its account's root, which lets the partner delegate inside their
account, or one IAM role or user), requires `sts:ExternalId` when the spec gives one (AWS's advice for third
parties, https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_common-scenarios_third-party.html), and may
write only the sources that producer feeds: one inline policy per source, with the same statements as that
source's managed policy.

Writing through a role in our account keeps encryption simple: the uploads bucket uses SSE-S3 and the stream the
AWS-managed `aws/kinesis` key, and "the use of the default service key for encryption does not require
application of custom IAM permissions" (https://docs.aws.amazon.com/streams/latest/dev/permissions-user-key-KMS.html),
so no KMS grant crosses accounts. IAM checks that a role or user principal exists when the trust policy is saved:
a misspelt or deleted partner role fails the deploy ("Invalid principal in policy") instead of trusting nobody.

The roles are named `<pipeline>-<stack>-producer-<n>` (n: the producer's position in the spec, from 1), so a
partner can be told the ARN before the first deploy; the deploy outputs list them under `producer_roles`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from pipeline.roles import Grant, RoleContext
from pipeline.spec.model import AwsProducer, PipelineSpec
from pipeline_aws import iam
from pipeline_aws.naming import partition

OUTPUT = "producer_roles"  # the deploy output: {principal: {"role": ARN, "sources": [...], "external_id": bool}}


def principal_arn(principal: str, region: str) -> str:
    """An account id means its root (the partner's account decides who in it may assume the role); ARNs stay as given."""
    return f"arn:{partition(region)}:iam::{principal}:root" if principal.isdigit() else principal


def role_name(pipeline: str, stack: str, number: int) -> str:
    """At most 20 + 16 + 12 characters, well within IAM's 64."""
    return f"{pipeline}-{stack}-producer-{number}"


def trust_policy(producer: AwsProducer, region: str) -> str:
    statement: dict[str, Any] = {"Sid": "OutsideProducer", "Effect": "Allow",
                                 "Principal": {"AWS": principal_arn(producer.principal, region)}, "Action": "sts:AssumeRole"}
    if producer.external_id:
        statement["Condition"] = {"StringEquals": {"sts:ExternalId": producer.external_id}}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


@dataclass
class OutsideProducers:
    """The roles built so far, one per outside producer, each created in the Producer role of the first source it feeds."""

    spec: PipelineSpec
    stack: str
    roles: dict[int, aws.iam.Role] = field(default_factory=dict)
    exported: dict[str, Any] = field(default_factory=dict)

    def feed(self, role: RoleContext, source: str, grants: Sequence[Grant]) -> None:
        """Let every outside producer that feeds `source` write it (exactly `grants`), and export the roles."""
        settings = self.spec.clouds.aws
        for index, producer in enumerate(settings.producers):
            if not producer.feeds(source):
                continue
            number = index + 1
            if number not in self.roles:
                self.roles[number] = aws.iam.Role(
                    role.name(f"outside-{number}"), name=role_name(self.spec.name, self.stack, number),
                    assume_role_policy=trust_policy(producer, settings.region),
                    description=f"Lets {producer.principal} feed pipeline {self.spec.name} ({self.stack}), nothing else",
                    opts=role.opts(),
                )
                self.exported[producer.principal] = {"role": self.roles[number].arn, "sources": [],
                                                     "external_id": producer.external_id is not None}
            iam.inline_policy(role, f"outside-{number}", self.roles[number], iam.grant_statements(grants))
            self.exported[producer.principal]["sources"].append(source)
        if self.exported:
            pulumi.export(OUTPUT, self.exported)
