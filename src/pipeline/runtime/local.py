"""`pipeline run`: the whole pipeline on this machine, through the same runtime the functions use.

Records from a JSON-lines file (or stdin) are batched like the stream trigger would batch them
(batch size, batching window), archived raw, and fed to each stream stage; every output object
triggers the stages that read it; schedule stages run on each `--tick` and once at the end.
Buckets and keys land under `.pipeline/local/<pipeline>/<stack>/` exactly as they would in the cloud.

Handlers run in one worker process per stage (`worker.py`), as they would in their own function:
a handler that exits, crashes or runs past `timeout_s` fails that invocation, which is retried per
the stage's `retries` and then dead-lettered, and the run goes on. Workers only compute; this
process writes every object and the journal.

Crash safety without a database: input record N is line N of the input, so batch boundaries
are line ranges; before a batch runs its range (and a digest of its lines) is appended to a
journal, after it and everything it triggered finished a `done` line follows. Outputs go to
deterministic keys through atomic replaces. A run killed at any moment and started again replays
the journal: done batches are skipped, planned ones are re-run with the same boundaries and
overwrite whatever they had written. Nothing is lost and nothing is written twice.

A journal belongs to one input and one version of the code (a fingerprint of the spec and the
handlers' files): different code, or an input that disagrees with the journal, starts a new run
(the store is emptied first) instead of mixing outputs of two runs.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
import zlib
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TextIO, cast

from pipeline.runtime import keys
from pipeline.runtime.context import Context
from pipeline.runtime.invoke import Settings, StageRunner
from pipeline.runtime.lines import LINE_WIDTH, PARTITION, LineRecord, file_chunks, pipe_chunks
from pipeline.runtime.local_deps import RequirementsError, installed_path
from pipeline.runtime.logs import JsonLogger
from pipeline.runtime.records import Record
from pipeline.runtime.stage_process import Reply, StageProcess
from pipeline.runtime.store import LocalStore
from pipeline.runtime.watch import fingerprint
from pipeline.spec.load import LoadedSpec
from pipeline.spec.model import StageSpec

RAW_BUCKET = "raw"
DEAD_LETTER_BUCKET = "dead-letter"
RAW_CONSUMER = "@raw"
DEFAULT_BATCH = 500
RUN_DIR = "_run"  # the runner's own files; no bucket can be named so (stage names start with a letter)
LOG_NAME = "run.log"


class LocalRunError(Exception):
    """A problem the user must fix (store in use, disk full, a handler that cannot be imported...)."""


class StoreConflictError(LocalRunError):
    """The store belongs to another spec: bad usage, not a failed run."""


class Stopped(KeyboardInterrupt):
    """The run was asked to stop by a signal other than Ctrl-C (SIGTERM)."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal_number)
        self.signal_number = signal_number


