"""`pipeline run` (and the session behind `pipeline serve`): the whole pipeline on this machine,
through the same runtime the functions use.

Records from a JSON-lines file (or stdin) are batched like the stream trigger would batch them
(batch size, batching window), archived raw, and fed to each stream stage; uploaded files land in
the uploads bucket and trigger the object stages that read it; every output object triggers the
stages that read it; schedule stages run on each `--tick` and once at the end, those with `from`
over the objects their source wrote since their last successful run, with the clouds' window code
(`window.py`: watermark, lease and conditional commits on the local store).
Buckets and keys land under `.pipeline/local/<pipeline>/<stack>/` exactly as they would in the cloud.

Handlers run in one worker process per stage (`local_stages.py`), as they would in their own
function: a handler that exits, crashes or runs past `timeout_s` fails that invocation, which is
retried per the stage's `retries` and then dead-lettered, and the run goes on. Workers only
compute (and write what an invocation wrote to temporary files); this process decides what lands
and when (fsync, rename, journal line, in order, on its writer thread). A stream stage's batches are
pipelined (`_advance`): its worker computes the next batch while the object stages that read its
output run on the last one and this process reads and batches the input, each worker with one
input at a time; a batch's `done` line still follows everything it and its readers wrote.

Crash safety without a database: input record N is line N of the input, so batch boundaries
are line ranges; before a batch runs its range (and a digest of its lines) is appended to a
journal, after it and everything it triggered finished a `done` line follows. Uploads are
journaled the same way (by their number in the run, name and digest), and so is every schedule
tick. Outputs go to deterministic keys through atomic replaces. A run killed at any moment and
started again replays the journal: done inputs are skipped, planned ones are re-run with the same
boundaries and overwrite whatever they had written. A window needs no journal: its committed state
says what was read, and a run from the same state writes the same keys (`window.py`). Nothing is
lost and nothing is written twice.

A journal belongs to one set of inputs (the stream input, the uploaded files) and one version of
the code (a fingerprint of the spec and the handlers' files): different code, other uploads, or a
stream input that disagrees with the journal, starts a new run (the store is emptied first)
instead of mixing outputs of two runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import operator
import os
import shutil
import sys
import tempfile
import time
import zlib
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TextIO, cast

from pipeline.runtime import keys
from pipeline.runtime.interrupts import Stopped, held
from pipeline.runtime.lines import LINE_WIDTH, PARTITION, LineRecord, file_chunks, pipe_chunks
from pipeline.runtime.local_journal import Journal, QueuedWriter, RunLog, describe_os_error
from pipeline.runtime.local_stages import Call, Inputs, LocalRunError, LocalStages, Stats, add_stats, object_items, output_of, stage_env
from pipeline.runtime.logs import JsonLogger
from pipeline.runtime.stage_process import Reply
from pipeline.runtime.store import LocalStore
from pipeline.runtime.watch import fingerprint
from pipeline.runtime.window import NO_ROWS_ERROR, WindowOutcome, iso, takes_no_rows
from pipeline.spec.load import LoadedSpec
from pipeline.spec.model import StageSpec

__all__ = ["LocalRun", "LocalRunError", "LocalRunInterrupted", "LocalUsageError", "Outcome", "RunSummary", "Stopped",
           "StoreConflictError", "Upload", "default_root", "describe_os_error", "stage_env"]

RAW_BUCKET = "raw"
DEAD_LETTER_BUCKET = "dead-letter"
RAW_CONSUMER = "@raw"
UPLOAD = "@upload"  # journal lines of uploaded files (consumers are stage names, which never start with '@')
TICK = "@tick"  # journal lines of schedule ticks
KEEP = "@keep"  # serve: a request's records kept in the stream file (lines s-e, the file's size "o" after them, the sender's key "k")
JOURNAL_FORMAT = 2  # 2: serve keeps a request's records with a KEEP line (a run of another format starts over)
DEFAULT_BATCH = 500
RUN_DIR = "_run"  # the runner's own files; no bucket can be named so (stage names start with a letter)
LOG_NAME = "run.log"
STREAM_FILE = "stream.jsonl"  # `pipeline serve`: the records POSTed to the local stream, in order (its retention)


class LocalUsageError(LocalRunError):
    """Bad usage rather than a failed run (exit 2): an upload that cannot be one, a store that is not this spec's."""


class StoreConflictError(LocalUsageError):
    """The store belongs to another spec."""


