"""What a raw command line asks for, read before anything heavy is imported: the console script may have to
answer (Ctrl-C while it still loads) before Typer, Rich or even `json` are there. Imports nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

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
