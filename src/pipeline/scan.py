"""Plans as files an infrastructure scanner reads: Terraform plan JSON or an ARM template.

Why: scanners such as checkov read neither Pulumi programs nor our `Plan`, but they read the
formats our clouds' Pulumi providers come from. pulumi-aws and pulumi-gcp are bridged from the
Terraform providers, so each of their resources *is* a Terraform resource whose inputs were renamed
(snake_case to camelCase, one-item blocks flattened to objects, a few fields renamed); azure-native
resources are ARM resources whose `properties` were flattened into top-level inputs. Undoing that
is generic, and lives here; what differs per cloud (type names, renamed fields, which objects are
maps rather than blocks, API versions) is a table each backend supplies as a `ScanMapping`, found
through the backend class (`Scannable`). Nothing here imports a cloud SDK.

Several plans of one cloud (a spec's overlays) go into one file, so one scanner run covers them all;
`ScanDocument.origins` maps each scanner resource id back to the plan and Pulumi URN it came from.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pipeline.backend import backend_class
from pipeline.errors import PipelineError
from pipeline.plan import Plan, PlannedResource

# The Terraform JSON plan format this writes (https://developer.hashicorp.com/terraform/internals/json-format).
TERRAFORM_FORMAT_VERSION = "1.2"
TERRAFORM_VERSION = "1.9.8"  # what the file claims to come from; scanners only check that it is present
ARM_SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
# ARM resource fields that sit beside `properties` rather than inside it.
ARM_TOP_LEVEL = frozenset({"location", "tags", "sku", "kind", "identity", "zones", "plan", "extendedLocation", "scope", "managedBy"})


class UnmappedResourceError(PipelineError):
    """A planned resource type the cloud's scan mapping does not know: never dropped silently."""


@dataclass(frozen=True)
class TerraformType:
    """One Pulumi type token as the Terraform resource it was bridged from."""

    type: str  # e.g. "aws_s3_bucket"
    # Pulumi input path (camelCase keys joined by '.', list items transparent) -> Terraform attribute name,
    # where the bridge renamed a field instead of just camelCasing it, e.g. {"rules": "rule"}.
    renames: Mapping[str, str] = field(default_factory=dict)
    provider: str = ""  # provider source when not the mapping's, e.g. "registry.terraform.io/hashicorp/google-beta"


@dataclass(frozen=True)
class ArmType:
    """One azure-native type token as the ARM resource it manages."""

    type: str  # e.g. "Microsoft.Storage/storageAccounts/blobServices/containers"
    api_version: str
    # The ARM name, parent first: input names, or literal segments prefixed with '=' (e.g. "=default").
    # The last segment falls back to the resource's physical name when the input is absent (autonamed).
    name: tuple[str, ...]
    renames: Mapping[str, str] = field(default_factory=dict)  # input -> ARM property name where they differ
    in_properties: frozenset[str] = frozenset()  # inputs that ARM keeps inside `properties` although usually top-level (e.g. a workspace's sku)


@dataclass(frozen=True)
class TerraformMapping:
    """A bridged provider's table: Pulumi type tokens as Terraform resources."""

    provider: str  # e.g. "registry.terraform.io/hashicorp/aws"
    types: Mapping[str, TerraformType]
    maps: frozenset[str]  # Terraform attribute names whose values are maps (tags, labels, env vars), not blocks
    unscanned: Mapping[str, str] = field(default_factory=dict)  # type token -> why it has no Terraform counterpart

    framework = "terraform_plan"
    plans_per_document = 0  # any number: addresses are prefixed with the stack

    def convert(self, plans: Sequence[Plan], namespace: str = "") -> ScanDocument:
        return _TerraformWriter(self, plans, namespace).document()


@dataclass(frozen=True)
class ArmMapping:
    """azure-native's table: Pulumi type tokens as ARM resource types."""

    types: Mapping[str, ArmType]
    unscanned: Mapping[str, str] = field(default_factory=dict)  # type token -> why it is not an ARM resource (e.g. data plane)
    # A final per-resource fix-up for shapes azure-native changes beyond flattening (e.g. a list of identity ids
    # that ARM wants as a map); gets the type token and the ARM resource, edits it in place.
    adjust: Callable[[str, dict[str, Any]], None] | None = None

    framework = "arm"
    # ARM names are the resources' real names, which may repeat across stacks (each in its own resource group).
    plans_per_document = 1

    def convert(self, plans: Sequence[Plan], namespace: str = "") -> ScanDocument:
        return _arm_document(self, plans)  # ARM names are the resources' real names: unique without a namespace


ScanMapping = TerraformMapping | ArmMapping


