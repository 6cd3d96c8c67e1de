"""Rich views of a Plan. Pure formatting: no planning logic here."""

from __future__ import annotations

import json
from typing import Any

from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from pipeline.plan import Plan, PlannedResource, short_type

_SKIP_INPUTS = {"tags", "tagsAll", "labels", "effectiveLabels", "__defaults"}
_MAX_SETTINGS = 5


def _brief(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= 48 else text[:45] + "..."


def key_settings(resource: PlannedResource) -> str:
    """The few scalar inputs that say the most about a resource."""
    items = []
    for key, value in sorted(resource.inputs.items()):
        if key in _SKIP_INPUTS or isinstance(value, (dict, list)) or value in ("", None):
            continue
        if isinstance(value, str) and value.startswith(("{", "[")):
            continue  # JSON documents (policies, patterns) are in --format json
        items.append(f"{key}={_brief(value)}")
    return ", ".join(items[:_MAX_SETTINGS])


def plan_table(plan: Plan) -> Table:
    table = Table(title=f"{plan.pipeline} ({plan.stack}) on {plan.cloud.upper()} {plan.location}", show_lines=False, expand=False)
    table.add_column("Role", style="bold cyan", no_wrap=True, min_width=12)
    table.add_column("Resource", overflow="fold", ratio=3)
    table.add_column("Key settings", overflow="fold", ratio=4)
    for role, resources in plan.by_role().items():
        for i, resource in enumerate(resources):
            label = Text(short_type(resource.type), style="bold")
            label.append("\n" + resource.physical_name, style="dim")
            table.add_row(role if i == 0 else "", label, key_settings(resource))
        table.add_section()
    return table


def plan_tree(plan: Plan) -> Tree:
    tree = Tree(Text(f"{plan.pipeline} ({plan.stack}) on {plan.cloud.upper()} {plan.location}", style="bold"))
    branches: dict[str, Tree] = {}
    for role, kind in plan.roles():
        branches[role] = tree.add(Text(f"{kind}: {role}", style="bold cyan"))
    for role, resources in plan.by_role().items():
        branch = branches.get(role, tree)
        for resource in resources:
            branch.add(f"{short_type(resource.type)}  {resource.physical_name}")
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


def comparison_tables(comparison: Any) -> list[Any]:
    """Verdicts, totals and the role-by-role table for the terminal."""
    from pipeline.report import role_rows, totals_rows

    clouds = comparison.columns
    verdict = Text("\n".join(f"• {line}" for line in comparison.verdicts()), style="bold")
    totals = Table(title=f"{comparison.pipeline} ({comparison.stack}): totals and limits", expand=False)
    roles = Table(title="By role", show_lines=True, expand=False)
    for table in (totals, roles):
        table.add_column("", style="bold cyan", no_wrap=True)
        for column in clouds:
            table.add_column(f"{column.title}\n{column.location}", overflow="fold", ratio=1)
    for label, values in totals_rows(comparison):
        if label != "Sizing":  # the full reasoning is in --format json, markdown and html; 80 columns cannot hold it
            totals.add_row(label, *(values[c.cloud] for c in clouds))
    for row in role_rows(comparison, names=False):
        cells = []
        for c in clouds:
            lines = list(row.cells.get(c.cloud, []))
            if row.cost.get(c.cloud):
                lines.append(f"${row.cost[c.cloud]:,.2f}/month")
            cells.append("\n".join(lines) or "-")
        roles.add_row(f"{row.key}\n[dim]{row.kind}[/dim]", *cells)
    return [verdict, totals, roles]
