"""The Azure backend: maps each role of the core's program to pulumi-azure-native v3 resources.

Event Hubs (Standard), archived by Capture or by an archiver function, whichever the workload makes
sensible (`archive_choice`); one Flex Consumption function app per stage, each with its
own user-assigned identity and its own host storage; Event Grid into a Storage queue per object stage
(stage outputs and uploads), read by a queue trigger; timers for schedules (in UTC); HTTP triggers behind App Service
Authentication (Entra ID tokens) and a function key; blob containers for buckets.
The backend keeps the platform (resource group, accounts, monitoring) between role calls. See
providers/azure/README.md for the design and its reasons.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pipeline.backend import Backend
from pipeline.faces import Compute
from pipeline.packaging import Recipe
from pipeline.roles import BucketSpec, FunctionCode, Grant, Handle, RoleContext, StageResources
from pipeline.scan import ScanMapping
from pipeline.sizing import Sizing, StageDemand, StageSizing, StreamSizing
from pipeline.spec.model import StageSpec
from pipeline.spec.schedule import Schedule
from pipeline_azure import archive_choice, archiver_resources, checks, credentials, functions, iam, naming, observability, producers, scan, sizing, storage, stream, triggers
from pipeline_azure.platform import Platform, platform
from pipeline_azure.sizing import RawArchive

if TYPE_CHECKING:
    from pipeline.cost import CostEstimate
    from pipeline.faces import Limits
    from pipeline.operations.protocol import Operations


class AzureBackend(Backend):  # type: ignore[misc]  # Backend is Any when mypy cannot see the editable core install
    name = "azure"
    title = "Azure"

    # Identities are the user-assigned identities (stages, producers, HTTP callers, the raw archiver function).
    # The system-assigned identities of the Event Hubs namespace (Capture, where chosen) and the Event Grid
    # system topic (queue delivery, dead-lettering) are identities too, but they are a property of those
    # resources, not resources of their own, so they cannot be counted by type without counting the namespace
    # and topic as identities; their permissions still show up as role assignments, which are the grants.
    identity_types: ClassVar[frozenset[str]] = frozenset({"azure-native:managedidentity:UserAssignedIdentity"})
    key_settings: ClassVar[dict[str, tuple[str, ...]]] = {
        "azure-native:eventhub:Namespace": ("sku.name", "sku.capacity"),
        "azure-native:eventhub:EventHub": ("partitionCount", "retentionDescription.retentionTimeInHours"),
        "azure-native:web:WebApp": ("functionAppConfig.scaleAndConcurrency.instanceMemoryMB", "functionAppConfig.scaleAndConcurrency.maximumInstanceCount",
                                    "functionAppConfig.runtime.version"),
        "azure-native:eventgrid:SystemTopicEventSubscription": ("retryPolicy.maxDeliveryAttempts", "retryPolicy.eventTimeToLiveInMinutes"),
        "azure-native:storage:StorageAccount": ("sku.name", "allowSharedKeyAccess"),
    }
    grant_types: ClassVar[frozenset[str]] = frozenset({"azure-native:authorization:RoleAssignment"})

    _platform: Platform | None = None
    _stream: Handle[Any] | None = None
    _raw_archive: RawArchive | None = None
    _archiver: Handle[Any] | None = None  # the raw archiver's app, when the plan archives with a function

    def location(self) -> str:
        return str(self.spec.clouds.azure.location)

    def check(self) -> list[tuple[tuple[str | int, ...], str, str]]:
        found = checks.problems(self.spec, self.stack, self.previous_outputs)
        if found:
            return found
        # What a subscription's default Flex quota can run, once the spec is valid enough to size.
        archive = self.raw_archive() if self.spec.stream is not None and self.spec.stream.archive else None
        return checks.quota_problems(self.spec, self.sizing().stages, archive.archiver if archive is not None and archive.kind == "function" else None)

    def size_stream(self) -> StreamSizing:
        """TUs and partitions, and (when the stream is archived) which raw archive the plan builds and why:
        the choice is part of the stream's reasoning, and an archiver function's reads may add TUs."""
        sized = sizing.size_stream(self.spec, self.previous_outputs)
        assert self.spec.stream is not None
        if not self.spec.stream.archive:
            return sized
        self._raw_archive = archive_choice.plan_archive(self.spec, sized.partitions)
        if self._raw_archive.kind == "function":
            sized = sizing.size_stream(self.spec, self.previous_outputs, archiver=True)
        return dataclasses.replace(sized, reasoning=[*sized.reasoning, *self._raw_archive.reasoning])

    def raw_archive(self) -> RawArchive:
        """The raw archive this plan builds (decided with the stream's sizing)."""
        if self._raw_archive is None:
            stream_sizing = self.sizing().stream
            assert stream_sizing is not None, "only a spec with a stream has a raw archive"
            self._raw_archive = archive_choice.plan_archive(self.spec, stream_sizing.partitions)
        return self._raw_archive

    def size_stage(self, stage: StageSpec, demand: StageDemand, stream: StreamSizing | None) -> StageSizing:
        return sizing.size_stage(self.spec, stage, demand, stream)

    def producer(self, role: RoleContext, source: str, grants: Sequence[Grant]) -> Handle[Any]:
        return producers.producer(role, self.platform_state, self.spec, source, grants)

    def http_trigger(self, role: RoleContext, stage: StageSpec, function: Handle[Any], identity: Handle[Any], dead_letter: Handle[Any]) -> Handle[Any]:
        return triggers.http_trigger(role, self.platform_state, stage, function, identity, list(self.spec.clouds.azure.http_invokers))

    def stack_config(self) -> dict[str, str]:
        return credentials.stack_config(self.spec)

    def credentials_problem(self) -> str | None:
        return credentials.credentials_problem(self.spec)

    def test_record_hint(self, outputs: Mapping[str, Any]) -> str:
        return credentials.test_record_hint(self.spec, self.stack, outputs)

    def operations(self, outputs: Mapping[str, Any]) -> Operations:
        """Day two: this stack's dead letters, failure queues and windows (pipeline_azure.operations; SDKs imported there)."""
        from pipeline_azure.operations import AzureOperations

        return AzureOperations(self.spec, self.stack, self.base_dir, outputs)

    def limits(self) -> Limits:
        from pipeline_azure import limits

        return limits.limits(self.spec)

    def compute(self, stage: StageSpec) -> Compute:
        """Flex Consumption runs the Flex instance size at or above memory_mb (pipeline_azure.functions.flex_memory)."""
        memory = functions.flex_memory(stage.memory_mb) or stage.memory_mb
        return Compute(memory, sizing.FLEX_VCPUS.get(memory, memory / 2048))

    def data_protection(self) -> str:
        from pipeline_azure.platform import SOFT_DELETE_DAYS

        return f"blob and container soft delete keep deleted and overwritten blobs {SOFT_DELETE_DAYS} days (priced as storage)"

    def price(self, sizing: Sizing, free_tier: bool) -> CostEstimate:
        from pipeline_azure import pricing

        archived = self.spec.stream is not None and self.spec.stream.archive and sizing.stream is not None
        archive = archive_choice.plan_archive(self.spec, sizing.stream.partitions) if archived and sizing.stream is not None else None
        return pricing.estimate(self.spec, sizing, free_tier, archive=archive)

    @classmethod
    def scan_mapping(cls) -> ScanMapping:
        """How this cloud's plans read as an ARM template for scanners (pipeline.scan.Scannable)."""
        return scan.mapping()

    def mock_resource(self, type_: str, name: str, inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        return naming.mock_resource(type_, name, inputs, self.location())

    def tags(self) -> dict[str, str]:
        return {**self.spec.tags, "pipeline": self.spec.name, "stack": self.stack, "managed-by": "pipeline-deployer"}

    @property
    def platform_state(self) -> Platform:
        if self._platform is None:
            raise RuntimeError("platform() must run first")
        return self._platform

    def platform(self, role: RoleContext) -> list[Any]:
        self._platform = platform(role, self.location(), self.tags(), retain_data=not self.delete_data)
        return [self._platform.provider]

    def stream(self, role: RoleContext, sizing: StreamSizing) -> Handle[Any]:
        assert self.spec.stream is not None
        capture = self.spec.stream.archive and self.raw_archive().kind == "capture"
        self._stream = stream.stream(role, self.platform_state, self.spec, sizing, capture=capture)
        return self._stream

    def bucket(self, role: RoleContext, bucket: BucketSpec) -> Handle[Any]:
        return storage.bucket(role, self.platform_state, bucket, uploads=bucket.key == self.spec.uploads_name,
                              stage=any(stage.name == bucket.key for stage in self.spec.stages))

    def archive(self, role: RoleContext, source: Handle[Any], bucket: Handle[Any], prefix: str) -> None:
        """Capture, or the archiver function, as the sizing chose (pipeline_azure.archive_choice, pipeline_azure.archiver_resources)."""
        chosen = self.raw_archive()
        if chosen.kind == "capture":
            stream.archive(role, self.platform_state, source, bucket, prefix)
            return
        code = archiver_resources.package(self.base_dir, self.stack, self.vendor_dependencies)
        self._archiver = archiver_resources.archiver(role, self.platform_state, chosen.archiver, source, bucket, prefix, code,
                                           sizing.max_instance_count(self.spec, chosen.archiver.partitions))

    def artifact(self, role: RoleContext, bucket: Handle[Any], path: Path, key: str) -> Handle[Any]:
        return storage.artifact(role, self.platform_state, bucket, path, key)

    def identity(self, role: RoleContext, stage: StageSpec) -> Handle[Any]:
        return iam.identity(role, self.platform_state, stage.name)

    def grant(self, role: RoleContext, identity: Handle[Any], grants: Sequence[Grant]) -> None:
        iam.grant(role, self.platform_state, identity, grants)

    def dead_letter(self, role: RoleContext, stage: StageSpec) -> Handle[Any]:
        return triggers.dead_letter(self.platform_state, stage)

    def function(self, role: RoleContext, stage: StageSpec, identity: Handle[Any], code: FunctionCode, env: Mapping[str, Any]) -> Handle[Any]:
        return functions.function(role, self.platform_state, self.spec, stage, identity, self.package(stage, code), env, self._stream,
                                  self.sizing().stages[stage.name])

    def package_recipe(self, stage: StageSpec, code: FunctionCode) -> Recipe:
        # host.json carries the queue trigger's sized settings for object stages, so the recipe takes the sizing.
        return functions.recipe(stage, self.sizing().stages[stage.name])

    def stream_trigger(self, role: RoleContext, stage: StageSpec, stream: Handle[Any], function: Handle[Any], identity: Handle[Any], dead_letter: Handle[Any]) -> None:
        triggers.stream_trigger(role, self.platform_state, stage, stream, function)

    def object_trigger(self, role: RoleContext, stage: StageSpec, bucket: Handle[Any], prefix: str, function: Handle[Any], identity: Handle[Any], dead_letter: Handle[Any]) -> None:
        triggers.object_trigger(role, self.platform_state, stage, bucket, prefix, function)

    def schedule_trigger(self, role: RoleContext, stage: StageSpec, schedule: Schedule, function: Handle[Any], identity: Handle[Any], dead_letter: Handle[Any]) -> None:
        triggers.schedule_trigger(function)

    def observability(self, role: RoleContext, stages: Sequence[StageResources]) -> None:
        observability.observability(role, self.platform_state, self._stream, stages, self.spec.alerts, self._archiver)
