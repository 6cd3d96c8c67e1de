"""The AWS backend: maps each role of the core's program to pulumi-aws v7 resources."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pulumi_aws as aws

from pipeline.backend import Backend, BucketSpec, FunctionCode, Grant, Handle, Limits, RoleContext, StageResources
from pipeline.cost import CostEstimate
from pipeline.errors import PipelineError
from pipeline.packaging import Recipe
from pipeline.scan import ScanMapping
from pipeline.sizing import Sizing, StageDemand, StageSizing, StreamSizing
from pipeline.spec.model import StageSpec
from pipeline.spec.schedule import Schedule
from pipeline_aws import credentials, functions, iam, limits, naming, observability, pricing, scan, sizing, storage, stream, triggers


class AwsBackend(Backend):
    name = "aws"
    title = "AWS"
    # Every identity the plan creates is an IAM role (stage functions, Firehose, Scheduler).
    identity_types: ClassVar[frozenset[str]] = frozenset({"aws:iam/role:Role", "aws:iam/policy:Policy"})
    key_settings: ClassVar[dict[str, tuple[str, ...]]] = {
        "aws:kinesis/stream:Stream": ("shardCount", "streamModeDetails.streamMode", "retentionPeriod"),
        "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream": ("extendedS3Configuration.bufferingSize", "extendedS3Configuration.bufferingInterval"),
        "aws:lambda/function:Function": ("memorySize", "timeout", "runtime"),
        "aws:lambda/eventSourceMapping:EventSourceMapping": ("batchSize", "maximumBatchingWindowInSeconds", "maximumRetryAttempts", "bisectBatchOnFunctionError"),
        "aws:cloudwatch/eventTarget:EventTarget": ("retryPolicy.maximumRetryAttempts", "retryPolicy.maximumEventAgeInSeconds"),
        "aws:scheduler/schedule:Schedule": ("scheduleExpression", "target.retryPolicy.maximumRetryAttempts"),
        "aws:sqs/queue:Queue": ("messageRetentionSeconds",),
    }
    # What grants access: inline identity policies, and the resource policies that let EventBridge
    # invoke a function and send undeliverable events to a queue. The plan's BucketPolicy is left
    # out on purpose: it only denies (insecure transport) and grants nothing.
    grant_types: ClassVar[frozenset[str]] = frozenset({
        "aws:iam/rolePolicy:RolePolicy",
        "aws:iam/policy:Policy",
        "aws:lambda/permission:Permission",
        "aws:sqs/queuePolicy:QueuePolicy",
    })

    @property
    def region(self) -> str:
        return self.spec.clouds.aws.region

    def location(self) -> str:
        return self.region

    def check(self) -> list[tuple[tuple[str | int, ...], str, str]]:
        problems: list[tuple[tuple[str | int, ...], str, str]] = []
        for index, stage in enumerate(self.spec.stages):
            if stage.trigger.schedule:
                for message in triggers.schedule_problems(stage.trigger.parsed_schedule):
                    problems.append((("stages", index, "trigger", "schedule"), message, ""))
        return problems

    def size_stream(self) -> StreamSizing:
        return sizing.size_stream(self.spec)

    def size_stage(self, stage: StageSpec, demand: StageDemand, stream: StreamSizing | None) -> StageSizing:
        return sizing.size_stage(self.spec, stage, demand, stream)

    def stack_config(self) -> dict[str, str]:
        return credentials.stack_config(self.spec)

    def credentials_problem(self) -> str | None:
        return credentials.credentials_problem(self.spec)

    def test_record_hint(self, outputs: Mapping[str, Any]) -> str:
        return credentials.test_record_hint(self.spec, self.stack, outputs)

    def limits(self) -> Limits:
        return limits.limits(self.spec)

    def price(self, sizing: Sizing, free_tier: bool) -> CostEstimate:
        return pricing.estimate(self.spec, sizing, free_tier)

    @classmethod
    def scan_mapping(cls) -> ScanMapping:
        """How this cloud's plans read as a Terraform plan for scanners (pipeline.scan.Scannable)."""
        return scan.MAPPING

    def mock_resource(self, type_: str, name: str, inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        return naming.mock_resource(type_, name, inputs, self.region)

    def tags(self) -> dict[str, str]:
        return {**self.spec.tags, "pipeline": self.spec.name, "stack": self.stack, "managed-by": "pipeline-deployer"}

    def platform(self, role: RoleContext) -> list[Any]:
        provider = aws.Provider(role.name("aws"), region=self.region, default_tags={"tags": self.tags()}, opts=role.opts())
        return [provider]

    def stream(self, role: RoleContext, sizing: StreamSizing) -> Handle[Any]:
        return stream.stream(role, self.spec, sizing)

    def bucket(self, role: RoleContext, bucket: BucketSpec) -> Handle[Any]:
        return storage.bucket(role, bucket)

    def archive(self, role: RoleContext, source: Handle[Any], bucket: Handle[Any], prefix: str) -> None:
        stream.archive(role, source, bucket, prefix)

    def artifact(self, role: RoleContext, bucket: Handle[Any], path: Path, key: str) -> Handle[Any]:
        return storage.artifact(role, bucket, path, key)

    def producer(self, role: RoleContext, source: str, grants: Sequence[Grant]) -> Handle[Any]:
        return iam.producer(role, source, grants)

    def http_trigger(self, role: RoleContext, stage: StageSpec, function: Handle[Any], identity: Handle[Any], dead_letter: Handle[Any]) -> Handle[Any]:
        raise PipelineError("AWS HTTP stages are not built yet")

    def identity(self, role: RoleContext, stage: StageSpec) -> Handle[Any]:
        return iam.lambda_identity(role, stage.name)

    def grant(self, role: RoleContext, identity: Handle[Any], grants: Sequence[Grant]) -> None:
        iam.grant(role, identity, grants)

    def dead_letter(self, role: RoleContext, stage: StageSpec) -> Handle[Any]:
        return triggers.dead_letter(role, self.spec)

    def function(self, role: RoleContext, stage: StageSpec, identity: Handle[Any], code: FunctionCode, env: Mapping[str, Any]) -> Handle[Any]:
        return functions.function(role, stage, identity, self.package(stage, code), env)

    def package_recipe(self, stage: StageSpec, code: FunctionCode) -> Recipe:
        return functions.recipe()

    def stream_trigger(self, role: RoleContext, stage: StageSpec, stream: Handle[Any], function: Handle[Any], identity: Handle[Any], dead_letter: Handle[Any]) -> None:
        triggers.stream_trigger(role, stage, self.spec, stream, function, identity, dead_letter)

    def object_trigger(self, role: RoleContext, stage: StageSpec, bucket: Handle[Any], prefix: str, function: Handle[Any], identity: Handle[Any], dead_letter: Handle[Any]) -> None:
        triggers.object_trigger(role, stage, bucket, prefix, function, identity, dead_letter)

    def schedule_trigger(self, role: RoleContext, stage: StageSpec, schedule: Schedule, function: Handle[Any], identity: Handle[Any], dead_letter: Handle[Any]) -> None:
        triggers.schedule_trigger(role, stage, schedule, function, identity, dead_letter)

    def observability(self, role: RoleContext, stages: Sequence[StageResources]) -> None:
        observability.observability(role, stages)
