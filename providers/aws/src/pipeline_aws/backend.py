"""The AWS backend: maps each role of the core's program to pulumi-aws v7 resources."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pulumi_aws as aws

from pipeline.backend import Backend
from pipeline.cost import CostEstimate
from pipeline.faces import Compute, Limits
from pipeline.operations.protocol import Operations
from pipeline.packaging import Recipe
from pipeline.plan import Plan
from pipeline.roles import BucketSpec, FunctionCode, Grant, Handle, RoleContext, StageResources
from pipeline.scan import ScanMapping
from pipeline.sizing import Sizing, StageDemand, StageSizing, StreamSizing, size_pipeline
from pipeline.spec.model import StageSpec
from pipeline.spec.schedule import Schedule
from pipeline.wiring import stage_prefix
from pipeline_aws import (
    archive_choice,
    archiver_resources,
    concurrency,
    credentials,
    environment,
    functions,
    iam,
    limits,
    naming,
    observability,
    pricing,
    producers,
    quota,
    regions,
    scan,
    sizing,
    storage,
    stream,
    triggers,
)
from pipeline_aws.sizing import RawArchive


class AwsBackend(Backend):
    name = "aws"
    title = "AWS"
    # Identities the plan creates: IAM roles (stage functions, the raw archiver or Firehose, Scheduler) and the customer-managed
    # policies outside producers and HTTP callers attach.
    identity_types: ClassVar[frozenset[str]] = frozenset({"aws:iam/role:Role", "aws:iam/policy:Policy"})
    key_settings: ClassVar[dict[str, tuple[str, ...]]] = {
        "aws:kinesis/stream:Stream": ("shardCount", "streamModeDetails.streamMode", "retentionPeriod"),
        "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream": ("extendedS3Configuration.bufferingSize", "extendedS3Configuration.bufferingInterval"),
        "aws:lambda/function:Function": ("memorySize", "timeout", "runtime", "reservedConcurrentExecutions"),
        "aws:lambda/eventSourceMapping:EventSourceMapping": ("batchSize", "maximumBatchingWindowInSeconds", "parallelizationFactor",
                                                            "maximumRetryAttempts", "bisectBatchOnFunctionError"),
        "aws:lambda/functionUrl:FunctionUrl": ("authorizationType", "invokeMode"),
        "aws:cloudwatch/eventTarget:EventTarget": ("retryPolicy.maximumRetryAttempts", "retryPolicy.maximumEventAgeInSeconds"),
        "aws:scheduler/schedule:Schedule": ("scheduleExpression", "target.retryPolicy.maximumRetryAttempts"),
        "aws:sqs/queue:Queue": ("messageRetentionSeconds",),
    }
    # What grants access: identity policies (inline and managed), and the resource policies that let
    # EventBridge invoke a function, outside principals call a function URL, EventBridge send undeliverable
    # events to a queue, CloudWatch publish to the alarm topic and use its key. The buckets' policies only deny.
    grant_types: ClassVar[frozenset[str]] = frozenset({
        "aws:iam/rolePolicy:RolePolicy",
        "aws:iam/policy:Policy",
        "aws:lambda/permission:Permission",
        "aws:sqs/queuePolicy:QueuePolicy",
        "aws:sns/topicPolicy:TopicPolicy",
        "aws:kms/key:Key",
    })

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._outside = producers.OutsideProducers(self.spec, self.stack)
        self._pool: concurrency.Pool | None = None  # the account's concurrency shared between the plan's functions (sizing())
        self._raw_archive: RawArchive | None = None
        self._archiver: observability.ArchiverResources | None = None  # built by archive() when the plan has a Lambda archiver

    @property
    def region(self) -> str:
        return self.spec.clouds.aws.region

    def location(self) -> str:
        return self.region

    # ---- checks and sizing -----------------------------------------------------------------------------
    def check(self) -> list[tuple[tuple[str | int, ...], str, str]]:
        problems: list[tuple[tuple[str | int, ...], str, str]] = []
        settings = self.spec.clouds.aws
        if settings.region not in regions.AWS_REGIONS:
            problems.append((("clouds", "aws", "region"), f"{settings.region!r} is not an AWS region",
                             f"known regions: {', '.join(sorted(regions.AWS_REGIONS))}"))
        has_http = any(stage.trigger.http for stage in self.spec.stages)
        if has_http and settings.region in triggers.NO_FUNCTION_URLS:
            problems.append((("clouds", "aws", "region"), f"HTTP stages are served by Lambda function URLs, which {settings.region} does not offer",
                             f"choose another region (function URLs are missing in: {', '.join(sorted(triggers.NO_FUNCTION_URLS))})"))
        for index, principal in enumerate(settings.http_invokers):
            if not iam.PRINCIPAL_ARN.match(principal):
                problems.append((("clouds", "aws", "http_invokers", index), f"{principal!r} is not an IAM role or user ARN",
                                 f"write arn:{naming.partition(settings.region)}:iam::<12-digit account>:role/<name> or "
                                 f"arn:{naming.partition(settings.region)}:iam::<account>:user/<name>"))
            elif principal.split(":")[1] != naming.partition(settings.region):
                # A principal of another partition cannot be granted anything here: AddPermission would refuse it.
                problems.append((("clouds", "aws", "http_invokers", index),
                                 f"{principal!r} is in the {principal.split(':')[1]} partition, but {settings.region} is in "
                                 f"{naming.partition(settings.region)}",
                                 f"use a role or user of the same partition: arn:{naming.partition(settings.region)}:iam::<account>:role/<name>"))
        for stage in self.spec.stages if settings.http_invokers else []:
            if stage.trigger.http:
                # The longest ARN the function can have: its real name, a 12-digit account.
                arn = (f"arn:{naming.partition(settings.region)}:lambda:{settings.region}:{naming.MOCK_ACCOUNT}:function:"
                       f"{functions.physical_name(self.spec.name, self.stack, stage.name)}")
                # Permissions are named as the program's trigger role names them (`<pipeline>-<stage>-trigger-<suffix>`).
                head = f"{self.spec.name}-{stage.name}-trigger-"
                too_many = triggers.invokers_problem(arn, settings.http_invokers, head.__add__)
                if too_many:
                    problems.append((("clouds", "aws", "http_invokers"), f"stage {stage.name!r}: {too_many[0]}", too_many[1]))
                    break  # every HTTP stage has the same invokers; the longest name decides, but one error says it
        seen: set[str] = set()
        for index, producer in enumerate(settings.producers):
            if producer.principal in seen:
                problems.append((("clouds", "aws", "producers", index, "principal"), f"{producer.principal!r} is listed twice",
                                 "list each outside producer once, with every source it feeds under `sources`"))
            seen.add(producer.principal)
        for index, stage in enumerate(self.spec.stages):
            if stage.trigger.schedule:
                for message in triggers.schedule_problems(stage.trigger.parsed_schedule):
                    problems.append((("stages", index, "trigger", "schedule"), message, ""))
            for key, message, hint in environment.name_problems(stage):
                problems.append((("stages", index, "environment", key), message, hint))
            too_big = environment.environment_problem(self.spec, self.stack, stage, self.base_dir)
            if too_big:
                problems.append((("stages", index, "environment"), *too_big))
        return problems

    def size_stream(self) -> StreamSizing:
        """The shards, and (when the stream is archived) which raw archive they feed and why: the archive's
        choice is part of the stream's reasoning."""
        sized = sizing.size_stream(self.spec, self.previous_outputs.get("stream_sizing") or {})
        assert self.spec.stream is not None
        if not self.spec.stream.archive:
            return sized
        self._raw_archive = archive_choice.plan_archive(self.spec, sized)
        return dataclasses.replace(sized, reasoning=[*sized.reasoning, *self._raw_archive.reasoning])

    def raw_archive(self) -> RawArchive:
        """The raw archive this plan builds (sized with the stream)."""
        if self._raw_archive is None:
            stream_sizing = self.sizing().stream
            assert stream_sizing is not None, "only a spec with a stream has a raw archive"
            self._raw_archive = archive_choice.plan_archive(self.spec, stream_sizing)
        return self._raw_archive

    def sizing(self) -> Sizing:
        """Two passes: the first finds every function's peak concurrency, the second shares the account's pool
        between them (`pipeline_aws.concurrency`), so a stage's capacity is what a default account leaves it."""
        if self._sizing is None:
            stream = self.size_stream() if self.spec.stream is not None else None
            peaks = size_pipeline(self.spec, stream, lambda stage, demand, s: sizing.size_stage(self.spec, stage, demand, s))
            archive = self._raw_archive.peak_concurrency if self._raw_archive is not None else 0
            self._pool = concurrency.Pool(
                reserved=dict(self.spec.clouds.aws.reserved_concurrency),
                peaks={**({archiver_resources.LABEL: archive} if archive else {}),
                       **{name: int(sized.settings["peak_concurrency"]) for name, sized in peaks.stages.items()}},
            )
            self._sizing = size_pipeline(self.spec, stream, self.size_stage)
        return self._sizing

    def size_stage(self, stage: StageSpec, demand: StageDemand, stream: StreamSizing | None) -> StageSizing:
        return sizing.size_stage(self.spec, stage, demand, stream, self._pool)

    # ---- deploying -------------------------------------------------------------------------------------
    def stack_config(self) -> dict[str, str]:
        return credentials.stack_config(self.spec)

    def credentials_problem(self) -> str | None:
        return credentials.credentials_problem(self.spec)

    def deploy_problem(self) -> str | None:
        """A reservation the spec asks for must fit the real account's concurrency quota (pipeline_aws.quota)."""
        return quota.reservation_problem(self.spec, self.stack)

    def test_record_hint(self, outputs: Mapping[str, Any]) -> str:
        return credentials.test_record_hint(self.spec, self.stack, outputs)

    def operations(self, outputs: Mapping[str, Any]) -> Operations:
        """Day two: this stack's dead letters, failure queues and windows (pipeline_aws.operations; SDKs imported there)."""
        from pipeline_aws.operations import AwsOperations

        return AwsOperations(self.spec, self.stack, self.base_dir, outputs)

    # ---- comparison ------------------------------------------------------------------------------------
    def limits(self) -> Limits:
        return limits.limits(self.spec, self.sizing())

    def price(self, sizing: Sizing, free_tier: bool) -> CostEstimate:
        archived = sizing.stream is not None and self.spec.stream is not None and self.spec.stream.archive
        archive = archive_choice.plan_archive(self.spec, sizing.stream) if archived and sizing.stream is not None else None
        return pricing.estimate(self.spec, sizing, free_tier, archive)

    @classmethod
    def scan_mapping(cls) -> ScanMapping:
        """How this cloud's plans read as a Terraform plan for scanners (pipeline.scan.Scannable)."""
        return scan.MAPPING

    def compute(self, stage: StageSpec) -> Compute:
        """Lambda gives CPU in proportion to memory: one vCPU at 1,769 MB (pipeline_aws.sizing)."""
        return Compute(stage.memory_mb, stage.memory_mb / sizing.VCPU_MEMORY_MB)

    def data_protection(self) -> str:
        return (f"every data bucket versioned: an overwritten, deleted or expired object kept {storage.NONCURRENT_DAYS} days as a "
                "noncurrent version (priced as storage)")

    def count_grants(self, plan: Plan) -> int:
        """A policy document counts once per resource each Allow statement names; a Lambda permission once."""
        return sum(iam.grants_in(r.type, r.inputs) for r in plan.cloud_resources if r.type in self.grant_types)

    def mock_resource(self, type_: str, name: str, inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        return naming.mock_resource(type_, name, inputs, self.region)

    def mock_call(self, token: str, args: Mapping[str, Any]) -> dict[str, Any]:
        return naming.mock_call(token, args, self.region)

    def tags(self) -> dict[str, str]:
        return {**self.spec.tags, "pipeline": self.spec.name, "stack": self.stack, "managed-by": "pipeline-deployer"}

    # ---- roles -----------------------------------------------------------------------------------------
    def platform(self, role: RoleContext) -> list[Any]:
        provider = aws.Provider(role.name("aws"), region=self.region, default_tags=aws.ProviderDefaultTagsArgs(tags=self.tags()),
                                opts=role.opts())
        return [provider]

    def stream(self, role: RoleContext, sizing: StreamSizing) -> Handle[Any]:
        return stream.stream(role, self.spec, sizing)

    def bucket(self, role: RoleContext, bucket: BucketSpec) -> Handle[Any]:
        # Every data bucket is versioned (deletion protection for data of record; storage.NONCURRENT_DAYS); only a
        # bucket several stages are triggered from sends its events through EventBridge (storage.fans_out).
        # A windowed stage's bucket keeps its watermark under `_state/`, which must not expire: its retention
        # covers only its outputs' prefix (storage.lifecycle_rules).
        windowed = any(s.name == bucket.key and s.trigger.window_source for s in self.spec.stages)
        return storage.bucket(role, bucket, versioned=bucket.data, eventbridge=sizing.fans_out(self.spec, bucket.key),
                              delete_data=self.delete_data, expire_prefix=stage_prefix(bucket.key) if windowed else None)

    def archive(self, role: RoleContext, source: Handle[Any], bucket: Handle[Any], prefix: str) -> None:
        """Firehose, or the Lambda archiver, as the sizing chose (pipeline_aws.archive_choice, pipeline_aws.archiver_resources)."""
        chosen = self.raw_archive()
        if chosen.kind == "firehose":
            stream.archive(role, source, bucket, prefix)
            return
        self._archiver = archiver_resources.lambda_archive(role, self.spec, chosen.archiver, source, bucket, prefix,
                                                  archiver_resources.package(self.base_dir, self.stack))

    def artifact(self, role: RoleContext, bucket: Handle[Any], path: Path, key: str) -> Handle[Any]:
        return storage.artifact(role, bucket, path, key)

    def producer(self, role: RoleContext, source: str, grants: Sequence[Grant]) -> Handle[Any]:
        """The managed policy producers in this account attach, and the roles outside producers assume (producers.py)."""
        self._outside.feed(role, source, grants)
        return iam.producer(role, source, grants)

    def identity(self, role: RoleContext, stage: StageSpec) -> Handle[Any]:
        return iam.lambda_identity(role, stage.name)

    def grant(self, role: RoleContext, identity: Handle[Any], grants: Sequence[Grant]) -> None:
        iam.grant(role, identity, grants)

    def dead_letter(self, role: RoleContext, stage: StageSpec) -> Handle[Any]:
        return triggers.dead_letter(role, self.spec)

    def function(self, role: RoleContext, stage: StageSpec, identity: Handle[Any], code: FunctionCode, env: Mapping[str, Any]) -> Handle[Any]:
        reserved = self.spec.clouds.aws.reserved_concurrency.get(stage.name)
        return functions.function(role, stage, identity, self.package(stage, code), env, reserved)

    def package_recipe(self, stage: StageSpec, code: FunctionCode) -> Recipe:
        return functions.recipe()

    def stream_trigger(self, role: RoleContext, stage: StageSpec, stream: Handle[Any], function: Handle[Any], identity: Handle[Any], dead_letter: Handle[Any]) -> None:
        triggers.stream_trigger(role, stage, self.spec, self.sizing().stages[stage.name], stream, function, identity, dead_letter)

    def object_trigger(self, role: RoleContext, stage: StageSpec, bucket: Handle[Any], prefix: str, function: Handle[Any], identity: Handle[Any], dead_letter: Handle[Any]) -> None:
        triggers.object_trigger(role, stage, bucket, prefix, function, identity, dead_letter)

    def schedule_trigger(self, role: RoleContext, stage: StageSpec, schedule: Schedule, function: Handle[Any], identity: Handle[Any], dead_letter: Handle[Any]) -> None:
        triggers.schedule_trigger(role, stage, schedule, function, identity, dead_letter)

    def http_trigger(self, role: RoleContext, stage: StageSpec, function: Handle[Any], identity: Handle[Any], dead_letter: Handle[Any]) -> Handle[Any]:
        return triggers.http_trigger(role, stage, list(self.spec.clouds.aws.http_invokers), function)

    def observability(self, role: RoleContext, stages: Sequence[StageResources]) -> None:
        observability.observability(role, self.region, self.spec.alerts, stages, self._archiver)
