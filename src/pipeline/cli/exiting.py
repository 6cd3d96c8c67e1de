"""How a command ends: flushed output, no interpreter teardown, the hooks asked for on the way out, and the
one way an interruption is reported. Shared by the console script's first step (`pipeline.cli.entry`), the
commands (`pipeline.cli.app`) and the planning server and its client, which all end commands the same way.
Kept free of heavy imports: it runs on every call."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

on_exit: list[Callable[[int], None]] = []  # called with the exit code once the answer is flushed
_planning = [False]


def planning_begins() -> None:
    """A command has a valid spec and is about to plan (pay for Pulumi and the SDKs): worth a server next time."""
    _planning[0] = True


def planned() -> bool:
    """Whether this command got as far as planning (see `planning_begins`)."""
    return _planning[0]


def flush_output() -> None:
    """Flush stdout and stderr; a closed pipe (`| head`) or stream has nothing left to lose."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()


def exit_now(code: int) -> NoReturn:
    """Leave without interpreter teardown once what was printed is flushed (every file a command
    writes is closed by its `with`); then whatever was asked to happen on the way out (starting a
    planning server), so the caller already has the whole answer."""
    flush_output()
    for hook in on_exit:
        with contextlib.suppress(Exception):
            hook(code)
    os._exit(code)


def report_interrupt(args: Sequence[str]) -> int:
    """What an interrupted command prints (a JSON error too when JSON was asked for); its exit code."""
    from pipeline.cli.output import EXIT_INTERRUPTED, emit_json_error, err, json_errors_requested

    if json_errors_requested(list(args)):
        emit_json_error("interrupted", "interrupted", EXIT_INTERRUPTED)
    err.print("interrupted")
    return EXIT_INTERRUPTED
