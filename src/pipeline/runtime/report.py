"""What `pipeline run` shows: a progress bar while it runs and a summary at the end (Rich).

Kept apart from `local.py` so the runner stays plain Python a test or a benchmark can drive.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.runtime.local import RunSummary
from pipeline.runtime.logs import LEVELS


@contextmanager
def progress_bar(console: Console, source: str | None) -> Iterator[Callable[[int, int], None]]:
    """Yield a `progress(records, bytes_read)` callback; bytes drive the bar for files, records for stdin
    (no bar without a stream input)."""
    total = os.path.getsize(source) if source not in (None, "-") and os.path.isfile(source) else None
    columns = [TextColumn("[bold]running[/bold]"), BarColumn(), TextColumn("{task.fields[records]:,} records"), TimeElapsedColumn()]
    if total is None:
        columns.insert(2, MofNCompleteColumn())
    with Progress(*columns, console=console, transient=True, disable=source is None or not console.is_terminal) as bar:
        task = bar.add_task("run", total=total, records=0)

        def update(records: int, read: int) -> None:
            bar.update(task, completed=read if total is not None else records, records=records)

        yield update


def summary_table(summary: RunSummary) -> Table:
    table = Table(title=f"{summary.pipeline} ({summary.stack}) ran locally", title_justify="left")
    for name, justify in (("stage", "left"), ("trigger", "left"), ("invocations", "right"), ("in", "right"), ("rows out", "right"),
                          ("filtered", "right"), ("dead letters", "right"), ("retries", "right"), ("failed inputs", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    not_invoked = summary.not_invoked
    for stats in summary.stages.values():
        if stats.name in not_invoked:  # no requests in `pipeline run`: nothing to count, and not zero either
            table.add_row(stats.name, stats.trigger, *["-"] * 7)
            continue
        table.add_row(stats.name, stats.trigger, f"{stats.invocations:,}", f"{stats.items:,}", f"{stats.rows:,}", f"{stats.filtered:,}",
                      f"{stats.dead_letters:,}", f"{stats.retries:,}", f"{stats.failed_batches:,}")
    return table


def _shown(path: Path) -> Path:
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path


def summary_lines(summary: RunSummary, listed: int = 10) -> list[str]:
    shown = _shown(summary.root)
    lines = []
    if summary.uploads_in:
        lines.append(f"uploads: {summary.uploads_in:,} file{'s' if summary.uploads_in != 1 else ''} ({summary.uploads_this_run:,} processed by this run"
                     + (f", {summary.uploads_skipped:,} already done" if summary.uploads_skipped else "") + ")")
    if summary.stream_input:
        lines.append(f"records in: {summary.records_in:,} ({summary.records_this_run:,} processed by this run"
                     + (f", {summary.batches_skipped:,} batches already done" if summary.batches_skipped else "")
                     + (f", {summary.batches_resumed:,} interrupted batches redone" if summary.batches_resumed else "") + ")")
        lines.append(f"throughput: {summary.throughput:,.0f} records/s ({summary.seconds:.2f} s)")
    else:
        lines.append(f"time: {summary.seconds:.2f} s")
    filtered = sum(s.filtered for s in summary.stages.values())
    if filtered:
        lines.append(f"filtered out: {filtered:,} inputs gave no row ("
                     + ", ".join(f"{s.name} {s.filtered:,}" for s in summary.stages.values() if s.filtered) + ")")
    for name in summary.not_invoked:
        lines.append(f"{name}: an HTTP stage, not invoked (`pipeline run` sends no requests); "
                     f"try `pipeline serve` or `pipeline invoke {name} --input FILE`")
    lines.append(f"outputs: {shown}/<stage>/<stage>/")
    if summary.stream_input:
        lines.append(f"raw archive: {shown}/raw/raw/ ({summary.raw_objects:,} objects)")
    dead = summary.dead_letters
    failed = sum(s.failed_batches for s in summary.stages.values())
    if dead:
        by_stage = ", ".join(f"{s.name} {s.dead_letters:,}" for s in summary.stages.values() if s.dead_letters)
        lines.append(f"dead letters: {dead:,} ({by_stage}"
                     + (f"; {failed:,} whole inputs failed after their retries" if failed else "") + ") in:")
        for key in summary.dead_letter_keys[:listed]:
            lines.append(f"  {shown}/dead-letter/{key}")
        if len(summary.dead_letter_keys) > listed:
            lines.append(f"  ... and {len(summary.dead_letter_keys) - listed:,} more under {shown}/dead-letter/")
    else:
        lines.append("dead letters: 0")
    lines.append(f"log: {shown}/run.log")
    return lines


_NOT_SHOWN = {"time", "level", "severity", "message", "pipeline", "stage", "logger", "error", "traceback", "stream"}
_RUNTIME_FRAME = f'  File "{os.path.dirname(os.path.abspath(__file__))}{os.sep}'


def _user_frames(traceback: str) -> list[str]:
    """A traceback without the runtime's own frames: the handler's code is what failed."""
    lines, skipping = [], False
    for line in traceback.splitlines():
        if line.startswith('  File "'):
            skipping = line.startswith(_RUNTIME_FRAME)
        elif not line.startswith("    "):
            skipping = False
        if not skipping:
            lines.append(line)
    return lines


def log_text(entry: dict[str, Any]) -> str | None:
    """A log line for the terminal, or None for the runtime's routine lines (they stay in run.log).

    Shown: everything a handler prints or logs, and every warning or error (a dead-lettered
    record, a failed or crashed invocation) with its traceback.
    """
    level = str(entry.get("level", "INFO"))
    if entry.get("logger") == "runtime" and LEVELS.get(level, 20) < LEVELS["WARNING"]:
        return None
    stage = entry.get("stage", "")
    if entry.get("stream") == "output":
        return f"{stage} | {entry.get('message', '')}"
    extras = "  ".join(f"{key}={value}" for key, value in entry.items() if key not in _NOT_SHOWN and value is not None)
    text = f"{stage} | {level} {entry.get('message', '')}" + (f"  ({extras})" if extras else "")
    if entry.get("traceback"):
        text += "\n" + "\n".join("    " + line for line in _user_frames(str(entry["traceback"])))
    elif entry.get("error"):
        text += f"\n    {entry['error']}"
    return text
