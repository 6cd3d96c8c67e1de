"""The runner's side of a stage's worker process (see `worker.py`): start it, send it one input,
wait for the reply within the stage's `timeout_s`, and turn every way it can go wrong into a reply.

A reply is "ok" (the result and the objects to write, staged in temporary files), "failed" (the
handler failed the whole input: retry it), "crashed" (the process exited, was killed, or ran past
its timeout and was stopped: also retried, after a new process is started on the next call) or
"store_failed" (the disk refused a write: the run stops). Whatever the handler prints goes to
`on_line` as it arrives.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pipeline
import pipeline.runtime as runtime_package
from pipeline.local.lines import LineSplitter
from pipeline.local.worker import read_frame, write_frame

# Frames of the runner and of the function runtime under it (not the user's) are left out of a hang report.
_RUNTIME_DIRS = frozenset({os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.abspath(runtime_package.__file__ or ""))})
# The worker imports the same `pipeline` as this process, then takes that folder off its path again:
# a handler's imports must resolve as they would anywhere else (site-packages after the stdlib).
_BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from pipeline.local.worker import main; sys.path.remove(sys.argv[1]); main()"
_PIPE_SIZE = 1 << 20
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+) in (?P<name>\S+)')
_DUMP_WAIT_S = 0.5  # how long a hung worker gets to print where it hangs before it is killed
_TIMED_OUT = ("timed out",)
_CLOSED = ("closed",)


class Reply(NamedTuple):
    status: str  # "ok", "failed", "crashed" or "store_failed" (error: the OSError's errno, strerror and filename)
    result: dict[str, Any]
    puts: list[tuple[str, str, str]]  # (bucket, key, the temporary file the worker wrote it to), in order
    error: dict[str, Any] | None


def _widen(fd: int) -> None:
    """Bigger pipes: a whole batch crosses in one or two system calls (Linux; elsewhere a no-op)."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_SIZE)


def _error(kind: str, message: str, trace: Sequence[str] = ()) -> dict[str, Any]:
    return {"type": kind, "message": message, "traceback": list(trace)}


def _hang_frames(lines: Sequence[str]) -> list[str]:
    """Where the handler hangs, from faulthandler's dump: the main thread's user frames, innermost last."""
    blocks: list[list[str]] = [[]]
    for line in lines:
        if line.startswith(("Thread 0x", "Current thread 0x")):
            blocks.append([])
        elif (match := _FRAME.search(line)) is not None:
            blocks[-1].append(line)
    main = next((b for b in blocks if any("worker.py" in line and " in main" in line for line in b)), blocks[-1])
    frames = []
    for line in reversed(main):  # faulthandler prints the most recent call first
        match = _FRAME.search(line)
        assert match is not None
        if os.path.dirname(os.path.abspath(match["file"])) not in _RUNTIME_DIRS:
            frames.append(f"{os.path.basename(match['file'])}:{match['line']} in {match['name']}")
    return frames[-5:]


