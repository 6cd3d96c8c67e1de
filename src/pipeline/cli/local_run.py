"""The `pipeline run` command's work: one run (or, with --watch, a run per change) and what it shows.

Exit codes: 0 every record went through; 1 something was dead-lettered or failed, or the machine
got in the way (disk full, read-only store, closed stdin); 2 bad usage or a bad spec; 130/143
interrupted by Ctrl-C / SIGTERM (the store is consistent and the same command resumes).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


DATA_SUFFIXES = (".jsonl", ".gz", ".ndjson", ".json")  # what an upload looks like, and a spec does not


@dataclass
class RunOptions:
    spec: Path
    stack: str | None
    source: str | None  # None: no stream input (uploads only)
    tick: float | None
    store: Path | None
    fresh: bool
    fsync: bool
    quiet: bool
    uploads: list[Path] = field(default_factory=list)


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """SIGTERM stops a run like Ctrl-C does: workers stopped, queued writes landed, a resume hint
    (both wait for the few steps that must not be cut in two: `pipeline.local.interrupts`)."""
    from pipeline.local.interrupts import stoppable

    with stoppable():
        yield


class LogShower:
    """Handler logs, tracebacks and notes on stderr while stages run (`run`, `serve`, `invoke`).

    A traceback is shown once per input: an input retried after the same failure says so in one line
    (run.log keeps every attempt's traceback)."""

    REMEMBERED = 1000  # inputs whose last traceback is remembered (then forgotten, oldest first)

    def __init__(self, err: Console, quiet: bool) -> None:
        self.err, self.quiet = err, quiet
        self.tracebacks: dict[tuple[str, str], str] = {}

    def note(self, message: str) -> None:
        self.err.print(f"note: {message}", markup=False, highlight=False)

    def show(self, entry: dict[str, Any]) -> None:
        from pipeline.local.report import log_text

        if self.quiet:
            return
        text = log_text(entry, again=self._seen(entry))
        if text is not None:
            self.line(text)

    def _seen(self, entry: dict[str, Any]) -> bool:
        """Whether this entry's traceback was shown for the same input (stage and batch) already."""
        trace, batch = entry.get("traceback"), entry.get("batch")
        if not trace or batch is None:
            return False
        key = (str(entry.get("stage", "")), str(batch))
        if self.tracebacks.get(key) == trace:
            return True
        if len(self.tracebacks) >= self.REMEMBERED:
            del self.tracebacks[next(iter(self.tracebacks))]
        self.tracebacks[key] = str(trace)
        return False

    def line(self, text: str) -> None:
        try:
            if self.err.is_terminal:  # above a progress bar
                self.err.print(text, markup=False, highlight=False)
            else:
                sys.stderr.write(text + "\n")
                sys.stderr.flush()
        except OSError:  # stderr went away (a closed pipe): the work goes on, the log file keeps the lines
            self.quiet = True


class Runner:
    """Runs the spec once per call and prints the outcome; `load` is the CLI's spec loader (exits 2 on a bad spec)."""

    def __init__(self, options: RunOptions, load: Callable[[Path, str | None], Any], out: Console, err: Console) -> None:
        self.options, self.load, self.out, self.err = options, load, out, err
        self.logs = LogShower(err, options.quiet)
        self.note = self.logs.note
        self.show_log = self.logs.show

    def once(self, loaded: Any, fresh: bool) -> int:
        from pipeline.local.errors import LocalRunInterrupted, LocalUsageError
        from pipeline.local.inputs import Upload
        from pipeline.local.report import progress_bar, summary_lines, summary_table
        from pipeline.local.runner import LocalRun
        from pipeline.local.stages import LocalRunError

        options = self.options
        try:
            uploads = [Upload.of(path) for path in options.uploads]
            with progress_bar(self.err, options.source) as progress:
                run = LocalRun(loaded, options.store, options.tick, durable=options.fsync, fresh=fresh, progress=progress,
                               on_log=None if options.quiet else self.show_log, notify=self.note)
                summary = run.run(options.source, uploads)
        except LocalRunInterrupted as exc:
            self.err.print(str(exc), markup=False, highlight=False)
            return 128 + exc.signal_number
        except LocalUsageError as exc:
            self.err.print(f"error: {exc}", markup=False, highlight=False)
            return EXIT_BAD_INPUT
        except LocalRunError as exc:
            self.err.print(f"error: {exc}", markup=False, highlight=False)
            return EXIT_FAILED
        self.out.print(summary_table(summary, self.out.width))
        for line in summary_lines(summary):
            self.out.print(line, markup=False, highlight=False)
        self.out.file.flush()
        if summary.failed:
            self.err.print(f"error: {summary.dead_letters:,} dead letters (listed above); the run did not process everything",
                           markup=False, highlight=False)
            return EXIT_FAILED
        return EXIT_OK

    def watch(self, loaded: Any) -> int:
        """Run, then run again whenever the spec, its overlay, a handler's folder, a requirements or
        model file, or the input changes (polling; the journal decides whether it is a new run)."""
        import typer

        from pipeline.local.watch import snapshot, wait_for_change, watched_files

        options = self.options

        def watched() -> list[Path]:
            return watched_files(options.spec, options.stack, loaded, options.source, options.uploads)

        before = snapshot(watched())
        code = self.once(loaded, options.fresh)
        while code < 128:  # Ctrl-C while waiting ends the watch with the last run's exit code
            try:
                self.err.print("watching the spec, its overlay, the handlers' folders and the inputs for changes (Ctrl-C to stop)",
                               markup=False, highlight=False)
                changed = wait_for_change(watched, before)
                self.err.print("changed: " + ", ".join(str(p) for p in changed[:5]) + ("..." if len(changed) > 5 else "")
                               + "; running again", markup=False, highlight=False)
                before = snapshot(watched())
                try:
                    loaded = self.load(options.spec, options.stack)
                except typer.Exit as exc:  # a bad spec: already reported; wait for the fix
                    code = exc.exit_code
                    continue
                before = snapshot(watched())  # now with the files the new spec names
            except KeyboardInterrupt:
                return code
            code = self.once(loaded, fresh=False)
        return code


def run_command(options: RunOptions, watch: bool, load: Callable[[Path, str | None], Any], out: Console, err: Console) -> int:
    try:
        with stop_on_sigterm():
            return _run_command(options, watch, load, out, err)
    except KeyboardInterrupt:  # before a run took the store, or between runs: nothing to resume
        err.print("interrupted")
        return 130


def _usage(err: Console, message: str) -> int:
    err.print(f"error: {message}", markup=False, highlight=False)
    return EXIT_BAD_INPUT


def _run_command(options: RunOptions, watch: bool, load: Callable[[Path, str | None], Any], out: Console, err: Console) -> int:
    if options.uploads and options.spec.suffix.lower() in DATA_SUFFIXES:  # `--upload a.jsonl b.jsonl`: b.jsonl became SPEC
        return _usage(err, f"{options.spec} is taken as the spec; to upload it too, repeat --upload before each file "
                           f"(--upload {options.uploads[-1]} --upload {options.spec})")
    if watch and options.source == "-":
        return _usage(err, "--watch needs --input FILE (standard input cannot be read again)")
    if options.source not in (None, "-") and not Path(options.source).is_file():
        return _usage(err, f"input file {options.source} does not exist")
    for path in options.uploads:
        if not path.is_file():
            return _usage(err, f"upload {path} does not exist" if not path.exists() else f"upload {path} is not a file")
    loaded = load(options.spec, options.stack)
    spec = loaded.spec
    if options.source is not None and spec.stream is None:
        return _usage(err, f"{spec.name} has no stream, so nothing reads --input records; pass its files with --upload FILE")
    if options.uploads and spec.uploads is None:
        return _usage(err, f"{spec.name} has no uploads bucket (add `uploads: {{}}` to the spec), so nothing reads --upload files")
    if options.source is None and not options.uploads:
        if spec.stream is None:
            return _usage(err, f"{spec.name} is fed by uploads: pass its files with --upload FILE (repeat it for more files)")
        options.source = "-"  # records from standard input, as before --upload existed
    if options.source == "-":
        if sys.stdin is None:
            err.print("error: --input - reads standard input, but it is closed; pipe the records in, or pass --input FILE")
            return EXIT_FAILED
        if sys.stdin.isatty():
            err.print("reading JSON-lines records from standard input, one per line; end with Ctrl-D "
                      "(pass --input FILE to read a file)", markup=False, highlight=False)
    runner = Runner(options, load, out, err)
    return runner.watch(loaded) if watch else runner.once(loaded, options.fresh)
