"""A warm planning server: `pipeline plan`, `compare` and `diff` without paying for imports.

A fresh process spends most of a cache-missing `compare` importing pydantic, Pulumi and three
cloud SDKs. `pipeline server start` starts one process that imports them once and then waits on a
Unix socket private to the user. The console script, when that socket exists, hands the command
over: its arguments, working folder and environment, and its own stdin, stdout and stderr (passed
as file descriptors, so output goes straight to the caller's terminal or pipe, colours and all).
The server forks a child per command from its warm state; the child runs the very same CLI code
and reports the exit code. Nothing a command does touches the server's own state, and each
command starts from the same warm, clean copy.

The server refuses (and stops) when the tool's code or the installed distributions changed since
it started (the plan cache's fingerprint), so it never answers with stale code; the caller then
runs the command itself. It stops after `--idle-minutes` without a request, on `pipeline server
stop`, or on SIGTERM. POSIX only (fork and descriptor passing); `PIPELINE_SERVER=0` bypasses it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SERVED_COMMANDS = frozenset({"plan", "compare", "diff"})
PROTOCOL = 1
_MAX_REQUEST = 4 * 1024 * 1024


def supported() -> bool:
    return os.name == "posix" and hasattr(socket, "send_fds") and hasattr(os, "fork")


def socket_path() -> Path:
    """`$PIPELINE_SERVER_SOCKET`, else a folder of this user's under the runtime or temp folder
    (a Unix socket path must stay under ~100 bytes, which rules out deep cache folders)."""
    if os.environ.get("PIPELINE_SERVER_SOCKET"):
        return Path(os.environ["PIPELINE_SERVER_SOCKET"])
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"pipeline-deployer-{os.getuid()}" / "planner.sock"


def _private_folder(folder: Path) -> None:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise OSError(f"{folder} must belong to you and be private (mode 0700)")


# ---- client ---------------------------------------------------------------------------------------

def wanted(args: list[str]) -> bool:
    """Whether this command line should go to a running server."""
    if not supported() or os.environ.get("PIPELINE_SERVER", "").strip().lower() in ("0", "false", "no", "off"):
        return False
    command = next((a for a in args if not a.startswith("-")), "")
    return command in SERVED_COMMANDS and "--help" not in args and socket_path().exists()


def run_remote(args: list[str]) -> int | None:
    """Run `pipeline ARGS` in the server; its exit code, or None when no server took it (none
    running, or it declined because the tool changed): the caller then runs the command itself."""
    try:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.connect(str(socket_path()))
    except OSError:
        return None
    with connection, contextlib.ExitStack() as stack:
        descriptors = [_usable(fd, stack) for fd in (0, 1, 2)]
        body = json.dumps({"protocol": PROTOCOL, "argv": args, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
        try:
            socket.send_fds(connection, [struct.pack("!I", len(body))], descriptors)
            connection.sendall(body)
            answers = connection.makefile("rb")
            first = answers.readline().decode()
        except OSError:
            return None
        if not first.startswith("accepted "):
            return None  # declined (stale code) or gone: nothing was printed yet
        child = int(first.split()[1])
        while True:
            try:
                last = answers.readline().decode()
                break
            except KeyboardInterrupt:  # the child is not in this terminal's process group: pass Ctrl-C on
                with contextlib.suppress(OSError):
                    os.kill(child, signal.SIGINT)
        if last.startswith("exit "):
            return int(last.split()[1])
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


# ---- server ---------------------------------------------------------------------------------------

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
    import threading

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


def serve(idle_minutes: float) -> None:
    """Listen until idle for `idle_minutes`, stopped, or the tool's code changes."""
    path = socket_path()
    _private_folder(path.parent)
    _warm()
    started_with = _fingerprint()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    listener.bind(str(path))
    os.chmod(path, 0o600)
    listener.listen(16)
    listener.settimeout(idle_minutes * 60)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children report their own exit codes; the kernel reaps them
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    import gc

    gc.collect()
    gc.freeze()  # what the warm imports left is shared with every child, never scanned again
    print(f"planning server {os.getpid()} listening on {path}", flush=True)
    try:
        while True:
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                print("idle: stopping", flush=True)
                return
            with connection:
                if _handle(connection, listener, started_with) == "stop":
                    return
    finally:
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _peer_is_me(connection: socket.socket) -> bool:
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return True  # the socket's private folder is the guard where the kernel cannot tell
    _, uid, _ = struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i")))
    return bool(uid == os.getuid())


