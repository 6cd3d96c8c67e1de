"""The `Plan` value: every resource a program would create, grouped by the role it serves."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

SCHEMA_VERSION = 1


def short_type(type_: str) -> str:
    """'aws:kinesis/stream:Stream' -> 'kinesis.Stream'."""
    parts = type_.split(":")
    if len(parts) != 3:
        return type_
    module = parts[1].split("/")[0]
    return f"{module}.{parts[2]}"


T = TypeVar("T")


def group_parts(items: Sequence[T], physical: Callable[[T], str], logical: Callable[[T], str]) -> list[tuple[T, list[T]]]:
    """Resources with their parts: [(resource, [its parts])], in the order given.

    A part is a settings resource of another one in the same role, e.g. an S3 bucket's policy, lifecycle
    and encryption, or a web app's FTP and SCM switches: it carries the other's physical name and its
    logical name extends the other's (`txn-scoring-raw-bucket-lifecycle` of `txn-scoring-raw-bucket`).
    Views list a part under its resource, so a bucket's name is shown once, not on every setting. Works on
    anything with a physical and a logical name (planned resources, the rows of a saved comparison)."""
    owner: dict[int, int] = {}
    for i, item in enumerate(items):
        best = -1
        for j, other in enumerate(items):
            if i != j and physical(other) == physical(item) and logical(item).startswith(logical(other) + "-") \
                    and (best < 0 or len(logical(other)) > len(logical(items[best]))):
                best = j
        if best >= 0:
            owner[i] = best
    def root(i: int) -> int:  # a part of a part belongs to the resource at the top
        seen = set()
        while i in owner and i not in seen:
            seen.add(i)
            i = owner[i]
        return i
    groups: dict[int, list[T]] = {i: [] for i in range(len(items)) if i not in owner}
    for i in owner:
        top = root(i)
        groups.setdefault(top, []).append(items[i])
    return [(items[i], groups[i]) for i in sorted(groups)]


def part_label(main_type: str, part_type: str) -> str:
    """A part's name under its resource: 'aws:s3/bucketPolicy:BucketPolicy' under a Bucket -> 'Policy'."""
    main, part = main_type.rsplit(":", 1)[-1], part_type.rsplit(":", 1)[-1]
    return part[len(main):] if part.startswith(main) and len(part) > len(main) else part


def portable(value: Any, root: str) -> Any:
    """`value` with local file references ({"asset"|"archive": path, "sha256": ...}) made relative to `root`."""
    if isinstance(value, list):
        return [portable(v, root) for v in value]
    if not isinstance(value, dict):
        return value
    if "sha256" in value and len(value) == 2:
        kind = next((k for k in ("asset", "archive") if isinstance(value.get(k), str)), None)
        if kind and root and os.path.isabs(value[kind]):
            return {kind: os.path.relpath(value[kind], root).replace(os.sep, "/"), "sha256": value["sha256"]}
    return {k: portable(v, root) for k, v in value.items()}


@dataclass
class PlannedResource:
    urn: str
    type: str  # Pulumi type token, e.g. "aws:kinesis/stream:Stream"
    name: str  # logical name
    custom: bool  # False for component resources
    parent: str  # parent URN ("" for the stack)
    role: str  # key of the role this resource serves, e.g. "preprocess-function"
    role_kind: str  # e.g. "Function"
    physical_name: str  # the name the cloud would show (from the mock engine)
    inputs: dict[str, Any]
    dependencies: list[str] = field(default_factory=list)
    provider: str = ""


@dataclass
class Plan:
    cloud: str
    pipeline: str
    stack: str
    location: str
    sizing: dict[str, Any]
    resources: list[PlannedResource]
    outputs: dict[str, Any] = field(default_factory=dict)
    root: str = ""  # the spec's folder: local files (assets, packages) are shown relative to it

    @property
    def cloud_resources(self) -> list[PlannedResource]:
        """Real cloud resources: not components, not providers."""
        return [r for r in self.resources if r.custom and not r.type.startswith("pulumi:providers:")]

    def by_role(self) -> dict[str, list[PlannedResource]]:
        """Cloud resources grouped by role; computed once (views ask for every role of large plans)."""
        cached: tuple[int, dict[str, list[PlannedResource]]] | None = self.__dict__.get("_by_role")
        if cached is not None and cached[0] == len(self.resources):
            return cached[1]
        groups: dict[str, list[PlannedResource]] = {}
        for resource in self.cloud_resources:
            groups.setdefault(resource.role, []).append(resource)
        self.__dict__["_by_role"] = (len(self.resources), groups)
        return groups

    def role_resources(self, key: str, last: frozenset[str] = frozenset()) -> list[PlannedResource]:
        """A role's resources for people to read: the one named after the role first (the function
        app before its role assignments, the bucket before its settings), types in `last` (grants) last."""
        main = f"{self.pipeline}-{key}"
        resources = self.by_role().get(key, [])
        return sorted(resources, key=lambda r: (0 if r.name == main else 2 if r.type in last else 1))

    def roles(self) -> list[tuple[str, str]]:
        """(role key, role kind) in plan order."""
        return [(r.name, r.type.rsplit(":", 1)[-1]) for r in self.resources if r.type.startswith("pipeline:roles:")]

    def of_type(self, type_: str) -> list[PlannedResource]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, role: str | None = None) -> PlannedResource:
        found = [r for r in self.of_type(type_) if role is None or r.role == role]
        if len(found) != 1:
            raise LookupError(f"expected one {type_} in role {role}, found {len(found)}")
        return found[0]

    def find_urn(self, urn: str) -> PlannedResource:
        return next(r for r in self.resources if r.urn == urn)

    def state(self) -> dict[str, Any]:
        """Everything in this plan as plain JSON values, local paths included (see `restore`)."""
        return asdict(self)

    @classmethod
    def restore(cls, data: dict[str, Any]) -> Plan:
        """The plan `state()` described (the plan cache keeps plans this way)."""
        fields = {k: v for k, v in data.items() if k != "resources"}
        return cls(resources=[PlannedResource(**r) for r in data["resources"]], **fields)

    def to_dict(self) -> dict[str, Any]:
        """The JSON plan: the same bytes in every checkout and on every machine (no local paths)."""
        data = asdict(self)
        root = data.pop("root")
        for resource in data["resources"]:
            resource["inputs"] = portable(resource["inputs"], root)
        return {"schema_version": SCHEMA_VERSION, **data}

    def portable_inputs(self, resource: PlannedResource) -> dict[str, Any]:
        """A resource's inputs as the JSON plan shows them: secrets masked, local files relative to the spec."""
        value: dict[str, Any] = portable(resource.inputs, self.root)
        return value

    def inputs_sha256(self, resource: PlannedResource) -> str:
        """A fingerprint of a resource's inputs as the JSON plan shows them (for diffs)."""
        text = json.dumps(self.portable_inputs(resource), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str)
