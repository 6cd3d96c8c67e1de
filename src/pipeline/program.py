"""The single Pulumi program that builds a pipeline on any cloud.

Every wiring decision lives here, once: which buckets exist and how long they keep data,
which stage reads what, which identity may touch which resource and prefix, and which
environment each function gets. A backend only turns each role into its cloud's resources.
The offline planner runs this under Pulumi's mock engine; deploy runs the very same function
through the Automation API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi

from pipeline.faces import Program
from pipeline.roles import Access, FunctionCode, Grant, Handle, RoleContext, StageResources
from pipeline.spec.model import StageSpec
from pipeline.spec.paths import UnsafePathError, refused, resolve_in_project
from pipeline.wiring import artifact_key, bucket_plan, stage_env, stage_prefix, state_prefix, writes_objects

__all__ = ["artifact_key", "bucket_plan", "pipeline_program", "stage_prefix", "state_prefix", "writes_objects"]

ROLE_TYPE_PREFIX = "pipeline:roles:"
PIPELINE_TYPE = "pipeline:index:Pipeline"
RAW_PREFIX = "raw/"


class PipelineComponent(pulumi.ComponentResource):
    """The root of a pipeline's resource tree."""

    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__(PIPELINE_TYPE, name, None, opts)


class RoleComponent(pulumi.ComponentResource):
    """One role (stream, a bucket, a stage's function...). Its type token is stable across
    clouds, so plans from different clouds line up role by role."""

    def __init__(self, kind: str, name: str, opts: pulumi.ResourceOptions):
        super().__init__(ROLE_TYPE_PREFIX + kind, name, None, opts)


def shipped_model(root: Path, relative: str) -> Path:
    """The model file's real path, re-checked (it may have changed since validation) to be a
    regular file inside the project: only that is uploaded."""
    try:
        return resolve_in_project(root, relative, "model file")
    except UnsafePathError as exc:
        raise refused(exc, root / relative, "upload the model") from None


_TRIGGER_ROLES = {"stream": "StreamTrigger", "objects": "ObjectTrigger", "schedule": "ScheduleTrigger", "http": "HttpTrigger"}


