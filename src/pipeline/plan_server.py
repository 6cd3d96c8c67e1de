"""A warm planning server: `pipeline plan`, `compare` and `diff` without paying for imports.

A fresh process spends most of a cache-missing `compare` importing pydantic, Pulumi and three
cloud SDKs. The server imports them once (and plans every role once), then waits on a Unix socket
private to the user. The console script (`pipeline.plan_client`) hands a command over: its
arguments, working folder, environment, umask, resource limits and its own stdin, stdout and
stderr (passed as file descriptors, so output goes straight to the caller's terminal or pipe). The
server forks a child per command from its warm state; the child takes on the caller's process
settings, rebuilds its standard streams as the caller's interpreter had them, runs the very same
CLI code and reports the exit code. Nothing a command does touches the server's own state.

What it trusts and refuses (see `pipeline.server_files` for the folder, socket and peer checks):

* only connections from its own uid; a request is read without blocking the server (several
  clients may connect at once; one that sends nothing is dropped after `_REQUEST_TIMEOUT_S`), must
  be a JSON object of exactly the expected shape, and anything else is refused with a reason
  while the server goes on;
* a caller of another installation, or whose interpreter settings or groups differ, is declined
  (the caller plans in-process); a caller of this installation whose code or packages changed
  (a different fingerprint) is declined and the server stops, since it is stale;
* a child dies with its caller: it watches the connection and kills itself when the caller is gone
  (SIGTERM, SIGHUP, `timeout`, a closed terminal), so nothing is written after the caller gave up;
  Ctrl-C in the caller arrives as SIGINT, as it would in-process.

One server per installation holds an exclusive lock (its pid inside) from start to exit, so two
concurrent starts leave one server and `pipeline server status` can tell "starting" and "running"
apart even while a client keeps it busy. It stops after its idle time without a request, on
`pipeline server stop`, on SIGTERM, or when its code is found stale. It is started with `python -P`
from its own private folder, so no caller's working folder is ever on its import path.
POSIX only (fork and descriptor passing).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import resource
import selectors
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import server_files
from pipeline.server_files import LIMITS, PROTOCOL, interpreter_settings

_MAX_REQUEST = 4 * 1024 * 1024
_REQUEST_TIMEOUT_S = 10.0


# ---- requests -------------------------------------------------------------------------------------

class RequestError(ValueError):
    """A request that is not of the expected shape; the reason goes back to the sender."""


@dataclass(frozen=True)
class Command:
    """A validated request to run one command."""

    argv: list[str]
    argv0: str
    cwd: str
    env: dict[str, str]
    umask: int
    installation: str
    fingerprint: str
    settings: dict[str, Any]
    stdio: list[list[Any] | None]  # per stream: [encoding, errors, line_buffering, write_through], None when closed
    limits: dict[str, int]
    nice: int


def _expect(ok: bool, what: str) -> None:
    if not ok:
        raise RequestError(what)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def parse_request(body: bytes) -> dict[str, Any] | Command:
    """A control request ({"kind": "status"} or "stop") or a Command; RequestError for anything else."""
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise RequestError("not JSON") from None
    _expect(isinstance(request, dict), "not a JSON object")
    _expect(request.get("protocol") == PROTOCOL, f"protocol {request.get('protocol')!r} (this server speaks {PROTOCOL})")
    kind = request.get("kind")
    if kind in ("status", "stop"):
        return {"kind": kind}
    _expect(kind == "run", f"unknown kind {kind!r}")
    _expect(_strings(request.get("argv")) and bool(request["argv"]), "argv must be a non-empty list of strings")
    for name in ("argv0", "cwd", "installation", "fingerprint"):
        _expect(isinstance(request.get(name), str), f"{name} must be a string")
    _expect(os.path.isabs(request["cwd"]), "cwd must be an absolute path")
    env = request.get("env")
    _expect(isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str) and k and "=" not in k and "\0" not in k + v
                                          for k, v in env.items()), "env must map names to strings")
    _expect(isinstance(request.get("umask"), int) and 0 <= request["umask"] <= 0o777, "umask must be 0-0777")
    _expect(isinstance(request.get("nice"), int), "nice must be a number")
    _expect(isinstance(request.get("settings"), dict), "settings must be an object")
    stdio = request.get("stdio")
    _expect(isinstance(stdio, list) and len(stdio) == 3 and all(
        s is None or (isinstance(s, list) and len(s) == 4 and isinstance(s[0], str) and isinstance(s[1], str)
                      and isinstance(s[2], bool) and isinstance(s[3], bool)) for s in stdio), "stdio must describe three streams")
    limits = request.get("limits")
    _expect(isinstance(limits, dict) and set(limits) <= set(LIMITS) and all(isinstance(v, int) for v in limits.values()),
            "limits must map known limits to numbers")
    return Command(request["argv"], request["argv0"], request["cwd"], env, request["umask"], request["installation"],
                   request["fingerprint"], request["settings"], stdio, limits, request["nice"])


# ---- warming up ------------------------------------------------------------------------------------

def _warm() -> None:
    """Import what a plan needs; never the CLI's consoles (they must see each caller's terminal)."""
    import pydantic  # noqa: F401
    import rich.console
    import rich.table  # noqa: F401
    import typer  # noqa: F401

    import pipeline.compare
    import pipeline.planner  # noqa: F401
    from pipeline import sdk_modules
    from pipeline.backend import backend_class, backend_names

    sdk_modules.install()
    for name in backend_names():
        backend_class(name)
    _plan_every_role()


# Every role and trigger kind, so planning it once loads every SDK module a plan can touch.
_WARM_SPEC = """\
name: warm-up
clouds: {gcp: {project: warm-up-project}}
stream: {archive: true}
uploads: {name: uploads}
workload: {records_per_second: 10}
stages:
  - {name: clean, handler: "h.py:handle", trigger: {stream: {}}}
  - {name: files, handler: "h.py:handle", trigger: {objects: {from: uploads}}}
  - {name: score, handler: "h.py:handle", trigger: {objects: {from: clean}}, model: model.json}
  - {name: batch, handler: "h.py:handle", trigger: {schedule: rate(1 hour), from: score}, timeout_s: 900, memory_mb: 2048}
  - {name: api, handler: "h.py:handle", trigger: {http: {}}}
