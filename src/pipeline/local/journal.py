"""The files of a local run besides its objects: the journal (what is planned and done), the queued
writer that lands objects and journal lines in order, and `run.log`.

Kept apart from `runner.py` (the runner's logic) so each stays readable; used only by the local runner.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.local.stages import LocalRunError
from pipeline.runtime.store import LocalStore, Staged


def describe_os_error(exc: OSError, path: Path) -> str:
    """What failed in the environment, where, and what to do about it."""
    where = exc.filename or path
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"no space left on the device holding {where}: free some space (or pass --store with a folder on another "
                "disk), then run the same command again; the run resumes where it stopped")
    if exc.errno == errno.EROFS:
        return f"{where} is on a read-only file system: pass --store with a writable folder"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied for {where}: make it writable, or pass --store with a folder you can write to"
    return f"{exc.strerror or exc} ({where})"


def whole_lines(path: Path) -> bytes:
    """A file appended to line by line, without the torn last line a kill can leave (cut off the file too,
    so what is appended next starts a line of its own)."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        os.truncate(path, end)
    return data[:end]


class Journal:
    """Append-only progress log: `plan` before a batch runs, `done` after. Lines are tiny and
    written with one `write`, so a kill leaves at most one torn last line, dropped on load.
    The first line names the run (code fingerprint); an empty journal means a new run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: list[dict[str, Any]] = []
        if path.exists():
            data = whole_lines(path)
            for line in data.splitlines():
                try:
                    self.entries.append(json.loads(line))
                except ValueError:
                    continue
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    @property
    def header(self) -> dict[str, Any] | None:
        return self.entries[0] if self.entries and "fp" in self.entries[0] else None

    def append(self, entry: dict[str, Any]) -> None:
        os.write(self.fd, (json.dumps(entry, separators=(",", ":")) + "\n").encode())

    def clear(self, durable: bool) -> None:
        """No run at all: what a new run does first, before it empties the store, so a run killed while
        emptying it finds no run here and empties it again (never an old run's objects under a new header)."""
        os.ftruncate(self.fd, 0)
        if durable:
            os.fsync(self.fd)
        self.entries = []

    def begin(self, header: dict[str, Any]) -> None:
        """The new run's first line, once the store is empty."""
        self.entries = [header]
        self.append(header)

    def sync(self) -> None:
        """What was appended is on the disk (for the lines a promise to someone else rests on)."""
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


_Step = tuple[Any, ...]  # (_PUT, bucket, key, data), (_FILE, bucket, key, tmp) or (_CALL, function, args)
_PUT, _FILE, _CALL = "put", "file", "call"
FLUSH_S = 0.02  # what the runner asked for is handed to the writer at least this often (`QueuedWriter.tick`)


class QueuedWriter:
    """Does the store's writes (and their fsyncs) and the journal's appends on one thread, in order.

    What the runner asks for is collected in order and handed over every few inputs (`flush`, at
    least every FLUSH_S: one hand-over for many objects, not one per object, keeps the two threads
    from trading the GIL all the time; the disk's waits overlap the next inputs' work). The writer thread
    lands each hand-over in three passes: every object to its temporary file (objects' modification
    times keep the order asked, which schedules over accumulated objects read by), then every fsync
    (when the store is durable: the first flushes the disk for many files, so the rest wait little),
    then, in the order asked, each object renamed over its key and each journal line appended.

    That order keeps the invariant crash safety needs: a batch's `done` line reaches the journal
    only after every object it wrote was fsynced (when durable) and replaced, and its `plan` line
    before any of them. A kill loses a suffix of what was asked, which is the same as being killed
    a little earlier. After a failure nothing more lands, the journal least of all.
    """

    def __init__(self, store: LocalStore, depth: int = 64) -> None:
        self.store = store
        self.root = store.root
        self.written: list[tuple[str, str]] | None = None  # when a list: every (bucket, key) put from now on (serve's answers)
        self.pending: list[_Step] = []
        self.flushed = time.monotonic()
        self.queue: queue.Queue[list[_Step] | None] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, name="pipeline-writer", daemon=True)
        self.thread.start()

    # -- the main thread -------------------------------------------------------------------------------

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.pending.append((_PUT, bucket, key, data))
        if self.written is not None:
            self.written.append((bucket, key))

    def put_file(self, bucket: str, key: str, tmp: str) -> None:
        """An object a worker wrote to `tmp` (a temporary file next to the key): fsynced and renamed in order."""
        self.pending.append((_FILE, bucket, key, tmp))
        if self.written is not None:
            self.written.append((bucket, key))

    def submit(self, function: Callable[..., None], *args: Any) -> None:
        """`function(*args)` (a journal append) once everything asked before it has landed."""
        self.pending.append((_CALL, function, args))

    def tick(self) -> None:
        """`flush` if the last one was FLUSH_S ago (the runner calls this after each input it finished)."""
        if time.monotonic() - self.flushed >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        """Hand what was asked so far to the writer thread."""
        self.check()
        self.flushed = time.monotonic()
        if self.pending:
            steps, self.pending = self.pending, []
            self.queue.put(steps)

    def get(self, bucket: str, key: str) -> bytes:
        self.drain()
        return self.store.get(bucket, key)

    def drain(self) -> None:
        """Everything asked so far has landed (or a LocalRunError says why not)."""
        self.flush()
        self.queue.join()
        self.check()

    def close(self) -> None:
        """Land what was asked (unless something failed), then stop the thread."""
        if self.error is None and self.pending:
            self.queue.put(self.pending)
        self.pending = []
        self.queue.put(None)
        self.thread.join()

    def check(self) -> None:
        """Raise the LocalRunError saying why writing failed, if it did."""
        if self.error is not None:
            error = self.error
            if isinstance(error, OSError):
                raise LocalRunError(f"writing to the local store failed: {describe_os_error(error, Path(self.store.root))}") from error
            raise LocalRunError(f"writing to the local store failed: {type(error).__name__}: {error}") from error

    # -- the writer thread -------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            steps = self.queue.get()
            try:
                if steps is None:
                    return
                if self.error is None:
                    self._land(steps)
                else:
                    self._drop(steps)
            except BaseException as exc:
                self.error = exc
            finally:
                self.queue.task_done()

    def _drop(self, steps: list[_Step]) -> None:
        """Steps that will not land: the temporary files workers wrote for them go."""
        for step in steps:
            if step[0] == _FILE:
                with contextlib.suppress(ValueError):  # (a path that is no temporary file of its key is left alone)
                    self.store.discard(self.store.staged(*step[1:]))

    def _land(self, steps: list[_Step]) -> None:
        """Land `steps` in three passes (see the class); when one fails (the disk is full), what was asked
        before it still lands, nothing after it, and the failure is raised."""
        store = self.store
        done: list[Any] = []  # Staged objects and journal calls, in order
        failure: BaseException | None = None
        try:
            for step in steps:
                kind = step[0]
                done.append(store.write_temp(*step[1:]) if kind == _PUT else store.staged(*step[1:]) if kind == _FILE else step)
        except BaseException as exc:
            failure = self.error = exc  # (before the temporary files go: a reader that misses one must find the cause here)
            self._drop(steps[len(done) + 1:])
        cut = len(done)
        for i, item in enumerate(done):
            if isinstance(item, Staged):
                try:
                    store.sync(item)  # (closes the file, and removes it when the fsync failed)
                except BaseException as exc:
                    failure, cut = exc, i
                    self.error = exc
                    break
        for item in done[cut + 1:]:  # not fsynced: still open when the store is durable
            if isinstance(item, Staged):
                if item.fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(item.fd)
                store.discard(item)
        for i in range(cut):
            item = done[i]
            try:
                if isinstance(item, Staged):
                    store.publish(item)
                else:
                    item[1](*item[2])
            except BaseException as exc:
                self.error = exc
                for rest in done[i + 1:cut]:
                    if isinstance(rest, Staged):
                        store.discard(rest)
                raise
        if failure is not None:
            raise failure


