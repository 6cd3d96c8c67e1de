"""The console script's first step: hand the command to a warm planning server when one is running
(see `pipeline.plan_server`), else run it here. Kept free of heavy imports: it runs on every call."""

from __future__ import annotations

import sys


def main() -> None:
    from pipeline import plan_server

    args = sys.argv[1:]
    if plan_server.wanted(args):
        code = plan_server.run_remote(args)
        if code is not None:
            import os

            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    from pipeline.cli.app import main as run_here

    run_here()