"""


def _plan_every_role() -> None:
    """Plan a spec with every role on every cloud once, in this process: later children find every
    module imported. (The planner resets Pulumi's global state at each plan.)"""
    from pipeline.backend import backend_names
    from pipeline.errors import PipelineError, SpecError
    from pipeline.planner import plan
    from pipeline.spec.load import load_spec

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "h.py").write_text("def handle(records, context):\n    return []\n")
        (root / "model.json").write_text("{}")
        (root / "pipeline.yaml").write_text(_WARM_SPEC)
        loaded = load_spec(root / "pipeline.yaml")
        for name in backend_names():
            with contextlib.suppress(PipelineError, SpecError):  # a cloud that cannot plan it still warmed its imports
                plan(loaded, name)
    _stop_worker_threads()


def _stop_worker_threads() -> None:
    """Planning leaves the event loop's default thread pool running. A fork copies only the forking
    thread, so a child would queue work for threads it does not have and wait forever: stop the
    pool (the loop starts a new one when a child needs it) and fork from a single thread."""
    import asyncio

    loop = asyncio.get_event_loop_policy().get_event_loop()
    executor = getattr(loop, "_default_executor", None)
    if executor is not None:
        executor.shutdown(wait=True)
        loop._default_executor = None  # type: ignore[attr-defined]
    if threading.active_count() != 1:
        raise RuntimeError(f"cannot fork safely: threads still running: {threading.enumerate()}")


def _fingerprint() -> str:
    from pipeline.plan_cache import tool_fingerprint

    return tool_fingerprint.__wrapped__()


# ---- the server ------------------------------------------------------------------------------------

def _log(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)


@dataclass
class _Pending:
    """A connection whose request is still arriving."""

    connection: socket.socket
    deadline: float
    data: bytearray = field(default_factory=bytearray)
    descriptors: list[int] = field(default_factory=list)

    def close(self) -> None:
        for fd in self.descriptors:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.descriptors.clear()
        self.connection.close()