class LocalRunInterrupted(Exception):  # noqa: N818 - an outcome, not an error
    """Ctrl-C or SIGTERM: the message says what is done and how to resume; `signal_number` for the exit code."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.signal_number = signal_number


def default_root(loaded: LoadedSpec) -> Path:
    """One store per pipeline and stack, so specs sharing a folder never share state."""
    return loaded.base_dir / ".pipeline" / "local" / loaded.spec.name / loaded.stack


def digest_of(data: bytes) -> str:
    """Enough to notice a different input under the same journal (CRC-32 runs at memory speed)."""
    return f"{zlib.crc32(data):08x}-{len(data)}"


@dataclass(frozen=True)
class Upload:
    """A file for the landing bucket: the name it lands under (`<uploads>/<name>`) and where its bytes are."""

    name: str
    path: Path
    digest: str

    @classmethod
    def of(cls, path: Path, name: str | None = None) -> Upload:
        """A file to upload, checked: it must be a readable regular file with a name an object key can have."""
        name = path.name if name is None else name
        check_upload_name(name)
        try:
            if not path.is_file():
                raise LocalUsageError(f"upload {path} is not a file")
            crc, size = 0, 0
            with path.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    crc, size = zlib.crc32(chunk, crc), size + len(chunk)
        except OSError as exc:
            raise LocalUsageError(f"cannot read upload {path}: {exc.strerror or exc}") from None
        return cls(name, path, f"{crc:08x}-{size}")

    def read(self) -> bytes:
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise LocalUsageError(f"cannot read upload {self.path}: {exc.strerror or exc}") from None
        if digest_of(data) != self.digest:
            raise LocalUsageError(f"upload {self.path} changed while the run was going on; run the same command again")
        return data


def check_upload_name(name: str) -> None:
    """A file name that is one object key on every cloud and one file locally (no folders, nothing hidden)."""
    if (not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith(".") or len(name.encode()) > 255
            or any(ord(c) < 32 or ord(c) == 127 for c in name)):
        raise LocalUsageError(f"{name!r} cannot be an upload's name: use a plain file name (no folders, not hidden, "
                              "no control characters, at most 255 bytes), e.g. claims-2026-11-01.jsonl.gz")
    if name.endswith(LocalStore.TMP_SUFFIX):
        raise LocalUsageError(f"{name!r} cannot be an upload's name: the local store keeps its temporary files as *{LocalStore.TMP_SUFFIX}")


def check_uploads(uploads: Sequence[Upload]) -> None:
    seen: dict[str, Path] = {}
    for upload in uploads:
        if upload.name in seen:
            raise LocalUsageError(f"{seen[upload.name]} and {upload.path} would both land as {upload.name!r}; "
                                  "an upload is known by its file name: rename one")
        seen[upload.name] = upload.path


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
    uploads_in: int = 0
    uploads_this_run: int = 0
    uploads_skipped: int = 0  # landed and processed by an earlier run of the same inputs
    stream_input: bool = True  # False: the run had uploads only
    archive: bool = False  # the stream's records are archived raw
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

    @property
    def not_invoked(self) -> list[str]:
        """HTTP stages: `pipeline run` sends them no requests (`pipeline serve` and `pipeline invoke` do)."""
        return [s.name for s in self.stages.values() if s.trigger == "http"]


class _InputChanged(Exception):  # noqa: N818 - a signal inside the runner, never seen by users
    """The input disagrees with the journal's run: start a new run from the input's beginning."""


@dataclass
class _Planned:
    last: int
    count: int
    digest: str
    done: bool = False


class _Lines:
    """Input records in columns: their bytes, line numbers and arrival times. The runner only batches
    and forwards records, so it builds no object per record (the stage's worker builds the `Record`s
    its handler sees)."""

    __slots__ = ("arrivals", "datas", "numbers")

    def __init__(self, datas: list[bytes] | None = None, numbers: list[int] | None = None,
                 arrivals: list[float | None] | None = None) -> None:
        self.datas = datas if datas is not None else []
        self.numbers = numbers if numbers is not None else []
        self.arrivals = arrivals if arrivals is not None else []

    def __len__(self) -> int:
        return len(self.numbers)

    def take(self, other: _Lines, start: int, end: int) -> None:
        """Append `other`'s records [start, end)."""
        self.datas += other.datas[start:end]
        self.numbers += other.numbers[start:end]
        self.arrivals += other.arrivals[start:end]

    def identities(self) -> list[dict[str, Any]]:
        """What dead letters and logs say about each record (only when some are dead-lettered)."""
        return [LineRecord(data, number, arrival).describe() for data, number, arrival in zip(self.datas, self.numbers, self.arrivals, strict=True)]


_strip_newline = operator.methodcaller("rstrip", b"\r\n")


def lines_of(chunk: list[bytes], first: int, arrival: float | None) -> _Lines:
    """Lines read from the input (with their newlines), numbered from `first`, as records: blank lines are
    skipped (their numbers too). The common case, no blank line, costs no Python code per line."""
    datas = list(map(_strip_newline, chunk))
    if all(datas) and not any(map(bytes.isspace, datas)):
        numbers = list(range(first, first + len(datas)))
    else:
        kept = [i for i, data in enumerate(datas) if data and not data.isspace()]
        datas, numbers = [datas[i] for i in kept], [first + i for i in kept]
    return _Lines(datas, numbers, [arrival] * len(datas))


class _Consumer:
    """Batches records for one stream consumer: a stream stage, or the raw archive (`stage` None)."""

    def __init__(self, name: str, batch_size: int, window_s: float, stage: StageSpec | None) -> None:
        self.name, self.batch_size, self.window_s, self.stage = name, batch_size, window_s, stage
        self.planned: dict[int, _Planned] = {}
        self.pending = _Lines()
        self.first_arrival = 0.0
        self.target: _Planned | None = None
        self.computing: _Batch | None = None  # in the stage's worker (see LocalRun._advance)
        self.reading: _Batch | None = None  # its output in the workers of the stages that read it


@dataclass
class _Read:
    """A stream stage's output in the worker of an object stage that reads it."""

    stage: StageSpec
    call: Call
    batch_id: str
    inputs: Inputs
    reply: Reply | None = None


@dataclass
class _Batch:
    """A stream batch between its `plan` and `done` lines."""

    consumer: _Consumer
    records: _Lines
    batch_id: str
    stats: Stats
    call: Call | None = None  # a stream stage's batch, handed to the stage's worker
    reply: Reply | None = None  # ... and what came back (None: dead-lettered)
    reads: list[_Read] = field(default_factory=list)


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