@runtime_checkable
class Scannable(Protocol):
    """A backend whose plans can be written for a scanner; kept apart from `Backend` on purpose:
    describing plans for scanners is a separate concern from building them."""

    @classmethod
    def scan_mapping(cls) -> ScanMapping: ...


@dataclass(frozen=True)
class Origin:
    """Where a scanner's resource came from."""

    stack: str
    urn: str
    type: str  # Pulumi type token


@dataclass
class ScanDocument:
    """One file for a scanner, and where each of its resources came from."""

    framework: str  # checkov's --framework: "terraform_plan" or "arm"
    content: dict[str, Any]
    origins: dict[str, Origin]  # scanner resource id (Terraform address or "<ARM type>.<name>") -> origin
    unscanned: list[tuple[Origin, str]]  # resources with no counterpart in the format, and why

    def to_json(self) -> str:
        return json.dumps(self.content, indent=2, sort_keys=True)


def scan_mapping(cloud: str) -> ScanMapping:
    """The scan mapping a backend supplies; a clear error when it has none."""
    cls = backend_class(cloud)
    if not isinstance(cls, Scannable):
        raise PipelineError(f"the {cls.title} backend cannot describe its plans for a scanner (it has no scan_mapping())")
    return cls.scan_mapping()


def scan_document(plans: Sequence[Plan], namespace: str = "") -> ScanDocument:
    """Plans of one cloud (e.g. every overlay of a spec) as one scanner file.

    Terraform addresses are built from the plans' logical names (prefixed with the stack when there are
    several plans); `namespace` prefixes them too, so documents scanned together in one run never share
    an address (checkov connects resources by address across the files of a run). A format that holds
    one plan per document (ARM) refuses several: use `scan_documents`."""
    clouds = {p.cloud for p in plans}
    if len(clouds) != 1:
        raise ValueError(f"a scan document holds plans of exactly one cloud, got {sorted(clouds)}")
    mapping = scan_mapping(clouds.pop())
    if mapping.plans_per_document and len(plans) > mapping.plans_per_document:
        raise ValueError(f"a {mapping.framework} document holds {mapping.plans_per_document} plan(s), got {len(plans)}: use scan_documents()")
    return mapping.convert(plans, namespace)


def scan_documents(plans: Sequence[Plan], namespace: str = "") -> list[ScanDocument]:
    """Plans of one cloud in as few scanner files as the format allows (one, or one per plan)."""
    if not plans:
        return []
    per = scan_mapping(plans[0].cloud).plans_per_document or len(plans)
    return [scan_document(plans[i:i + per], namespace) for i in range(0, len(plans), per)]


# ---- shared helpers ------------------------------------------------------------------------------

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def snake(key: str) -> str:
    """Pulumi's camelCase name of a Terraform attribute back to Terraform's: 'extendedS3Configuration' -> 'extended_s3_configuration'."""
    return _CAMEL_BOUNDARY.sub("_", key).lower()


def _plain_asset(value: Any) -> Any:
    """The planner's summary of a Pulumi asset or archive ({"asset": path}) as the path a Terraform/ARM field would hold."""
    if isinstance(value, dict) and len(value) == 1 and ("asset" in value or "archive" in value):
        inner = next(iter(value.values()))
        return inner if isinstance(inner, str) else json.dumps(inner)
    return value


def _check_mapped(plans: Sequence[Plan], known: Mapping[str, Any], unscanned: Mapping[str, str], framework: str) -> None:
    missing = sorted({r.type for p in plans for r in p.cloud_resources if r.type not in known and r.type not in unscanned})
    if missing:
        cloud = plans[0].cloud
        raise UnmappedResourceError(
            f"{cloud}: no {framework} mapping for {', '.join(missing)}; add each to the {cloud} backend's scan mapping "
            f"(or to its `unscanned` types with the reason it has no counterpart)"
        )


def _unscanned(plans: Sequence[Plan], unscanned: Mapping[str, str]) -> list[tuple[Origin, str]]:
    return [(Origin(p.stack, r.urn, r.type), unscanned[r.type]) for p in plans for r in p.cloud_resources if r.type in unscanned]


# ---- Terraform plan JSON ------------------------------------------------------------------------

_TF_NAME = re.compile(r"[^A-Za-z0-9_]")


@dataclass
class _Converted:
    values: dict[str, Any] = field(default_factory=dict)  # planned_values / change.after
    expressions: dict[str, Any] = field(default_factory=dict)  # configuration expressions (references only)
    unknown: dict[str, Any] = field(default_factory=dict)  # change.after_unknown


