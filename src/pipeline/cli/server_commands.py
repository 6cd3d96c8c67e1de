"""`pipeline server start|stop|status`: this installation's warm planning server (`pipeline.plan_client`)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pipeline.cli.output import EXIT_FAILED, fail, out, working

server_app = typer.Typer(help="A warm planning server: plan, compare and diff without start-up imports (POSIX). "
                              "Started on demand by a planning command unless PIPELINE_SERVER=0 or CI is set.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(server_app, name="server")


def _client() -> Any:
    from pipeline import server_files

    if not server_files.supported():
        fail(EXIT_FAILED, "error: the planning server needs a POSIX system (fork and Unix sockets)")
    from pipeline import plan_client

    return plan_client


def _say(text: str) -> None:
    out.print(text, markup=False, highlight=False, soft_wrap=True)


@server_app.command("start")
def server_start(idle_minutes: Annotated[float, typer.Option("--idle-minutes", min=1, max=24 * 60, help="Stop after this long without a request.")] = 30) -> None:
    """Start the server in the background (or wait for one warming up); plan, compare and diff then use it until it stops."""
    client = _client()
    try:
        with working("starting the planning server (importing Pulumi and the cloud SDKs once)"):
            current, started = client.start(idle_minutes)
    except OSError as exc:
        fail(EXIT_FAILED, f"error: {exc}")
    if current.problem:
        fail(EXIT_FAILED, f"error: {current.problem}")
    if not started:
        _say(f"already {current.describe()}")
        return
    _say(f"{current.describe()}; stops after {idle_minutes:g} idle minutes (`pipeline server stop`; PIPELINE_SERVER=0 bypasses it)")


@server_app.command("stop")
def server_stop() -> None:
    """Stop the running server (a no-op when none runs)."""
    _say("stopped" if _client().stop() else "no planning server was running")


@server_app.command("status")
def server_status() -> None:
    """Say whether a server runs or is warming up (exit 1 when none does)."""
    current = _client().status()
    _say(current.describe())
    if current.state == "none":
        raise typer.Exit(EXIT_FAILED)
