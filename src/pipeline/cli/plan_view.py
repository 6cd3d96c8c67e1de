"""`pipeline plan` in a terminal: every resource once, its parts under it, wrapped to the width without
breaking a word.

Why not a table: at 80 columns a three-column table broke types mid-word and repeated a bucket's name on
each of its seven settings resources (588 lines for the example on AWS). Here each role is a heading, each
resource one `+ type name` line (`+`: a plan creates it, as in `terraform plan`) with its key settings
indented under it, and its parts (a bucket's policy, lifecycle, encryption) named on one line below.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

from rich.text import Text
from rich.tree import Tree

from pipeline.plan import Plan, PlannedResource, group_parts, part_label, short_type

_SKIP_INPUTS = {"tags", "tagsAll", "labels", "effectiveLabels", "__defaults"}
_MAX_SETTINGS = 5
INDENT = "    "


def _brief(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= 48 else text[:45] + "..."


def key_settings(resource: PlannedResource) -> list[str]:
    """The few scalar inputs that say the most about a resource (JSON documents are in --format json)."""
    items = []
    for key, value in sorted(resource.inputs.items()):
        if key in _SKIP_INPUTS or isinstance(value, (dict, list)) or value in ("", None, resource.physical_name):
            continue  # (its own name is on the line above)
        if isinstance(value, str) and value.startswith(("{", "[")):
            continue
        items.append(f"{key}={_brief(value)}")
    return items[:_MAX_SETTINGS]


def wrapped(text: str, width: int, indent: str, style: str = "") -> list[Text]:
    """Lines of at most `width` columns, broken after a space (never inside a name or a type: only a single
    word longer than the line is folded), each starting with `indent`."""
    room = max(width - len(indent), 20)
    lines = textwrap.wrap(text, room, break_on_hyphens=False, break_long_words=True) or [""]
    return [Text(indent + line, style=style) for line in lines]


def resource_lines(marker: str, style: str, type_: str, name: str, width: int, indent: str = "  ") -> list[Text]:
    """`+ kinesis.Stream txn-scoring-stream-e9a7ed8`; the name on its own line when both do not fit."""
    head = Text(indent)
    head.append(marker, style=style)
    head.append(f" {type_}", style="bold")
    if not name or len(indent) + len(marker) + 1 + len(type_) + 1 + len(name) <= width:
        if name:
            head.append(f" {name}", style="dim")
        return [head]
    return [head, *wrapped(name, width, indent + INDENT, "dim")]


def plan_lines(plan: Plan, width: int) -> list[Text]:
    lines = [Text(f"{plan.pipeline} ({plan.stack}) on {plan.cloud.upper()} {plan.location}: "
                  f"{len(plan.cloud_resources)} resources in {len(plan.by_role())} roles (+ created)", style="bold")]
    for role, resources in plan.by_role().items():
        lines.append(Text(role, style="bold cyan"))
        for resource, parts in group_parts(resources, lambda r: r.physical_name, lambda r: r.name):
            lines += resource_lines("+", "green", short_type(resource.type), resource.physical_name, width)
            settings = key_settings(resource)
            if settings:
                lines += wrapped(", ".join(settings), width, "  " + INDENT)
            if parts:
                lines += wrapped("+ " + ", ".join(part_label(resource.type, p.type) for p in parts), width, "  " + INDENT, "green")
    return lines


def plan_tree(plan: Plan) -> Tree:
    tree = Tree(Text(f"{plan.pipeline} ({plan.stack}) on {plan.cloud.upper()} {plan.location}", style="bold"))
    branches: dict[str, Tree] = {}
    for role, kind in plan.roles():
        branches[role] = tree.add(Text(f"{kind}: {role}", style="bold cyan"))
    for role, resources in plan.by_role().items():
        branch = branches.get(role, tree)
        for resource, parts in group_parts(resources, lambda r: r.physical_name, lambda r: r.name):
            node = branch.add(f"{short_type(resource.type)}  {resource.physical_name}")
            for part in parts:
                node.add(part_label(resource.type, part.type))
    return tree


def plan_summary(plan: Plan) -> Text:
    resources = plan.cloud_resources
    stream = plan.sizing.get("stream")
    lines = [f"{len(resources)} cloud resources in {len(plan.by_role())} roles."]
    if stream:
        lines.append(f"Stream: {stream['units'] or 'no'} {stream['unit_name']}(s), {stream['mode']}; capacity "
                     f"{stream['capacity_records_per_second']:,.0f} records/s, {stream['capacity_bytes_per_second'] / 1048576:.1f} MiB/s.")
        lines.extend(f"  {line}" for line in stream.get("reasoning", []))
    for name, stage in plan.sizing.get("stages", {}).items():
        lines.append(f"Stage {name}: {stage['records_per_invocation']:,.1f} records per invocation, {stage['concurrency']:,} concurrent, "
                     f"capacity {stage['capacity_records_per_second']:,.0f} / demand {stage['demand_records_per_second']:,.0f} rec/s.")
        lines.extend(f"  {line}" for line in stage.get("reasoning", []))
    lines.append("Offline plan: names and ids are what the cloud would assign; account/project ids are placeholders.")
    return Text("\n".join(lines))
