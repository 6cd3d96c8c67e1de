"""What a raw command line asks for, and what Ctrl-C says while the CLI still loads: the console script may
have to answer before Typer, Rich or even `json` are there. Imports nothing the interpreter has not loaded."""

from __future__ import annotations

import os
import signal
import sys

TYPE_CHECKING = False  # not `typing`'s: importing typing (and re, enum) here would widen the window a Ctrl-C can fall in
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import NoReturn

EXIT_INTERRUPTED = 130
# The documented JSON failure object for Ctrl-C (the shape and layout `pipeline.cli.output.error_object` gives it).
INTERRUPTED_JSON = '{\n  "error": {\n    "kind": "interrupted",\n    "message": "interrupted",\n    "exit_code": 130,\n    "problems": []\n  }\n}\n'


def json_errors_requested(args: Sequence[str]) -> bool:
    """Whether a raw command line asked for JSON, for failures found before any command runs
    (click's usage errors, an interruption while loading). Commands themselves call `want_json_errors` instead."""
    args = list(args[: args.index("--")] if "--" in args else args)
    for i, arg in enumerate(args):
        if arg == "--json" or arg in ("--format=json", "-fjson"):
            return True
        if arg in ("--format", "-f") and i + 1 < len(args) and args[i + 1] == "json":
            return True
    return False


def say_interrupted() -> NoReturn:
    """Ctrl-C before the CLI can say it (importing, building the commands, asking the planning server): said like
    any other interruption (130, the JSON error when JSON was asked), at once."""
    if json_errors_requested(sys.argv[1:]):
        sys.stdout.write(INTERRUPTED_JSON)
        sys.stdout.flush()
    sys.stderr.write("interrupted\n")
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)


def _interrupted_while_loading(signum: int, frame: object) -> None:
    """Until `pipeline.cli.app.main` puts its own handler in place as it starts the command."""
    say_interrupted()


def say_interrupted_while_loading() -> None:
    """The console script's first act (not where Ctrl-C is ignored, as in a background job)."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupted_while_loading)


def loading_handler_or_default() -> bool:
    """Whether Ctrl-C is still handled as the CLI loads (or by Python's default): a command may put its own in place."""
    return signal.getsignal(signal.SIGINT) in (signal.default_int_handler, _interrupted_while_loading)
