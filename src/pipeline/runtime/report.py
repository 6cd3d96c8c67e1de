"""What `pipeline run` shows: a progress bar while it runs and a summary at the end (Rich).

Kept apart from `local.py` so the runner stays plain Python a test or a benchmark can drive.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.runtime.local import RunSummary


@contextmanager
def progress_bar(console: Console, source: str) -> Iterator[Callable[[int, int], None]]:
    """Yield a `progress(records, bytes_read)` callback; bytes drive the bar for files, records for stdin."""
    total = os.path.getsize(source) if source != "-" and os.path.isfile(source) else None
    columns = [TextColumn("[bold]running[/bold]"), BarColumn(), TextColumn("{task.fields[records]:,} records"), TimeElapsedColumn()]
    if total is None:
        columns.insert(2, MofNCompleteColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("run", total=total, records=0)

        def update(records: int, read: int) -> None:
            bar.update(task, completed=read if total is not None else records, records=records)

        yield update


def summary_table(summary: RunSummary, cwd: Path | None = None) -> Table:
    table = Table(title=f"{summary.pipeline} ({summary.stack}) ran locally", title_justify="left")
    for name, justify in (("stage", "left"), ("trigger", "left"), ("invocations", "right"), ("in", "right"), ("rows out", "right"),
                          ("dead letters", "right"), ("retries", "right"), ("failed inputs", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for stats in summary.stages.values():
        table.add_row(stats.name, stats.trigger, f"{stats.invocations:,}", f"{stats.items:,}", f"{stats.rows:,}", f"{stats.dead_letters:,}",
                      f"{stats.retries:,}", f"{stats.failed_batches:,}")
    return table


def summary_lines(summary: RunSummary) -> list[str]:
    root = summary.root
    try:
        shown = root.resolve().relative_to(Path.cwd())
    except ValueError:
        shown = root
    lines = [f"records in: {summary.records_in:,} ({summary.records_this_run:,} processed by this run"
             + (f", {summary.batches_skipped:,} batches already done" if summary.batches_skipped else "")
             + (f", {summary.batches_resumed:,} interrupted batches redone" if summary.batches_resumed else "") + ")",
             f"throughput: {summary.throughput:,.0f} records/s ({summary.seconds:.2f} s)"]
    dead = sum(s.dead_letters for s in summary.stages.values())
    lines.append(f"outputs: {shown}/<stage>/<stage>/")
    lines.append(f"raw archive: {shown}/raw/raw/ ({summary.raw_objects:,} objects)")
    lines.append(f"dead letters: {dead:,}" + (f" in {shown}/dead-letter/<stage>/" if dead else ""))
    lines.append(f"log: {shown}/run.log")
    return lines
