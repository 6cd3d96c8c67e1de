"""Rich views of a plan and a comparison for the terminal. Pure formatting: no planning logic here."""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from pipeline.plan import Plan, PlannedResource, short_type
from pipeline.summary import SECTION_TITLES, Cell, Summary, latency_lines, sizing_reasoning

if TYPE_CHECKING:
    from pipeline.sweep_view import SweepSummary

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


# ---- comparison -------------------------------------------------------------------------

TONES = {"good": "green", "bad": "bold red", "warn": "yellow", "": ""}


def _cell(cell: Cell) -> Text:
    return Text(cell.text, style=TONES.get(cell.tone, ""))


def summary_table(summary: Summary) -> Table:
    """Totals, capacity against demand, latency, limits and cost by role: one column per cloud."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1), expand=False)
    table.add_column("", no_wrap=True, style="bold")
    cheapest = {c for c, cell in (summary.section("totals")[0].cells.items() if summary.rows else []) if cell.tone == "good"}
    for head in summary.clouds:
        style = "bold green" if head.cloud in cheapest else "bold"
        table.add_column(Text(head.title, style=style) + Text(f" {head.location}", style="dim"), overflow="fold")
    current = "totals"
    for row in summary.rows:
        if row.section != current:
            title = SECTION_TITLES.get(row.section, "")
            if title or row.section != "latency":
                table.add_row(Text(title, style="bold cyan"), *([""] * len(summary.clouds)))
            current = row.section
        table.add_row(("  " if row.section != "totals" else "") + row.label, *(_cell(row.cells[h.cloud]) for h in summary.clouds))
    return table


def notes_lines(summary: Summary, width: int) -> list[Text]:
    """The footnote: what the estimate leaves out or wants checked, and where the long text is."""
    lines = []
    unpriced = {c.title: summary.notes[c.cloud].unpriced for c in summary.clouds if summary.notes[c.cloud].unpriced}
    if unpriced:
        text = "; ".join(f"{title}: {', '.join(items)}" for title, items in unpriced.items())
        lines.append(Text(f"Not priced: {text}", style="yellow", overflow="ellipsis", no_wrap=True))
    verify = {c.title: len(summary.notes[c.cloud].verify) for c in summary.clouds if summary.notes[c.cloud].verify}
    assumptions = sum(len(summary.notes[c.cloud].assumptions) for c in summary.clouds) + len(summary.assumptions)
    counts = [f"{assumptions} assumptions"] if assumptions else []
    if verify:
        counts.append(f"{sum(verify.values())} prices to verify ({', '.join(verify)})")
    lines.append(Text(f"Notes: {', '.join(counts) + '; ' if counts else ''}--detail lists them all.", style="dim"))
    for line in lines:
        line.truncate(width, overflow="ellipsis")
    return lines


def verdict_block(summary: Summary) -> Table:
    """The last thing on screen, like `terraform plan`'s totals: the workload priced, then each finding
    (wrapped lines hang under their bullet)."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column()
    for finding in summary.verdict:
        grid.add_row("•", Text(finding.text, style=TONES.get(finding.tone, "")))
    return grid


def comparison_summary(summary: Summary, width: int) -> list[RenderableType]:
    """The default `compare` screen: fits 80x40 and ends with the verdict."""
    return [Text(summary.title, style="bold"), summary_table(summary), *notes_lines(summary, width), Text(""), Text("Verdict", style="bold"), verdict_block(summary)]