class RunLog(io.TextIOBase):
    """`run.log` (JSON lines from every stage and the runner) and the live view of the same lines."""

    def __init__(self, path: Path, pipeline: str, on_log: Callable[[dict[str, Any]], None] | None) -> None:
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self.pipeline, self.on_log = pipeline, on_log

    def write(self, text: str) -> int:  # a JSON log line of the runner's own logger
        self.file.write(text)
        if self.on_log is not None:
            for line in text.splitlines():
                self.on_log(json.loads(line))
        return len(text)

    def worker_line(self, stage: str, text: str) -> None:
        """A line a worker printed: a JSON log line (the handler's logger or the runtime's) or plain output."""
        entry = None
        if text.startswith('{"time"'):
            with contextlib.suppress(ValueError):
                entry = json.loads(text)
        if isinstance(entry, dict) and "message" in entry:
            self.file.write(text + "\n")
        else:
            entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z", "level": "INFO", "severity": "INFO",
                     "message": text, "pipeline": self.pipeline, "stage": stage, "stream": "output"}
            self.file.write(json.dumps(entry, ensure_ascii=False) + "\n")
        if self.on_log is not None:
            self.on_log(entry)

    def restart(self) -> None:
        self.file.seek(0)
        self.file.truncate()

    def close(self) -> None:
        self.file.close()
        super().close()