class _TerraformWriter:
    """Builds the plan JSON checkov's tfplan parser reads: `planned_values`, `resource_changes` and the
    `configuration` expressions whose `references` let it connect resources (a bucket to its public
    access block, a function to its role)."""

    def __init__(self, mapping: TerraformMapping, plans: Sequence[Plan], namespace: str):
        _check_mapped(plans, mapping.types, mapping.unscanned, "Terraform")
        self.mapping = mapping
        self.plans = plans
        self.addresses: dict[tuple[str, str], str] = {}  # (stack, urn) -> Terraform address
        taken: set[str] = set()
        for p in plans:
            for r in self._resources(p):
                tf_type = mapping.types[r.type].type
                parts = [namespace] if namespace else []
                parts += [p.stack, r.name] if len(plans) > 1 else [r.name]
                base = _TF_NAME.sub("_", "_".join(parts))
                name, n = base, 1
                while f"{tf_type}.{name}" in taken:
                    n += 1
                    name = f"{base}_{n}"
                taken.add(f"{tf_type}.{name}")
                self.addresses[(p.stack, r.urn)] = f"{tf_type}.{name}"

    def _resources(self, p: Plan) -> list[PlannedResource]:
        return [r for r in p.cloud_resources if r.type in self.mapping.types]

    def document(self) -> ScanDocument:
        planned, changes, configured = [], [], []
        origins: dict[str, Origin] = {}
        for p in self.plans:
            by_urn = {r.urn: r for r in p.resources}
            for r in self._resources(p):
                address = self.addresses[(p.stack, r.urn)]
                tf = self.mapping.types[r.type]
                tf_type, name = address.split(".", 1)
                provider = tf.provider or self.mapping.provider
                resolve = self._resolver(p.stack, r, [by_urn[d] for d in r.dependencies if d in by_urn])
                converted = self._block(r.inputs, "", tf, resolve)
                common = {"address": address, "mode": "managed", "type": tf_type, "name": name, "provider_name": provider}
                planned.append({**common, "schema_version": 0, "values": converted.values, "sensitive_values": {}})
                changes.append({**common, "change": {"actions": ["create"], "before": None, "after": converted.values,
                                                     "after_unknown": converted.unknown, "before_sensitive": False, "after_sensitive": {}}})
                configured.append({"address": address, "mode": "managed", "type": tf_type, "name": name,
                                   "provider_config_key": provider.rsplit("/", 1)[-1], "expressions": converted.expressions, "schema_version": 0})
                origins[address] = Origin(p.stack, r.urn, r.type)
        providers = sorted({t.provider or self.mapping.provider for t in self.mapping.types.values()})
        content = {
            "format_version": TERRAFORM_FORMAT_VERSION,
            "terraform_version": TERRAFORM_VERSION,
            "planned_values": {"root_module": {"resources": planned}},
            "resource_changes": changes,
            "configuration": {
                "provider_config": {p.rsplit("/", 1)[-1]: {"name": p.rsplit("/", 1)[-1], "full_name": p} for p in providers},
                "root_module": {"resources": configured},
            },
        }
        return ScanDocument(self.mapping.framework, content, origins, _unscanned(self.plans, self.mapping.unscanned))

    def _resolver(self, stack: str, resource: PlannedResource, dependencies: list[PlannedResource]) -> Callable[[str], str | None]:
        """Which dependency a string input came from, as a Terraform reference ('aws_s3_bucket.raw.id').

        Under the mock engine an input wired from another resource's output holds that output's value:
        its name, or an id/ARN/URL ending in it. Of several dependencies with that name, one that depends
        on another of them got the value from it and is not the source (a bucket policy depends on the
        bucket and on its public access block, and all three carry the bucket's name). Ambiguous or
        unknown values stay literal.
        """
        candidates = [d for d in dependencies if (stack, d.urn) in self.addresses and d.physical_name]

        def resolve(value: str) -> str | None:
            found = [d for d in candidates if _names(value, d.physical_name)]
            sources = [d for d in found if not any(other.urn in d.dependencies for other in found)]
            if len(sources) != 1:
                return None
            address = self.addresses[(stack, sources[0].urn)]
            attribute = "arn" if value.startswith("arn:") else "url" if value.startswith("https://") else "id"
            return f"{address}.{attribute}"

        return resolve

    def _block(self, inputs: Mapping[str, Any], path: str, tf: TerraformType, resolve: Callable[[str], str | None]) -> _Converted:
        out = _Converted()
        for key, raw in sorted(inputs.items()):
            here = f"{path}.{key}" if path else key
            name = tf.renames.get(here) or snake(key)
            value = _plain_asset(raw)
            if isinstance(value, str) and (reference := resolve(value)):
                # Unknown until the referenced resource exists: Terraform leaves it out of the planned values.
                out.expressions[name] = {"references": [reference, reference.rsplit(".", 1)[0]]}
                out.unknown[name] = True
            elif isinstance(value, dict) and name in self.mapping.maps:
                out.values[name] = value  # a map: keys are data (tag keys, variable names), kept verbatim
            elif isinstance(value, dict):
                child = self._block(value, here, tf, resolve)
                out.values[name] = [child.values]  # a one-item block, as Terraform state holds it
                if child.expressions:
                    out.expressions[name] = [child.expressions]
                if child.unknown:
                    out.unknown[name] = [child.unknown]
            elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
                children = [self._block(item, here, tf, resolve) for item in value]  # a repeated block
                out.values[name] = [c.values for c in children]
                if any(c.expressions for c in children):
                    out.expressions[name] = [c.expressions for c in children]
                if any(c.unknown for c in children):
                    out.unknown[name] = [c.unknown for c in children]
            elif isinstance(value, list) and value and all(isinstance(item, str) for item in value) and all(refs := [resolve(i) for i in value]):
                out.expressions[name] = {"references": [part for ref in refs if ref for part in (ref, ref.rsplit(".", 1)[0])]}
                out.unknown[name] = [True] * len(value)
            else:
                out.values[name] = value
        return out


