"""The class every cloud backend implements (each instance is all of a backend's faces, `pipeline.faces`), and the
registry that finds them.

Like fsspec, backends live in separate distributions and are found by name through the
`pipeline.backends` entry-point group, so the core never imports a cloud SDK. Like Nitric's
providers, the interface has one method per resource role; the core's orchestrator
(`pipeline.program`) calls them in order and makes every wiring decision itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pipeline.errors import PipelineError, UnknownBackendError
from pipeline.faces import Catalogue, Compute, Deploy, Limits, OfflineEngine, Operable, Packaging, Program
from pipeline.roles import BucketSpec, FunctionCode, Grant, Handle, RoleContext, StageResources
from pipeline.sizing import Sizing, StageDemand, StageSizing, StreamSizing, size_pipeline

if TYPE_CHECKING:

    from pipeline.cost import CostEstimate
    from pipeline.operations.protocol import Operations
    from pipeline.packaging import Package, Recipe
    from pipeline.plan import Plan
    from pipeline.spec.model import PipelineSpec, StageSpec
    from pipeline.spec.schedule import Schedule

ENTRY_POINT_GROUP = "pipeline.backends"


class Backend(ABC):
    """One cloud. A new instance is made for every program run; it may keep state between calls."""

    name: ClassVar[str]  # registry name: "aws", "gcp", "azure"
    title: ClassVar[str]  # display name: "AWS"

    def __init__(self, spec: PipelineSpec, stack: str, base_dir: Path):
        self.spec = spec
        self.stack = stack
        self.base_dir = base_dir
        self.vendor_dependencies = False  # deploy sets it: install requirements into packages (needs PyPI)
        # Outputs of this stack's last deploy (deploy sets them; empty when planning offline). Sizing reads
        # them to keep what cannot change in place (Event Hubs partitions, a Kinesis shard count's 2x step).
        self.previous_outputs: Mapping[str, Any] = {}
        # Destroy semantics for data buckets (BucketSpec.data): False keeps them and their objects when the
        # stack is destroyed (`retain_on_delete`); `pipeline destroy --delete-data` first deploys with True
        # (buckets become deletable with their objects: S3/GCS force_destroy), then destroys.
        self.delete_data = False
        self._sizing: Sizing | None = None

    # ---- function packages ------------------------------------------------------------------
    def package_recipe(self, stage: StageSpec, code: FunctionCode) -> Recipe:
        """What this cloud's host needs in a stage's package (shim, host files, wheels, limits)."""
        raise NotImplementedError(f"{self.title} does not build packages yet")

    def package(self, stage: StageSpec, code: FunctionCode) -> Package:
        """Build the stage's deterministic zip under .pipeline/build/ next to the spec."""
        from pipeline.packaging import stage_package

        target = self.base_dir / ".pipeline" / "build" / self.name / self.stack / f"{stage.name}.zip"
        return stage_package(stage.name, code, self.package_recipe(stage, code), target, self.vendor_dependencies)

    # ---- checks and sizing (no Pulumi needed) -------------------------------------------
    @abstractmethod
    def check(self) -> list[tuple[tuple[str | int, ...], str, str]]:
        """Cloud-specific validation: (field path, message, hint) for what this cloud cannot express."""

    @abstractmethod
    def size_stream(self) -> StreamSizing:
        """The minimum stream capacity that carries `spec.workload`, next to this cloud's limits (only
        called when the spec has a stream)."""

    @abstractmethod
    def size_stage(self, stage: StageSpec, demand: StageDemand, stream: StreamSizing | None) -> StageSizing:
        """How this cloud's design carries `demand` for `stage`: its batching (records per invocation),
        the concurrency it provisions (sized with `pipeline.sizing.needed_concurrency`, within this
        cloud's limits) and its trigger's wait. Build the result with `pipeline.sizing.stage_sizing`."""

    def sizing(self) -> Sizing:
        """The stream and every stage, sized once per backend instance; plan, program and price all use it."""
        if self._sizing is None:
            stream = self.size_stream() if self.spec.stream is not None else None
            self._sizing = size_pipeline(self.spec, stream, self.size_stage)
        return self._sizing

    @abstractmethod
    def mock_resource(self, type_: str, name: str, inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """Physical id and outputs the cloud would assign, for the offline planner's mock engine."""

    def mock_call(self, token: str, args: Mapping[str, Any]) -> dict[str, Any]:
        """Result of a data-source invoke (e.g. a project lookup) for the offline planner."""
        return {}

    # ---- comparison: limits and cost (no Pulumi needed) -------------------------------------
    identity_types: ClassVar[frozenset[str]] = frozenset()  # resource types that are identities
    grant_types: ClassVar[frozenset[str]] = frozenset()  # resource types that grant a permission
    key_settings: ClassVar[dict[str, tuple[str, ...]]] = {}  # type -> input paths ("a.b") worth showing in comparisons

    def limits(self) -> Limits:
        """The limits of this cloud's services as the plan configures them."""
        raise NotImplementedError(f"{self.title} does not describe its limits yet")

    def estimate_cost(self, free_tier: bool) -> CostEstimate:
        """Monthly cost for `spec.workload`, priced from the very sizing the plan is built with, so a
        comparison's cost and its plan never disagree."""
        return self.price(self.sizing(), free_tier)

    def price(self, sizing: Sizing, free_tier: bool) -> CostEstimate:
        """This cloud's bill for `sizing` (invocations, records per invocation, objects: see
        `pipeline.sizing`), line by line, from its price sheet. Log and telemetry lines go under the
        "observability" role on every cloud."""
        raise NotImplementedError(f"{self.title} has no cost model yet")

    def compute(self, stage: StageSpec) -> Compute:
        """The memory and vCPUs one invocation of `stage` gets as planned (shown among the comparison's assumptions)."""
        raise NotImplementedError(f"{self.title} does not describe its compute yet")

    def data_protection(self) -> str:
        """How long deleted or overwritten data stays recoverable as planned, and whether the estimate prices it."""
        raise NotImplementedError(f"{self.title} does not describe its data protection yet")

    def count_grants(self, plan: Plan) -> int:
        """Permission grants in `plan`, counted the same way on every cloud: one grant is one principal
        allowed one role or action set on one resource scope (an IAM policy statement counts once per
        resource it names; a role assignment, an IAM member binding or a resource-policy permission
        counts once). The default counts the resources of `grant_types`; clouds whose grant resources
        hold several grants override it."""
        return sum(1 for r in plan.cloud_resources if r.type in self.grant_types)

    def location(self) -> str:
        """Region or location shown in plans."""
        return ""

    # ---- deploying: local checks and hints around the Pulumi engine (cloud SDKs imported inside) ----
    def stack_config(self) -> dict[str, str]:
        """Stack config `pulumi` CLI users expect for this cloud (e.g. aws:region); the program itself uses explicit providers."""
        return {}

    def credentials_problem(self) -> str | None:
        """Why a deploy could not authenticate or has no region/project/location, found locally without a network call; None if fine."""
        return None

    def deploy_problem(self) -> str | None:
        """Why creating or updating this stack would fail in the account the credentials reach, found by asking the cloud
        (e.g. a quota the spec's settings exceed); None if fine. Runs before `preview` and `deploy` only, after the
        credentials resolve, so a refused stack can still be refreshed or destroyed."""
        return None

    def test_record_hint(self, outputs: Mapping[str, Any]) -> str:
        """Shell commands that send one test record to the deployed stream and show its results, with the real names in `outputs`."""
        return ""

    # ---- day two: a deployed stack's dead letters and windows (cloud SDKs imported inside) ----
    def operations(self, outputs: Mapping[str, Any]) -> Operations:
        """The deployed stack's operations face (`pipeline.operations.protocol.Operations`): its buckets, failure
        queues and redrive primitives, found by the names in `outputs` (what `pipeline outputs --json` prints)."""
        raise NotImplementedError(f"{self.title} has no day-two operations (dead letters, windows) yet")

    # ---- roles, called by the orchestrator in this order ---------------------------------
    @abstractmethod
    def platform(self, role: RoleContext) -> list[Any]:
        """Providers, resource groups, enabled APIs. Returns providers every later role uses."""

    @abstractmethod
    def stream(self, role: RoleContext, sizing: StreamSizing) -> Handle[Any]:
        """The ingest stream (only when the spec has one)."""

    @abstractmethod
    def bucket(self, role: RoleContext, bucket: BucketSpec) -> Handle[Any]:
        """A private, encrypted bucket with lifecycle expiry."""

    @abstractmethod
    def archive(self, role: RoleContext, stream: Handle[Any], bucket: Handle[Any], prefix: str) -> None:
        """Copy every raw stream record into `bucket` under `prefix`. Called after `stream` and the
        buckets, before any stage role (backends may rely on this order)."""

    @abstractmethod
    def artifact(self, role: RoleContext, bucket: Handle[Any], path: Path, key: str) -> Handle[Any]:
        """Upload a local file (a model) as object `key`; returns a handle whose name is the key."""

    @abstractmethod
    def producer(self, role: RoleContext, source: str, grants: Sequence[Grant]) -> Handle[Any]:
        """An identity outside producers use to feed `source` ("stream" or the uploads bucket's key),
        allowed exactly `grants` (WRITE_STREAM on the stream, or WRITE_OBJECTS under the landing
        prefix). Its `name` is what a producer attaches or impersonates (policy ARN, service-account
        e-mail, identity client id); deploy outputs list it."""

    @abstractmethod
    def identity(self, role: RoleContext, stage: StageSpec) -> Handle[Any]:
        """The identity a stage's function runs as; starts with no permissions."""

    @abstractmethod
    def grant(self, role: RoleContext, identity: Handle[Any], grants: Sequence[Grant]) -> None:
        """Give `identity` exactly `grants`, each scoped to its exact resource and prefix."""

    @abstractmethod
    def dead_letter(self, role: RoleContext, stage: StageSpec) -> Handle[Any]:
        """Where events that keep failing for `stage` are kept (encrypted, bounded retention)."""

    @abstractmethod
    def function(self, role: RoleContext, stage: StageSpec, identity: Handle[Any], code: FunctionCode, env: Mapping[str, Any]) -> Handle[Any]:
        """The stage's function, running as `identity`, with `env` (values may be Outputs)."""

    @abstractmethod
    def stream_trigger(self, role: RoleContext, stage: StageSpec, stream: Handle[Any], function: Handle[Any], identity: Handle[Any], dead_letter: Handle[Any]) -> None:
        """Invoke `function` with batches from `stream`; bounded retries, then `dead_letter`."""

    @abstractmethod
    def object_trigger(self, role: RoleContext, stage: StageSpec, bucket: Handle[Any], prefix: str, function: Handle[Any], identity: Handle[Any], dead_letter: Handle[Any]) -> None:
        """Invoke `function` for each object created in `bucket` under `prefix`."""

    @abstractmethod
    def schedule_trigger(self, role: RoleContext, stage: StageSpec, schedule: Schedule, function: Handle[Any], identity: Handle[Any], dead_letter: Handle[Any]) -> None:
        """Invoke `function` on `schedule`."""

    @abstractmethod
    def http_trigger(self, role: RoleContext, stage: StageSpec, function: Handle[Any], identity: Handle[Any], dead_letter: Handle[Any]) -> Handle[Any]:
        """Serve `function` over HTTPS to authenticated callers only (the pipeline's own caller identity
        and `clouds.<cloud>.http_invokers`; never anonymous). Returns a handle whose `name` is the URL
        and whose `extra["caller"]` names the caller identity."""

    @abstractmethod
    def observability(self, role: RoleContext, stages: Sequence[StageResources]) -> None:
        """Logs, metrics and alarms that tell an operator when the pipeline is unhealthy."""


def backend_names() -> list[str]:
    """Installed backends, found without importing them."""
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


@cache
def backend_class(name: str) -> type[Backend]:
    """Import a backend by registry name; a clear error if it is not installed."""
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        installed = ", ".join(backend_names()) or "none"
        raise UnknownBackendError(f"no backend named {name!r} is installed (installed: {installed}); install the pipeline-{name} package")
    cls = found[0].load()
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise PipelineError(f"entry point {name!r} does not name a Backend subclass")
    return cls


def faces(backend: Backend) -> tuple[Program, Catalogue, Packaging, Deploy, Operable, OfflineEngine]:
    """A backend's faces, one per job (see `pipeline.faces`); here mypy checks that every Backend is each of them."""
    return backend, backend, backend, backend, backend, backend