class StageProcess:
    """One stage's worker process, started on first use and again after it crashed or was stopped."""

    def __init__(self, stage: str, env: Mapping[str, str], root: Path, store: str, paths: Sequence[str], timeout_s: float,
                 on_line: Callable[[str, str], None]) -> None:
        self.stage, self.env, self.root, self.paths, self.timeout_s = stage, dict(env), root, list(paths), timeout_s
        self.store = store  # the store's folder: the worker writes its objects' temporary files there
        self.on_line = on_line
        self.process: subprocess.Popen[bytes] | None = None
        self.requests = self.replies = self.output = -1
        self.splitter = LineSplitter()
        self.captured: list[str] | None = None  # lines kept while a hung worker dumps its stack
        self.deadline = 0.0  # when the input in progress must be done
        self.peers: list[StageProcess] = []  # the other stages' workers, whose output is forwarded while waiting here

    # -- starting -----------------------------------------------------------------------------------

    def spawn(self) -> None:
        """Start the process; `ready()` waits for it to import the handler (start several, then wait)."""
        request_read, self.requests = os.pipe()
        self.replies, reply_write = os.pipe()
        for fd in (self.requests, reply_write):
            _widen(fd)
        config = {"requests": request_read, "replies": reply_write, "root": str(self.root), "store": self.store, "paths": self.paths}
        code_root = str(Path(pipeline.__file__).resolve().parent.parent)  # the same `pipeline` as this process
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-u", "-c", _BOOT, code_root, json.dumps(config)],
                env=self.env, cwd=self.root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                pass_fds=(request_read, reply_write), start_new_session=True)  # Ctrl-C in a terminal reaches the runner only
        finally:
            os.close(request_read)
            os.close(reply_write)
        assert self.process.stdout is not None
        self.output = self.process.stdout.fileno()
        _widen(self.output)  # a handler that prints a lot does not block while the runner waits on another stage
        os.set_blocking(self.output, False)
        self.splitter = LineSplitter()

    def ready(self) -> dict[str, Any] | None:
        """None once the handler is imported; else what went wrong (and the process is gone)."""
        assert self.process is not None
        limit = max(self.timeout_s, 10.0)
        message = self._wait(time.monotonic() + limit)
        if message is _TIMED_OUT:
            return self._lost(f"importing the handler took longer than {limit:g} s")
        if message is _CLOSED:
            return self._exited()
        if message[0] == "error":
            self.stop()
            error: dict[str, Any] = message[1]
            return error
        return None

    # -- one input ----------------------------------------------------------------------------------

    def call(self, request: tuple[Any, ...]) -> Reply:
        return self.send(request) or self.receive()

    def send(self, request: tuple[Any, ...]) -> Reply | None:
        """Hand the worker one input and return at once (it computes while the runner does other work);
        `receive` gets the reply. A crashed Reply right away when the worker could not take the input."""
        if self.process is None:
            self.spawn()
            error = self.ready()
            if error is not None:
                return Reply("crashed", {}, [], error)
        try:
            write_frame(self.requests, request)
        except OSError:  # the process is gone (BrokenPipeError)
            return Reply("crashed", {}, [], self._exited())
        self.deadline = time.monotonic() + self.timeout_s  # the worker was idle: it starts on the input now
        return None

    def receive(self) -> Reply:
        """The reply to the input `send` handed over; a worker still running past its deadline is stopped."""
        message = self._wait(self.deadline)
        if message is _TIMED_OUT:
            return Reply("crashed", {}, [], self._stop_hung())
        if message is _CLOSED:
            return Reply("crashed", {}, [], self._exited())
        if message[0] == "ok":
            return Reply("ok", message[1], message[2], None)
        if message[0] == "exited":
            self.stop()
            return Reply("crashed", {}, [], message[1])
        return Reply(message[0], {}, [], message[1])  # "failed" or "store_failed"

    def _wait(self, deadline: float) -> Any:
        """The next message, or _TIMED_OUT when none came by `deadline`, or _CLOSED when the process is gone.
        Meanwhile what this worker and the other busy workers print is forwarded (a worker whose output
        pipe filled up would block). A reply that is there is taken even past the deadline: the runner
        may come for it late (it pipelines), and the worker finished in time."""
        while True:
            left = max(0.0, deadline - time.monotonic())
            peers = [p for p in self.peers if p is not self and p.output >= 0]
            watched = [self.replies] + ([self.output] if self.output >= 0 else []) + [p.output for p in peers]
            ready, _, _ = select.select(watched, [], [], left)
            if not ready and time.monotonic() >= deadline:
                return _TIMED_OUT
            for peer in peers:
                if peer.output in ready:
                    peer._forward()
            if self.output >= 0 and self.output in ready:
                self._forward()
            if self.replies in ready:
                message = read_frame(self.replies)
                self._forward()  # everything printed before the reply, in order
                return _CLOSED if message is None else message

    def _forward(self) -> None:
        while self.output >= 0:
            try:
                chunk = os.read(self.output, 1 << 16)
            except BlockingIOError:
                return
            if not chunk:
                lines = self.splitter.finish()
                self.output = -1
            else:
                lines = self.splitter.feed(chunk)
            for raw in lines:
                text = raw.decode("utf-8", "replace").rstrip("\r\n")
                if self.captured is not None:
                    self.captured.append(text)
                self.on_line(self.stage, text)

    # -- endings ------------------------------------------------------------------------------------

    def _stop_hung(self) -> dict[str, Any]:
        """Past its timeout: ask where it hangs (faulthandler, SIGUSR1), then kill its whole process group."""
        assert self.process is not None
        self.captured = []
        with contextlib.suppress(OSError):
            os.killpg(self.process.pid, signal.SIGUSR1)
        quiet_until = time.monotonic() + _DUMP_WAIT_S
        while self.output >= 0 and time.monotonic() < quiet_until:
            ready, _, _ = select.select([self.output], [], [], quiet_until - time.monotonic())
            if not ready:
                break
            self._forward()
        frames = _hang_frames(self.captured)
        self.captured = None
        return self._lost(f"the invocation ran longer than the stage's timeout_s ({self.timeout_s:g} s) and was stopped",
                          "TimeoutError", frames)

    def _lost(self, message: str, kind: str = "TimeoutError", frames: Sequence[str] = ()) -> dict[str, Any]:
        self.stop(kill=True)
        return _error(kind, message, frames)

    def _exited(self) -> dict[str, Any]:
        """The process ended without a reply: os._exit(), a crash in native code, or killed (out of memory?)."""
        assert self.process is not None
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        self._forward()
        self.stop(kill=True)
        if code is None or code >= 0:
            return _error("ProcessExited", f"the handler's process exited with code {code} without finishing the input "
                                           "(os._exit() in the handler, or a crash?)")
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return _error("ProcessKilled", f"the handler's process was killed by {name}{hint} before it finished the input")

    def hang_up(self) -> None:
        """Close the worker's input: it exits once its current input is done (`stop` waits for that)."""
        if self.requests >= 0:
            with contextlib.suppress(OSError):
                os.close(self.requests)
            self.requests = -1

    def stop(self, kill: bool = False) -> None:
        """End the process: politely (close its input, it exits) or, with `kill`, at once with its children."""
        process, self.process = self.process, None
        for fd in (self.requests, self.replies):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.requests = self.replies = -1
        if process is None:
            return
        if not kill:
            try:
                process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                kill = True
        if kill and process.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        with contextlib.suppress(OSError):
            self._forward()
        if process.stdout is not None:
            process.stdout.close()
        self.output = -1
