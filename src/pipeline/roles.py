"""The vocabulary a backend's role methods and the core's orchestrator exchange: what the core asks for
(buckets, grants, a function's code) and what a role hands back (a `Handle` inside its `RoleContext`).

Plain data, no Pulumi at import time, so the program, packaging, the wiring and the local runner can all
depend on it without depending on the backend interface itself.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    import pulumi

    from pipeline.spec.model import StageSpec

class Access(enum.Enum):
    """What a stage's identity may do to one resource; each backend maps these to IAM."""

    READ_STREAM = "read_stream"  # consume the stream (as a trigger does)
    WRITE_STREAM = "write_stream"  # put records on the stream (a producer)
    READ_OBJECTS = "read_objects"  # get objects under a prefix
    LIST_OBJECTS = "list_objects"  # list object keys under a prefix (a schedule reading accumulated outputs)
    WRITE_OBJECTS = "write_objects"  # put (and overwrite) objects under a prefix
    READ_OBJECT = "read_object"  # get one exact object (a model artifact)


@dataclass(frozen=True)
class Grant:
    """One access decision made by the core: `access` on `target` (a handle a role method returned)."""

    access: Access
    target: Any
    prefix: str = ""  # object-key prefix for object access, e.g. "preprocess/"
    reason: str = ""  # why the stage needs it, shown in plans


@dataclass(frozen=True)
class BucketSpec:
    """An object-storage bucket the core asks for, with its purpose and lifecycle."""

    key: str  # stable short name: "raw", "dead-letter", "artifacts", the uploads name or a stage name
    purpose: str  # human text, e.g. "outputs of stage preprocess"
    retention_days: int | None  # None = keep (artifacts)
    notify: bool = False  # a stage is triggered by objects created here: the bucket must emit object-created events
    data: bool = True  # holds pipeline data (outputs, uploads, archives, dead letters), not deploy artifacts


@dataclass(frozen=True)
class FunctionCode:
    """What goes into a stage's function package."""

    root: Path  # the spec's directory; handler paths are relative to it
    handler_file: str  # e.g. "handlers/preprocess.py"
    handler_function: str  # e.g. "preprocess"
    requirements: Path | None
    model: Path | None

    @classmethod
    def for_stage(cls, root: Path, stage: StageSpec) -> FunctionCode:
        return cls(root, stage.handler_file, stage.handler_function,
                   root / stage.requirements if stage.requirements else None, root / stage.model if stage.model else None)


H = TypeVar("H")


@dataclass
class Handle(Generic[H]):
    """What a role method returns: the cloud object plus the few values the core wires onward."""

    resource: H  # the backend's main resource for the role (opaque to the core)
    name: Any  # pulumi Input[str]: the physical name (bucket name, function name, ...)
    extra: dict[str, Any] = field(default_factory=dict)  # backend-private values


class RoleContext:
    """A role's component resource, given to a backend so it parents every resource it creates."""

    def __init__(self, component: pulumi.ComponentResource, kind: str, key: str, pipeline: str, stack: str):
        self.component = component
        self.kind = kind  # e.g. "Function"
        self.key = key  # e.g. "preprocess-function"
        self.pipeline = pipeline
        self.stack = stack

    def name(self, suffix: str = "") -> str:
        """A logical resource name, unique in the stack and readable in the cloud console."""
        return f"{self.pipeline}-{self.key}" + (f"-{suffix}" if suffix else "")

    def opts(self, **kwargs: Any) -> pulumi.ResourceOptions:
        import pulumi

        return pulumi.ResourceOptions(parent=self.component, **kwargs)


@dataclass
class StageResources:
    """What the orchestrator built for one stage, handed to `observability`."""

    stage: StageSpec
    function: Handle[Any]
    identity: Handle[Any]
    dead_letter: Handle[Any]
    output: Handle[Any] | None  # None for an HTTP stage that does not persist its answers


def autoname(logical: str, length: int = 7) -> str:
    """Pulumi-style autonaming (logical name + random suffix), made deterministic for offline plans."""
    return f"{logical}-{hashlib.sha256(logical.encode()).hexdigest()[:length]}"
