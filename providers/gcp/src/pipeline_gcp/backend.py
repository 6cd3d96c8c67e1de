"""The GCP backend: maps each role of the core's program to pulumi-gcp v10 resources."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from pipeline import wiring
from pipeline.backend import Backend
from pipeline.cost import CostEstimate
from pipeline.faces import Compute, Limits
from pipeline.operations.protocol import Operations
from pipeline.packaging import Recipe
from pipeline.roles import BucketSpec, FunctionCode, Grant, Handle, RoleContext, StageResources
from pipeline.scan import ScanMapping
from pipeline.sizing import Sizing, StageDemand, StageSizing, StreamSizing
from pipeline.spec.model import StageSpec
from pipeline.spec.schedule import Schedule
from pipeline_gcp import credentials, functions, iam, limits, naming, observability, platform, pricing, regions, scan, sizing, storage, stream, triggers
from pipeline_gcp.env import Env

Problem = tuple[tuple[str | int, ...], str, str]

# Set by Cloud Run / Cloud Functions at run time; a stage must not override them
# (https://cloud.google.com/functions/docs/configuring/env-var#runtime_environment_variables_set_automatically).
RESERVED_ENV = frozenset({"PORT", "ENTRY_POINT", "GCP_PROJECT", "GCLOUD_PROJECT", "FUNCTION_TARGET", "FUNCTION_SIGNATURE_TYPE",
                          "FUNCTION_TRIGGER_TYPE", "FUNCTION_NAME", "FUNCTION_MEMORY_MB", "FUNCTION_TIMEOUT_SEC",
                          "FUNCTION_IDENTITY", "FUNCTION_REGION",
                          # set by this backend for functions-framework's gunicorn (functions.function)
                          "WORKERS", "THREADS"})


class GcpBackend(Backend):
    name = "gcp"
    title = "GCP"
    # Resource types counted in comparisons: the service accounts we create (stage, build, push, scheduler, caller and
    # producer identities), and every IAM member resource the backend binds (see iam.py, triggers.py, stream.py,
    # platform.py, observability.py). Service agents (projects.ServiceIdentity) are Google's, not ours.
    identity_types: ClassVar[frozenset[str]] = frozenset({"gcp:serviceaccount/account:Account"})
    key_settings: ClassVar[dict[str, tuple[str, ...]]] = {
        "gcp:pubsub/topic:Topic": ("messageRetentionDuration",),
        "gcp:pubsub/subscription:Subscription": ("ackDeadlineSeconds", "deadLetterPolicy.maxDeliveryAttempts", "retryPolicy.minimumBackoff",
                                                 "cloudStorageConfig.maxBytes", "cloudStorageConfig.maxDuration"),
        "gcp:cloudfunctionsv2/function:Function": ("serviceConfig.availableMemory", "serviceConfig.timeoutSeconds", "serviceConfig.maxInstanceCount",
                                                   "serviceConfig.maxInstanceRequestConcurrency", "serviceConfig.ingressSettings", "buildConfig.runtime"),
        "gcp:cloudscheduler/job:Job": ("schedule", "retryConfig.retryCount"),
    }
    grant_types: ClassVar[frozenset[str]] = frozenset({
        "gcp:storage/bucketIAMMember:BucketIAMMember",
        "gcp:pubsub/topicIAMMember:TopicIAMMember",
        "gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember",
        "gcp:cloudrunv2/serviceIamMember:ServiceIamMember",
        "gcp:projects/iAMMember:IAMMember",
        "gcp:serviceaccount/iAMMember:IAMMember",
    })

    _env: Env | None = None

    @property
    def project(self) -> str:
        project: str = self.spec.clouds.gcp.project or ""
        return project

    @property
    def region(self) -> str:
        region: str = self.spec.clouds.gcp.region
        return region

    @property
    def env(self) -> Env:
        assert self._env is not None, "platform() runs first"
        return self._env

    def location(self) -> str:
        return self.region

    # ---- checks and sizing ------------------------------------------------------------------
    def check(self) -> list[Problem]:
        problems: list[Problem] = []
        gcp_settings = self.spec.clouds.gcp
        if not gcp_settings.project:
            problems.append((("clouds", "gcp", "project"), "GCP needs a project to deploy into, and none is set",
                             "set clouds.gcp.project to your project ID, e.g. 'my-project-123'"))
        if gcp_settings.region not in regions.KNOWN_REGIONS:
            problems.append((("clouds", "gcp", "region"), f"{gcp_settings.region!r} is not a Google Cloud region Cloud Run functions run in",
                             f"use one of: {', '.join(sorted(regions.KNOWN_REGIONS))}"))
        for index, message, hint in triggers.invoker_problems(gcp_settings.http_invokers):
            problems.append((("clouds", "gcp", "http_invokers", index), message, hint))
        for index, stage in enumerate(self.spec.stages):
            at: tuple[str | int, ...] = ("stages", index)
            longest = limits.MAX_TIMEOUT_S[stage.trigger.kind]
            if stage.timeout_s > longest:
                why = {"stream": "a push subscription's request timeout (ack deadline) is at most 600 s",
                       "objects": "a push subscription's request timeout (ack deadline) is at most 600 s",
                       "schedule": "Cloud Scheduler's HTTP attempt deadline is at most 30 min",
                       "http": "an HTTP function runs at most 60 min"}[stage.trigger.kind]
                problems.append(((*at, "timeout_s"), f"timeout_s {stage.timeout_s} is above {longest} s for a {stage.trigger.kind} stage on GCP: {why}",
                                 f"use at most {longest}"))
            if stage.memory_mb > functions.MAX_MEMORY_MB:
                problems.append(((*at, "memory_mb"), f"memory_mb {stage.memory_mb} is above the gen2 maximum of {functions.MAX_MEMORY_MB} MB",
                                 f"use at most {functions.MAX_MEMORY_MB}"))
            if stage.trigger.schedule:
                for message, hint in triggers.schedule_problems(stage.trigger.parsed_schedule):
                    problems.append(((*at, "trigger", "schedule"), message, hint))
            for key in stage.environment:
                if key.upper() in RESERVED_ENV or key.upper().startswith("X_GOOGLE_"):
                    problems.append(((*at, "environment", key), f"{key!r} is set by Cloud Functions or this backend at run time and cannot be overridden",
                                     "choose another name"))
        return problems

    def size_stream(self) -> StreamSizing:
        return sizing.size_stream(self.spec, triggers.notes(self.spec))

    def size_stage(self, stage: StageSpec, demand: StageDemand, stream: StreamSizing | None) -> StageSizing:
        return sizing.size_stage(self.spec, stage, demand)

    def stack_config(self) -> dict[str, str]:
        return credentials.stack_config(self.spec)

    def credentials_problem(self) -> str | None:
        return credentials.credentials_problem(self.spec)

    def test_record_hint(self, outputs: Mapping[str, Any]) -> str:
        return credentials.test_record_hint(self.spec, self.stack, outputs)

    def operations(self, outputs: Mapping[str, Any]) -> Operations:
        """Day two: this stack's dead letters, failure queues and windows (pipeline_gcp.operations; SDKs imported there)."""
        from pipeline_gcp.operations import GcpOperations

        return GcpOperations(self.spec, self.stack, self.base_dir, outputs)

    # ---- comparison: limits and cost ---------------------------------------------------------
    def limits(self) -> Limits:
        return limits.limits(self.spec)

    def price(self, sizing: Sizing, free_tier: bool) -> CostEstimate:
        return pricing.estimate(self.spec, sizing, free_tier, self.stack)

    def compute(self, stage: StageSpec) -> Compute:
        """gen2 pairs each memory tier with a CPU (pipeline_gcp.functions.CPU_TIERS)."""
        return Compute(stage.memory_mb, float(functions.cpu_for(stage.memory_mb)))

    def data_protection(self) -> str:
        return (f"soft delete keeps deleted and overwritten objects of data buckets {storage.SOFT_DELETE_DATA_S // 86_400} days "
                "(priced as storage)")

    @classmethod
    def scan_mapping(cls) -> ScanMapping:
        """How this cloud's plans read as a Terraform plan for scanners (pipeline.scan.Scannable)."""
        return scan.MAPPING

    def mock_resource(self, type_: str, name: str, inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        return naming.mock_resource(type_, name, inputs, self.project, self.region)

    def mock_call(self, token: str, args: Mapping[str, Any]) -> dict[str, Any]:
        """Results of data sources, for the planner's mock engine (its `call()` should delegate here)."""
        return naming.mock_call(token, args)

    # ---- roles ----------------------------------------------------------------------------
    def platform(self, role: RoleContext) -> list[Any]:
        env = self._env = platform.platform(role, self.spec, self.stack, self.delete_data)
        env.sources = storage.sources_bucket(role, env)
        assert env.builder is not None
        # The build account reads the source archives: this bucket only.
        env.build_bindings.append(iam.bucket_member(role, env, "build-sources-reader", env.sources.name, iam.OBJECT_READER,
                                                    env.builder.extra["member"]))
        return [env.provider]

    def stream(self, role: RoleContext, sizing: StreamSizing) -> Handle[Any]:
        return stream.stream(role, self.env, self.spec)

    def bucket(self, role: RoleContext, bucket: BucketSpec) -> Handle[Any]:
        windowed = any(s.name == bucket.key and s.trigger.window_source for s in self.spec.stages)
        # A window stage's bucket also keeps its watermark under wiring.state_prefix: only its outputs expire.
        return storage.bucket(role, self.env, bucket, [wiring.stage_prefix(bucket.key)] if windowed else [])

    def archive(self, role: RoleContext, source: Handle[Any], bucket: Handle[Any], prefix: str) -> None:
        stream.archive(role, self.env, self.spec, source, bucket, prefix)

    def artifact(self, role: RoleContext, bucket: Handle[Any], path: Path, key: str) -> Handle[Any]:
        return storage.artifact(role, self.env, bucket, path, key)

    def producer(self, role: RoleContext, source: str, grants: Sequence[Grant]) -> Handle[Any]:
        outside = [p.member for p in self.spec.clouds.gcp.producers if p.feeds(source)]
        return iam.producer(role, self.env, source, grants, outside)

    def http_trigger(self, role: RoleContext, stage: StageSpec, function: Handle[Any], identity: Handle[Any], dead_letter: Handle[Any]) -> Handle[Any]:
        return triggers.http_trigger(role, self.env, self.spec, stage, function, identity)

    def identity(self, role: RoleContext, stage: StageSpec) -> Handle[Any]:
        return iam.stage_identity(role, self.env, stage.name)

    def grant(self, role: RoleContext, identity: Handle[Any], grants: Sequence[Grant]) -> None:
        iam.grant(role, self.env, identity, grants)

    def dead_letter(self, role: RoleContext, stage: StageSpec) -> Handle[Any]:
        return triggers.dead_letter(role, self.env, self.spec, stage)

    def function(self, role: RoleContext, stage: StageSpec, identity: Handle[Any], code: FunctionCode, env: Mapping[str, Any]) -> Handle[Any]:
        return functions.function(role, self.env, self.spec, stage, identity, self.package(stage, code), env, self.sizing().stages[stage.name])

    def package_recipe(self, stage: StageSpec, code: FunctionCode) -> Recipe:
        return functions.recipe()

    def stream_trigger(self, role: RoleContext, stage: StageSpec, stream: Handle[Any], function: Handle[Any], identity: Handle[Any], dead_letter: Handle[Any]) -> None:
        triggers.stream_trigger(role, self.env, self.spec, stage, stream, function, identity, dead_letter)

    def object_trigger(self, role: RoleContext, stage: StageSpec, bucket: Handle[Any], prefix: str, function: Handle[Any], identity: Handle[Any], dead_letter: Handle[Any]) -> None:
        triggers.object_trigger(role, self.env, self.spec, stage, bucket, prefix, function, identity, dead_letter)

    def schedule_trigger(self, role: RoleContext, stage: StageSpec, schedule: Schedule, function: Handle[Any], identity: Handle[Any], dead_letter: Handle[Any]) -> None:
        triggers.schedule_trigger(role, self.env, stage, schedule, function, identity, dead_letter)

    def observability(self, role: RoleContext, stages: Sequence[StageResources]) -> None:
        observability.observability(role, self.env, self.spec, stages)