def _handle(connection: socket.socket, listener: socket.socket, started_with: str) -> str:
    connection.settimeout(10)
    descriptors: list[int] = []
    try:
        if not _peer_is_me(connection):
            return "refused"
        header, descriptors, _, _ = socket.recv_fds(connection, 4, 3)
        if len(header) != 4:
            return "refused"
        (length,) = struct.unpack("!I", header)
        if length > _MAX_REQUEST:
            return "refused"
        body = b""
        while len(body) < length:
            chunk = connection.recv(length - len(body))
            if not chunk:
                return "refused"
            body += chunk
        request = json.loads(body)
        if request.get("protocol") != PROTOCOL:
            connection.sendall(b"declined protocol\n")
            return "declined"
        if request.get("stop"):
            connection.sendall(b"stopping\n")
            return "stop"
        if request.get("status"):
            connection.sendall(f"running {os.getpid()}\n".encode())
            return "status"
        if len(descriptors) != 3:
            return "refused"
        if _fingerprint() != started_with:
            connection.sendall(b"declined stale\n")
            print("the tool or its dependencies changed: stopping", flush=True)
            return "stop"
        child = os.fork()
        if child == 0:
            listener.close()
            _run_child(connection, descriptors, request)  # never returns
        print(f"{time.strftime('%H:%M:%S')} pipeline {' '.join(map(str, request['argv']))[:200]} -> child {child}", flush=True)
        return "forked"
    except (OSError, ValueError):
        return "refused"
    finally:
        for fd in descriptors:
            os.close(fd)


def _run_child(connection: socket.socket, descriptors: list[int], request: dict[str, Any]) -> None:
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for target, fd in enumerate(descriptors):
            os.dup2(fd, target)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["pipeline", *request["argv"]]
        import gc

        gc.disable()  # as the console script runs these commands: a short life, no collections
        connection.sendall(f"accepted {os.getpid()}\n".encode())
        from pipeline.cli.app import main

        try:
            main(list(request["argv"]))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0
    except BaseException:  # whatever happens, the caller gets an exit code
        code = 1
    finally:
        from pipeline.cli.entry import flush_output

        flush_output()
        with contextlib.suppress(OSError):
            connection.sendall(f"exit {code}\n".encode())
        os._exit(code)


# ---- control (pipeline server start|stop|status) --------------------------------------------------

def _ask(message: dict[str, Any]) -> str | None:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(5)
            connection.connect(str(socket_path()))
            body = json.dumps({"protocol": PROTOCOL, **message}).encode()
            connection.sendall(struct.pack("!I", len(body)) + body)
            return connection.makefile("rb").readline().decode().strip()
    except OSError:
        return None


def status() -> str | None:
    """'running <pid>' when a server answers, else None."""
    return _ask({"status": True}) if socket_path().exists() else None


def stop() -> bool:
    return _ask({"stop": True}) == "stopping"


def start(idle_minutes: float, wait_s: float = 60) -> str:
    """Start a detached server and wait until it answers; returns its status line."""
    import subprocess

    path = socket_path()
    _private_folder(path.parent)
    log = path.parent / "server.log"
    with open(log, "ab") as output:
        subprocess.Popen([sys.executable, "-m", "pipeline.plan_server", str(idle_minutes)], stdin=subprocess.DEVNULL,
                         stdout=output, stderr=output, start_new_session=True, close_fds=True)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        answer = status()
        if answer:
            return answer
        time.sleep(0.1)
    raise OSError(f"the planning server did not start within {wait_s:.0f} s; see {log}")


if __name__ == "__main__":
    serve(float(sys.argv[1]) if len(sys.argv) > 1 else 30.0)