class LocalRunInterrupted(Exception):  # noqa: N818 - an outcome, not an error
    """Ctrl-C or SIGTERM: the message says what is done and how to resume; `signal_number` for the exit code."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.signal_number = signal_number


def default_root(loaded: LoadedSpec) -> Path:
    """One store per pipeline and stack, so specs sharing a folder never share state."""
    return loaded.base_dir / ".pipeline" / "local" / loaded.spec.name / loaded.stack


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


def stage_env(loaded: LoadedSpec, stage: StageSpec) -> dict[str, str]:
    """The environment the orchestrator gives the stage's function (`pipeline.wiring.stage_env`), with local
    bucket names (the bucket role keys) and the model as a local file."""
    from pipeline.wiring import stage_env as wired

    env = {key: str(value) for key, value in wired(loaded.spec, loaded.stack, stage, lambda key: key).items()}
    if stage.model:
        env["PIPELINE_MODEL_PATH"] = str(loaded.base_dir / stage.model)
    if stage.trigger.from_stage:
        env["PIPELINE_SCHEDULE_SETTLE_S"] = "0"  # local objects are complete once written: a run takes all of them
    return env


_COUNTS = ("invocations", "items", "rows", "filtered", "dead_letters", "retries", "failed_batches")


@dataclass
class StageStats:
    name: str
    trigger: str
    invocations: int = 0
    items: int = 0
    rows: int = 0
    filtered: int = 0  # inputs that gave no row and were not dead-lettered (in - rows - dead letters, per invocation)
    dead_letters: int = 0
    retries: int = 0
    failed_batches: int = 0  # retries exhausted: the whole input went to dead letters

    def add(self, other: dict[str, int]) -> None:
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + other.get(name, 0))


@dataclass
class RunSummary:
    pipeline: str
    stack: str
    root: Path
    records_in: int = 0
    records_this_run: int = 0
    batches_resumed: int = 0
    batches_skipped: int = 0
    raw_objects: int = 0
    seconds: float = 0.0
    new_run: str | None = None  # why this run started over (None: resumed or continued the journal's run)
    stages: dict[str, StageStats] = field(default_factory=dict)
    dead_letter_keys: list[str] = field(default_factory=list)  # keys in the dead-letter bucket, e.g. "preprocess/local/...jsonl"

    @property
    def throughput(self) -> float:
        return self.records_this_run / self.seconds if self.seconds > 0 else 0.0

    @property
    def dead_letters(self) -> int:
        return sum(s.dead_letters for s in self.stages.values())

    @property
    def failed(self) -> bool:
        """Something was dead-lettered or an input failed for good: the run did not succeed."""
        return any(s.dead_letters or s.failed_batches for s in self.stages.values())


class Journal:
    """Append-only progress log: `plan` before a batch runs, `done` after. Lines are tiny and
    written with one `write`, so a kill leaves at most one torn last line, dropped on load.
    The first line names the run (code fingerprint); an empty journal means a new run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: list[dict[str, Any]] = []
        if path.exists():
            data = path.read_bytes()
            end = data.rfind(b"\n") + 1
            if end < len(data):  # torn last line from a kill: cut it off before appending
                os.truncate(path, end)
            for line in data[:end].splitlines():
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

    def restart(self, header: dict[str, Any]) -> None:
        os.ftruncate(self.fd, 0)
        self.entries = [header]
        self.append(header)

    def close(self) -> None:
        os.close(self.fd)


class _Writer:
    """Does the store's writes (and their fsyncs) and the journal's appends on one thread, in order.

    The disk waits overlap the next batch's work, and FIFO order keeps the invariant crash safety
    needs: a batch's `done` line reaches the journal only after every object it wrote was replaced.
    A kill loses a suffix of the queue, which is the same as being killed a little earlier.
    """

    def __init__(self, store: LocalStore, depth: int = 64) -> None:
        self.store = store
        self.queue: queue.Queue[tuple[Callable[..., None], tuple[Any, ...]] | None] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, name="pipeline-writer", daemon=True)
        self.thread.start()

    def _work(self) -> None:
        while True:
            job = self.queue.get()
            try:
                if job is None:
                    return
                if self.error is None:  # after a failure nothing more may land, the journal least of all
                    job[0](*job[1])
            except BaseException as exc:
                self.error = exc
            finally:
                self.queue.task_done()

    def submit(self, function: Callable[..., None], *args: Any) -> None:
        self._check()
        self.queue.put((function, args))

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.submit(self.store.put, bucket, key, data)

    def get(self, bucket: str, key: str) -> bytes:
        self.drain()
        return self.store.get(bucket, key)

    def drain(self) -> None:
        self.queue.join()
        self._check()

    def _check(self) -> None:
        if self.error is not None:
            error = self.error
            if isinstance(error, OSError):
                raise LocalRunError(f"writing to the local store failed: {describe_os_error(error, Path(self.store.root))}") from error
            raise LocalRunError(f"writing to the local store failed: {type(error).__name__}: {error}") from error

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()


