"""A live view of an engine run, built from the Automation API's structured engine events.

The Pulumi CLI's own output is not shown (its text format is not an interface); instead each
engine event updates a small model: one row per resource step (resource, operation, status,
elapsed), the error diagnostics, and the final summary. The model is pure and clock-injected so
it is tested with synthetic events; `LiveView` only draws it (a Rich Live table on a terminal,
one line per finished step in CI logs).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from pulumi.automation import events as ev
    from rich.console import Console

# Step operations as a user reads them; the replacement's create/delete halves both read "replace".
OPERATION = {
    "create": "create", "update": "update", "delete": "delete", "replace": "replace",
    "create-replacement": "replace", "delete-replaced": "replace", "discard-replaced": "replace",
    "read": "read", "read-replacement": "read", "refresh": "refresh", "import": "import",
    "import-replacement": "import", "discard": "forget", "remove-pending-replace": "forget", "same": "same",
}
DONE = {"create": "created", "update": "updated", "delete": "deleted", "replace": "replaced", "read": "read",
        "refresh": "refreshed", "import": "imported", "forget": "forgotten"}
ING = {"create": "creating", "update": "updating", "delete": "deleting", "replace": "replacing", "read": "reading",
       "refresh": "refreshing", "import": "importing", "forget": "forgetting"}
_COLOR_DIRECTIVE = re.compile(r"<\{%[^%]*%\}>")  # Pulumi's colour markup, e.g. <{%fg 1%}>
STACK_TYPE = "pulumi:pulumi:Stack"


def plain_message(text: str) -> str:
    """A diagnostic without Pulumi's colour directives or trailing blank lines."""
    return _COLOR_DIRECTIVE.sub("", text).strip()


def urn_name(urn: str) -> str:
    """The logical name, the last `::` part of a URN."""
    return urn.rsplit("::", 1)[-1]


@dataclass
class Row:
    """One resource step of the run."""

    urn: str
    type: str
    operation: str
    status: str  # "planned" (previews), "running", "done", "failed"
    started: float
    finished: float | None = None
    message: str = ""

    @property
    def name(self) -> str:
        return urn_name(self.urn)

    def elapsed(self, now: float) -> float:
        return (self.finished if self.finished is not None else now) - self.started

    def verb(self) -> str:
        """What happened, in the past tense once done: 'created', 'failed to update', 'updating'."""
        if self.status == "failed":
            return f"failed to {self.operation}"
        if self.status == "done":
            return DONE.get(self.operation, self.operation)
        if self.status == "planned":
            return f"will {self.operation}"
        return ING.get(self.operation, self.operation)


