"""`pipeline run` (and the session behind `pipeline serve`): the whole pipeline on this machine,
through the same runtime the functions use.

Records from a JSON-lines file (or stdin) are batched like the stream trigger would batch them
(batch size, batching window), archived raw, and fed to each stream stage; uploaded files land in
the uploads bucket and trigger the object stages that read it; every output object triggers the
stages that read it; schedule stages run on each `--tick` and once at the end, those with `from`
over the objects their source wrote since their last successful run, with the clouds' window code
(`window.py`: watermark, lease and conditional commits on the local store).
Buckets and keys land under `.pipeline/local/<pipeline>/<stack>/` exactly as they would in the cloud.

Handlers run in one worker process per stage (`stages.py`), as they would in their own
function: a handler that exits, crashes or runs past `timeout_s` fails that invocation, which is
retried per the stage's `retries` and then dead-lettered, and the run goes on. Workers only
compute (and write what an invocation wrote to temporary files); this process decides what lands
and when (fsync, rename, journal line, in order, on its writer thread). A stream stage's batches are
pipelined (`Feeder._advance`, in `feeding.py`): its worker computes the next batch while the object stages that read its
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
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, cast

from pipeline.local.batches import Consumer, InputChanged, Lines, Planned
from pipeline.local.errors import LocalRunInterrupted, LocalUsageError, StoreConflictError
from pipeline.local.feeding import Feeder
from pipeline.local.inputs import FileInput, Upload, check_upload_name, check_uploads, digest_of
from pipeline.local.interrupts import Stopped, held
from pipeline.local.journal import Journal, QueuedWriter, RunLog, describe_os_error
from pipeline.local.layout import DEAD_LETTER_BUCKET, DEFAULT_BATCH, JOURNAL_FORMAT, KEEP, LOG_NAME, RAW_CONSUMER, RUN_DIR, STREAM_FILE, TICK, UPLOAD
from pipeline.local.stages import LocalRunError, LocalStages, Stats
from pipeline.local.summary import RunSummary, StageStats
from pipeline.local.watch import fingerprint
from pipeline.runtime.logs import JsonLogger
from pipeline.runtime.window import NO_ROWS_ERROR, iso, takes_no_rows
from pipeline.spec.model import StageSpec


@dataclass
class Outcome:
    """What one request to `pipeline serve` did: counts per stage and the objects it wrote (`bucket/key`).
    `repeated`: the request's idempotency key was kept before, so nothing was done again."""

    stats: Stats = field(default_factory=dict)
    objects: list[str] = field(default_factory=list)
    repeated: bool = False


Kept = Callable[[], None]  # serve: called once a request's input is kept for good (it will be processed, even after a kill)


class LocalRun(Feeder):
    """One `pipeline run` (`run`), or the session of a `pipeline serve` (`serve` ... `close`): wire the
    stages, replay the journal, take the inputs through."""

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
                    except InputChanged as change:
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
                        self.next_line = self._stream(FileInput(self.stream_path)) + 1
                    except InputChanged as change:
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
            records = Lines(list(lines), list(range(first, first + len(lines))), [time.time()] * len(lines))
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
            consumers.append(Consumer(RAW_CONSUMER, first.batch_size if first else DEFAULT_BATCH,
                                       first.max_batching_window_s if first else 5, None))
        for stage in streams:
            trigger = stage.trigger.stream
            assert trigger is not None
            consumers.append(Consumer(stage.name, trigger.batch_size, trigger.max_batching_window_s, stage))
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
                    consumer.planned[entry["s"]] = Planned(entry["e"], entry["n"], entry["h"])
                elif state == "done" and entry["s"] in consumer.planned:
                    consumer.planned[entry["s"]].done = True
                    self._count(entry["stats"])
        self.ticks = len([t for t in self.ticks_planned if t != "end"])
        self.completed = "end" in self.ticks_done
        self.redo_left = {(c.name, first) for c in consumers for first, p in c.planned.items() if not p.done}
        self.redo_left |= {(UPLOAD, n) for n in self.uploads_planned if n not in self.uploads_done}

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