class _RunLog(io.TextIOBase):
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


class _RemoteError(Exception):
    """A failure described by a worker process (or about it): dead letters carry its description."""

    def __init__(self, info: dict[str, Any]) -> None:
        super().__init__(f"{info.get('type')}: {info.get('message')}")
        self.error_info = info


def _not_loaded(items: Any, context: Context) -> Any:
    raise RuntimeError("handlers run in the stage's worker process")


class _InputChanged(Exception):  # noqa: N818 - a signal inside the runner, never seen by users
    """The input disagrees with the journal's run: start a new run from the input's beginning."""


@dataclass
class _Planned:
    last: int
    count: int
    digest: str
    done: bool = False


class _Consumer:
    """Batches records for one stream consumer (a stream stage, or the raw archive)."""

    def __init__(self, name: str, batch_size: int, window_s: float, process: Callable[[Sequence[LineRecord], str], dict[str, dict[str, int]]]) -> None:
        self.name, self.batch_size, self.window_s, self.process = name, batch_size, window_s, process
        self.planned: dict[int, _Planned] = {}
        self.pending: list[LineRecord] = []
        self.first_arrival = 0.0
        self.target: _Planned | None = None


def _digest(records: Sequence[Record]) -> str:
    """Enough to notice a different input under the same journal (CRC-32 runs at memory speed)."""
    data = b"\n".join([r.data for r in records])
    return f"{zlib.crc32(data):08x}-{len(data)}"


def _line(record: LineRecord) -> int:
    return record.line


class _FileInput:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.arrival: float | None = path.stat().st_mtime

    def chunks(self) -> Iterator[list[bytes] | None]:
        with self.path.open("rb") as handle:
            yield from file_chunks(handle)

    def again(self) -> _FileInput:
        return self


class _StdinInput:
    """Standard input, read as it arrives. While a run resumes a journal, what was read is also
    spooled to a temporary file, so if the input turns out to differ the new run can start at its
    first line (a pipe cannot be read twice)."""

    arrival = None

    def __init__(self, fd: int, tick_s: float, spool: bool) -> None:
        self.live = pipe_chunks(fd, tick_s)
        self.spool: IO[bytes] | None = tempfile.TemporaryFile() if spool else None  # noqa: SIM115 - closed when replayed
        self.replay = False

    def chunks(self) -> Iterator[list[bytes] | None]:
        if self.replay and self.spool is not None:
            spool, self.spool = self.spool, None
            spool.seek(0)
            yield from file_chunks(spool)
            spool.close()
        try:
            for chunk in self.live:
                if self.spool is not None and chunk:
                    self.spool.write(b"".join(chunk))
                yield chunk
        except OSError as exc:
            raise LocalRunError(f"reading standard input failed: {exc.strerror or exc}; pipe the records in, or pass --input FILE") from exc

    def again(self) -> _StdinInput:
        self.replay = True
        return self

    def stop_spooling(self) -> None:
        if self.spool is not None and not self.replay:
            self.spool.close()
            self.spool = None


