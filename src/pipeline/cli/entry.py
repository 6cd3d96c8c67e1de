"""The console script's first step: hand a planning command to this user's warm planning server when
one runs (see `pipeline.plan_client`), else run it here and, if it had to plan, start a server in
the background on the way out. Kept free of heavy imports: it runs on every call."""

from __future__ import annotations

import os
import sys

from pipeline.cli.exiting import exit_now, on_exit, planned
from pipeline.server_files import setting as server_setting

# What may go to a planning server (checked here, so other commands import nothing of it).
SERVED_COMMANDS = frozenset({"plan", "compare", "diff"})


def main() -> None:
    try:
        args = sys.argv[1:]
        if os.name == "posix" and next((a for a in args if not a.startswith("-")), "") in SERVED_COMMANDS and server_setting() != "off":
            from pipeline import plan_client

            if plan_client.served(args):
                code = plan_client.run_remote(args)
                if code is not None:
                    exit_now(code)
                on_exit.append(lambda code: plan_client.start_on_demand() if planned() and code != 130 else None)
        from pipeline.cli.app import main as run_here
    except KeyboardInterrupt:  # Ctrl-C while the CLI is still loading: said like any other interruption
        sys.stderr.write("interrupted\n")
        exit_now(130)
    run_here()
