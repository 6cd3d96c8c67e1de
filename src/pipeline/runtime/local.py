"""`pipeline run`: the whole pipeline on this machine, through the same runtime the functions use.

Records from a JSON-lines file (or stdin) are batched like the stream trigger would batch them
(batch size, batching window), archived raw, and fed to each stream stage; every output object
triggers the stages that read it; schedule stages run on each `--tick` and once at the end.
Buckets and keys land under `.pipeline/local/<stack>/` exactly as they would in the cloud.

Crash safety without a database: input record N is line N of the input, so batch boundaries
are line ranges; before a batch runs its range (and a digest of its lines) is appended to a
journal, after it and everything it triggered finished a `done` line follows. Outputs go to
deterministic keys through atomic replaces. A run killed at any moment and started again replays
the journal: done batches are skipped, planned ones are re-run with the same boundaries and
overwrite whatever they had written. Nothing is lost and nothing is written twice.
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import select
import shutil
import sys
import threading
import time
import zlib
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TextIO

from pipeline.runtime import keys
from pipeline.runtime.errors import BatchFailedError
from pipeline.runtime.invoke import BatchResult, Settings, StageRunner, make_runner
from pipeline.runtime.logs import JsonLogger
from pipeline.runtime.records import Record
from pipeline.runtime.store import LocalStore
from pipeline.spec.load import LoadedSpec
from pipeline.spec.model import StageSpec

RAW_BUCKET = "raw"
DEAD_LETTER_BUCKET = "dead-letter"
PARTITION = "local"  # one local "shard": records keep input order
LINE_WIDTH = 12  # zero-padded line numbers in keys
RAW_CONSUMER = "@raw"
DEFAULT_BATCH = 500


class LocalRunError(Exception):
    """A problem the user must fix (input changed under the journal, store in use...)."""


def default_root(loaded: LoadedSpec) -> Path:
    return loaded.base_dir / ".pipeline" / "local" / loaded.stack


def stage_env(loaded: LoadedSpec, stage: StageSpec) -> dict[str, str]:
    """The environment the orchestrator gives the stage's function, with local bucket names
    (the bucket role keys: `raw`, one per stage, `dead-letter`)."""
    spec = loaded.spec
    env = {
        "PIPELINE_NAME": spec.name,
        "PIPELINE_STACK": loaded.stack,
        "PIPELINE_STAGE": stage.name,
        "PIPELINE_TRIGGER": stage.trigger.kind,
        "PIPELINE_HANDLER": stage.handler,
        "PIPELINE_OUTPUT_BUCKET": stage.name,
        "PIPELINE_OUTPUT_PREFIX": f"{stage.name}/",
        "PIPELINE_DEAD_LETTER_BUCKET": DEAD_LETTER_BUCKET,
        "PIPELINE_DEAD_LETTER_PREFIX": f"{stage.name}/",
    }
    if stage.trigger.objects:
        source = stage.trigger.objects.from_stage
        env["PIPELINE_INPUT_BUCKET"] = source
        env["PIPELINE_INPUT_PREFIX"] = f"{source}/"
    if stage.model:
        env["PIPELINE_MODEL_PATH"] = str(loaded.base_dir / stage.model)
    env.update(stage.environment)
    return env


@dataclass
class StageStats:
    name: str
    trigger: str
    invocations: int = 0
    items: int = 0
    rows: int = 0
    dead_letters: int = 0
    retries: int = 0
    failed_batches: int = 0  # retries exhausted: the whole input went to dead letters

    def add(self, other: dict[str, int]) -> None:
        for name in ("invocations", "items", "rows", "dead_letters", "retries", "failed_batches"):
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
    stages: dict[str, StageStats] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        return self.records_this_run / self.seconds if self.seconds > 0 else 0.0


class _EnvSwitch:
    """Handlers read os.environ (as they would in their own function); give each stage its own."""

    def __init__(self) -> None:
        self.saved: dict[str, str | None] = {}
        self.active: dict[str, str] = {}

    def apply(self, env: dict[str, str]) -> None:
        if env is self.active:
            return
        for key in self.active.keys() - env.keys():
            self._set(key, None)
        for key, value in env.items():
            if self.active.get(key) != value:
                self._set(key, value)
        self.active = env

    def _set(self, key: str, value: str | None) -> None:
        if key not in self.saved:
            self.saved[key] = os.environ.get(key)
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value

    def restore(self) -> None:
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self.saved, self.active = {}, {}


class Journal:
    """Append-only progress log: `plan` before a batch runs, `done` after. Lines are tiny and
    written with one `write`, so a kill leaves at most one torn last line, dropped on load."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
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
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise LocalRunError(f"another `pipeline run` is using {path.parent.parent}; wait for it or kill it") from None

    def append(self, entry: dict[str, Any]) -> None:
        os.write(self.fd, (json.dumps(entry, separators=(",", ":")) + "\n").encode())

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
            raise LocalRunError(f"writing to the local store failed: {type(self.error).__name__}: {self.error}") from self.error

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()