class LocalRun:
    """One `pipeline run`: wire stages, replay the journal, stream the input through."""

    def __init__(self, loaded: LoadedSpec, root: Path | None = None, tick_s: float | None = None, durable: bool = True,
                 fresh: bool = False, progress: Callable[[int, int], None] | None = None,
                 on_log: Callable[[dict[str, Any]], None] | None = None, notify: Callable[[str], None] | None = None) -> None:
        self.loaded = loaded
        self.spec = loaded.spec
        self.root = root or default_root(loaded)
        self.fresh = fresh
        self.tick_s = tick_s
        self.progress = progress
        self.on_log = on_log
        self.notify = notify or (lambda message: None)
        self.store = LocalStore(self.root, durable=durable)
        self.summary = RunSummary(self.spec.name, loaded.stack, self.root)
        self.envs = {s.name: stage_env(loaded, s) for s in self.spec.stages}
        self.processes: dict[str, StageProcess] = {}
        self.dead_letterers: dict[str, StageRunner] = {}
        self.retry_delay_s = 0.05
        self.primary: _Consumer | None = None
        self.completed = False
        self.ticks = 0

    # -- the run -----------------------------------------------------------------------------------

    def run(self, source: str) -> RunSummary:
        """Stream `source` (a path, or '-' for stdin) through the pipeline; returns the summary."""
        started = time.monotonic()
        try:
            self._run(source, started)
        except KeyboardInterrupt as exc:
            signal_number = exc.signal_number if isinstance(exc, Stopped) else 2
            raise LocalRunInterrupted(self._interrupted_message(), signal_number) from None
        except OSError as exc:  # handlers run elsewhere: an OSError here is the machine's (disk, permissions, stdin)
            raise LocalRunError(describe_os_error(exc, self.root)) from exc
        self.summary.seconds = time.monotonic() - started
        return self.summary

    def _run(self, source: str, started: float) -> None:
        self._open()
        try:
            self._start_stages()
            self._check_run()
            data = self._input(source)
            while True:
                consumers = self._consumers()
                try:
                    self._stream(data, consumers, started)
                    break
                except _InputChanged as change:
                    self._new_run(f"the input differs from the last run's ({change})")
                    data = data.again()
            self._schedule("end")
            self.writer.drain()
            self.summary.dead_letter_keys = list(self.store.keys(DEAD_LETTER_BUCKET))
        except BaseException:
            self._close(failed=True)
            raise
        self._close(failed=False)

    def _open(self) -> None:
        """Lock the store, check it is this spec's, open the journal and the log."""
        run_dir = self.root / RUN_DIR
        run_dir.mkdir(parents=True, exist_ok=True)
        self.lock = os.open(run_dir / "lock", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.lock)
            raise LocalRunError(f"another `pipeline run` is using {self.root}; wait for it or stop it") from None
        try:
            self._claim(run_dir / "spec")
            self.journal = Journal(run_dir / "journal.jsonl")
            self.run_log = _RunLog(self.root / LOG_NAME, self.spec.name, self.on_log)
            self.writer = _Writer(self.store)
        except BaseException:
            os.close(self.lock)
            raise
        logger = JsonLogger(cast(TextIO, self.run_log), flush=False, pipeline=self.spec.name, logger="runner")
        for stage in self.spec.stages:
            env = self.envs[stage.name]
            stage_logger = logger.bind(stage=stage.name)
            self.dead_letterers[stage.name] = StageRunner(Settings.from_env(env), _not_loaded, self.writer,
                                                          Context(stage.name, logger=stage_logger, env=env), stage_logger)
        self.logger = logger

    def _claim(self, owner: Path) -> None:
        """Two specs must never share (or empty) one store: the first to use it owns it while it exists."""
        mine = str(self.loaded.path.resolve())
        if owner.is_file():
            theirs = owner.read_text(encoding="utf-8").strip()
            if theirs != mine and Path(theirs).is_file():
                raise StoreConflictError(
                    f"{self.root} holds the local runs of {theirs}, which has the same pipeline name ({self.spec.name!r}) and "
                    f"stack ({self.loaded.stack!r}); they would share one stack in the cloud too. Give this spec another "
                    "`name:`, or pass --store with another folder")
        if not owner.is_file() or owner.read_text(encoding="utf-8").strip() != mine:
            owner.write_text(mine + "\n", encoding="utf-8")

    def _check_run(self) -> None:
        """Resume the journal's run, or start a new one when asked to or when the code changed."""
        self.fingerprint = fingerprint(self.loaded)
        header = self.journal.header
        if self.fresh:
            self._new_run(None)
        elif header is None:
            self._new_run("the store holds a run of another version of pipeline" if self.journal.entries else None)
        elif header.get("fp") != self.fingerprint:
            self._new_run("the spec or the stages' code changed since the last run")
        self.completed = any(e.get("tick") == "end" for e in self.journal.entries)

    def _new_run(self, reason: str | None) -> None:
        """Empty the store and start the journal over. The journal goes first: killed half-way, the
        next run finds no run in it and empties the store again."""
        if reason:
            self.notify(f"{reason}: starting a new run in {self.root}")
        self.summary.new_run = reason or "new"
        self.writer.drain()
        self.journal.restart({"c": "run", "fp": self.fingerprint, "spec": str(self.loaded.path.resolve()), "stack": self.loaded.stack})
        for child in self.root.iterdir():
            if child.name not in (RUN_DIR, LOG_NAME):
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        self.run_log.restart()
        self.summary.stages = {s.name: StageStats(s.name, s.trigger.kind) for s in self.spec.stages}
        self.summary.raw_objects = self.summary.records_this_run = self.summary.batches_skipped = self.summary.batches_resumed = 0
        self.completed = False

    def _close(self, failed: bool) -> None:
        """Stop the workers (at once when failing), let queued writes land, release the store.
        On the way out of a failure, a second failure here (the disk is still full) is not the news."""
        for process in self.processes.values():
            with contextlib.suppress(Exception):
                process.stop(kill=failed)
        steps: list[Callable[[], None]] = [self.writer.close, self.journal.close, self.run_log.close, lambda: os.close(self.lock)]
        for step in steps:
            try:
                step()
            except OSError:
                if not failed:
                    raise

    def _interrupted_message(self) -> str:
        done = sum(p.count for p in self.primary.planned.values() if p.done) if self.primary else 0
        if not done:
            return f"interrupted before any record was done; run the same command again to start ({self.root})"
        return (f"interrupted: {done:,} records are done and kept in {self.root}; the batches in progress will be redone. "
                "Run the same command again to resume, or add --fresh to start over")

    # -- stages --------------------------------------------------------------------------------------

    def _start_stages(self) -> None:
        """Install requirements, start every stage's worker and wait until each imported its handler:
        a handler that cannot even be imported stops the run before any input is taken."""
        base = self.loaded.base_dir
        # This shell's environment, less the runtime's own settings: a stage sees only its own wiring.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_") or k == "PIPELINE_LOG_LEVEL"}
        for stage in self.spec.stages:
            paths = []
            if stage.requirements:
                shown = f"the requirements of stage {stage.name} ({stage.requirements})"
                try:
                    installed = installed_path(base, base / stage.requirements, shown, self.notify)
                except RequirementsError as exc:
                    raise LocalRunError(f"stage {stage.name}: {exc}") from None
                if installed is not None:
                    paths.append(str(installed))
            process = StageProcess(stage.name, {**inherited, **self.envs[stage.name]}, base, paths, stage.timeout_s,
                                   self.run_log.worker_line)
            self.processes[stage.name] = process
            process.spawn()
        for stage in self.spec.stages:
            error = self.processes[stage.name].ready()
            if error is not None:
                raise LocalRunError(self._load_failure(stage, error))

    @staticmethod
    def _load_failure(stage: StageSpec, error: dict[str, Any]) -> str:
        text = f"stage {stage.name}: its handler {stage.handler} could not be loaded: {error.get('type')}: {error.get('message')}"
        where = error.get("traceback") or []
        if where:
            text += "\n  at " + "\n  at ".join(where)
        if error.get("type") == "ModuleNotFoundError":
            text += ("\n  list the package in the stage's requirements file" if not stage.requirements else
                     f"\n  is it listed in {stage.requirements}, under the name it is imported by?")
        return text

    def _invoke(self, stage: StageSpec, request: tuple[Any, ...], batch_id: str, inputs: Callable[[], tuple[list[bytes], list[dict[str, Any]]]],
                stats: dict[str, dict[str, int]]) -> None:
        """Run one input in the stage's worker with the stage's retries; when they are exhausted, dead-letter it."""
        process = self.processes[stage.name]
        entry = stats.setdefault(stage.name, {})
        entry["invocations"] = entry.get("invocations", 0) + 1
        attempts = stage.retries + 1
        reply: Reply | None = None
        for attempt in range(1, attempts + 1):
            reply = process.call(request)
            if reply.status == "ok":
                break
            error = reply.error or {}
            if reply.status == "crashed":  # the worker logged handler failures itself; this one it could not
                self.logger.log("ERROR", f"{error.get('type')}: {error.get('message')}", stage=stage.name, batch=batch_id,
                                attempt=attempt, of=attempts, where=error.get("traceback") or None)
            if attempt < attempts:
                entry["retries"] = entry.get("retries", 0) + 1
                time.sleep(min(1.0, self.retry_delay_s * 2 ** (attempt - 1)))
        assert reply is not None
        if reply.status != "ok":
            raws, identities = inputs()
            failed = self.dead_letterers[stage.name].dead_letter_all(batch_id, raws, identities, _RemoteError(reply.error or {}))
            entry["failed_batches"] = entry.get("failed_batches", 0) + 1
            entry["items"] = entry.get("items", 0) + failed.items
            entry["dead_letters"] = entry.get("dead_letters", 0) + failed.dead_letters
            return
        result = reply.result
        output: bytes | None = None
        for bucket, key, data in reply.puts:
            self.writer.put(bucket, key, data)
            if key == result["output_key"] and bucket == stage.name:
                output = data
        items, rows, dead = result["items"], result["rows"], result["dead_letters"]
        entry["items"] = entry.get("items", 0) + items
        entry["rows"] = entry.get("rows", 0) + rows
        entry["dead_letters"] = entry.get("dead_letters", 0) + dead
        entry["filtered"] = entry.get("filtered", 0) + max(0, items - rows - dead)
        if output is not None:
            self._fan_out(stage, result["output_key"], output, stats)

    def _fan_out(self, stage: StageSpec, key: str, data: bytes, stats: dict[str, dict[str, int]]) -> None:
        """A new object in the stage's bucket: run every stage that reads it, like the object trigger."""
        bucket = stage.name

        def inputs() -> tuple[list[bytes], list[dict[str, Any]]]:
            raws = [line for line in data.split(b"\n") if line.strip()]
            return raws, [{"bucket": bucket, "key": key, "line": i} for i in range(len(raws))]

        for consumer in self.spec.consumers_of(stage.name):
            if not consumer.trigger.objects:
                continue  # a schedule reading these objects takes them on its next run
            self._invoke(consumer, ("object", bucket, key, data), keys.object_batch(key, f"{bucket}/"), inputs, stats)

    def _stream_stage(self, stage: StageSpec) -> Callable[[Sequence[LineRecord], str], dict[str, dict[str, int]]]:
        def process(records: Sequence[LineRecord], batch_id: str) -> dict[str, dict[str, int]]:
            stats: dict[str, dict[str, int]] = {}
            request = ("stream", batch_id, [r.data for r in records], [r.line for r in records], [r.arrival_time for r in records])
            self._invoke(stage, request, batch_id, lambda: ([r.data for r in records], [r.describe() for r in records]), stats)
            return stats
        return process

    def _raw_archive(self, records: Sequence[LineRecord], batch_id: str) -> dict[str, dict[str, int]]:
        body = b"\n".join([r.data for r in records]) + b"\n"
        self.writer.put(RAW_BUCKET, keys.raw_key(batch_id), body)
        return {RAW_CONSUMER: {"invocations": 1, "items": len(records)}}

    def _schedule(self, tick: str) -> None:
        done = {e["tick"] for e in self.journal.entries if "tick" in e}
        if tick in done:
            return
        stats: dict[str, dict[str, int]] = {}
        for stage in self.spec.stages:
            if stage.trigger.schedule:
                self._invoke(stage, ("schedule", tick), keys.schedule_batch(tick), lambda: ([], []), stats)
        self._record_done({"c": "schedule", "tick": tick, "st": "done", "stats": stats})

    def _record_done(self, entry: dict[str, Any]) -> None:
        self.writer.submit(self.journal.append, entry)
        self.journal.entries.append(entry)
        self._count(entry["stats"])

    def _count(self, stats: dict[str, dict[str, int]]) -> None:
        for name, values in stats.items():
            if name == RAW_CONSUMER:
                self.summary.raw_objects += values.get("invocations", 0)
            elif name in self.summary.stages:
                self.summary.stages[name].add(values)

    # -- batching ----------------------------------------------------------------------------------

    def _consumers(self) -> list[_Consumer]:
        """The stream consumers, with the batches the journal planned (and counts of those done)."""
        self.summary.stages = {s.name: StageStats(s.name, s.trigger.kind) for s in self.spec.stages}
        self.summary.raw_objects = 0
        consumers = []
        streams = [s for s in self.spec.stages if s.trigger.stream]
        if self.spec.stream is not None and self.spec.stream.archive:
            first = streams[0].trigger.stream if streams else None
            consumers.append(_Consumer(RAW_CONSUMER, first.batch_size if first else DEFAULT_BATCH,
                                       first.max_batching_window_s if first else 5, self._raw_archive))
        for stage in streams:
            trigger = stage.trigger.stream
            assert trigger is not None
            consumers.append(_Consumer(stage.name, trigger.batch_size, trigger.max_batching_window_s, self._stream_stage(stage)))
        self.primary = consumers[0] if consumers else None
        by_name = {c.name: c for c in consumers}
        for entry in self.journal.entries:
            if "tick" in entry:
                self._count(entry["stats"])
                continue
            consumer = by_name.get(entry.get("c", ""))
            if consumer is None or "s" not in entry:
                continue
            if entry["st"] == "plan":
                consumer.planned[entry["s"]] = _Planned(entry["e"], entry["n"], entry["h"])
            elif entry["st"] == "done" and entry["s"] in consumer.planned:
                consumer.planned[entry["s"]].done = True
                self._count(entry["stats"])
        self.ticks = sum(1 for e in self.journal.entries if e.get("tick", "end") != "end")
        return consumers

    def _flush(self, consumer: _Consumer) -> None:
        records = consumer.pending
        consumer.pending, consumer.target = [], None
        first, last = records[0].line, records[-1].line
        digest = _digest(records)
        plan = consumer.planned.get(first)
        if plan is not None:
            if (plan.last, plan.count, plan.digest) != (last, len(records), digest):
                raise _InputChanged(f"records at lines {first}-{plan.last} differ")
            if plan.done:  # finished by an earlier run: checked, nothing to redo
                if consumer is self.primary:
                    self.summary.batches_skipped += 1
                return
            if consumer is self.primary:
                self.summary.batches_resumed += 1
        else:
            if self.completed:
                raise _InputChanged(f"it has more records, from line {first}")
            entry = {"c": consumer.name, "st": "plan", "s": first, "e": last, "n": len(records), "h": digest}
            self.writer.submit(self.journal.append, entry)
            consumer.planned[first] = _Planned(last, len(records), digest)
        batch_id = keys.stream_batch(PARTITION, first, last, LINE_WIDTH)
        stats = consumer.process(records, batch_id)
        if consumer is self.primary:
            self.summary.records_this_run += len(records)
        consumer.planned[first].done = True
        self._record_done({"c": consumer.name, "st": "done", "s": first, "stats": stats})

    def _offer(self, consumer: _Consumer, records: list[LineRecord], now: float) -> None:
        """Add records (ascending lines) to the consumer's batch, flushing full or planned batches."""
        i, n = 0, len(records)
        while i < n:
            if not consumer.pending:
                plan = consumer.planned.get(records[i].line)
                consumer.target = plan
                consumer.first_arrival = now
            target = consumer.target
            if target is not None:
                j = bisect_right(records, target.last, i, key=_line)
                if j == i:  # the recorded batch ended earlier than this input's lines: _flush reports the mismatch
                    self._flush(consumer)
                    continue
                consumer.pending.extend(records[i:j])
                i = j
                if records[j - 1].line >= target.last:
                    self._flush(consumer)
            else:
                j = min(n, i + consumer.batch_size - len(consumer.pending))
                consumer.pending.extend(records[i:j])
                i = j
                if len(consumer.pending) >= consumer.batch_size:
                    self._flush(consumer)

    def _expire(self, consumers: list[_Consumer], now: float) -> None:
        for consumer in consumers:
            if consumer.pending and consumer.target is None and now - consumer.first_arrival >= consumer.window_s:
                self._flush(consumer)

    # -- the input ---------------------------------------------------------------------------------

    def _input(self, source: str) -> _FileInput | _StdinInput:
        if source != "-":
            return _FileInput(Path(source))
        if sys.stdin is None:
            raise LocalRunError("--input - reads standard input, but it is closed; pipe the records in, or pass --input FILE")
        try:
            fd = sys.stdin.buffer.fileno()
            os.fstat(fd)
        except (OSError, ValueError, AttributeError):
            raise LocalRunError("--input - reads standard input, but it is closed; pipe the records in, or pass --input FILE") from None
        windows = [s.trigger.stream.max_batching_window_s for s in self.spec.stages if s.trigger.stream and s.trigger.stream.max_batching_window_s > 0]
        return _StdinInput(fd, min([*windows, 1.0]), spool=len(self.journal.entries) > 1)

    def _stream(self, data: _FileInput | _StdinInput, consumers: list[_Consumer], started: float) -> None:
        """Turn lines into Records (line number = sequence; id = line + CRC of the bytes) and batch them."""
        summary = self.summary
        progress, tick_s = self.progress, self.tick_s
        next_tick = started + tick_s if tick_s else None
        mtime = data.arrival
        timed = mtime is None or next_tick is not None
        line_no = records_in = read_bytes = last_record = 0
        planned_until = max((p.last for c in consumers for p in c.planned.values()), default=0)
        for chunk in data.chunks():
            now = time.monotonic() if timed else 0.0
            if chunk:
                arrival = mtime if mtime is not None else time.time()
                records: list[LineRecord] = []
                append = records.append
                for raw in chunk:
                    line_no += 1
                    line = raw.rstrip(b"\r\n")
                    if line and not line.isspace():
                        append(LineRecord(line, line_no, arrival))
                if records:
                    last_record = records[-1].line
                read_bytes += sum(map(len, chunk))
                records_in += len(records)
                for consumer in consumers:
                    self._offer(consumer, records, now)
                if isinstance(data, _StdinInput) and not self.completed and line_no > planned_until:
                    data.stop_spooling()  # past every batch the journal planned: the input can no longer disagree
                if progress is not None:
                    progress(records_in, read_bytes)
            if timed:
                self._expire(consumers, now)
                if next_tick is not None and tick_s and now >= next_tick:
                    self.ticks += 1
                    self._schedule(f"local-{self.ticks:06d}")
                    next_tick = now + tick_s
        for consumer in consumers:
            if consumer.pending:
                if consumer.target is not None and consumer.pending[-1].line < consumer.target.last:
                    raise _InputChanged(f"it ends before line {consumer.target.last}")
                self._flush(consumer)
            later = [first for first in consumer.planned if first > last_record]
            if later:
                raise _InputChanged(f"it ends before line {min(later)}")
        summary.records_in = records_in
