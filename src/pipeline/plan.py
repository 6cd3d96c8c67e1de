"""The `Plan` value: every resource a program would create, grouped by the role it serves."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA_VERSION = 1


def short_type(type_: str) -> str:
    """'aws:kinesis/stream:Stream' -> 'kinesis.Stream'."""
    parts = type_.split(":")
    if len(parts) != 3:
        return type_
    module = parts[1].split("/")[0]
    return f"{module}.{parts[2]}"


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

    @property
    def cloud_resources(self) -> list[PlannedResource]:
        """Real cloud resources: not components, not providers."""
        return [r for r in self.resources if r.custom and not r.type.startswith("pulumi:providers:")]

    def by_role(self) -> dict[str, list[PlannedResource]]:
        groups: dict[str, list[PlannedResource]] = {}
        for resource in self.cloud_resources:
            groups.setdefault(resource.role, []).append(resource)
        return groups

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

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, **asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str)
