"""The console script's side of the planning server: hand a command over safely, start, stop and
ask about a server, and start one on demand.

Hand-over (`run_remote`): only to this user's own server of this installation, checked before a
byte is sent (`pipeline.server_files`); anything else is refused with a warning and the command
plans in this process. The request carries what makes the command behave as it would here: the
arguments, working folder, environment, umask, resource limits, priority, how the standard streams
were set up, and the installation's fingerprint. Ctrl-C is passed on; if this process dies, the
server's child dies with it.

On demand, the way build daemons start: with `PIPELINE_SERVER` unset (or `auto`), a planning
command that had to plan in this process (a valid spec and a cache miss; not a hit, a bad spec or
an interrupted run) starts a server in the background as it exits, so it never slows that command; later
commands use it once it is warm. Never in CI (`CI` set), never with `PIPELINE_SERVER=0`; a server
started on demand stops after `ON_DEMAND_IDLE_MINUTES` without a request. `PIPELINE_SERVER=1`
starts one on demand even in CI.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import server_files
from pipeline.server_files import Place, UntrustedServerError

if TYPE_CHECKING:
    import subprocess

ON_DEMAND_IDLE_MINUTES = 15.0
_OFF = ("0", "false", "no", "off")
_ANSWER_TIMEOUT_S = 30.0  # a server that takes no request in this long is as good as none
_MAX_LOG_BYTES = 1024 * 1024
# What a server process needs of the starter's environment (each command brings its own): the
# import path, where caches and the socket live, the locale. Credentials stay out of it.
_SERVER_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "VIRTUAL_ENV")
_SERVER_ENV_PREFIXES = ("LC_", "PYTHON", "PIPELINE_", "XDG_")
_warned: set[str] = set()


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", *_OFF)


def served(args: list[str]) -> bool:
    """Whether this planning command line (`cli.entry.SERVED_COMMANDS`) may go to a planning server."""
    return server_files.supported() and server_files.setting() != "off" and "--help" not in args


def warn(problem: object) -> None:
    """Say once per process why no server is used (the command still runs, in this process)."""
    text = str(problem)
    if text not in _warned:
        _warned.add(text)
        print(f"warning: not using the planning server: {text}; planning in this process", file=sys.stderr, flush=True)


# ---- connecting -----------------------------------------------------------------------------------

def _connect(where: Place, timeout: float | None) -> socket.socket | None:
    """A connection to this user's own server, or None (none there, or refused with a warning)."""
    if server_files.usable(where):
        return None
    try:
        server_files.check_folder(where.folder)
        server_files.check_socket(where.socket)
    except FileNotFoundError:
        return None
    except UntrustedServerError as exc:
        warn(exc)
        return None
    except OSError:
        return None
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.settimeout(timeout)
        connection.connect(str(where.socket))
        server_files.check_peer(connection, where.socket)
        return connection
    except UntrustedServerError as exc:
        connection.close()
        warn(exc)
    except OSError:
        connection.close()
    return None


def _frame(message: dict[str, Any]) -> tuple[bytes, bytes]:
    body = json.dumps({"protocol": server_files.PROTOCOL, **message}).encode()
    return struct.pack("!I", len(body)), body


def _stream_shape(stream: Any) -> list[Any] | None:
    if stream is None:
        return None
    return [getattr(stream, "encoding", "utf-8") or "utf-8", getattr(stream, "errors", "strict") or "strict",
            bool(getattr(stream, "line_buffering", False)), bool(getattr(stream, "write_through", False))]


def _command(args: list[str]) -> dict[str, Any]:
    """Everything that makes `pipeline ARGS` behave in the server as it would in this process."""
    import resource

    from pipeline.plan_cache import tool_fingerprint

    umask = os.umask(0o077)
    os.umask(umask)
    limits = {name: resource.getrlimit(getattr(resource, name))[0] for name in server_files.LIMITS if hasattr(resource, name)}
    return {"kind": "run", "argv": args, "argv0": sys.argv[0] if sys.argv else "pipeline", "cwd": os.getcwd(), "env": dict(os.environ),
            "umask": umask, "installation": server_files.installation_id(), "fingerprint": tool_fingerprint(),
            "settings": server_files.interpreter_settings(), "stdio": [_stream_shape(s) for s in (sys.stdin, sys.stdout, sys.stderr)],
            "limits": limits, "nice": os.getpriority(os.PRIO_PROCESS, 0)}


def run_remote(args: list[str]) -> int | None:
    """Run `pipeline ARGS` in this installation's server; its exit code, or None when no server took
    it (none running, untrusted, declined): the caller then runs the command itself."""
    where = server_files.place()
    connection = _connect(where, _ANSWER_TIMEOUT_S)
    if connection is None:
        return None
    with connection, contextlib.ExitStack() as stack:
        try:
            header, body = _frame(_command(args))
        except OSError:  # e.g. the working folder was removed
            return None
        descriptors = [_usable(fd, stack) for fd in (0, 1, 2)]
        answers = connection.makefile("rb")
        try:
            socket.send_fds(connection, [header], descriptors)
            connection.sendall(body)
            first = answers.readline().decode(errors="replace")
        except OSError:
            return None
        except KeyboardInterrupt:  # before the command started: nothing ran (closing ends a child about to start)
            from pipeline.cli.exiting import report_interrupt

            return report_interrupt(args)
        if not first.startswith("accepted "):
            return None  # declined (another installation, stale code, other settings) or gone: nothing was printed
        connection.settimeout(None)
        while True:
            try:
                last = answers.readline().decode(errors="replace")
                break
            except KeyboardInterrupt:  # the child is not in this terminal's process group: pass Ctrl-C on
                with contextlib.suppress(OSError):
                    connection.sendall(b"i")
            except OSError:
                last = ""
                break
        if last.startswith("exit "):
            try:
                return int(last.split()[1])
            except (IndexError, ValueError):
                pass
        print("the planning server stopped in the middle of this command; run it again with PIPELINE_SERVER=0", file=sys.stderr)
        return 1


