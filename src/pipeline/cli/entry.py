"""The console script's first step: hand a planning command to this user's warm planning server when
one runs (see `pipeline.plan_client`), else run it here and, if it had to plan, start a server in
the background on the way out. Kept free of heavy imports: it runs on every call."""

from __future__ import annotations

from pipeline.cli import argv

argv.say_interrupted_while_loading()  # before anything else is imported: Ctrl-C from here on is said, never a traceback

import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

from pipeline.cli.exiting import exit_now, on_exit, planned  # noqa: E402
from pipeline.server_files import setting as server_setting  # noqa: E402

# What may go to a planning server (checked here, so other commands import nothing of it).
SERVED_COMMANDS = frozenset({"plan", "compare", "diff"})


def main() -> None:
    args = sys.argv[1:]
    try:
        if os.name == "posix" and next((a for a in args if not a.startswith("-")), "") in SERVED_COMMANDS and server_setting() != "off":
            from pipeline import plan_client

            if plan_client.served(args):
                signal.signal(signal.SIGINT, signal.default_int_handler)  # the client passes Ctrl-C on to the server
                code = plan_client.run_remote(args)
                if code is not None:
                    exit_now(code)
                argv.say_interrupted_while_loading()
                on_exit.append(lambda code: plan_client.start_on_demand() if planned() and code != 130 else None)
        from pipeline.cli.app import main as run_here
    except KeyboardInterrupt:  # Ctrl-C while the server was asked: said like any other interruption
        argv.say_interrupted()
    run_here()
