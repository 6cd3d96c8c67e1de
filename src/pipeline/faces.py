"""The faces of a cloud backend: small interfaces, one job each, so a module of the core depends only on the
face it uses and a newcomer reads one face at a time.

- `Program`: the role methods that build Pulumi resources, called by the orchestrator (`pipeline.program`) in order;
- `Catalogue`: checks, sizing, limits, prices and compute (pure Python: no Pulumi, no SDK), read by compare,
  sweep and validate;
- `Packaging`: what a stage's function package holds (its `Recipe`) and the built zip;
- `Deploy`: the local checks and hints around the Pulumi engine (credentials, stack config, account checks,
  test-record hints), and the settings a deploy hands the program;
- `Operable`: the deployed stack's day-two face (`pipeline.operations.protocol.Operations`);
- `OfflineEngine`: what Pulumi's mock engine asks while planning offline.

A cloud package names one class in the `pipeline.backends` entry-point group (see `pipeline.backend`): a
`Backend`, whose instances are each of these faces at once (`pipeline.backend.faces` is where mypy checks it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pipeline.cost import CostEstimate
    from pipeline.operations.protocol import Operations
    from pipeline.packaging import Package, Recipe
    from pipeline.plan import Plan
    from pipeline.roles import BucketSpec, FunctionCode, Grant, Handle, RoleContext, StageResources
    from pipeline.sizing import Sizing, StreamSizing
    from pipeline.spec.model import PipelineSpec, StageSpec
    from pipeline.spec.schedule import Schedule


@dataclass(frozen=True)
class Limits:
    """The limits a user weighs when choosing a cloud, as this backend's plan configures them."""

    max_record_bytes: int  # largest record the stream accepts
    max_stage_timeout_s: int  # the platform's longest invocation for the trigger kinds the spec uses (not the spec's own timeouts)
    max_retention_hours: int  # longest the stream can keep records
    delivery: str  # e.g. "at least once"
    ordering: str  # e.g. "per partition key, within a shard"
    poison_records: str  # what happens to a record that keeps failing
    sources: tuple[str, ...] = ()  # documentation URLs
    http_max_request_bytes: int | None = None  # largest HTTP request body an HTTP stage accepts (None: no HTTP stage)
    http_max_response_bytes: int | None = None
    http_max_timeout_s: int | None = None  # longest an HTTP request may run
    # The platform's longest invocation per trigger kind the spec uses ("stream", "objects", "schedule", "http"):
    # `max_stage_timeout_s` is the smallest of these, which alone would misstate every other kind's limit.
    max_stage_timeout_s_by_trigger: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Compute:
    """What one invocation of a stage runs on as planned: the same milliseconds of `workload.stages` buy
    different CPU on each cloud, and a comparison says so."""

    memory_mb: int  # the memory the function gets (a Flex instance size, a Lambda memory setting, ...)
    vcpus: float  # the CPU that memory comes with


class Named(Protocol):
    """Which cloud: its registry name ("aws") and display name ("AWS")."""

    @property
    def name(self) -> str: ...

    @property
    def title(self) -> str: ...


class Catalogue(Named, Protocol):
    """What the cloud can carry and what it costs, for the backend's spec: no Pulumi, no SDK."""

    @property
    def identity_types(self) -> frozenset[str]: ...

    @property
    def grant_types(self) -> frozenset[str]: ...

    @property
    def key_settings(self) -> dict[str, tuple[str, ...]]: ...

    def check(self) -> list[tuple[tuple[str | int, ...], str, str]]: ...

    def sizing(self) -> Sizing: ...

    def limits(self) -> Limits: ...

    def estimate_cost(self, free_tier: bool) -> CostEstimate: ...

    def price(self, sizing: Sizing, free_tier: bool) -> CostEstimate: ...

    def compute(self, stage: StageSpec) -> Compute: ...

    def data_protection(self) -> str: ...

    def count_grants(self, plan: Plan) -> int: ...

    def location(self) -> str: ...