class _StopServingError(Exception):
    """Leave the loop (stop asked for, idle, or stale code)."""


class Server:
    def __init__(self, where: server_files.Place, lock: int, fingerprint: str, idle_s: float):
        self.where, self.lock, self.fingerprint, self.idle_s = where, lock, fingerprint, idle_s
        self.installation = server_files.installation_id()
        self.settings = interpreter_settings()
        self.selector = selectors.DefaultSelector()
        self.pending: dict[int, _Pending] = {}
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.bound = 0  # the socket's inode once bound: removed at exit only if it is still ours
        self.last_request = time.monotonic()

    def bind(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.where.socket)  # a crashed server's: only the lock holder gets here
        previous = os.umask(0o177)
        try:
            self.listener.bind(str(self.where.socket))
        finally:
            os.umask(previous)
        os.chmod(self.where.socket, 0o600)
        self.bound = os.lstat(self.where.socket).st_ino
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.selector.register(self.listener, selectors.EVENT_READ)

    def run(self) -> str:
        """Serve until stopped; the reason."""
        try:
            while True:
                self._turn()
        except _StopServingError as stop:
            return str(stop)
        finally:
            self._close()

    def _turn(self) -> None:
        now = time.monotonic()
        deadlines = [self.last_request + self.idle_s, *(p.deadline for p in self.pending.values())]
        for key, _ in self.selector.select(max(0.0, min(deadlines) - now)):
            try:
                if key.fileobj is self.listener:
                    self._accept()
                else:
                    self._receive(self.pending[key.fd])
            except _StopServingError:
                raise
            except Exception as exc:  # nothing a client sends may stop the server
                _log(f"dropped a connection: {type(exc).__name__}: {exc}")
                found = self.pending.get(key.fd)
                if found is not None:
                    self._forget(found)
        now = time.monotonic()
        for pending in [p for p in self.pending.values() if p.deadline <= now]:
            _log("dropped a connection that sent no whole request in time")
            self._forget(pending)
        if not self.pending and now >= self.last_request + self.idle_s:
            raise _StopServingError(f"idle for {self.idle_s / 60:g} minutes: stopping")

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except BlockingIOError:
                return
            if server_files.peer_uid(connection) not in (None, os.getuid()):
                connection.close()
                continue
            connection.setblocking(False)
            pending = _Pending(connection, time.monotonic() + _REQUEST_TIMEOUT_S)
            self.pending[connection.fileno()] = pending
            self.selector.register(connection, selectors.EVENT_READ)

    def _forget(self, pending: _Pending) -> None:
        self.pending.pop(pending.connection.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(pending.connection)
        pending.close()

    def _receive(self, pending: _Pending) -> None:
        try:
            data, descriptors, flags, _ = socket.recv_fds(pending.connection, 65536, 3)
        except BlockingIOError:
            return
        pending.descriptors += descriptors
        if flags & getattr(socket, "MSG_CTRUNC", 0) or len(pending.descriptors) > 3:
            return self._refuse(pending, "too many descriptors")
        if not data:
            return self._forget(pending)  # gone before finishing its request
        pending.data += data
        if len(pending.data) < 4:
            return None
        (length,) = struct.unpack("!I", pending.data[:4])
        if length > _MAX_REQUEST:
            return self._refuse(pending, "request too large")
        if len(pending.data) < 4 + length:
            return None
        if len(pending.data) > 4 + length:
            return self._refuse(pending, "bytes after the request")
        self.selector.unregister(pending.connection)
        self.pending.pop(pending.connection.fileno(), None)
        try:
            self._answer(pending, bytes(pending.data[4:]))
        finally:
            pending.close()
        return None

    def _refuse(self, pending: _Pending, why: str) -> None:
        _log(f"refused a request: {why}")
        with contextlib.suppress(OSError):
            pending.connection.setblocking(True)
            pending.connection.settimeout(1)
            pending.connection.sendall(f"refused {why}\n".encode())
        self._forget(pending)

    def _answer(self, pending: _Pending, body: bytes) -> None:
        connection = pending.connection
        connection.setblocking(True)
        connection.settimeout(5)
        try:
            request = parse_request(body)
        except RequestError as exc:
            _log(f"refused a request: {exc}")
            with contextlib.suppress(OSError):
                connection.sendall(f"refused {exc}\n".encode())
            return
        if isinstance(request, dict):
            if request["kind"] == "status":
                connection.sendall(f"running {os.getpid()} {self.installation}\n".encode())
                return
            connection.sendall(b"stopping\n")
            raise _StopServingError("stop asked for: stopping")
        self.last_request = time.monotonic()
        reason = self._declined(request, len(pending.descriptors))
        if reason:
            with contextlib.suppress(OSError):
                connection.sendall(f"declined {reason}\n".encode())
            _log(f"declined pipeline {request.argv[0]}: {reason}")
            if reason.startswith("stale"):
                raise _StopServingError("the tool or its packages changed: stopping")
            return
        try:
            child = os.fork()
        except OSError as exc:  # no memory or processes left: the caller runs the command itself
            with contextlib.suppress(OSError):
                connection.sendall(f"declined cannot fork: {exc.strerror}\n".encode())
            return
        if child == 0:
            descriptors, pending.descriptors = pending.descriptors, []
            _child(connection, descriptors, request, self._close_in_child)  # never returns
        _log(f"pipeline {' '.join(request.argv)[:200]} -> child {child}")  # the caller's descriptors are closed with `pending`

    def _declined(self, request: Command, descriptors: int) -> str | None:
        if descriptors != 3:
            return "no terminal descriptors"
        if request.installation != self.installation:
            return "another installation"
        if request.fingerprint != self.fingerprint:
            return "stale: the tool or its packages changed since this server started"
        different = sorted(name for name, value in self.settings.items() if request.settings.get(name) != value)
        if different:
            return f"different interpreter settings: {', '.join(different)}"
        return None

    def _close_in_child(self) -> None:
        """Everything of the server's a child must not keep: the listener, other callers' connections,
        the selector and the lock (held open, it would keep the lock after the server is gone)."""
        for pending in self.pending.values():
            pending.close()
        self.selector.close()
        self.listener.close()
        os.close(self.lock)

    def _close(self) -> None:
        for pending in list(self.pending.values()):
            self._forget(pending)
        self.selector.close()
        self.listener.close()
        with contextlib.suppress(OSError):
            if self.bound and os.lstat(self.where.socket).st_ino == self.bound:
                os.unlink(self.where.socket)


def serve(idle_minutes: float) -> int:
    """Run this installation's server here (the process `pipeline server start` spawns)."""
    where = server_files.place()
    problem = server_files.usable(where)
    if problem:
        _log(problem)
        return 1
    try:
        server_files.check_folder(where.folder, create=True)
        lock = server_files.open_private_file(where.lock, os.O_RDWR)
    except OSError as exc:
        _log(f"cannot start: {exc}")
        return 1
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        _log("another planning server of this installation is running: not starting a second one")
        return 0
    os.ftruncate(lock, 0)
    os.pwrite(lock, f"{os.getpid()}\n".encode(), 0)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    before = _fingerprint()
    _warm()
    fingerprint = _fingerprint()
    if fingerprint != before:
        _log("the tool or its packages changed while warming up: stopping")
        return 1
    server = Server(where, lock, fingerprint, idle_minutes * 60)
    server.bind()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children report their own exit codes; the kernel reaps them
    import gc

    gc.collect()
    gc.freeze()  # what the warm imports left is shared with every child, never scanned again
    _log(f"planning server {os.getpid()} listening on {where.socket}")
    _log(server.run())
    return 0


# ---- a command's child -----------------------------------------------------------------------------

def _child(connection: socket.socket, descriptors: list[int], command: Command, close_server: Callable[[], None]) -> None:
    """Become the caller's command: its process settings and streams, then the CLI. Never returns."""
    code = 1
    try:
        close_server()
        for number in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(number, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)  # a group of its own: `compare --jobs` workers go with it (see _watch_caller)
        connection.settimeout(None)
        problem = _take_on(command, descriptors)
        if problem:
            with contextlib.suppress(OSError):
                connection.sendall(f"declined {problem}\n".encode())
            os._exit(0)
        import gc

        gc.disable()  # as the console script runs these commands: a short life, no collections
        connection.sendall(f"accepted {os.getpid()}\n".encode())
        threading.Thread(target=_watch_caller, args=(connection,), daemon=True).start()
        from pipeline.cli.app import main

        try:
            main(list(command.argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:  # Ctrl-C before the CLI's own handler was in place
        from pipeline.cli.exiting import report_interrupt

        code = report_interrupt(command.argv)
    except BaseException:  # whatever happens, the caller gets an exit code
        code = 1
    finally:
        from pipeline.cli.exiting import flush_output

        flush_output()
        with contextlib.suppress(OSError):
            connection.sendall(f"exit {code}\n".encode())
        os._exit(code)


def _take_on(command: Command, descriptors: list[int]) -> str | None:
    """The caller's umask, limits, priority, folder, environment and standard streams; why not, if one cannot be had."""
    os.umask(command.umask)
    for name, soft in command.limits.items():
        number = getattr(resource, name, None)
        if number is None:
            continue  # a limit this platform does not have
        _, hard = resource.getrlimit(number)
        if hard != resource.RLIM_INFINITY and (soft == resource.RLIM_INFINITY or soft > hard):
            return f"the caller's {name} is above this server's"
        try:
            resource.setrlimit(number, (soft, hard))
        except (ValueError, OSError) as exc:
            return f"cannot set {name}: {exc}"
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if command.nice > current:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, command.nice)
    try:
        os.chdir(command.cwd)
    except OSError as exc:
        return f"cannot enter {command.cwd}: {exc.strerror}"
    os.environ.clear()
    os.environ.update(command.env)
    sys.argv = [command.argv0, *command.argv]
    for target, fd in enumerate(descriptors):
        os.dup2(fd, target)
        os.close(fd)
    sys.stdin, sys.stdout, sys.stderr = (_stream(fd, shape) for fd, shape in enumerate(command.stdio))  # type: ignore[assignment]
    return None


def _stream(fd: int, shape: list[Any] | None) -> io.TextIOWrapper | None:
    """A standard stream as the caller's interpreter made it (encoding, errors, buffering)."""
    if shape is None:
        return None
    encoding, errors, line_buffering, write_through = shape
    buffered = fd == 0 or not write_through  # CPython's create_stdio: stdin always buffered, -u leaves the others raw
    binary: Any = open(fd, "rb" if fd == 0 else "wb", buffering=-1 if buffered else 0, closefd=False)  # noqa: SIM115 (the process's stream)
    with contextlib.suppress(AttributeError):
        (binary.raw if buffered else binary).name = ("<stdin>", "<stdout>", "<stderr>")[fd]
    stream = io.TextIOWrapper(binary, encoding=encoding, errors=errors, newline="\n", line_buffering=line_buffering, write_through=write_through)
    with contextlib.suppress(AttributeError):
        stream.mode = "r" if fd == 0 else "w"  # type: ignore[misc]
    return stream


def _watch_caller(connection: socket.socket) -> None:
    """The caller's Ctrl-C arrives as b"i" and goes to the command's process group, as a terminal's
    would; the caller gone (killed, timed out, its terminal closed) ends the command and any worker
    it started at once, so nothing is written after the caller gave up."""
    while True:
        try:
            data = connection.recv(1)
        except OSError:
            data = b""
        if data == b"i":
            _signal_command(signal.SIGINT)
        elif not data:
            _signal_command(signal.SIGKILL)


def _signal_command(number: int) -> None:
    """This process and its workers, when it leads a process group of its own (never the server's)."""
    if os.getpgid(0) == os.getpid():
        os.killpg(os.getpid(), number)
    else:
        os.kill(os.getpid(), number)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -P -m pipeline.plan_server", description="The warm planning server (use `pipeline server start`).")
    parser.add_argument("--idle-minutes", type=float, default=30.0)
    args = parser.parse_args(argv)
    sys.exit(serve(args.idle_minutes))


if __name__ == "__main__":
    main()
