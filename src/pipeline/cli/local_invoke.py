"""The `pipeline invoke` command's work: read the input, invoke the stage once, print its rows.

stdout carries the output rows (JSON lines, or one JSON object with `--format json`); stderr a
summary and each dead letter's error. Exit codes: 0 every input went through; 1 something was
dead-lettered, the invocation failed after its retries, or an HTTP stage answered 5xx; 2 bad usage
(an unknown stage, a missing input, a request body that is not rows); 130 interrupted.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from pipeline.cli.local_run import LogShower, stop_on_sigterm
from pipeline.cli.output import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, fail

SHOWN_DEAD_LETTERS = 20


@dataclass
class InvokeOptions:
    stage: str
    spec: Path
    stack: str | None
    source: str | None
    format: str
    store: Path | None
    quiet: bool


def _read_input(source: str | None) -> tuple[bytes | None, str]:
    """The input's bytes and the name it has as an object (the file's name; stdin is `stdin.jsonl`)."""
    if source is None:
        return None, ""
    if source == "-":
        if sys.stdin is None:
            fail(EXIT_BAD_INPUT, "error: --input - reads standard input, but it is closed; pipe the input in, or pass --input FILE")
        if sys.stdin.isatty():
            sys.stderr.write("reading the input from standard input; end it with Ctrl-D (pass --input FILE to read a file)\n")
        return sys.stdin.buffer.read(), "stdin.jsonl"
    path = Path(source)
    if not path.is_file():
        fail(EXIT_BAD_INPUT, f"error: input file {source} does not exist" if not path.exists() else f"error: input {source} is not a file")
    try:
        return path.read_bytes(), path.name
    except OSError as exc:
        fail(EXIT_BAD_INPUT, f"error: cannot read {source}: {exc.strerror or exc}")


def invoke_command(options: InvokeOptions, load: Callable[[Path, str | None], Any], out: Console, err: Console) -> None:
    from pipeline.local.errors import LocalUsageError
    from pipeline.local.inputs import check_upload_name
    from pipeline.local.invoke import invoke_stage
    from pipeline.local.layout import RUN_DIR
    from pipeline.local.stages import LocalRunError

    data, name = _read_input(options.source)
    loaded = load(options.spec, options.stack)
    if name and name != "stdin.jsonl":
        try:
            check_upload_name(name)  # it becomes an object's name
        except LocalUsageError as exc:
            fail(EXIT_BAD_INPUT, f"error: {exc}")
    if options.store is not None and (options.store / RUN_DIR).exists():
        fail(EXIT_BAD_INPUT, f"error: {options.store} is the store of a `pipeline run` or `pipeline serve`; "
                             "invoke writes its outputs elsewhere: pass another --store, or none for a scratch folder")
    root = options.store or Path(tempfile.mkdtemp(prefix="pipeline-invoke-"))
    logs = LogShower(err, options.quiet)
    try:
        with stop_on_sigterm():
            result = invoke_stage(loaded, options.stage, data, name, root, None if options.quiet else logs.show, logs.note)
    except LocalUsageError as exc:
        fail(EXIT_BAD_INPUT, f"error: {exc}")
    except LocalRunError as exc:
        fail(EXIT_FAILED, f"error: {exc}")
    except OSError as exc:
        from pipeline.local.journal import describe_os_error

        fail(EXIT_FAILED, f"error: {describe_os_error(exc, root)}")
    except KeyboardInterrupt:
        fail(EXIT_INTERRUPTED, "interrupted")
    finally:
        if options.store is None:
            shutil.rmtree(root, ignore_errors=True)

    if options.format == "json":
        sys.stdout.write(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in result.rows))
    sys.stdout.flush()
    _summary(err, result, options.store)
    if result.status == 400:
        raise typer.Exit(EXIT_BAD_INPUT)
    if result.failed or result.dead_letters:
        raise typer.Exit(EXIT_FAILED)


def _summary(err: Console, result: Any, store: Path | None) -> None:
    """One line of counts, then each dead letter: which input and why."""
    def say(text: str) -> None:
        err.print(text, markup=False, highlight=False, soft_wrap=True)

    for note in result.notes:
        say(f"note: {note}")
    head = f"{result.stage} ({result.trigger}): {result.items:,} in, {len(result.rows):,} rows out, "
    if result.filtered:
        head += f"{result.filtered:,} filtered out (no row, no error), "
    head += f"{len(result.dead_letters):,} dead letter{'' if len(result.dead_letters) == 1 else 's'}"
    if result.retries:
        head += f", {result.retries:,} retr{'y' if result.retries == 1 else 'ies'}"
    if result.status is not None:
        head += f"; answered {result.status}"
    say(head)
    if result.status is not None and result.status != 200 and result.answer:
        say(f"error: {result.answer.get('error')}")
    elif result.failed:
        say("error: the invocation failed after its retries; its whole input was dead-lettered")
    for entry in result.dead_letters[:SHOWN_DEAD_LETTERS]:
        error = entry.get("error") or {}
        say(f"  dead letter {entry.get('index')} ({_where(entry.get('input') or {})}, {entry.get('reason')}): "
            f"{error.get('type')}: {error.get('message')}")
    if len(result.dead_letters) > SHOWN_DEAD_LETTERS:
        say(f"  ... and {len(result.dead_letters) - SHOWN_DEAD_LETTERS:,} more (--format json lists them all)")
    if store is not None and result.output_key:
        say(f"output: {store / result.output_key}")


def _where(identity: dict[str, Any]) -> str:
    if "line" in identity:
        return f"row {identity['line'] + 1} of {identity.get('key')}"
    if "row" in identity:
        return f"row {identity['row']}"
    if identity.get("sequence"):
        return f"record at line {identity['sequence']}"
    return "input"
