"""Offline planning: run the real program under Pulumi's own mock engine, in process.

No Pulumi CLI, no credentials, no network. The mock monitor sees every resource
registration exactly as the engine would (type, name, parent, inputs, dependencies);
the backend supplies the ids and computed outputs its cloud would assign, so names and
ARNs in the plan look like the real thing. Several clouds can be planned one after another.
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pulumi
from google.protobuf import json_format
from pulumi.runtime import mocks, settings
from pulumi.runtime import resource as resource_runtime
from pulumi.runtime.proto import source_pb2
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from pipeline import sdk_modules
from pipeline.backend import backend_class
from pipeline.cloud_checks import check_clouds
from pipeline.errors import PipelineError, SpecError
from pipeline.faces import Catalogue, OfflineEngine, Program
from pipeline.plan import Plan, PlannedResource
from pipeline.program import ROLE_TYPE_PREFIX, Orchestrator, pipeline_program
from pipeline.sizing import Sizing
from pipeline.spec.load import LoadedSpec

# Pulumi's wire-format signatures (sdk/go/common/resource/sig): how special values travel.
_SIG_KEY = "4dabf18193072939515e22adb298388d"
_SECRET = "1b47061264138c4ac30d75fd1eb44270"
_RESOURCE_REF = "5cf8f73096256a8f31e491e813e4eb8e"
_ASSET = "c44067f5952c0a294b673a41bacd8c17"
_ARCHIVE = "0def7320c3a5731c473e5ecbe6d01bc7"
_UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
SECRET_MASK = "[secret]"


def plain(value: Any) -> Any:
    """Wire-format value -> plain JSON: secrets masked, refs as URNs, assets and archives as their
    path plus a content hash (`Plan.to_dict` shows the path relative to the spec)."""
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # protobuf Structs carry every number as a double
    if not isinstance(value, dict):
        return "[unknown]" if value == _UNKNOWN else value
    sig = value.get(_SIG_KEY)
    if sig == _SECRET:
        return SECRET_MASK
    if sig == _RESOURCE_REF:
        return value.get("urn", "")
    if sig == _ASSET:
        return _file_reference("asset", value["path"]) if value.get("path") else {"asset": value.get("uri") or "text"}
    if sig == _ARCHIVE:
        assets = value.get("assets")
        if isinstance(assets, dict):
            return {"archive": sorted(assets)}
        return _file_reference("archive", value["path"]) if value.get("path") else {"archive": value.get("uri")}
    return {k: plain(v) for k, v in sorted(value.items())}


def _file_reference(kind: str, path: str) -> dict[str, Any]:
    """{"asset": "/.../models/fraud-model.json", "sha256": "..."}: where it is, and what it holds."""
    return {kind: path, "sha256": content_sha256(Path(path))}


def content_sha256(path: Path) -> str:
    """Hash of a file, or of a folder's files (relative names and bytes, sorted); "" when it does not exist."""
    digest = hashlib.sha256()
    if path.is_file():
        digest.update(path.read_bytes())
    elif path.is_dir():
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(item.relative_to(path).as_posix().encode() + b"\0" + item.read_bytes() + b"\0")
    else:
        return ""
    return digest.hexdigest()


@contextmanager
def _without_source_positions() -> Iterator[None]:
    """Skip the SDK's per-resource source-position capture while planning.

    Each registration calls `traceback.extract_stack()` (reading source lines) so the engine can
    point diagnostics at user code; the mock engine never uses it, and it is about a third of an
    Azure plan's time. Guarded, so an SDK without the hook plans as before.
    """
    original = getattr(resource_runtime, "_get_stack_trace", None)
    if original is None:
        yield
        return
    resource_runtime._get_stack_trace = source_pb2.StackTrace  # an empty trace, as the SDK sends outside a program
    try:
        yield
    finally:
        resource_runtime._get_stack_trace = original


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No garbage collection while the program runs.

    A plan allocates hundreds of thousands of short-lived Outputs, futures and tasks, many in
    reference cycles; the collector would scan them over and over (about a second of a three-cloud
    compare) and frees little before the plan is done anyway. The previous state is restored, so a
    long-lived caller (tests, a server) collects the garbage at its next collection; the console
    script keeps the collector off and exits without teardown (see `pipeline.cli.app.main`).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def _without_aliases() -> Iterator[None]:
    """Drop resource aliases while planning offline.

    azure-native gives every resource 5 to 25 aliases (its older API-version type tokens), and the
    SDK resolves each through Outputs and tasks: more than half of an Azure plan's time. Aliases
    only tell a deploy which existing state a renamed resource takes over; an offline plan has no
    state, and they are not part of what the plan records (type, name, inputs, dependencies), so
    the plan is the same without them. Deploys never run under this (they keep the aliases).
    """
    original = pulumi.Resource.__init__

    def init(self: pulumi.Resource, t: str, name: str, custom: bool, props: Any = None,
             opts: pulumi.ResourceOptions | None = None, *args: Any, **kwargs: Any) -> None:
        if opts is not None and opts.aliases:
            opts = opts._copy()
            opts.aliases = None
        original(self, t, name, custom, props, opts, *args, **kwargs)

    pulumi.Resource.__init__ = init  # type: ignore[method-assign]
    try:
        yield
    finally:
        pulumi.Resource.__init__ = original  # type: ignore[method-assign]


