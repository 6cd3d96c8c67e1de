"""Rich views of a comparison for the terminal (a plan's are in `pipeline.cli.plan_view`). Pure formatting: no planning logic here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from pipeline.summary import SECTION_TITLES, Cell, Summary, latency_lines, sizing_reasoning

if TYPE_CHECKING:
    from pipeline.sweep_view import SweepSummary

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
