"""What `pipeline run` shows: a progress bar while it runs and a summary at the end (Rich).

Kept apart from `runner.py` so the runner stays plain Python a test or a benchmark can drive.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import pipeline.runtime as runtime_package
from pipeline.local.summary import RunSummary
from pipeline.local.text import printable
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


def summary_table(summary: RunSummary, width: int = 80) -> Table:
    """Per stage what ran, within `width` columns (the terminal's): no borders, short headers, numbers never
    cut; retries and failed inputs only when there were any (the dead-letter line says more about them).
    Where even that is too wide (long stage names and millions of records), the trigger column goes, then
    the stage names fold onto a second line rather than being cut."""
    stages = list(summary.stages.values())
    not_invoked = summary.not_invoked
    retried = any(s.retries for s in stages)
    failed = any(s.failed_batches for s in stages)
    headers = ["runs", "in", "out", "filtered", "dead\nletters", *(["retries"] if retried else []), *(["failed\ninputs"] if failed else [])]
    rows = []
    for stats in stages:
        if stats.name in not_invoked:  # no requests in `pipeline run`: nothing to count, and not zero either
            rows.append([stats.name, stats.trigger, *["-"] * len(headers)])
            continue
        counts = [stats.invocations, stats.items, stats.rows, stats.filtered, stats.dead_letters]
        counts += [stats.retries] if retried else []
        counts += [stats.failed_batches] if failed else []
        rows.append([stats.name, stats.trigger, *(f"{count:,}" for count in counts)])
    columns = ["stage", "trigger", *headers]
    widths = [max([len(line) for line in column.split("\n")] + [len(row[i]) for row in rows]) for i, column in enumerate(columns)]
    trigger = sum(widths) + 2 * (len(widths) - 1) <= width
    if not trigger:
        del columns[1], widths[1]
        rows = [[row[0], *row[2:]] for row in rows]
    table = Table(title=f"{summary.pipeline} ({summary.stack}) ran locally", title_justify="left", box=box.SIMPLE_HEAD,
                  padding=(0, 1, 0, 0), pad_edge=False, show_edge=False)
    table.add_column(columns[0], overflow="fold")
    for column, column_width in zip(columns[1:], widths[1:], strict=True):
        table.add_column(column, justify="left" if column == "trigger" else "right", no_wrap=True, min_width=column_width)
    for row in rows:
        table.add_row(*row)
    return table


def _shown(path: Path) -> Path:
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path


def summary_lines(summary: RunSummary, listed: int = 10) -> list[str]:
    """What the table does not say, a line each (short enough not to wrap: paths under the store are given once)."""
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
    filtered = [s for s in summary.stages.values() if s.filtered]
    if filtered:
        lines.append("filtered out (no row, no error): " + ", ".join(f"{s.name} {s.filtered:,}" for s in filtered))
    for name in summary.not_invoked:
        lines.append(f"{name}: an HTTP stage, not invoked by `pipeline run`; try `pipeline serve` or `pipeline invoke {name} --input FILE`")
    lines.append(f"store: {shown}/")
    lines.append("  outputs in <stage>/<stage>/" + (f", the raw archive in raw/raw/ ({summary.raw_objects:,} objects)" if summary.archive else "")
                 + ", run.log")
    dead = summary.dead_letters
    failed = sum(s.failed_batches for s in summary.stages.values())
    if dead:
        by_stage = ", ".join(f"{s.name} {s.dead_letters:,}" for s in summary.stages.values() if s.dead_letters)
        lines.append(f"dead letters: {dead:,} ({by_stage}" + (f"; {failed:,} whole inputs failed after their retries" if failed else "")
                     + "), each with its error, in dead-letter/:")
        for key in summary.dead_letter_keys[:listed]:
            lines.append(f"  {key}")
        if len(summary.dead_letter_keys) > listed:
            lines.append(f"  ... and {len(summary.dead_letter_keys) - listed:,} more")
    else:
        lines.append("dead letters: 0")
    return lines


_NOT_SHOWN = {"time", "level", "severity", "message", "pipeline", "stage", "logger", "error", "traceback", "stream"}
# The runner's frames and the function runtime's (not the handler's): the folders of `pipeline.local` and `pipeline.runtime`.
_RUNTIME_FRAME = tuple(f'  File "{os.path.dirname(os.path.abspath(folder))}{os.sep}' for folder in (__file__, runtime_package.__file__ or ""))


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


def log_text(entry: dict[str, Any], again: bool = False) -> str | None:
    """A log line for the terminal, or None for the runtime's routine lines (they stay in run.log).

    Shown: everything a handler prints or logs, and every warning or error (a dead-lettered
    record, a failed or crashed invocation) with its traceback; `again`: the same traceback was
    shown for this input before (a retry failed the same way), so only its last line is.
    """
    level = str(entry.get("level", "INFO"))
    if entry.get("logger") == "runtime" and LEVELS.get(level, 20) < LEVELS["WARNING"]:
        return None
    stage = entry.get("stage", "")
    if entry.get("stream") == "output":  # what the handler printed: the user's own text, colours and all
        return f"{stage} | {entry.get('message', '')}"
    # The rest may quote an input (an exception's message does): its control characters are shown escaped.
    extras = "  ".join(f"{key}={printable(str(value), 500)}" for key, value in entry.items() if key not in _NOT_SHOWN and value is not None)
    text = f"{stage} | {level} {printable(str(entry.get('message', '')), 2000)}" + (f"  ({extras})" if extras else "")
    if entry.get("traceback") and again:
        last = next((line for line in reversed(str(entry["traceback"]).splitlines()) if line.strip()), "")
        text += f"\n    the same error again: {printable(last.strip(), 500)}"
    elif entry.get("traceback"):
        text += "\n" + "\n".join("    " + printable(line, 2000) for line in _user_frames(str(entry["traceback"])))
    elif entry.get("error"):
        text += f"\n    {printable(str(entry['error']), 2000)}"
    return text
