"""What a user sees before confirming and after an operation: change counts, outputs, next steps.

Kept apart from the engine so the same result renders as text for people and as JSON for
scripts (`--json`), and so it is tested without an engine.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rich.table import Table

from pipeline.deploy.progress import Row, format_seconds

SECRET_MASK = "[secret]"
# Engine change kinds -> what the summary calls them, in display order.
COUNT_NAMES = (("create", "created"), ("update", "updated"), ("replace", "replaced"), ("delete", "deleted"), ("same", "unchanged"))
PLANNED_NAMES = {"created": "to create", "updated": "to update", "replaced": "to replace", "deleted": "to delete", "unchanged": "unchanged"}


def change_counts(resource_changes: Mapping[Any, int] | None) -> dict[str, int]:
    """The engine's change summary (keys are OpType or their strings) as created/updated/... counts."""
    raw = {str(getattr(key, "value", key)): int(value) for key, value in (resource_changes or {}).items()}
    counts = {name: raw.get(op, 0) for op, name in COUNT_NAMES}
    return counts


def has_changes(counts: Mapping[str, int]) -> bool:
    return any(counts.get(name, 0) for _, name in COUNT_NAMES if name != "unchanged")


def plain_outputs(outputs: Mapping[str, Any], show_secrets: bool = False) -> dict[str, Any]:
    """Stack outputs (the SDK's OutputValue objects or plain values) as JSON-ready values, secrets masked."""
    result: dict[str, Any] = {}
    for key, value in sorted(outputs.items()):
        if hasattr(value, "value") and hasattr(value, "secret"):
            result[key] = SECRET_MASK if value.secret and not show_secrets else value.value
        else:
            result[key] = value
    return result


def flatten(outputs: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """{'buckets': {'raw': 'b'}} -> [('buckets.raw', 'b')], for the human table."""
    rows: list[tuple[str, str]] = []
    for key, value in outputs.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            rows += flatten(value, name + ".")
        else:
            rows.append((name, value if isinstance(value, str) else json.dumps(value)))
    return rows


@dataclass
class Outcome:
    """One finished (or previewed) operation on one stack."""

    operation: str  # "preview", "deploy", "refresh", "destroy", "preview-destroy"
    project: str
    stack: str
    counts: dict[str, int]
    duration_s: float
    outputs: dict[str, Any] = field(default_factory=dict)
    changes: list[dict[str, str]] = field(default_factory=list)  # previews: the steps that change something
    hint: str = ""

    def to_json(self) -> str:
        data = {
            "operation": self.operation, "project": self.project, "stack": self.stack, "changes": self.counts,
            "duration_seconds": round(self.duration_s, 1), "outputs": self.outputs,
        }
        if self.changes:
            data["steps"] = self.changes
        return json.dumps(data, indent=2, sort_keys=True)


def steps(rows: Iterable[Row]) -> list[dict[str, str]]:
    return [{"operation": r.operation, "type": r.type, "name": r.name, "urn": r.urn} for r in rows]


def counts_line(counts: Mapping[str, int], planned: bool = False) -> str:
    """'3 created, 1 updated, 12 unchanged' (or 'to create' for previews); zeros are left out."""
    parts = [f"{counts[name]} {PLANNED_NAMES[name] if planned else name}" for _, name in COUNT_NAMES if counts.get(name)]
    return ", ".join(parts) or "no resources"


def plan_table(changes: list[dict[str, str]]) -> Table:
    """The changes a preview found, one row per resource, grouped by operation."""
    order = {"delete": 0, "replace": 1, "update": 2, "create": 3}
    table = Table(box=None, pad_edge=False, show_header=True)
    for column in ("operation", "type", "resource"):
        table.add_column(column, no_wrap=True)
    style = {"create": "green", "update": "yellow", "replace": "magenta", "delete": "red"}
    for change in sorted(changes, key=lambda c: (order.get(c["operation"], 9), c["type"], c["name"])):
        table.add_row(f"[{style.get(change['operation'], '')}]{change['operation']}[/]", change["type"], change["name"])
    return table


def outputs_table(outputs: Mapping[str, Any]) -> Table:
    table = Table(box=None, pad_edge=False, show_header=False)
    table.add_column("output", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for name, value in flatten(outputs):
        table.add_row(name, value)
    return table


def done_line(outcome: Outcome) -> str:
    verbs = {"deploy": "deployed", "refresh": "refreshed", "destroy": "destroyed"}
    return (f"{verbs.get(outcome.operation, outcome.operation)} {outcome.project}/{outcome.stack} in "
            f"{format_seconds(outcome.duration_s)}: {counts_line(outcome.counts)}")