def _usable(fd: int, stack: contextlib.ExitStack) -> int:
    """The descriptor itself, or /dev/null when the caller has it closed."""
    try:
        os.fstat(fd)
        return fd
    except OSError:
        null = os.open(os.devnull, os.O_RDWR)
        stack.callback(os.close, null)
        return null


def _ask(where: Place, message: dict[str, Any], timeout: float = 5.0) -> str | None:
    connection = _connect(where, timeout)
    if connection is None:
        return None
    with connection:
        try:
            header, body = _frame(message)
            connection.sendall(header + body)
            return connection.makefile("rb").readline().decode(errors="replace").strip()
        except OSError:
            return None


# ---- start, stop, status --------------------------------------------------------------------------

@dataclass(frozen=True)
class Status:
    state: str  # "running" (answering), "starting" (warming up) or "none"
    pid: int | None
    where: Place
    problem: str | None = None  # why the place cannot be used (someone else's folder...)

    def describe(self) -> str:
        if self.problem:
            return f"no planning server can be used: {self.problem}"
        if self.state == "running":
            return f"running {self.pid} on {self.where.socket}"
        if self.state == "starting":
            who = f"starting {self.pid}" if self.pid else "starting"
            return f"{who} on {self.where.socket} (warming up: importing Pulumi and the cloud SDKs)"
        return "no planning server is running"


def _lock_holder(where: Place) -> int | None:
    """The pid of the server holding this installation's lock (0 if it has not written it yet), or None."""
    try:
        descriptor = os.open(where.lock, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        if os.fstat(descriptor).st_uid != os.getuid():
            return None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(descriptor, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else 0
        return None
    finally:
        os.close(descriptor)


def status() -> Status:
    where = server_files.place()
    problem = server_files.usable(where)
    if problem:
        return Status("none", None, where, problem)
    try:
        server_files.check_folder(where.folder)
    except FileNotFoundError:
        return Status("none", None, where)
    except OSError as exc:
        return Status("none", None, where, str(exc))
    holder = _lock_holder(where)
    if holder is None:
        return Status("none", None, where)
    answer = _ask(where, {"kind": "status"})
    if answer and answer.startswith("running "):
        parts = answer.split()
        return Status("running", int(parts[1]) if parts[1].isdigit() else holder, where)
    return Status("starting", holder or None, where)


def _wait_while(states: tuple[str, ...], wait_s: float) -> Status:
    """Poll the status while it is one of `states` (a server warming up, or one stopping), at most `wait_s`."""
    deadline = time.monotonic() + wait_s
    current = status()
    while current.state in states and not current.problem and time.monotonic() < deadline:
        time.sleep(0.1)
        current = status()
    return current


def stop(wait_s: float = 60.0) -> bool:
    """Stop this installation's server (waiting for one that is still warming up); whether one was running."""
    current = _wait_while(("starting",), wait_s)
    if current.state != "running" or _ask(current.where, {"kind": "stop"}) != "stopping":
        return False
    _wait_while(("running", "starting"), wait_s)  # gone: its lock is free, its socket removed
    return True


def start(idle_minutes: float, wait_s: float = 180.0) -> tuple[Status, bool]:
    """Start a detached server (unless one runs) and wait until it answers: its status, and whether
    this call started it. OSError (UntrustedServerError) when it cannot."""
    where = server_files.place()
    problem = server_files.usable(where)
    if problem:
        raise OSError(problem)
    server_files.check_folder(where.folder, create=True)  # made, or made private if it is ours
    current = status()
    if current.state == "running" or current.problem:
        return current, False
    process = spawn(where, idle_minutes) if current.state == "none" else None
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        current = status()
        if current.state == "running" or current.problem:
            return current, process is not None
        if process is not None and process.poll() is not None and current.state == "none":
            raise OSError(f"the planning server exited (code {process.returncode}) before it answered; see {where.log}")
        time.sleep(0.1)
    raise OSError(f"the planning server did not answer within {wait_s:.0f} s; see {where.log}")


def server_environment() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name in _SERVER_ENV or name.startswith(_SERVER_ENV_PREFIXES)}


def spawn(where: Place, idle_minutes: float) -> subprocess.Popen[bytes]:
    """Start a server process detached from this one. `python -P` from the server's own private folder:
    never this caller's working folder on its import path."""
    import subprocess

    log = server_files.open_private_file(where.log, os.O_WRONLY | os.O_APPEND)
    try:
        if os.fstat(log).st_size > _MAX_LOG_BYTES:
            os.ftruncate(log, 0)
        command = [sys.executable, "-P", "-m", "pipeline.plan_server", "--idle-minutes", f"{idle_minutes:g}"]
        return subprocess.Popen(command, cwd=where.folder, env=server_environment(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, close_fds=True)
    finally:
        os.close(log)


def start_on_demand() -> None:
    """After a planning command planned in this process (so the next one would too): start a server
    in the background, if allowed (not off, not CI) and none is there or starting yet."""
    if not server_files.supported():
        return
    if server_files.setting() == "off" or (server_files.setting() == "auto" and in_ci()):
        return
    where = server_files.place()
    if server_files.usable(where):
        return
    try:
        server_files.check_folder(where.folder, create=True)
        if _lock_holder(where) is None:
            spawn(where, ON_DEMAND_IDLE_MINUTES)
    except UntrustedServerError as exc:
        warn(exc)
    except OSError:
        pass  # no server this time; the command's answer stands


def socket_path() -> Path:
    return server_files.place().socket
