"""The `pipeline serve` command's work: take the local store, serve until Ctrl-C, say what was done.

Exit codes: 0 stopped with Ctrl-C or SIGTERM (how a server ends: the store keeps everything and the
next `pipeline serve` continues the same run); 1 the server could not start or the machine got in
the way (port in use, disk full, a handler that cannot be imported); 2 bad usage or a bad spec.
"""

from __future__ import annotations

import errno
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from pipeline.cli.local_run import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, LogShower, stop_on_sigterm


@dataclass
class ServeOptions:
    spec: Path
    stack: str | None
    host: str
    port: int
    tick: float | None
    max_body: int
    store: Path | None
    fresh: bool
    fsync: bool
    quiet: bool
    allow_hosts: tuple[str, ...] = ()


def serve_command(options: ServeOptions, load: Callable[[Path, str | None], Any], err: Console) -> int:
    try:
        with stop_on_sigterm():
            return _serve(options, load, err)
    except KeyboardInterrupt:  # before the store was taken: nothing to keep
        err.print("interrupted")
        return 130


def _serve(options: ServeOptions, load: Callable[[Path, str | None], Any], err: Console) -> int:
    from pipeline.local.errors import LocalRunInterrupted, LocalUsageError
    from pipeline.local.runner import LocalRun
    from pipeline.local.serve import LocalServer
    from pipeline.local.stages import LocalRunError

    loaded = load(options.spec, options.stack)
    logs = LogShower(err, options.quiet)
    session = LocalRun(loaded, options.store, None, durable=options.fsync, fresh=options.fresh,
                       on_log=None if options.quiet else logs.show, notify=logs.note)
    try:
        server = LocalServer(session, options.host, options.port, options.max_body, options.tick, on_request=logs.line,
                             allow_hosts=options.allow_hosts)
    except OSError as exc:
        return _cannot_listen(err, options, exc)
    try:
        try:
            session.serve()
        except LocalRunInterrupted:  # while finishing what the last server left half done
            err.print(f"interrupted while starting; `pipeline serve` again finishes what is left ({session.root})", markup=False, highlight=False)
            return EXIT_OK
        except LocalUsageError as exc:
            err.print(f"error: {exc}", markup=False, highlight=False)
            return EXIT_BAD_INPUT
        except LocalRunError as exc:
            err.print(f"error: {exc}", markup=False, highlight=False)
            return EXIT_FAILED
        try:
            _banner(err, server, session, options)  # inside: a Ctrl-C from here on closes the session cleanly
            server.serve()
        except LocalRunInterrupted:  # stopped in the middle of a request: the journal finishes it next time
            session.close(failed=True)
            err.print(f"stopped in the middle of a request; what it began is finished by the next `pipeline serve` ({session.root})",
                      markup=False, highlight=False)
            return EXIT_OK
        except LocalRunError as exc:
            session.close(failed=True)
            err.print(f"error: {exc}", markup=False, highlight=False)
            return EXIT_FAILED
        except KeyboardInterrupt:
            session.close()
            summary = session.summary
            err.print(f"stopped after {server.handled:,} requests; {summary.records_in:,} records and {summary.uploads_in:,} uploads "
                      f"are kept in {session.root}. `pipeline serve` again continues this run (--fresh starts over)",
                      markup=False, highlight=False)
            return EXIT_OK
        return EXIT_OK  # pragma: no cover - serve() returns only by raising
    finally:
        server.httpd.server_close()


def _cannot_listen(err: Console, options: ServeOptions, exc: OSError) -> int:
    where = f"{options.host}:{options.port}"
    if exc.errno == errno.EADDRINUSE:
        err.print(f"error: {where} is in use (another server?): pass --port with another port, or --port 0 for any free one",
                  markup=False, highlight=False)
        return EXIT_FAILED
    if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        err.print(f"error: cannot listen on {options.host!r}: it is not an address of this machine (try 127.0.0.1)",
                  markup=False, highlight=False)
        return EXIT_BAD_INPUT
    err.print(f"error: cannot listen on {where}: {exc.strerror or exc}", markup=False, highlight=False)
    return EXIT_FAILED


def _banner(err: Console, server: Any, session: Any, options: ServeOptions) -> None:
    """What is served where; the first line is stable (`serving NAME (STACK) on URL`) for scripts that wait for it."""
    from pipeline.local.serve_http import loopback

    lines = [f"serving {session.spec.name} ({session.loaded.stack}) on {server.url}"]
    lines += [f"  {route['method']:<4} {server.url}{route['path']}  {route['does']}" for route in server.routes()]
    lines.append(f"store: {session.root}" + (f"; schedules run every {options.tick:g} s" if options.tick else ""))
    if not loopback(options.host):
        lines.append(f"warning: listening on {options.host}: anyone who can reach it can send records and call stages (no authentication)")
    lines.append("Ctrl-C to stop")
    sys.stderr.write("\n".join(lines) + "\n")
    sys.stderr.flush()