@dataclass
class ProgressModel:
    """Engine events folded into rows, diagnostics and a summary. Thread-safe: events arrive on the SDK's watcher thread."""

    clock: Callable[[], float] = time.monotonic
    preview: bool = False
    rows: dict[str, Row] = field(default_factory=dict)
    unchanged: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    summary: ev.SummaryEvent | None = None
    started: float = 0.0
    listeners: list[Callable[[Row], None]] = field(default_factory=list)  # told when a step finishes or fails

    def __post_init__(self) -> None:
        self.started = self.clock()
        self._lock = threading.Lock()

    def handle(self, event: ev.EngineEvent) -> None:
        """The `on_event` callback."""
        finished: Row | None = None
        with self._lock:
            now = self.clock()
            if event.resource_pre_event is not None:
                self._pre(event.resource_pre_event.metadata, bool(event.resource_pre_event.planning) or self.preview, now)
            elif event.res_outputs_event is not None:
                finished = self._finish(event.res_outputs_event.metadata.urn, "planned" if self.preview else "done", now)
            elif event.res_op_failed_event is not None:
                finished = self._finish(event.res_op_failed_event.metadata.urn, "failed", now)
            elif event.diagnostic_event is not None:
                self._diagnostic(event.diagnostic_event)
            elif event.summary_event is not None:
                self.summary = event.summary_event
        if finished is not None and finished.status != "planned":
            for listener in self.listeners:
                listener(finished)

    def _pre(self, meta: ev.StepEventMetadata, planning: bool, now: float) -> None:
        op = OPERATION.get(str(getattr(meta.op, "value", meta.op)), str(meta.op))
        if op == "same":
            if meta.type != STACK_TYPE:
                self.unchanged += 1
            return
        if meta.urn in self.rows and self.rows[meta.urn].operation == op:
            return  # the second half of a replacement
        self.rows[meta.urn] = Row(meta.urn, meta.type, op, "planned" if planning else "running", now)

    def _finish(self, urn: str, status: str, now: float) -> Row | None:
        row = self.rows.get(urn)
        if row is None or row.status in ("done", "failed"):
            return None
        row.status, row.finished = status, now
        return row

    def _diagnostic(self, diagnostic: ev.DiagnosticEvent) -> None:
        message = plain_message(diagnostic.message)
        if not message or diagnostic.ephemeral:
            return
        target = self.errors if diagnostic.severity == "error" else self.warnings if diagnostic.severity == "warning" else None
        if target is None:
            return
        urn = diagnostic.urn or ""
        where = urn_name(urn) if urn and f"::{STACK_TYPE}::" not in urn else ""
        text = f"{where}: {message}" if where else message
        if text not in target:
            target.append(text)
        row = self.rows.get(diagnostic.urn or "")
        if row is not None and diagnostic.severity == "error" and not row.message:
            row.message = message.splitlines()[0]

    # ---- reading the model ------------------------------------------------------------------
    def changes(self) -> list[Row]:
        """Every step that changes something, in the order the engine started them."""
        with self._lock:
            return list(self.rows.values())

    def counts(self) -> dict[str, int]:
        with self._lock:
            done = [r for r in self.rows.values() if r.status in ("done", "planned")]
            result = {op: sum(1 for r in done if r.operation == op) for op in ("create", "update", "replace", "delete")}
            result["same"] = self.unchanged
            result["failed"] = sum(1 for r in self.rows.values() if r.status == "failed")
            return result

    def render(self, limit: int = 15) -> Table:
        """Running and failed steps first, then the most recent finished ones, at most `limit` rows."""
        with self._lock:
            now = self.clock()
            rows = list(self.rows.values())
            unchanged = self.unchanged
        active = [r for r in rows if r.status in ("running", "failed")]
        finished = [r for r in rows if r.status not in ("running", "failed")]
        shown = (active + finished[::-1])[:limit]
        done = sum(1 for r in rows if r.status == "done")
        running = sum(1 for r in rows if r.status == "running")
        failed = sum(1 for r in rows if r.status == "failed")
        title = f"{done} done, {running} in progress" + (f", {failed} failed" if failed else "") + (f", {unchanged} unchanged" if unchanged else "")
        table = Table(title=f"{title}  [{format_seconds(now - self.started)}]", title_justify="left", box=None, pad_edge=False)
        for column in ("resource", "type", "operation", "status", "elapsed"):
            table.add_column(column, justify="right" if column == "elapsed" else "left", no_wrap=column != "status")
        style = {"running": "yellow", "done": "green", "failed": "bold red", "planned": "cyan"}
        for row in shown:
            status = Text(row.verb(), style=style.get(row.status, ""))
            if row.message:
                status.append(f": {row.message}", style="red")
            table.add_row(row.name, row.type, row.operation, status, format_seconds(row.elapsed(now)))
        hidden = len(rows) - len(shown)
        if hidden > 0:
            table.caption = f"... and {hidden} more"
        return table


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def step_line(row: Row, now: float) -> str:
    """One log line per finished step, for terminals that cannot redraw (CI)."""
    text = f"  {row.verb():<18} {row.type}  {row.name}  ({format_seconds(row.elapsed(now))})"
    return text + (f": {row.message}" if row.message else "")


@contextmanager
def live_view(console: Console, model: ProgressModel, enabled: bool = True) -> Iterator[ProgressModel]:
    """Draw `model` while the block runs: a redrawn table on a terminal, a line per finished step otherwise."""
    if not enabled:
        yield model
        return
    if console.is_terminal:
        from rich.live import Live

        with Live(get_renderable=model.render, console=console, refresh_per_second=4, transient=True):
            yield model
        console.print(model.render(limit=1000))
        return

    def log(row: Row) -> None:
        console.print(step_line(row, model.clock()), markup=False, highlight=False)

    model.listeners.append(log)
    try:
        yield model
    finally:
        model.listeners.remove(log)