@dataclass
class _Planned:
    last: int
    count: int
    digest: str
    done: bool = False


class _Consumer:
    """Batches records for one stream consumer (a stream stage, or the raw archive)."""

    def __init__(self, name: str, batch_size: int, window_s: float, process: Callable[[Sequence[Record], str], dict[str, dict[str, int]]]) -> None:
        self.name, self.batch_size, self.window_s, self.process = name, batch_size, window_s, process
        self.planned: dict[int, _Planned] = {}
        self.pending: list[_LineRecord] = []
        self.first_arrival = 0.0
        self.target: _Planned | None = None


def _digest(records: Sequence[Record]) -> str:
    """Enough to notice a different input under the same journal (CRC-32 runs at memory speed)."""
    data = b"\n".join([r.data for r in records])
    return f"{zlib.crc32(data):08x}-{len(data)}"


class _LineRecord(Record):
    """A record read from line `line` of the local input. Its id (line + CRC-32 of the bytes) and
    sequence are computed only when asked for (dead letters, logs), not for every record."""

    __slots__ = ("line",)
    key = None
    partition = PARTITION

    def __init__(self, data: bytes, line: int, arrival_time: float | None) -> None:
        self.data = data
        self.line = line
        self.arrival_time = arrival_time

    @property
    def record_id(self) -> str:  # type: ignore[override]
        return f"{self.line:0{LINE_WIDTH}d}-{zlib.crc32(self.data):08x}"

    @property
    def sequence(self) -> str:  # type: ignore[override]
        return str(self.line)


def _line(record: _LineRecord) -> int:
    return record.line


def _chunks_from_file(handle: IO[bytes]) -> Iterator[list[bytes] | None]:
    """About 1 MiB of whole lines at a time: per-line work stays in tight loops."""
    while True:
        chunk = handle.readlines(1 << 20)
        if not chunk:
            return
        yield chunk


def _chunks_from_pipe(fd: int, tick_s: float) -> Iterator[list[bytes] | None]:
    """Whole lines as they arrive; None after `tick_s` of silence, so batching windows can expire."""
    buffer = b""
    while True:
        ready, _, _ = select.select([fd], [], [], tick_s)
        if not ready:
            yield None
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            if buffer:
                yield [buffer]
            return
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        if lines:
            yield [line + b"\n" for line in lines]


