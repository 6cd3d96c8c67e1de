"""The console script's first step: hand the command to a warm planning server when one is running
(see `pipeline.plan_server`), else run it here. Kept free of heavy imports: it runs on every call."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import NoReturn


def flush_output() -> None:
    """Flush stdout and stderr; a closed pipe (`| head`) or stream has nothing left to lose."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()


def exit_now(code: int) -> NoReturn:
    """Leave without interpreter teardown once what was printed is flushed (every file a command
    writes is closed by its `with`)."""
    flush_output()
    os._exit(code)


def main() -> None:
    try:
        from pipeline import plan_server

        args = sys.argv[1:]
        if plan_server.wanted(args):
            code = plan_server.run_remote(args)
            if code is not None:
                exit_now(code)
        from pipeline.cli.app import main as run_here
    except KeyboardInterrupt:  # Ctrl-C while the CLI is still loading: said like any other interruption
        sys.stderr.write("interrupted\n")
        exit_now(130)
    run_here()