class Orchestrator:
    """Calls a backend's role methods in dependency order and records what it built."""

    def __init__(self, backend: Program):
        self.backend = backend
        self.spec = backend.spec
        self.root = PipelineComponent(self.spec.name)
        self.providers: list[Any] = []
        self.roles: list[tuple[str, str]] = []  # (key, kind) in creation order: plans list roles this way
        self.endpoints: dict[str, Any] = {}
        self.callers: dict[str, Any] = {}

    def role(self, kind: str, key: str) -> RoleContext:
        self.roles.append((key, kind))
        opts = pulumi.ResourceOptions(parent=self.root, providers=self.providers or None)
        return RoleContext(RoleComponent(kind, key, opts), kind, key, self.spec.name, self.backend.stack)

    def run(self) -> dict[str, Any]:
        backend, spec = self.backend, self.spec
        sizing = backend.sizing()
        # Re-checked before any resource exists, so a refused model stops the program cleanly.
        model_files = {stage.model: shipped_model(backend.base_dir, stage.model) for stage in spec.stages if stage.model}
        self.providers = backend.platform(self.role("Platform", "platform"))

        stream = backend.stream(self.role("Stream", "stream"), sizing.stream) if spec.stream is not None and sizing.stream else None
        buckets = {b.key: backend.bucket(self.role("Bucket", f"{b.key}-bucket"), b) for b in bucket_plan(spec)}
        if stream is not None and spec.stream is not None and spec.stream.archive:
            backend.archive(self.role("Archive", "raw-archive"), stream, buckets["raw"], RAW_PREFIX)

        producers: dict[str, Any] = {}
        if stream is not None:
            grants = [Grant(Access.WRITE_STREAM, stream, reason="put records on the stream")]
            producers["stream"] = backend.producer(self.role("Producer", "stream-producer"), "stream", grants).name
        if spec.uploads is not None:
            name = spec.uploads.name
            grants = [Grant(Access.WRITE_OBJECTS, buckets[name], spec.uploads.prefix, "drop files into the uploads bucket")]
            producers[name] = backend.producer(self.role("Producer", f"{name}-producer"), name, grants).name

        models: dict[str, Handle[Any]] = {}
        for stage in spec.stages:
            if stage.model and stage.model not in models:
                path = model_files[stage.model]
                key = artifact_key(path)
                models[stage.model] = backend.artifact(self.role("Artifact", f"model-{len(models) + 1}"), buckets["artifacts"], path, key)

        built = [self._stage(stage, stream, buckets, models) for stage in spec.stages]
        backend.observability(self.role("Observability", "observability"), built)

        outputs: dict[str, Any] = {
            "buckets": {key: handle.name for key, handle in buckets.items()},
            "functions": {b.stage.name: b.function.name for b in built},
            "dead_letters": {b.stage.name: b.dead_letter.name for b in built},
            "producers": producers,
        }
        if stream is not None and sizing.stream is not None:
            outputs["stream"] = stream.name
            # Read back by the next deploy's sizing (Backend.previous_outputs): what cannot change in place stays put.
            outputs["stream_sizing"] = {"units": sizing.stream.units, "partitions": sizing.stream.partitions, "mode": sizing.stream.mode}
        if self.endpoints:
            outputs["endpoints"] = self.endpoints
            outputs["http_callers"] = self.callers
        self.root.register_outputs(outputs)
        return outputs

    def _stage(self, stage: StageSpec, stream: Handle[Any] | None, buckets: dict[str, Handle[Any]], models: dict[str, Handle[Any]]) -> StageResources:
        backend = self.backend
        identity_role = self.role("Identity", f"{stage.name}-identity")
        identity = backend.identity(identity_role, stage)
        dead_letter = backend.dead_letter(self.role("DeadLetter", f"{stage.name}-dead-letter"), stage)
        output = buckets.get(stage.name)

        grants = [Grant(Access.WRITE_OBJECTS, buckets["dead-letter"], stage_prefix(stage.name), "write poison records")]
        trigger = stage.trigger
        if output is not None and writes_objects(stage):
            grants.insert(0, Grant(Access.WRITE_OBJECTS, output, stage_prefix(stage.name), "write this stage's outputs"))
        if trigger.stream:
            assert stream is not None  # wiring_problems refuses a stream trigger without a stream
            grants.append(Grant(Access.READ_STREAM, stream, reason="consume stream batches"))
        source = trigger.source
        if source is not None:
            grants.append(Grant(Access.READ_OBJECTS, buckets[source], stage_prefix(source), f"read objects of {source}"))
        window = trigger.window_source
        if window:
            assert output is not None
            grants.append(Grant(Access.LIST_OBJECTS, buckets[window], stage_prefix(window), f"find the objects {window} wrote since the last run"))
            grants.append(Grant(Access.READ_OBJECTS, output, state_prefix(stage.name), "read the watermark and the run lease"))
            grants.append(Grant(Access.WRITE_OBJECTS, output, state_prefix(stage.name), "take the run lease and advance the watermark"))
        model = models[stage.model] if stage.model else None
        if model is not None:
            grants.append(Grant(Access.READ_OBJECT, buckets["artifacts"], model.name, "load the model artifact"))
        env = stage_env(self.spec, backend.stack, stage, lambda key: buckets[key].name, model.name if model is not None else None)
        backend.grant(identity_role, identity, grants)

        code = FunctionCode.for_stage(backend.base_dir, stage)
        function = backend.function(self.role("Function", f"{stage.name}-function"), stage, identity, code, env)

        trigger_role = self.role(_TRIGGER_ROLES[trigger.kind], f"{stage.name}-trigger")
        if trigger.stream:
            assert stream is not None
            backend.stream_trigger(trigger_role, stage, stream, function, identity, dead_letter)
        elif trigger.objects:
            source_key = trigger.objects.from_stage
            backend.object_trigger(trigger_role, stage, buckets[source_key], stage_prefix(source_key), function, identity, dead_letter)
        elif trigger.http:
            endpoint = backend.http_trigger(trigger_role, stage, function, identity, dead_letter)
            self.endpoints[stage.name] = endpoint.name
            self.callers[stage.name] = endpoint.extra.get("caller", "")
        else:
            backend.schedule_trigger(trigger_role, stage, trigger.parsed_schedule, function, identity, dead_letter)
        return StageResources(stage, function, identity, dead_letter, output)


def pipeline_program(backend: Program) -> Orchestrator:
    """The Pulumi program: build everything and export the names a user needs."""
    orchestrator = Orchestrator(backend)
    for key, value in orchestrator.run().items():
        pulumi.export(key, value)
    return orchestrator
