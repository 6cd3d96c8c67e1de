"""ARNs and physical names, both for wiring and for the offline planner's mock engine."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from pipeline.roles import autoname

MOCK_ACCOUNT = "123456789012"  # plans are offline: the real account id is not known

# type token -> (name property, ARN template). {name} is the physical name.
_KNOWN: dict[str, tuple[str, str]] = {
    "aws:kinesis/stream:Stream": ("name", "arn:{partition}:kinesis:{region}:{account}:stream/{name}"),
    "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream": ("name", "arn:{partition}:firehose:{region}:{account}:deliverystream/{name}"),
    "aws:s3/bucket:Bucket": ("bucket", "arn:{partition}:s3:::{name}"),
    "aws:iam/role:Role": ("name", "arn:{partition}:iam::{account}:role/{name}"),
    "aws:lambda/function:Function": ("name", "arn:{partition}:lambda:{region}:{account}:function:{name}"),
    "aws:sqs/queue:Queue": ("name", "arn:{partition}:sqs:{region}:{account}:{name}"),
    "aws:cloudwatch/eventRule:EventRule": ("name", "arn:{partition}:events:{region}:{account}:rule/{name}"),
    "aws:cloudwatch/logGroup:LogGroup": ("name", "arn:{partition}:logs:{region}:{account}:log-group:{name}"),
    "aws:cloudwatch/metricAlarm:MetricAlarm": ("name", "arn:{partition}:cloudwatch:{region}:{account}:alarm:{name}"),
    "aws:scheduler/schedule:Schedule": ("name", "arn:{partition}:scheduler:{region}:{account}:schedule/{group}/{name}"),
    "aws:scheduler/scheduleGroup:ScheduleGroup": ("name", "arn:{partition}:scheduler:{region}:{account}:schedule-group/{name}"),
    "aws:sns/topic:Topic": ("name", "arn:{partition}:sns:{region}:{account}:{name}"),
    "aws:s3/bucketObjectv2:BucketObjectv2": ("key", "arn:{partition}:s3:::{bucket}/{name}"),
    "aws:iam/policy:Policy": ("name", "arn:{partition}:iam::{account}:policy/{name}"),
    "aws:kms/key:Key": ("keyId", "arn:{partition}:kms:{region}:{account}:key/{name}"),
    "aws:lambda/functionUrl:FunctionUrl": ("urlId", "arn:{partition}:lambda:{region}:{account}:function-url/{name}"),
}
CALLER_IDENTITY = "aws:index/getCallerIdentity:getCallerIdentity"


def partition(region: str) -> str:
    """The ARN partition of a region the backend accepts (regions.py: commercial and GovCloud). Every ARN the plan
    builds takes it from here: `arn:aws:` principals and source ARNs are refused or never match in GovCloud."""
    return "aws-us-gov" if region.startswith("us-gov-") else "aws"


def mock_resource(type_: str, logical: str, inputs: Mapping[str, Any], region: str) -> tuple[str, dict[str, Any]]:
    """Id and outputs AWS would assign to a new resource of this type."""
    outputs = dict(inputs)
    if type_ not in _KNOWN:
        return f"{logical}-id", outputs
    name_key, template = _KNOWN[type_]
    prefix = inputs.get("bucketPrefix") or inputs.get("namePrefix")
    generated = prefix + hashlib.sha256(logical.encode()).hexdigest()[:26] if prefix else autoname(logical)
    name = inputs.get(name_key) or generated
    outputs[name_key] = name
    outputs["arn"] = template.format(partition=partition(region), region=region, account=MOCK_ACCOUNT, name=name, bucket=inputs.get("bucket", ""),
                                     group=inputs.get("groupName") or "default")
    if type_ == "aws:sqs/queue:Queue":
        outputs["url"] = f"https://sqs.{region}.amazonaws.com/{MOCK_ACCOUNT}/{name}"
        return outputs["url"], outputs
    if type_ == "aws:lambda/function:Function":
        outputs["invokeArn"] = f"arn:{partition}:apigateway:{region}:lambda:path/2015-03-31/functions/{outputs['arn']}/invocations"
    if type_ == "aws:lambda/functionUrl:FunctionUrl":
        outputs["urlId"] = name = hashlib.sha256(logical.encode()).hexdigest()[:32]
        outputs["functionUrl"] = f"https://{name}.lambda-url.{region}.on.aws/"
    return name, outputs


def mock_call(token: str, args: Mapping[str, Any], region: str) -> dict[str, Any]:
    """Data sources the plan reads: the account it deploys into (a placeholder offline)."""
    if token == CALLER_IDENTITY:
        return {"accountId": MOCK_ACCOUNT, "arn": f"arn:{partition}:iam::{MOCK_ACCOUNT}:user/planner", "userId": "AIDAPLANNER", "id": MOCK_ACCOUNT}
    return {}
