"""`pipeline diff` in a terminal: per cloud, each resource added (+), removed (-) or changed (~) under its role,
a part (a bucket's lifecycle) under its resource, and for a changed one each input old -> new; then the
billing lines that moved most and the totals, like `infracost diff`."""

from __future__ import annotations

import json
from typing import Any

from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from pipeline.cli.plan_view import INDENT, resource_lines, wrapped
from pipeline.diff import CloudDiff, Diff, InputChange, ResourceChange, Threshold
from pipeline.plan import part_label, short_type
from pipeline.summary import money, signed_money

MARKS = {"added": ("+", "green"), "removed": ("-", "red"), "changed": ("~", "yellow")}
INPUTS_SHOWN = 8
VALUE_LIMIT = 60


def value_text(value: Any) -> str:
    """An input's value as it reads in YAML, shortened: 1024, true, KMS, (none); secrets are already "[secret]"."""
    if value is None:
        return "(none)"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= VALUE_LIMIT else text[: VALUE_LIMIT - 3] + "..."


def change_lines(change: InputChange, width: int, indent: str) -> list[Text]:
    return wrapped(f"{change.path}: {value_text(change.old)} → {value_text(change.new)}", width, indent)


def _resource(change: ResourceChange, width: int, indent: str) -> list[Text]:
    sign, style = MARKS[change.change]
    label = part_label(change.part_of[0], change.type) if change.part_of[0] else short_type(change.type)
    lines = resource_lines(sign, style, label, "" if change.part_of[0] else change.name, width, indent)
    shown = change.inputs[:INPUTS_SHOWN]
    for item in shown:
        lines += change_lines(item, width, indent + INDENT)
    if len(change.inputs) > len(shown):
        lines += wrapped(f"... {len(change.inputs) - len(shown)} more inputs (--format json lists all)", width, indent + INDENT, "dim")
    if change.change == "changed" and not change.inputs:
        lines += wrapped("(inputs differ; the baseline was saved without them: save it again to see which)", width, indent + INDENT, "dim")
    return lines


def resource_changes(cloud: CloudDiff, width: int) -> list[Text]:
    """Roles, then resources; a changed part sits under its resource (shown unmarked when only the part changed)."""
    lines: list[Text] = []
    for role, changes in cloud.by_resource().items():
        lines.append(Text(role, style="bold"))
        for (owner_type, owner_name), items in changes.items():
            own = [c for c in items if not c.part_of[0]]
            for change in own:
                lines += _resource(change, width, "  ")
            parts = [c for c in items if c.part_of[0]]
            if parts and not own:  # the resource itself is unchanged: name it for context
                lines += resource_lines(" ", "", short_type(owner_type), owner_name, width)
            for change in parts:
                lines += _resource(change, width, "  " + INDENT)
    return lines


def _delta_style(delta: float | None) -> str:
    return "" if not delta else "red" if delta > 0 else "green"


def diff_view(result: Diff, threshold: Threshold | None, width: int, max_lines: int = 8) -> list[RenderableType]:
    parts: list[RenderableType] = [Text(f"{result.base_label} -> {result.head_label}", style="bold")]
    for c in result.clouds:
        if not (c.lines or c.resources or c.note or c.stack_named):
            continue
        counts = ", ".join(f"{n} {kind}" for kind, n in c.counts().items() if n) or "no resource changed"
        parts.append(Text(f"\n{c.title}: {counts}", style="bold underline"))
        if c.stack_named:
            parts.append(Text(f"  {c.stack_named} more differ only in names that embed the stack (not changes)", style="dim"))
        if c.note:
            parts.append(Text(f"  {c.note}", style="yellow"))
        parts += resource_changes(c, width)
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
        counts = ", ".join(f"{n} {kind}" for kind, n in c.counts().items() if n) or "no change"
        style = "bold red" if c.cloud in over else _delta_style(c.delta)
        totals.add_row(c.title, money(c.base_usd), money(c.head_usd), Text(c.change_text() if c.delta is not None else c.note or "n/a", style=style), counts)
    parts += [Text(""), totals]
    if threshold is not None:
        parts.append(Text(f"over --fail-above {threshold}" if over else f"within --fail-above {threshold}", style="bold red" if over else "green"))
    return parts