def _names(value: str, name: str) -> bool:
    """`value` is `name`, or an id/ARN/URL whose last part is `name`."""
    return value == name or (value.endswith(name) and len(value) > len(name) and value[-len(name) - 1] in ":/")


# ---- ARM template ---------------------------------------------------------------------------------


def _arm_document(mapping: ArmMapping, plans: Sequence[Plan]) -> ScanDocument:
    """One ARM template: `properties` nested again, sub-resources named parent-first ('account/default/container')."""
    _check_mapped(plans, mapping.types, mapping.unscanned, "ARM")
    resources: list[dict[str, Any]] = []
    origins: dict[str, Origin] = {}
    for p in plans:
        built: dict[str, dict[str, Any]] = {}
        for r in p.cloud_resources:
            if r.type not in mapping.types:
                continue
            arm = _arm_resource(r, mapping.types[r.type])
            if mapping.adjust is not None:
                mapping.adjust(r.type, arm)
            built[r.urn] = arm
        for r in p.cloud_resources:
            if r.urn not in built:
                continue
            arm = built[r.urn]
            depends = sorted({_resource_id(built[d]) for d in r.dependencies if d in built and d != r.urn})
            if depends:
                arm["dependsOn"] = depends
            resources.append(arm)
            key = f"{arm['type']}.{arm['name']}"
            if key in origins:  # the scanner could not tell them apart, and Azure would not accept both
                raise PipelineError(f"{key} is planned twice: {origins[key].urn} and {r.urn}")
            origins[key] = Origin(p.stack, r.urn, r.type)
    content = {"$schema": ARM_SCHEMA, "contentVersion": "1.0.0.0", "parameters": {}, "variables": {}, "resources": resources}
    return ScanDocument(mapping.framework, content, origins, _unscanned(plans, mapping.unscanned))


def _arm_resource(r: PlannedResource, arm: ArmType) -> dict[str, Any]:
    inputs = {k: _plain_asset(v) for k, v in r.inputs.items()}
    segments: list[str] = []
    for index, segment in enumerate(arm.name):
        if segment.startswith("="):
            segments.append(segment[1:])
            continue
        value = inputs.get(segment)
        if not isinstance(value, str) or not value:
            if index != len(arm.name) - 1:
                raise UnmappedResourceError(f"{r.type} {r.name}: the ARM name needs input {segment!r}, which the plan does not have")
            value = r.physical_name
        segments.append(value)
    path_inputs = {s for s in arm.name if not s.startswith("=")} | {"resourceGroupName"}
    resource: dict[str, Any] = {"type": arm.type, "apiVersion": arm.api_version, "name": "/".join(segments)}
    properties: dict[str, Any] = {}
    for key, value in sorted(inputs.items()):
        if key in path_inputs:
            continue
        if key == "properties" and isinstance(value, dict):
            properties.update(value)  # a resource whose input already is its ARM properties (deployments)
        elif key in ARM_TOP_LEVEL and key not in arm.in_properties:
            resource[key] = value
        else:
            properties[arm.renames.get(key, key)] = value
    if properties:
        resource["properties"] = properties
    return resource


def _resource_id(arm: Mapping[str, Any]) -> str:
    names = ", ".join(f"'{n}'" for n in str(arm["name"]).split("/"))
    return f"[resourceId('{arm['type']}', {names})]"
