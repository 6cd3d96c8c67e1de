"""The console script's first step: hand a planning command to this user's warm planning server when
one runs (see `pipeline.plan_client`), else run it here and, if it had to plan, start a server in
the background on the way out. Kept free of heavy imports: it runs on every call."""

from __future__ import annotations

import os
import signal
import sys


def _interrupted_while_loading(signum: int, frame: object) -> None:
    """Ctrl-C before the CLI can say it (importing, building the commands): said like any other interruption,
    at once. `pipeline.cli.app.main` puts its own handler in place as it starts the command."""
    try:
        from pipeline.cli import argv  # imports nothing itself

        if argv.json_errors_requested(sys.argv[1:]):
            sys.stdout.write(argv.INTERRUPTED_JSON)
            sys.stdout.flush()
    except Exception:  # interrupted halfway through loading it: the words on stderr still say it
        pass
    sys.stderr.write("interrupted\n")
    sys.stderr.flush()
    os._exit(130)


if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where Ctrl-C is ignored (a background job)
    signal.signal(signal.SIGINT, _interrupted_while_loading)

import contextlib  # noqa: E402 (after the handler: Ctrl-C during these imports is said too)
from collections.abc import Callable, Sequence  # noqa: E402
from typing import NoReturn  # noqa: E402

from pipeline.server_files import setting as server_setting  # noqa: E402

# What may go to a planning server (checked here, so other commands import nothing of it).
SERVED_COMMANDS = frozenset({"plan", "compare", "diff"})
_on_exit: list[Callable[[int], None]] = []
_planning = [False]


def planning_begins() -> None:
    """A command has a valid spec and is about to plan (pay for Pulumi and the SDKs): worth a server next time."""
    _planning[0] = True


def loading_handler() -> object:
    """The handler in place while the CLI loads (for `pipeline.cli.app.main` to replace)."""
    return _interrupted_while_loading


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
    for hook in _on_exit:
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


def main() -> None:
    try:
        args = sys.argv[1:]
        if os.name == "posix" and next((a for a in args if not a.startswith("-")), "") in SERVED_COMMANDS and server_setting() != "off":
            from pipeline import plan_client

            if plan_client.served(args):
                if signal.getsignal(signal.SIGINT) is _interrupted_while_loading:
                    signal.signal(signal.SIGINT, signal.default_int_handler)  # the client passes Ctrl-C on to the server
                code = plan_client.run_remote(args)
                if code is not None:
                    exit_now(code)
                _on_exit.append(lambda code: plan_client.start_on_demand() if _planning[0] and code != 130 else None)
        from pipeline.cli.app import main as run_here
    except KeyboardInterrupt:  # Ctrl-C while the CLI is still loading: said like any other interruption
        from pipeline.cli.argv import EXIT_INTERRUPTED, INTERRUPTED_JSON, json_errors_requested

        if json_errors_requested(sys.argv[1:]):
            sys.stdout.write(INTERRUPTED_JSON)
        sys.stderr.write("interrupted\n")
        exit_now(EXIT_INTERRUPTED)
    run_here()