class LocalRun:
    """One `pipeline run`: wire stages, replay the journal, stream the input through."""

    def __init__(self, loaded: LoadedSpec, root: Path | None = None, tick_s: float | None = None, durable: bool = True,
                 fresh: bool = False, progress: Callable[[int, int], None] | None = None) -> None:
        self.loaded = loaded
        self.spec = loaded.spec
        self.root = root or default_root(loaded)
        if fresh and self.root.exists():
            shutil.rmtree(self.root)
        self.tick_s = tick_s
        self.progress = progress
        self.store = LocalStore(self.root, durable=durable)
        self.summary = RunSummary(self.spec.name, loaded.stack, self.root)
        self.summary.stages = {s.name: StageStats(s.name, s.trigger.kind) for s in self.spec.stages}
        self.envs = {s.name: stage_env(loaded, s) for s in self.spec.stages}
        self.env_switch = _EnvSwitch()
        self.runners: dict[str, StageRunner] = {}
        self.retry_delay_s = 0.05

    # -- wiring ------------------------------------------------------------------------------------

    def _runner(self, stage: StageSpec) -> StageRunner:
        runner = self.runners.get(stage.name)
        if runner is None:
            env = self.envs[stage.name]
            self.env_switch.apply(env)
            logger = JsonLogger(self._log, flush=False, pipeline=self.spec.name, stage=stage.name)
            model = env.get("PIPELINE_MODEL_PATH")
            runner = make_runner(Settings.from_env(env), self.writer, self.loaded.base_dir, env=env, model_path=model, logger=logger)
            self.runners[stage.name] = runner
        return runner

    def _invoke(self, stage: StageSpec, call: Callable[[StageRunner], BatchResult], dead_letter: Callable[[StageRunner, BaseException], BatchResult],
                stats: dict[str, dict[str, int]]) -> BatchResult:
        """Run one input with the stage's retries; when they are exhausted, dead-letter the input."""
        runner = self._runner(stage)
        self.env_switch.apply(self.envs[stage.name])
        entry = stats.setdefault(stage.name, {})
        for attempt in range(stage.retries + 1):
            try:
                result = call(runner)
                break
            except BatchFailedError as exc:
                if attempt == stage.retries:
                    result = dead_letter(runner, exc.cause)
                    entry["failed_batches"] = entry.get("failed_batches", 0) + 1
                    break
                entry["retries"] = entry.get("retries", 0) + 1
                time.sleep(min(1.0, self.retry_delay_s * 2**attempt))
        entry["invocations"] = entry.get("invocations", 0) + 1
        entry["items"] = entry.get("items", 0) + result.items
        entry["rows"] = entry.get("rows", 0) + result.rows
        entry["dead_letters"] = entry.get("dead_letters", 0) + result.dead_letters
        if result.output_key:
            self._fan_out(stage, result, stats)
        return result

    def _fan_out(self, stage: StageSpec, result: BatchResult, stats: dict[str, dict[str, int]]) -> None:
        """A new object in the stage's bucket: run every stage that reads it, like the object trigger.

        The rows just written are handed over in memory when JSON gives them back unchanged, and as
        the written bytes otherwise, so a consumer sees exactly what it would read from the bucket.
        """
        key, bucket = result.output_key, stage.name
        assert key is not None
        objects, lines = result.objects, result.lines
        consumers = self.spec.consumers_of(stage.name)
        for index, consumer in enumerate(consumers):
            shared = objects if index == len(consumers) - 1 else None  # one consumer may own (and mutate) the rows

            def call(runner: StageRunner, objects: list[Any] | None = shared) -> BatchResult:
                if objects is not None:
                    return runner.run_object(bucket, key, rows=list(objects), lines=lines)
                return runner.run_object(bucket, key, data="".join(line + "\n" for line in lines).encode("utf-8"))

            def dead(runner: StageRunner, exc: BaseException) -> BatchResult:
                raws = [line.encode("utf-8") for line in lines]
                return runner.dead_letter_all(keys.object_batch(key, f"{bucket}/"), raws,
                                              [{"bucket": bucket, "key": key, "line": i} for i in range(len(raws))], exc)

            self._invoke(consumer, call, dead, stats)

    def _stream_stage(self, stage: StageSpec) -> Callable[[Sequence[Record], str], dict[str, dict[str, int]]]:
        def process(records: Sequence[Record], batch_id: str) -> dict[str, dict[str, int]]:
            stats: dict[str, dict[str, int]] = {}

            def dead(runner: StageRunner, exc: BaseException) -> BatchResult:
                return runner.dead_letter_all(batch_id, [r.data for r in records], [r.describe() for r in records], exc)

            self._invoke(stage, lambda runner: runner.run_stream(records, batch_id), dead, stats)
            return stats
        return process

    def _raw_archive(self, records: Sequence[Record], batch_id: str) -> dict[str, dict[str, int]]:
        body = b"\n".join([r.data for r in records]) + b"\n"
        self.writer.put(RAW_BUCKET, keys.raw_key(batch_id), body)
        return {RAW_CONSUMER: {"invocations": 1, "items": len(records)}}

    def _schedule(self, tick: str) -> None:
        done = {e["tick"] for e in self.journal.entries if e.get("c") == "schedule" and e.get("st") == "done"}
        if tick in done:
            return
        stats: dict[str, dict[str, int]] = {}
        for stage in self.spec.stages:
            if stage.trigger.schedule:
                def dead(runner: StageRunner, exc: BaseException) -> BatchResult:
                    return runner.dead_letter_all(keys.schedule_batch(tick), [], [], exc)
                self._invoke(stage, lambda runner: runner.run_schedule(tick), dead, stats)
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
            consumer = by_name.get(entry.get("c", ""))
            if consumer is None:
                continue
            if entry["st"] == "plan":
                consumer.planned[entry["s"]] = _Planned(entry["e"], entry["n"], entry["h"])
            elif entry["st"] == "done" and entry["s"] in consumer.planned:
                consumer.planned[entry["s"]].done = True
                self._count(entry["stats"])
        return consumers

    def _flush(self, consumer: _Consumer) -> None:
        records = consumer.pending
        consumer.pending, consumer.target = [], None
        first, last = records[0].line, records[-1].line
        digest = _digest(records)
        plan = consumer.planned.get(first)
        if plan is not None:
            if (plan.last, plan.count, plan.digest) != (last, len(records), digest):
                raise LocalRunError(
                    f"the input differs from the run recorded in {self.journal.path} (records at lines {first}-{plan.last}); "
                    "run again with --fresh to start over")
            if plan.done:  # finished by an earlier run: checked, nothing to redo
                if consumer is self.primary:
                    self.summary.batches_skipped += 1
                return
            if consumer is self.primary:
                self.summary.batches_resumed += 1
        else:
            entry = {"c": consumer.name, "st": "plan", "s": first, "e": last, "n": len(records), "h": digest}
            self.writer.submit(self.journal.append, entry)
            consumer.planned[first] = _Planned(last, len(records), digest)
        batch_id = keys.stream_batch(PARTITION, first, last, LINE_WIDTH)
        stats = consumer.process(records, batch_id)
        if consumer is self.primary:
            self.summary.records_this_run += len(records)
        consumer.planned[first].done = True
        self._record_done({"c": consumer.name, "st": "done", "s": first, "stats": stats})

    def _offer(self, consumer: _Consumer, records: list[_LineRecord], now: float) -> None:
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

    # -- the run -----------------------------------------------------------------------------------

    def run(self, source: str) -> RunSummary:
        """Stream `source` (a path, or '-' for stdin) through the pipeline; returns the summary."""
        started = time.monotonic()
        self.root.mkdir(parents=True, exist_ok=True)
        self._log: TextIO = open(self.root / "run.log", "a", encoding="utf-8")  # noqa: SIM115 - closed in finally
        self.journal = Journal(self.root / "journal" / "journal.jsonl")
        self.writer = _Writer(self.store)
        try:
            consumers = self._consumers()
            self._count_schedules()
            self._stream(source, consumers, started)
            self._schedule("end")
            self.writer.drain()
        finally:
            self.writer.close()
            self.journal.close()
            self.env_switch.restore()
            self._log.close()
        self.summary.seconds = time.monotonic() - started
        return self.summary

    def _count_schedules(self) -> None:
        for entry in self.journal.entries:
            if entry.get("c") == "schedule" and entry.get("st") == "done":
                self._count(entry["stats"])
        self.ticks = sum(1 for e in self.journal.entries if e.get("c") == "schedule" and e.get("tick") != "end")

    def _stream(self, source: str, consumers: list[_Consumer], started: float) -> None:
        if source == "-":
            windows = [c.window_s for c in consumers if c.window_s > 0]
            self._pump(_chunks_from_pipe(sys.stdin.buffer.fileno(), min([*windows, 1.0])), consumers, None, started)
            return
        path = Path(source)
        with path.open("rb") as handle:
            self._pump(_chunks_from_file(handle), consumers, path.stat().st_mtime, started)

    def _pump(self, chunks: Iterator[list[bytes] | None], consumers: list[_Consumer], mtime: float | None, started: float) -> None:
        """Turn lines into Records (line number = sequence; id = line + CRC of the bytes) and batch them."""
        summary = self.summary
        progress, tick_s = self.progress, self.tick_s
        next_tick = started + tick_s if tick_s else None
        timed = mtime is None or next_tick is not None
        line_no = records_in = read_bytes = 0
        for chunk in chunks:
            now = time.monotonic() if timed else 0.0
            if chunk:
                arrival = mtime if mtime is not None else time.time()
                records: list[_LineRecord] = []
                append = records.append
                for raw in chunk:
                    line_no += 1
                    data = raw.rstrip(b"\r\n")
                    if data and not data.isspace():
                        append(_LineRecord(data, line_no, arrival))
                read_bytes += sum(map(len, chunk))
                records_in += len(records)
                for consumer in consumers:
                    self._offer(consumer, records, now)
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
                    raise LocalRunError(f"the input ends before line {consumer.target.last}, where the run recorded in "
                                        f"{self.journal.path} had records; run again with --fresh to start over")
                self._flush(consumer)
        summary.records_in = records_in
