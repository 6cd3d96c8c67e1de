"""Where the CLI writes, and how it reports failure: one place for consoles, colour, spinners and errors.

* stdout (`out`) carries the answer; stderr (`err`) carries progress, spinners and messages, so
  `--format json` / `--json` output stays clean for scripts.
* Colour only where it means something; `NO_COLOR` (https://no-color.org) and `--no-color` turn it
  off, and it is off anyway when the stream is not a terminal.
* A command that was asked for JSON gets a JSON object on stdout when it fails too: the error's
  kind, message and exit code, and for a bad spec every problem with file, line, column, field and
  hint. Exit codes: 0 ok, 1 failed, 2 bad input or usage, 130 interrupted.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console

from pipeline.cli.argv import EXIT_INTERRUPTED as EXIT_INTERRUPTED
from pipeline.cli.argv import json_errors_requested as json_errors_requested

if TYPE_CHECKING:
    from pipeline.errors import Problem

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

class _Console(Console):
    """Rich's console, except that a closed pipe (`pipeline compare | head -1`) is not a failure: Rich exits 1
    there, which fails a `set -o pipefail` script; here the output is pointed at /dev/null and BrokenPipeError
    goes on to `pipeline.cli.app.main`, which ends the command quietly with 0, as other CLIs do."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, (sys.stderr if self.stderr else sys.stdout).fileno())
        os.close(devnull)
        raise BrokenPipeError


out = _Console()
err = _Console(stderr=True, soft_wrap=True)  # never hard-wrap file:line:col messages

_json_errors = False  # set by a command that was asked for JSON output
_json_extra: dict[str, Any] = {}  # fields that command's JSON always has (validate: {"valid": false})


def disable_colour() -> None:
    """`--no-color`: both consoles keep bold and layout but drop every colour."""
    for console in (out, err):
        console.no_color = True


def want_json_errors(enabled: bool = True, **extra: Any) -> None:
    """Called by a command asked for JSON: its failures are JSON objects on stdout as well (with `extra` fields)."""
    global _json_errors, _json_extra
    _json_errors, _json_extra = enabled, extra


def problem_dict(problem: Problem) -> dict[str, Any]:
    """One problem as JSON; a problem found by a check rather than in a file (a deploy's preflight) also names the check."""
    data = {"file": problem.file, "line": problem.line, "column": problem.column, "path": problem.path,
            "message": problem.message, "hint": problem.hint}
    return {**data, "check": problem.check} if problem.check else data


def error_object(kind: str, message: str, code: int, problems: Sequence[Problem] = ()) -> dict[str, Any]:
    """The documented JSON failure shape (README, 'Exit codes and JSON errors')."""
    return {"error": {"kind": kind, "message": message, "exit_code": code, "problems": [problem_dict(p) for p in problems]}}


def emit_json_error(kind: str, message: str, code: int, problems: Sequence[Problem] = ()) -> None:
    sys.stdout.write(json.dumps({**_json_extra, **error_object(kind, message, code, problems)}, indent=2) + "\n")
    sys.stdout.flush()


def fail(code: int, message: str, *, kind: str = "", problems: Sequence[Problem] = ()) -> NoReturn:
    """End the command: the message on stderr (the first word 'error' in red), and a JSON error
    object on stdout when the command was asked for JSON."""
    kind = kind or {EXIT_BAD_INPUT: "usage", EXIT_INTERRUPTED: "interrupted"}.get(code, "failed")
    if _json_errors:  # with located problems the message is their summary; without, it is all there is
        text = message.removeprefix("error: ")
        emit_json_error(kind, text.split("\n", 1)[0].rstrip(":") if problems else text, code, problems)
    head, sep, rest = message.partition(":")
    if head in ("error", "cancelled", "interrupted") and sep:
        err.print(f"[bold red]{head}[/bold red]:", end="", highlight=False)
        err.print(rest, markup=False, highlight=False)
    else:
        err.print(message, markup=False, highlight=False)
    raise typer.Exit(code)


def spec_failure(message: str, problems: Sequence[Problem]) -> NoReturn:
    """A spec that cannot be used (exit 2): every problem located (on a terminal, the first ones and a count of the rest)."""
    from pipeline.errors import SpecError

    text = str(SpecError(list(problems)))
    fail(EXIT_BAD_INPUT, f"error: {message}:\n{text}", kind="spec", problems=problems)


@contextmanager
def working(message: str) -> Iterator[None]:
    """A spinner on stderr while something slow runs, only when stderr is a terminal (never in
    logs or pipes) and never in JSON mode's stdout."""
    status = err.status(f"{message}...", spinner="dots") if err.is_terminal else nullcontext()
    with status:
        yield


def wrote(path: Any) -> None:
    err.print(f"wrote {path}", markup=False, highlight=False)