def sweep_screen(summary: SweepSummary) -> list[RenderableType]:
    """`compare --sweep`: a row per point (each cloud's monthly cost and stream units, or why it cannot carry
    the load; the cheapest), then where the clouds cross and what changes, in words."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1), expand=False)
    table.add_column(summary.axis_label, justify="right", no_wrap=True, style="bold")
    for head in summary.clouds:
        table.add_column(Text(head.title, style="bold") + Text(f" {head.location}", style="dim"), overflow="fold")
    several = len(summary.clouds) > 1
    if several:
        table.add_column("Cheapest", no_wrap=True)
    for row in summary.rows:
        label = Text(row.label, style="bold" if row.spec else "")
        table.add_row(label, *(_cell(row.cells[h.cloud]) for h in summary.clouds), *([_cell(row.cheapest)] if several else []))
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column()
    for finding in summary.findings:
        grid.add_row("•", Text(finding.text, style=TONES.get(finding.tone, "")))
    return [Text(summary.title, style="bold"), Text(summary.subtitle, style="dim"), table, Text("Where the clouds cross", style="bold"),
            grid, Text(summary.note, style="dim")]


def role_table(comparison: Any) -> Table:
    """Every role and the resources each cloud creates for it, one line per cloud: long type names
    wrap between resources, never inside one."""
    from pipeline.report import role_rows

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, expand=False, title=Text("By role", style="bold"), title_justify="left")
    table.add_column("Role / cloud", no_wrap=True)
    table.add_column("Resources (key settings)", ratio=1, overflow="fold")
    table.add_column("$/month", justify="right", no_wrap=True)
    titles = {c.cloud: c.title for c in comparison.planned()}
    for row in role_rows(comparison, names=False):
        style = "bold red" if row.kind == "DeadLetter" else "bold cyan"
        table.add_row(Text(row.key, style=style), Text(row.kind, style="dim"), "")
        for cloud, title in titles.items():
            usd = row.cost.get(cloud)
            table.add_row(f"  {title}", ", ".join(row.cells.get(cloud, [])) or "-", f"{usd:,.2f}" if usd else "")
    return table


def detail_texts(comparison: Any, summary: Summary) -> list[RenderableType]:
    """The long explanations the summary leaves out, per cloud: limits in words, sizing reasoning,
    and every note (wrapped lines hang under their label)."""
    data = comparison.to_dict()
    parts: list[RenderableType] = []
    if summary.assumptions:
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column()
        for item in summary.assumptions:
            grid.add_row(Text("Assumes", style="bold"), item)
        parts += [Text(""), Text("Every cloud", style="bold underline"), grid]
    for head in summary.clouds:
        cloud = data["clouds"][head.cloud]
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column()
        limits = cloud.get("limits") or {}
        for label, key in (("Delivery", "delivery"), ("Ordering", "ordering"), ("Poison records", "poison_records")):
            if key in limits:
                grid.add_row(Text(label, style="bold"), str(limits[key]))
        for line in latency_lines(cloud):
            grid.add_row(Text("Latency", style="bold"), line)
        for line in sizing_reasoning(cloud):
            grid.add_row(Text("Sizing", style="bold"), line)
        notes = summary.notes[head.cloud]
        for label, items, style in (("Not priced", notes.unpriced, "yellow"), ("Verify", notes.verify, "yellow"), ("Assumes", notes.assumptions, "")):
            for item in items:
                grid.add_row(Text(label, style=f"bold {style}".strip()), item)
        for problem in cloud.get("problems", []):
            grid.add_row(Text("Cannot plan", style="bold red"), problem)
        parts += [Text(""), Text(f"{head.title} {head.location}", style="bold underline"), grid]
    parts.append(Text(""))
    return parts


# ---- diff ---------------------------------------------------------------------------------


def _delta_style(delta: float | None) -> str:
    return "" if not delta else "red" if delta > 0 else "green"


def diff_view(result: Any, threshold: Any = None, max_lines: int = 8) -> list[RenderableType]:
    """Per cloud: the monthly total before and after, resources added/removed/changed by role, and
    the billing lines that moved most. Ends with the totals, like `infracost diff`."""
    from pipeline.summary import money, signed_money

    parts: list[RenderableType] = [Text(f"{result.base_label} -> {result.head_label}", style="bold")]
    for c in result.clouds:
        if not (c.lines or c.resources or c.note):
            continue
        parts.append(Text(f"\n{c.title}", style="bold underline"))
        if c.note:
            parts.append(Text(f"  {c.note}", style="yellow"))
        marks = {"added": ("+", "green"), "removed": ("-", "red"), "changed": ("~", "yellow")}
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column()
        for role, changes in c.by_role().items():
            line = Text()
            for kind, items in changes.items():
                sign, style = marks[kind]
                types = Counter(short_type(r.type) for r in items)
                line.append(f"{sign}{len(items)} ", style=style).append(", ".join(f"{n}x {t}" if n > 1 else t for t, n in types.items()) + "  ")
            grid.add_row(Text(f"  {role}", style="bold"), line)
        if c.resources:
            parts.append(grid)
        if c.lines:
            table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1))
            for name, justify in (("Role", "left"), ("Billing line", "left"), ("Before", "right"), ("After", "right"), ("Change", "right")):
                table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
            for line in c.lines[:max_lines]:
                table.add_row(line.role, line.item, money(line.base_usd), money(line.head_usd), Text(signed_money(line.delta), style=_delta_style(line.delta)))
            if len(c.lines) > max_lines:
                table.add_row("", Text(f"... {len(c.lines) - max_lines} smaller changes (--format json lists all)", style="dim"), "", "", "")
            parts.append(table)
    totals = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1), title=Text("Monthly cost", style="bold"), title_justify="left")
    for name, justify in (("Cloud", "left"), ("Before", "right"), ("After", "right"), ("Change", "right"), ("Resources", "left")):
        totals.add_column(name, justify=justify)  # type: ignore[arg-type]
    over = {c.cloud for c in result.over(threshold)} if threshold else set()
    for c in result.clouds:
        counts = c.counts()
        resources = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n) or "no change"
        style = "bold red" if c.cloud in over else _delta_style(c.delta)
        totals.add_row(c.title, money(c.base_usd), money(c.head_usd), Text(c.change_text() if c.delta is not None else c.note or "n/a", style=style), resources)
    parts.append(Text(""))
    parts.append(totals)
    if threshold is not None:
        parts.append(Text(f"over --fail-above {threshold}" if over else f"within --fail-above {threshold}", style="bold red" if over else "green"))
    return parts