@dataclass
class Outcome:
    """What one request to `pipeline serve` did: counts per stage and the objects it wrote (`bucket/key`).
    `repeated`: the request's idempotency key was kept before, so nothing was done again."""

    stats: Stats = field(default_factory=dict)
    objects: list[str] = field(default_factory=list)
    repeated: bool = False


Kept = Callable[[], None]  # serve: called once a request's input is kept for good (it will be processed, even after a kill)


class LocalRun:
    """One `pipeline run` (`run`), or the session of a `pipeline serve` (`serve` ... `close`): wire the
    stages, replay the journal, take the inputs through."""

    def __init__(self, loaded: LoadedSpec, root: Path | None = None, tick_s: float | None = None, durable: bool = True,
                 fresh: bool = False, progress: Callable[[int, int], None] | None = None,
                 on_log: Callable[[dict[str, Any]], None] | None = None, notify: Callable[[str], None] | None = None) -> None:
        self.loaded = loaded
        self.spec = loaded.spec
        self.root = (root or default_root(loaded)).absolute()  # (workers run in the spec's folder: a relative --store is ours)
        self.fresh = fresh
        self.tick_s = tick_s
        self.progress = progress
        self.on_log = on_log
        self.notify = notify or (lambda message: None)
        self.store = LocalStore(self.root, durable=durable)
        self.summary = RunSummary(self.spec.name, loaded.stack, self.root)
        self.summary.archive = self.spec.stream is not None and self.spec.stream.archive
        self.inputs: dict[str, Any] = {}
        self.primary: _Consumer | None = None
        self.consumers: list[_Consumer] = []
        self.completed = False
        self.ticks = 0
        self.next_tick: float | None = None
        self.redo_left: set[tuple[str, int]] = set()  # inputs a killed run planned and did not finish (see _maybe_tick)
        self.uploads_planned: dict[int, dict[str, Any]] = {}
        self.uploads_done: set[int] = set()
        self.ticks_planned: dict[str, dict[str, Any]] = {}
        self.ticks_done: set[str] = set()
        self.collected: Stats | None = None  # serve: the counts of the request being answered
        self.keys_kept: dict[str, Any] = {}  # serve: the idempotency keys of the requests kept, and what each kept
        self.stream_kept = 0  # serve: the size of the stream file up to the last request kept (the rest was never accepted)
        self.digests: dict[tuple[int, int], str] = {}  # (first line, last line) -> digest, shared by the stream's consumers

    # -- one `pipeline run` -------------------------------------------------------------------------

    def run(self, source: str | None, uploads: Sequence[Upload] = ()) -> RunSummary:
        """Land `uploads`, then stream `source` (a path, '-' for stdin, None for no stream input) through
        the pipeline, then run the schedules once more; returns the summary."""
        started = time.monotonic()
        check_uploads(uploads)
        if uploads and self.spec.uploads is None:
            raise LocalUsageError(f"{self.spec.name} has no uploads bucket (add `uploads: {{}}` to the spec), so nothing reads --upload files")
        if source is not None and self.spec.stream is None:
            raise LocalUsageError(f"{self.spec.name} has no stream, so nothing reads --input records; pass its files with --upload")
        self.inputs = {"stream": source is not None, "uploads": [[u.name, u.digest] for u in uploads]}
        self.summary.stream_input = source is not None
        self.summary.uploads_in = len(uploads)
        with self._reported():
            self._open()
            try:
                self.stages.start([s for s in self.spec.stages if not s.trigger.http])  # nothing sends requests to HTTP stages
                self._check_run()
                data = self._input(source) if source is not None else None
                while True:
                    self._replay()
                    self.next_tick = started + self.tick_s if self.tick_s else None
                    try:
                        self._redo_ticks()
                        self._uploads(list(uploads))
                        if data is not None:
                            self._stream(data)
                        break
                    except _InputChanged as change:
                        self._new_run(f"the input differs from the last run's ({change})")
                        assert data is not None
                        data = data.again()
                self._schedule("end")
                self.writer.drain()
                self.summary.dead_letter_keys = list(self.store.keys(DEAD_LETTER_BUCKET))
            except BaseException:
                self._close(failed=True)
                raise
            self._close(failed=False)
        self.summary.seconds = time.monotonic() - started
        return self.summary

    @contextlib.contextmanager
    def _reported(self) -> Iterator[None]:
        """Ctrl-C and SIGTERM become LocalRunInterrupted (what is done, how to resume); the machine's
        failures a LocalRunError saying what to do (handlers run elsewhere: an OSError here is the disk's)."""
        try:
            yield
        except KeyboardInterrupt as exc:
            signal_number = exc.signal_number if isinstance(exc, Stopped) else 2
            raise LocalRunInterrupted(self._interrupted_message(), signal_number) from None
        except OSError as exc:
            writer = getattr(self, "writer", None)
            if writer is not None:  # the store's writer failed first (disk full): that is the cause, what followed its effect
                writer.check()
            raise LocalRunError(describe_os_error(exc, self.root)) from exc

    # -- the session of `pipeline serve` ------------------------------------------------------------

    def serve(self) -> None:
        """Take the store for serving: continue the last `pipeline serve` of this code (finishing what a
        killed one left half done, from its journal and the records it kept), or start a new run."""
        self.inputs = {"serve": True}
        self.summary.stream_input = self.spec.stream is not None
        with self._reported():
            self._open()
            try:
                self.stages.start(self.spec.stages)
                self._check_run()
                self._replay()
                self._redo_ticks()
                self._redo_uploads()
                self.summary.uploads_in = len(self.uploads_planned)
                self.stream_path = self.root / RUN_DIR / STREAM_FILE
                if self.spec.stream is not None:
                    self._unkept_records()
                    try:
                        self.next_line = self._stream(_FileInput(self.stream_path)) + 1
                    except _InputChanged as change:
                        self._new_run(f"the records kept in {self.stream_path} disagree with its journal ({change})")
                        self._replay()
                        self._unkept_records()
                        self.next_line = 1
                    self.writer.drain()
            except BaseException:
                self._close(failed=True)
                raise

    def _unkept_records(self) -> None:
        """Cut the stream file back to the last request kept: records written after it (a kill in the middle
        of keeping a request) were never accepted, their sender got no answer, and they must not be processed."""
        self.stream_path.touch()
        if self.stream_path.stat().st_size > self.stream_kept:
            os.truncate(self.stream_path, self.stream_kept)

    def add_records(self, lines: Sequence[bytes], key: str | None = None, kept: Kept | None = None) -> Outcome:
        """Records into the local stream: kept (the stream's retention), batched like `run` batches them,
        and processed before returning; the last partial batch closes as if its window had passed.

        Keeping is one step a stop cannot cut in two: the records are written and synced, a KEEP line
        journaled (synced too), and `kept()` called, with Ctrl-C and SIGTERM held off; from then on the
        records are processed, now or when a stopped server starts again. A request with the `key` of
        one kept before keeps nothing again (`Outcome.repeated`)."""
        with self._reported(), self._collecting() as outcome:
            if key is not None and key in self.keys_kept:
                outcome.repeated = True
                return outcome
            first = self.next_line
            with held():
                with open(self.stream_path, "ab") as handle:
                    handle.write(b"".join(line + b"\n" for line in lines))
                    handle.flush()
                    if self.store.durable:
                        os.fsync(handle.fileno())
                    size = handle.tell()
                self.writer.submit(self.journal.append, _keyed({"c": KEEP, "s": first, "e": first + len(lines) - 1, "o": size}, key))
                self._promise(key, (first, first + len(lines) - 1), kept)
                self.stream_kept = size
                self.next_line += len(lines)
            now = time.monotonic()
            records = _Lines(list(lines), list(range(first, first + len(lines))), [time.time()] * len(lines))
            self.summary.records_in += len(records)
            for consumer in self.consumers:
                self._offer(consumer, records, now)
            for consumer in self.consumers:
                if consumer.pending:
                    self._flush(consumer)
            self._settle()
            self.writer.drain()
        return outcome

    def _promise(self, key: str | None, what: Any, kept: Kept | None) -> None:
        """What was asked of the writer so far (a request's input and its journal line) on disk, then tell
        the sender (`kept`) and remember its key with `what` was kept."""
        self.writer.drain()
        if self.store.durable:
            self.journal.sync()
        if key is not None:
            self.keys_kept[key] = what
        if kept is not None:
            kept()

    def add_upload(self, name: str, data: bytes, key: str | None = None, kept: Kept | None = None) -> Outcome:
        """A file dropped into the landing bucket: it lands under `<uploads>/<name>` and triggers the object
        stages that read the uploads, as an object-created event would (the same name again: a new event).
        Kept like `add_records` keeps records: once it landed and its plan line is on disk, `kept()`."""
        check_upload_name(name)
        with self._reported(), self._collecting() as outcome:
            if key is not None and key in self.keys_kept:
                outcome.repeated = True
                return outcome
            number = max(self.uploads_planned, default=0) + 1
            self.summary.uploads_in += 1
            self._land(number, name, data, key, kept)
            self.writer.drain()
        return outcome

    def tick(self) -> tuple[str, Outcome]:
        """Run every schedule stage once now, like a `--tick` of `pipeline run`."""
        with self._reported(), self._collecting() as outcome:
            self.ticks += 1
            name = f"local-{self.ticks:06d}"
            self._schedule(name)
            self.writer.drain()
        return name, outcome

    def request(self, stage: StageSpec, body: bytes, content_type: str) -> tuple[int, dict[str, Any], Outcome]:
        """One request to an HTTP stage: (status, answer, what it did). A persisted answer triggers the stages that read it.
        A stage with `from` takes no rows: the request runs it over its window, cut off now."""
        if stage.trigger.window_source:
            return self._window_request(stage, body)
        with self._reported(), self._collecting() as outcome:
            stats: Stats = {}
            status, answer, reply = self.stages.call_http(stage, body, content_type, stats)
            self._pass_on(stage, reply if reply.status == "ok" else None, stats)
            self._count(stats)
            self.writer.drain()
        return status, answer, outcome

    def _window_request(self, stage: StageSpec, body: bytes) -> tuple[int, dict[str, Any], Outcome]:
        with self._reported(), self._collecting() as outcome:
            if not takes_no_rows(body):
                return 400, {"error": NO_ROWS_ERROR}, outcome
            stats: Stats = {}
            cutoff = time.time()
            window = self._run_window(stage, f"request-{iso(cutoff)}", cutoff, stats)
            self._count(stats)
            self.writer.drain()
            status, answer, _ = window.answer()  # (never busy here: this process runs one window at a time)
        return status, answer, outcome

    def close(self, failed: bool = False) -> None:
        self._close(failed)

    @contextlib.contextmanager
    def _collecting(self) -> Iterator[Outcome]:
        """The counts of everything done inside and the objects written (serve answers each request with them)."""
        outcome = Outcome()
        written: list[tuple[str, str]] = []
        self.collected, self.writer.written = outcome.stats, written
        try:
            yield outcome
        finally:
            self.collected, self.writer.written = None, None
            outcome.objects = [f"{bucket}/{key}" for bucket, key in written]

    # -- the store and the journal's run ------------------------------------------------------------

    def _open(self) -> None:
        """Lock the store, check it is this spec's, open the journal and the log."""
        run_dir = self.root / RUN_DIR
        run_dir.mkdir(parents=True, exist_ok=True)
        self.lock = os.open(run_dir / "lock", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.lock)
            raise LocalRunError(f"another `pipeline run` or `pipeline serve` is using {self.root}; wait for it or stop it") from None
        try:
            self._claim(run_dir / "spec")
            self.journal = Journal(run_dir / "journal.jsonl")
            self.run_log = RunLog(self.root / LOG_NAME, self.spec.name, self.on_log)
            self.writer = QueuedWriter(self.store)
        except BaseException:
            os.close(self.lock)
            raise
        self.logger = JsonLogger(cast(TextIO, self.run_log), flush=False, pipeline=self.spec.name, logger="runner")
        self.stages = LocalStages(self.loaded, self.writer, self.logger, self.run_log.worker_line, self.notify)

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
        """Resume the journal's run, or start a new one when asked to, or when the code or the inputs changed."""
        self.fingerprint = fingerprint(self.loaded)
        header = self.journal.header
        if self.fresh:
            self._new_run(None)
        elif header is None:
            self._new_run("the store holds a run of another version of pipeline" if self.journal.entries else None)
        elif header.get("format") != JOURNAL_FORMAT:
            self._new_run("the store holds a run of another version of pipeline")
        elif header.get("fp") != self.fingerprint:
            self._new_run("the spec or the stages' code changed since the last run")
        elif header.get("inputs") != self.inputs:
            self._new_run(_inputs_changed(header.get("inputs"), self.inputs))
        else:  # the journal's run goes on: what a killed run had staged and not landed is of no use to anyone
            self.store.remove_temporaries(skip=(RUN_DIR,))

    def _new_run(self, reason: str | None) -> None:
        """Empty the store and start the journal over, crash-safe: the journal is emptied first (and
        synced), then the store, and the new run's header is written only once the store is empty.
        Killed anywhere in between, the next start finds no run in the journal and empties the store
        again, so no object of the last run is ever taken for one of this run's."""
        old = [child for child in self.root.iterdir() if child.name not in (RUN_DIR, LOG_NAME)]
        if reason:
            self.notify(f"{reason}: starting a new run in {self.root}"
                        + ("; the last run's outputs there are removed (--store DIR keeps a run apart)" if old else ""))
        self.summary.new_run = reason or "new"
        self._settle()  # (a batch in a worker's hands is finished, then emptied away with the rest)
        self.writer.drain()
        self.journal.clear(self.store.durable)
        for child in self.root.iterdir():
            if child.name not in (RUN_DIR, LOG_NAME):
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        with contextlib.suppress(FileNotFoundError):
            (self.root / RUN_DIR / STREAM_FILE).unlink()
        self.run_log.restart()
        self.journal.begin({"c": "run", "format": JOURNAL_FORMAT, "fp": self.fingerprint, "spec": str(self.loaded.path.resolve()), "stack": self.loaded.stack,
                            "inputs": self.inputs})
        self.summary.stages = {s.name: StageStats(s.name, s.trigger.kind) for s in self.spec.stages}
        self.summary.raw_objects = self.summary.records_this_run = self.summary.batches_skipped = self.summary.batches_resumed = 0
        self.summary.uploads_this_run = self.summary.uploads_skipped = 0
        self.completed = False

    def _close(self, failed: bool) -> None:
        """Stop the workers (at once when failing), let queued writes land, release the store.
        On the way out of a failure, a second failure here (the disk is still full) is not the news."""
        self.stages.stop(kill=failed)
        steps: list[Callable[[], None]] = [self.writer.close, self.journal.close, self.run_log.close, lambda: os.close(self.lock)]
        for step in steps:
            try:
                step()
            except OSError:
                if not failed:
                    raise

    def _interrupted_message(self) -> str:
        records = sum(p.count for p in self.primary.planned.values() if p.done) if self.primary else 0
        files = len(self.uploads_done)
        done = ", ".join(part for part in (f"{records:,} records" if records else "", f"{files:,} uploaded files" if files else "") if part)
        if not done:
            return f"interrupted before any input was done; run the same command again to start ({self.root})"
        return (f"interrupted: {done} are done and kept in {self.root}; the inputs in progress will be redone. "
                "Run the same command again to resume, or add --fresh to start over")

    def _replay(self) -> None:
        """The journal's run so far: each stream consumer's planned batches, the uploads and ticks planned
        and done, and the counts of everything done."""
        self.summary.stages = {s.name: StageStats(s.name, s.trigger.kind) for s in self.spec.stages}
        self.summary.raw_objects = 0
        consumers = []
        streams = [s for s in self.spec.stages if s.trigger.stream]
        if self.spec.stream is not None and self.spec.stream.archive:
            first = streams[0].trigger.stream if streams else None
            consumers.append(_Consumer(RAW_CONSUMER, first.batch_size if first else DEFAULT_BATCH,
                                       first.max_batching_window_s if first else 5, None))
        for stage in streams:
            trigger = stage.trigger.stream
            assert trigger is not None
            consumers.append(_Consumer(stage.name, trigger.batch_size, trigger.max_batching_window_s, stage))
        self.consumers = consumers
        self.primary = consumers[0] if consumers else None
        by_name = {c.name: c for c in consumers}
        self.uploads_planned, self.uploads_done, self.ticks_planned, self.ticks_done = {}, set(), {}, set()
        self.keys_kept, self.stream_kept = {}, 0
        for entry in self.journal.entries:
            kind, state = entry.get("c"), entry.get("st")
            if kind == KEEP:
                self.stream_kept = entry["o"]
                if "k" in entry:
                    self.keys_kept[entry["k"]] = (entry["s"], entry["e"])
            elif kind == UPLOAD:
                if state == "plan":
                    self.uploads_planned[entry["u"]] = entry
                    if "k" in entry:
                        self.keys_kept[entry["k"]] = {"upload": entry["name"]}
                elif state == "done":
                    self.uploads_done.add(entry["u"])
                    self._count(entry["stats"])
            elif kind == TICK:
                if state == "plan":
                    self.ticks_planned[entry["tick"]] = entry
                elif state == "done":
                    self.ticks_done.add(entry["tick"])
                    self._count(entry["stats"])
            elif (consumer := by_name.get(str(kind))) is not None and "s" in entry:
                if state == "plan":
                    consumer.planned[entry["s"]] = _Planned(entry["e"], entry["n"], entry["h"])
                elif state == "done" and entry["s"] in consumer.planned:
                    consumer.planned[entry["s"]].done = True
                    self._count(entry["stats"])
        self.ticks = len([t for t in self.ticks_planned if t != "end"])
        self.completed = "end" in self.ticks_done
        self.redo_left = {(c.name, first) for c in consumers for first, p in c.planned.items() if not p.done}
        self.redo_left |= {(UPLOAD, n) for n in self.uploads_planned if n not in self.uploads_done}

    # -- invoking stages ----------------------------------------------------------------------------

    def _invoke(self, stage: StageSpec, request: tuple[Any, ...], batch_id: str, inputs: Inputs, stats: Stats) -> None:
        """One input of a stage (retried, then dead-lettered); its output triggers the stages that read it."""
        self._pass_on(stage, self.stages.call(stage, request, batch_id, inputs, stats), stats)

    def _pass_on(self, stage: StageSpec, reply: Reply | None, stats: Stats) -> None:
        """The output of an invocation (None: it failed) to the stages that read it."""
        tmp = output_of(reply, stage) if reply is not None else None
        if reply is not None and tmp is not None:
            self._fan_out(stage.name, reply.result["output_key"], tmp, stats)

    def _readers(self, source: str, key: str, body: bytes | str) -> Iterator[tuple[StageSpec, tuple[Any, ...], str, Inputs]]:
        """The stages that read a new object in `source`'s bucket (a stage's, or the uploads'), each with its
        request, batch id and items for dead letters. `body` is the object's bytes, or the temporary file a
        worker wrote it to (read there, or at its key once it landed)."""
        bucket = source  # local buckets are named by their role key
        if isinstance(body, bytes):
            request: tuple[Any, ...] = ("object", bucket, key, body)
            inputs = object_items(bucket, key, body)
        else:
            request, inputs = ("object_file", bucket, key, body), object_items(bucket, key, functools.partial(self.store.read_staged, bucket, key, body))
        for consumer in self.spec.consumers_of(source):
            if consumer.trigger.objects:
                yield consumer, request, keys.object_batch(key, f"{source}/"), inputs

    def _fan_out(self, source: str, key: str, body: bytes | str, stats: Stats) -> None:
        """Run every stage that reads a new object on it, like the object trigger (see `_readers`).
        Schedules reading it take it on their next run."""
        for stage, request, batch_id, inputs in self._readers(source, key, body):
            self._invoke(stage, request, batch_id, inputs, stats)

    def _raw_archive(self, batch: _Batch) -> None:
        body = b"\n".join([*batch.records.datas, b""])
        self.writer.put(RAW_BUCKET, keys.raw_key(batch.batch_id), body)
        batch.stats[RAW_CONSUMER] = {"invocations": 1, "items": len(batch.records)}

    def _record_done(self, entry: dict[str, Any]) -> None:
        """An input is done: its `done` line follows its objects (handed to the writer with others, soon)."""
        self.writer.submit(self.journal.append, entry)
        self.writer.tick()
        self.journal.entries.append(entry)
        self._count(entry["stats"])

    def _count(self, stats: Stats) -> None:
        for name, values in stats.items():
            if name == RAW_CONSUMER:
                self.summary.raw_objects += values.get("invocations", 0)
            elif name in self.summary.stages:
                self.summary.stages[name].add(values)
            if self.collected is not None:
                add_stats(self.collected, name, values)

    # -- uploads -------------------------------------------------------------------------------------

    def _uploads(self, uploads: list[Upload]) -> None:
        """Land each file (in order) unless an earlier run of the same inputs did; a tick may come between files."""
        for number, upload in enumerate(uploads, start=1):
            if number in self.uploads_done:
                self.summary.uploads_skipped += 1
                continue
            self._land(number, upload.name, upload.read())
            self._maybe_tick(time.monotonic())

    def _land(self, number: int, name: str, data: bytes, sender_key: str | None = None, kept: Kept | None = None) -> None:
        """Upload number `number` lands in the uploads bucket and triggers its readers: planned, then done.
        With `kept` (serve), the plan line and the file are on disk before it is called and anything runs."""
        assert self.spec.uploads is not None
        bucket, key = self.spec.uploads.name, self.spec.uploads.prefix + name
        with held():
            if number not in self.uploads_planned:
                entry = _keyed({"c": UPLOAD, "st": "plan", "u": number, "name": name, "h": digest_of(data)}, sender_key)
                self.writer.submit(self.journal.append, entry)
                self.uploads_planned[number] = entry
            self.writer.put(bucket, key, data)
            if kept is not None:
                self._promise(sender_key, {"upload": name}, kept)
        stats: Stats = {}
        self._fan_out(bucket, key, data, stats)
        self._record_done({"c": UPLOAD, "st": "done", "u": number, "stats": stats})
        self.uploads_done.add(number)
        self.redo_left.discard((UPLOAD, number))
        self.summary.uploads_this_run += 1

    def _redo_uploads(self) -> None:
        """Serve: uploads a killed server had planned and not finished are redone from the landing bucket
        (an upload whose file never landed was not accepted: its sender got no answer)."""
        if self.spec.uploads is None:  # (a changed spec is a new run: nothing was planned)
            return
        for number, entry in sorted(self.uploads_planned.items()):
            if number in self.uploads_done:
                continue
            try:
                data = self.store.get(self.spec.uploads.name, self.spec.uploads.prefix + entry["name"])
            except FileNotFoundError:
                data = None
            if data is None or digest_of(data) != entry["h"]:  # (never kept: its sender got no answer)
                self.keys_kept.pop(str(entry.get("k")), None)
                self.notify(f"upload {entry['name']!r} was cut short by the last stop and is dropped; send it again")
                self._record_done({"c": UPLOAD, "st": "done", "u": number, "stats": {}})
                self.redo_left.discard((UPLOAD, number))
                continue
            self._land(number, entry["name"], data)

    # -- schedules -----------------------------------------------------------------------------------

    def _maybe_tick(self, now: float) -> None:
        """Run the schedules when `--tick` says so. Not while inputs a killed run left half done are
        still to be redone: a redone input rewrites its objects (new modification times), and a window
        taken before that would see them twice."""
        if self.next_tick is not None and self.tick_s and now >= self.next_tick and not self.redo_left:
            self._settle()
            self.ticks += 1
            self._schedule(f"local-{self.ticks:06d}")
            self.next_tick = now + self.tick_s

    def _redo_ticks(self) -> None:
        """Ticks a killed run planned and did not finish, first, with the windows it journaled."""
        for tick in list(self.ticks_planned):
            if tick not in self.ticks_done:
                self._schedule(tick)

    def _schedule(self, tick: str) -> None:
        """Every schedule stage once, for tick `tick`: planned, run, done. A stage with `from` runs over its window,
        whose committed state says what is read already, so a tick a killed run left planned simply runs again."""
        if tick in self.ticks_done:
            return
        if tick not in self.ticks_planned:
            plan = {"c": TICK, "st": "plan", "tick": tick}
            self.writer.submit(self.journal.append, plan)
            self.ticks_planned[tick] = plan
        stats: Stats = {}
        for stage in self.spec.stages:
            if not stage.trigger.schedule:
                continue
            if stage.trigger.from_stage:
                self._run_window(stage, tick, time.time(), stats)
            else:
                self._invoke(stage, ("schedule", tick), keys.schedule_batch(tick), lambda: ([], []), stats)
        self._record_done({"c": TICK, "st": "done", "tick": tick, "stats": stats})
        self.ticks_done.add(tick)

    def _run_window(self, stage: StageSpec, run: str, cutoff: float, stats: Stats) -> WindowOutcome:
        """A run over the stage's window (`LocalStages.run_window`); its output goes on to the stages that read it."""
        window, reply = self.stages.run_window(stage, self.store, self.writer.drain, cutoff, run, stats, take_over=True)
        self._pass_on(stage, reply, stats)
        return window

    def _flush(self, consumer: _Consumer) -> None:
        records = consumer.pending
        consumer.pending, consumer.target = _Lines(), None
        first, last = records.numbers[0], records.numbers[-1]
        digest = self._digest(records)
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
        batch = _Batch(consumer, records, keys.stream_batch(PARTITION, first, last, LINE_WIDTH), {})
        if consumer.stage is None:
            self._raw_archive(batch)
            self._complete(batch)
        else:
            self._advance(consumer, batch)

    def _digest(self, records: _Lines) -> str:
        """The digest of a batch's lines, worked out once for all the consumers that batch them alike."""
        span = (records.numbers[0], records.numbers[-1])
        digest = self.digests.get(span)
        if digest is None:
            if len(self.digests) > 256:
                self.digests.clear()
            digest = self.digests[span] = digest_of(b"\n".join(records.datas))
        return digest

    def _advance(self, consumer: _Consumer, batch: _Batch | None) -> None:
        """One step of a stream stage's pipeline, which keeps its workers busy while this process reads
        and batches the input: up to two of the stage's batches are in workers at a time, one in the
        stage's own worker (`computing`), the one before it in the workers of the object stages that
        read the stage's output (`reading`; only this stage's batches ever go to them). A step takes
        the reply of the first and hands the stage `batch` in its place, takes the replies of the
        second (which is then done, and whatever its readers wrote has gone further), and hands the
        first's output to its readers. Each worker has one input at a time, as a function has."""
        assert consumer.stage is not None
        computed, consumer.computing = consumer.computing, None
        if computed is not None:
            self._receive(computed)
        if batch is not None:
            self._begin(consumer.stage, batch)
            consumer.computing = batch
        read, consumer.reading = consumer.reading, None
        if read is not None:
            self._finish_reads(read)
            self._complete(read)
        if computed is not None:
            self._begin_reads(consumer.stage, computed)
            consumer.reading = computed

    def _settle(self) -> None:
        """Finish the batches in stream stages' workers: before a tick takes its windows, at the end of the
        input, whenever the input may wait (standard input), before a new run."""
        for consumer in self.consumers:
            while consumer.computing is not None or consumer.reading is not None:
                self._advance(consumer, None)

    def _begin(self, stage: StageSpec, batch: _Batch) -> None:
        records = batch.records
        batch.call = self.stages.begin(stage, ("stream", batch.batch_id, records.datas, records.numbers, records.arrivals))

    def _receive(self, batch: _Batch) -> None:
        """The stage's reply (after its retries, or its dead letters), its writes queued."""
        assert batch.call is not None
        records = batch.records
        batch.reply = self.stages.finish(batch.call, batch.batch_id, lambda: (records.datas, records.identities()), batch.stats)

    def _begin_reads(self, stage: StageSpec, batch: _Batch) -> None:
        """The batch's output to the workers of the object stages that read it."""
        tmp = output_of(batch.reply, stage) if batch.reply is not None else None
        if batch.reply is not None and tmp is not None:
            for reader, request, batch_id, inputs in self._readers(stage.name, batch.reply.result["output_key"], tmp):
                batch.reads.append(_Read(reader, self.stages.begin(reader, request), batch_id, inputs))

    def _finish_reads(self, batch: _Batch) -> None:
        """The readers' replies (every one, so their workers are free), then what they wrote to its readers."""
        for read in batch.reads:
            read.reply = self.stages.finish(read.call, read.batch_id, read.inputs, batch.stats)
        for read in batch.reads:
            self._pass_on(read.stage, read.reply, batch.stats)

    def _complete(self, batch: _Batch) -> None:
        """The batch is done: its `done` line (after everything it wrote)."""
        consumer, first = batch.consumer, batch.records.numbers[0]
        if consumer is self.primary:
            self.summary.records_this_run += len(batch.records)
        consumer.planned[first].done = True
        self.redo_left.discard((consumer.name, first))
        self._record_done({"c": consumer.name, "st": "done", "s": first, "stats": batch.stats})

    def _offer(self, consumer: _Consumer, records: _Lines, now: float) -> None:
        """Add records (ascending lines) to the consumer's batch, flushing full or planned batches."""
        numbers = records.numbers
        i, n = 0, len(numbers)
        while i < n:
            if not consumer.pending:
                plan = consumer.planned.get(numbers[i])
                consumer.target = plan
                consumer.first_arrival = now
            target = consumer.target
            if target is not None:
                j = bisect_right(numbers, target.last, i)
                if j == i:  # the recorded batch ended earlier than this input's lines: _flush reports the mismatch
                    self._flush(consumer)
                    continue
                consumer.pending.take(records, i, j)
                i = j
                if numbers[j - 1] >= target.last:
                    self._flush(consumer)
            else:
                j = min(n, i + consumer.batch_size - len(consumer.pending))
                consumer.pending.take(records, i, j)
                i = j
                if len(consumer.pending) >= consumer.batch_size:
                    self._flush(consumer)

    def _expire(self, now: float) -> None:
        for consumer in self.consumers:
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

    def _stream(self, data: _FileInput | _StdinInput) -> int:
        """Turn lines into Records (line number = sequence; id = line + CRC of the bytes) and batch them.
        Returns the number of lines read."""
        summary, consumers, progress = self.summary, self.consumers, self.progress
        mtime = data.arrival
        live = mtime is None  # standard input
        timed = live or self.next_tick is not None
        line_no = records_in = read_bytes = last_record = 0
        planned_until = max((p.last for c in consumers for p in c.planned.values()), default=0)
        for chunk in data.chunks():
            now = time.monotonic() if timed else 0.0
            if chunk:
                records = lines_of(chunk, line_no + 1, mtime if mtime is not None else time.time())
                line_no += len(chunk)
                if records:
                    last_record = records.numbers[-1]
                read_bytes += sum(map(len, chunk))
                records_in += len(records)
                for consumer in consumers:
                    self._offer(consumer, records, now)
                if isinstance(data, _StdinInput) and not self.completed and line_no > planned_until:
                    data.stop_spooling()  # past every batch the journal planned: the input can no longer disagree
                if progress is not None:
                    progress(records_in, read_bytes)
            if timed:
                self._expire(now)
                self._maybe_tick(now)
            if live:  # the next line may be long in coming: what was read goes all the way through now
                self._settle()
            self.writer.flush()
        for consumer in consumers:
            if consumer.pending:
                if consumer.target is not None and consumer.pending.numbers[-1] < consumer.target.last:
                    raise _InputChanged(f"it ends before line {consumer.target.last}")
                self._flush(consumer)
            later = [first for first in consumer.planned if first > last_record]
            if later:
                raise _InputChanged(f"it ends before line {min(later)}")
        self._settle()
        summary.records_in = records_in
        return line_no


def _keyed(entry: dict[str, Any], key: str | None) -> dict[str, Any]:
    """A journal line with the sender's idempotency key, if it sent one."""
    return entry if key is None else {**entry, "k": key}


def _inputs_changed(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """Why the journal's run is not this one, in the user's words."""
    if not isinstance(old, dict):
        return "the store holds a run of another version of pipeline"
    if old.get("serve") and not new.get("serve"):
        return "the store holds the run of a `pipeline serve`"
    if new.get("serve"):
        return "the store holds a `pipeline run` (`pipeline serve` continues only its own runs)"
    if old.get("stream") != new.get("stream"):
        return "the last run had a stream input (--input) and this one has none" if old.get("stream") else "the last run had no stream input (--input)"
    return "the uploaded files (--upload) differ from the last run's"