class Program(Named, Protocol):
    """The role methods the orchestrator calls, in this order, for the backend's spec and stack."""

    @property
    def spec(self) -> PipelineSpec: ...

    @property
    def stack(self) -> str: ...

    @property
    def base_dir(self) -> Path: ...

    def sizing(self) -> Sizing: ...

    def platform(self, role: RoleContext) -> list[Any]: ...

    def stream(self, role: RoleContext, sizing: StreamSizing) -> Handle[Any]: ...

    def bucket(self, role: RoleContext, bucket: BucketSpec) -> Handle[Any]: ...

    def archive(self, role: RoleContext, stream: Handle[Any], bucket: Handle[Any], prefix: str) -> None: ...

    def artifact(self, role: RoleContext, bucket: Handle[Any], path: Path, key: str) -> Handle[Any]: ...

    def producer(self, role: RoleContext, source: str, grants: Sequence[Grant]) -> Handle[Any]: ...

    def identity(self, role: RoleContext, stage: StageSpec) -> Handle[Any]: ...

    def grant(self, role: RoleContext, identity: Handle[Any], grants: Sequence[Grant]) -> None: ...

    def dead_letter(self, role: RoleContext, stage: StageSpec) -> Handle[Any]: ...

    def function(self, role: RoleContext, stage: StageSpec, identity: Handle[Any], code: FunctionCode, env: Mapping[str, Any]) -> Handle[Any]: ...

    def stream_trigger(self, role: RoleContext, stage: StageSpec, stream: Handle[Any], function: Handle[Any], identity: Handle[Any],
                       dead_letter: Handle[Any]) -> None: ...

    def object_trigger(self, role: RoleContext, stage: StageSpec, bucket: Handle[Any], prefix: str, function: Handle[Any],
                       identity: Handle[Any], dead_letter: Handle[Any]) -> None: ...

    def schedule_trigger(self, role: RoleContext, stage: StageSpec, schedule: Schedule, function: Handle[Any], identity: Handle[Any],
                         dead_letter: Handle[Any]) -> None: ...

    def http_trigger(self, role: RoleContext, stage: StageSpec, function: Handle[Any], identity: Handle[Any],
                     dead_letter: Handle[Any]) -> Handle[Any]: ...

    def observability(self, role: RoleContext, stages: Sequence[StageResources]) -> None: ...


class Packaging(Named, Protocol):
    """A stage's function package: what the cloud's host needs in it, and the deterministic zip."""

    vendor_dependencies: bool  # deploy sets it: install requirements into packages (needs PyPI)

    def package_recipe(self, stage: StageSpec, code: FunctionCode) -> Recipe: ...

    def package(self, stage: StageSpec, code: FunctionCode) -> Package: ...


class Deploy(Named, Protocol):
    """Around the Pulumi engine: what a deploy checks locally and in the account, and what it hands the program."""

    previous_outputs: Mapping[str, Any]  # the stack's last deploy outputs, read by the sizing
    delete_data: bool  # data buckets deletable with their objects (`pipeline destroy --delete-data`)
    vendor_dependencies: bool

    def stack_config(self) -> dict[str, str]: ...

    def credentials_problem(self) -> str | None: ...

    def deploy_problem(self) -> str | None: ...

    def test_record_hint(self, outputs: Mapping[str, Any]) -> str: ...


class Operable(Named, Protocol):
    """A deployed stack's day-two face, found by the names in its deploy outputs."""

    def operations(self, outputs: Mapping[str, Any]) -> Operations: ...


class OfflineEngine(Named, Protocol):
    """What Pulumi's mock engine asks while planning offline: the ids and outputs the cloud would assign."""

    def mock_resource(self, type_: str, name: str, inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]: ...

    def mock_call(self, token: str, args: Mapping[str, Any]) -> dict[str, Any]: ...


class Plannable(Program, OfflineEngine, Catalogue, Protocol):
    """What the offline planner uses: the program under the mock engine, and the sizing and location it records."""