class _Recorder(mocks.Mocks):
    def __init__(self, backend: OfflineEngine):
        self.backend = backend

    def new_resource(self, args: mocks.MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
        return self.backend.mock_resource(args.typ, args.name, args.inputs)

    def call(self, args: mocks.MockCallArgs) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        return self.backend.mock_call(args.token, args.args), []


class _RecordingMonitor(mocks.MockMonitor):
    """The stock mock monitor, also keeping the registration request it is given."""

    def __init__(self, recorder: _Recorder):
        super().__init__(recorder)
        self.requests: list[tuple[str, Any]] = []

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        self.requests.append((response.urn, request))
        return response


def _physical_name(outputs: Mapping[str, Any], resource_id: str) -> str:
    for key in ("name", "bucket", "accountName"):
        value = outputs.get(key)
        if isinstance(value, str) and value:
            return value
    return resource_id


def preflight(loaded: LoadedSpec, backend: Catalogue) -> None:
    """Raise SpecError when `backend` cannot express or carry the spec: the very check `validate` runs
    (`pipeline.cloud_checks`: its own checks and the capacity its sizing gives). The planner runs this before
    the program; `compare --sweep` runs it alone at each workload, so a point that cannot be planned fails
    there with the very problems `plan` names."""
    check_clouds(loaded, [backend])


def plan(loaded: LoadedSpec, cloud: str, program: Callable[[Program], Orchestrator] = pipeline_program) -> Plan:
    """Plan `loaded` for `cloud`; raises SpecError if this cloud cannot express the spec.

    `program` is the Pulumi program to run; it defaults to the orchestrator and is only swapped
    to check that an exported project runs the very same program."""
    sdk_modules.install()  # load only the SDK modules this plan uses (pipeline.sdk_modules)
    backend = backend_class(cloud)(loaded.spec, loaded.stack, loaded.base_dir)
    preflight(loaded, backend)
    sizing = backend.sizing()

    recorder = _Recorder(backend)
    monitor = _RecordingMonitor(recorder)
    settings.ROOT.set(None)
    project = loaded.spec.name
    stack = f"{loaded.stack}-{cloud}"
    mocks.set_mocks(recorder, project=project, stack=stack, preview=False, monitor=monitor)
    settings.SETTINGS.rpc_manager.clear()
    settings.SETTINGS.outputs.clear()
    built: list[Orchestrator] = []
    try:
        with _without_source_positions(), _without_aliases(), _collector_paused():
            _sync_await(run_pulumi_func(lambda: built.append(program(backend))))
    except (PipelineError, SpecError):  # SpecError: e.g. a shipped file changed since validation (spec.paths)
        raise
    except Exception as exc:  # a backend bug must still not surface as a raw traceback
        raise PipelineError(f"planning for {cloud} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        settings.ROOT.set(None)

    return _to_plan(loaded, backend, sizing, monitor, built[0].roles)


def _to_plan(loaded: LoadedSpec, backend: Catalogue, sizing: Sizing, monitor: _RecordingMonitor, roles: list[tuple[str, str]]) -> Plan:
    registered = monitor.get_registered_resources()
    by_urn: dict[str, PlannedResource] = {}
    for urn, request in monitor.requests:
        if request.type == "pulumi:pulumi:Stack":
            continue
        inputs = plain(json_format.MessageToDict(request.object))
        state = registered.get(urn)
        outputs = plain(dict(state.state)) if state is not None and state.state else {}
        by_urn[urn] = PlannedResource(
            urn=urn,
            type=request.type,
            name=request.name,
            custom=bool(request.custom),
            parent=request.parent,
            role="",
            role_kind="",
            physical_name=_physical_name(outputs, state.id if state is not None and state.id else request.name) if request.custom else request.name,
            inputs=inputs,
            dependencies=sorted(set(request.dependencies)),
            provider=request.provider.rsplit("::", 1)[0] if request.provider else "",  # "<provider urn>::<id>"
        )
    for resource in by_urn.values():
        node: PlannedResource | None = resource
        while node is not None and not node.type.startswith(ROLE_TYPE_PREFIX):
            node = by_urn.get(node.parent)
        if node is not None:
            resource.role, resource.role_kind = node.name, node.type[len(ROLE_TYPE_PREFIX):]
    # Roles in the order the program created them (deterministic), resources by type and name.
    rank = {key: i for i, (key, _) in enumerate(roles)}
    resources = sorted(by_urn.values(), key=lambda r: (rank.get(r.role, -1), r.custom, r.type, r.name))
    sizing_dict = sizing.to_dict()
    return Plan(
        cloud=backend.name,
        pipeline=loaded.spec.name,
        stack=loaded.stack,
        location=backend.location(),
        sizing=sizing_dict,
        resources=resources,
        root=str(loaded.base_dir),
    )
