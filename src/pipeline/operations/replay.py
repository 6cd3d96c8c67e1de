"""Replaying the records the runtime dead-lettered: once the handler is fixed, every dead letter goes through its
stage again with the delivery guarantees of the first time, on any target.

One dead-letter object holds the dead letters of one input (`<stage>/<batch>.jsonl`), and is replayed as one
invocation of the stage's current handler, in its worker process with its environment, requirements, model,
timeout and retries (`local_stages.LocalStages`, as `pipeline run` runs it). What that invocation writes lands
on the target (the local store, or the cloud's buckets with the operator's credentials); only then is the
dead-letter object removed. So a replay killed at any moment loses nothing, and a replay run twice writes the
same objects twice, never a row twice:

* **A whole input whose retries ran out** (`retries exhausted`): nothing was written for it, so it is run again
  under its own batch id and its output lands at the very key its first successful delivery would have written
  (a stream batch's records, the source object re-read by its key, a schedule's tick).
* **An object stage's dead letters, while its input object is still in its bucket**: the object runs again whole, under
  its own batch id, as a redelivery of its event would: its output is rewritten at its own key with every row, so no
  later redelivery of that event (a redriven queue message, the platform's own) can add a row twice.
* **Poison records** of an input that otherwise succeeded and cannot be had again whole (a stream batch, a window, an
  object since expired): that input's output already holds the good rows, so the records run as the input `replay=<stage>/<batch>` (`replay_batch`), whose output is
  `<stage>/replay=<stage>/<batch>.jsonl`: a key derived from the dead letter, distinct from the original's, from
  any other replay's and from any key an input could produce (a record still failing is dead-lettered at that key
  in the dead-letter bucket, and its next replay nests: `replay=<stage>/replay=<stage>/<batch>`). A dead letter
  left at that key by an earlier, interrupted replay of the same object is removed when this one dead-letters
  nothing, so no record is replayed from two places.
* **A window whose retries ran out**: the stage's watermark did not move, so its next run reads those objects
  again by itself. Replay runs nothing: it removes the dead letter once the window state shows a later run read
  every object it names, and otherwise says the next run will.

New objects reach the stages that read them as any new object does: in the cloud through its object events; on
the local store, the replay runs those stages on them (and each windowed reader once), as `pipeline run` would.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from pipeline.operations.letters import RETRIES_EXHAUSTED, LetterObject, letter_objects, read_entries
from pipeline.operations.local import LocalOperations
from pipeline.operations.protocol import Operations
from pipeline.runtime import keys
from pipeline.runtime.window import State, Windows, is_missing
from pipeline.spec.load import LoadedSpec
from pipeline.spec.model import StageSpec
from pipeline.wiring import stage_prefix

REPLAY = "replay="
DEAD_LETTER = "dead-letter"
Inputs = Callable[[], tuple[list[bytes], list[dict[str, Any]]]]

# Outcome statuses. The first four leave nothing to do; the rest mean a dead letter is still there.
REPLAYED, RESOLVED, WAITING, WOULD = "replayed", "resolved", "waiting", "would replay"
STILL_FAILING, FAILED, REFUSED = "still failing", "failed", "refused"
DONE = frozenset({REPLAYED, RESOLVED, WAITING, WOULD})


def replay_batch(stage: str, batch: str) -> str:
    """The batch id a replay of `stage`'s poison records of `batch` runs as (so its output and dead-letter keys):
    `replay=<stage>/<batch>`. No key the runtime derives from an input can be this: keys escape '=' as `=XX` in
    upper-case hex, and stage names are lower case. So neither an uploaded file's name nor the output of an earlier
    stage's replay (which its readers name after the source key, `replay=3D<stage>/...`) can land on it."""
    return f"{REPLAY}{stage}/{batch}"


def depth(batch: str) -> int:
    """How many replays a batch id is from its first delivery (replays of replays are nested)."""
    return batch.count(REPLAY)


@dataclass
class Outcome:
    """What replaying one dead-letter object did (or, in a dry run, would do)."""

    stage: str
    source: str  # where the dead-letter object is
    records: int
    status: str
    message: str
    rows: int = 0
    outputs: list[str] = field(default_factory=list)
    dead_letters: int = 0  # records dead-lettered again

    @property
    def ok(self) -> bool:
        return self.status in DONE

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "dead_letter": self.source, "records": self.records, "status": self.status, "message": self.message,
                "rows": self.rows, "outputs": self.outputs, "dead_lettered_again": self.dead_letters}


class _Collected:
    """Where the stage workers' writes are collected (a `StagingStore`): the replay lands them itself, in order."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.writes: list[tuple[str, str, bytes]] = []

    def get(self, bucket: str, key: str) -> bytes:
        raise FileNotFoundError(f"{bucket}/{key}: a replay sends every input's bytes to the worker")

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.writes.append((bucket, key, data))

    def put_file(self, bucket: str, key: str, tmp: str) -> None:
        path = Path(tmp)
        if not path.is_relative_to(self.root):
            raise ValueError(f"{tmp} is not a file of this replay's workers")
        self.writes.append((bucket, key, path.read_bytes()))
        path.unlink()

    def take(self) -> list[tuple[str, str, bytes]]:
        taken, self.writes = self.writes, []
        return taken


@dataclass
class _Job:
    """One dead-letter object, read, and what to run for it."""

    stage: StageSpec
    item: LetterObject
    entries: list[dict[str, Any]]
    request: tuple[Any, ...] = ()
    batch_id: str = ""
    inputs: Inputs | None = None
    remap: bool = False  # the request's items are the entries, in order: dead letters of it name the original inputs


class Replayer:
    """Replays dead-letter objects of one target; `close()` stops its workers and removes its scratch folder."""

    def __init__(self, loaded: LoadedSpec, ops: Operations, notify: Callable[[str], None],
                 on_log: Callable[[dict[str, Any]], None] | None = None) -> None:
        from pipeline.local.journal import RunLog
        from pipeline.local.stages import LocalStages
        from pipeline.runtime.logs import JsonLogger

        self.loaded, self.ops, self.spec = loaded, ops, loaded.spec
        self.store = ops.store()
        self.scratch = Path(tempfile.mkdtemp(prefix="pipeline-replay-"))
        self.collected = _Collected(str(self.scratch))
        self.run_log = RunLog(self.scratch / "replay.log", self.spec.name, on_log)
        logger = JsonLogger(cast(Any, self.run_log), flush=False, pipeline=self.spec.name, logger="replay")
        self.stages = LocalStages(loaded, cast(Any, self.collected), logger, self.run_log.worker_line, notify)
        self.cascades = isinstance(ops, LocalOperations)  # the clouds deliver new objects to their readers themselves
        self.windows_due: list[StageSpec] = []
        self.window_jobs: dict[str, list[_Job]] = {}  # locally: a failed window's dead letters, looked at again after its run
        self.written: set[tuple[str, str]] = set()  # (bucket, key) this replay wrote: never replayed again by it

    def close(self, kill: bool = False) -> None:
        with contextlib.suppress(Exception):
            self.stages.stop(kill=kill)
        with contextlib.suppress(Exception):
            self.run_log.close()
        shutil.rmtree(self.scratch, ignore_errors=True)

    # -- what to replay -----------------------------------------------------------------------------

    def objects(self, stages: Sequence[StageSpec], earliest: float | None) -> list[LetterObject]:
        """The dead-letter objects to replay, as they are now: first deliveries before replays of replays."""
        found = list(letter_objects(self.ops, stages, earliest))
        found.sort(key=lambda item: (depth(item.key.split("/", 1)[1]), item.modified, item.key))
        return found

    def replay_all(self, items: Sequence[LetterObject], dry_run: bool) -> Iterator[Outcome]:
        """Each object's outcome as it is done, then (locally) the windowed stages that read new outputs."""
        for item in items:
            if (item.bucket, item.key) in self.written:
                continue  # this replay dead-lettered it again just now: it stays for the next replay
            yield self.replay(item, dry_run)
        if not dry_run:
            yield from self._due_windows()

    def replay(self, item: LetterObject, dry_run: bool) -> Outcome:
        stage = self.spec.stage(item.stage)
        source = self.ops.location(item.bucket, item.key)
        entries = read_entries(self.ops, item)
        if entries is None:
            return Outcome(stage.name, source, 0, RESOLVED, "already gone (replayed or expired since it was listed)")
        unreadable = [i for i, entry in enumerate(entries) if "unreadable" in entry or "batch" not in entry]
        if unreadable:
            return Outcome(stage.name, source, len(entries), REFUSED,
                           f"line {unreadable[0] + 1} is not a dead-letter entry the runtime writes; fix or remove the object by hand")
        batches = {str(entry["batch"]) for entry in entries}
        if len(batches) != 1:
            return Outcome(stage.name, source, len(entries), REFUSED, f"its entries belong to {len(batches)} inputs; the runtime writes one per object")
        if stage.trigger.http and not stage.writes_objects:
            return Outcome(stage.name, source, len(entries), REFUSED,
                           "an HTTP stage that does not persist answered its caller, who was told these rows failed; there is "
                           "nowhere a replay's rows could go: have the caller send them again (then remove this dead letter)")
        job = _Job(stage, item, entries)
        whole = all(entry.get("reason") == RETRIES_EXHAUSTED for entry in entries)
        if whole and stage.trigger.window_source:
            return self._window_letters(job, dry_run)
        refusal = self._prepare(job, whole)
        if refusal:
            return Outcome(stage.name, source, len(entries), REFUSED, refusal)
        output = self.ops.location(self.ops.bucket(stage.name), keys.output_key(stage_prefix(stage.name), job.batch_id)) \
            if stage.writes_objects else "(no output: an HTTP stage that does not persist)"
        if dry_run:
            return Outcome(stage.name, source, len(entries), WOULD, f"would run {len(entries)} record(s) as input {job.batch_id} -> {output}")
        return self._run(job, source)

    # -- windows ------------------------------------------------------------------------------------

    def _window_letters(self, job: _Job, dry_run: bool, run_now: bool = True) -> Outcome:
        """A window whose retries ran out: resolved once a later run read all its objects; else its next run will."""
        stage, source = job.stage, self.ops.location(job.item.bucket, job.item.key)
        settings = self.ops.settings(stage)
        from pipeline.runtime.logs import JsonLogger

        windows = Windows(self.store, settings, JsonLogger(level="WARNING", stage=stage.name))
        with self.ops.guarded(f"reading the window state of stage {stage.name}"):
            state, _ = windows.state()
            pending = [key for key in {str((e.get("input") or {}).get("key")) for e in job.entries if (e.get("input") or {}).get("key")}
                       if not self._read_since(state, windows, key)]
        since = _window_start(next(iter({str(e["batch"]) for e in job.entries})))
        if pending or state.until is None or (since is not None and state.until <= since):
            if self.cascades and run_now and not dry_run and stage.trigger.schedule:  # locally the next run is now: this replay holds the store
                if stage not in self.windows_due:
                    self.windows_due.append(stage)
                self.window_jobs.setdefault(stage.name, []).append(job)
                return Outcome(stage.name, source, len(job.entries), WAITING,
                               f"the window's watermark has not moved past it ({_when(state.until)}): the stage runs over its window "
                               "now, which reads these rows again")
            return Outcome(stage.name, source, len(job.entries), WAITING,
                           f"the window's watermark has not moved past it ({_when(state.until)}): the stage's next run reads these "
                           f"{len(job.entries)} row(s) again by itself; left in place")
        if dry_run:
            return Outcome(stage.name, source, len(job.entries), WOULD, "would remove it: a later run read every object it names")
        with self.ops.guarded(f"removing {source}"):
            self.store.delete(job.item.bucket, job.item.key)
        return Outcome(stage.name, source, len(job.entries), RESOLVED,
                       f"a later run of the window read every object it names (watermark now {_when(state.until)}); removed")

    def _read_since(self, state: State, windows: Windows, key: str) -> bool:
        """Whether the window state says `key` of the source was read after the failed run (or it is gone)."""
        if key in state.recent:
            return True
        settings = windows.settings
        listed = [modified for found, modified, _ in self.store.list_sized(settings.input_bucket, key) if found == key]
        return not listed or listed[0] <= state.lower(windows.lateness)

    # -- what to run ----------------------------------------------------------------------------------

    def _prepare(self, job: _Job, whole: bool) -> str | None:
        """Set the job's request, batch id and inputs; or say why it cannot be replayed."""
        stage, entries = job.stage, job.entries
        batch = str(entries[0]["batch"])
        try:
            datas = [base64.b64decode(entry.get("data_base64") or "", validate=True) for entry in entries]
        except (binascii.Error, ValueError):
            return "a record's data_base64 is not base64; fix or remove the object by hand"
        identities: list[dict[str, Any]] = [entry["input"] if isinstance(entry.get("input"), dict) else {} for entry in entries]
        trigger = stage.trigger
        if trigger.objects:
            return self._object_input(job, datas, identities, whole)
        if not whole:
            return self._records(job, datas, identities)
        job.batch_id = batch
        if trigger.schedule and not trigger.source:
            if not batch.startswith("tick/"):
                return f"its input {batch!r} is not a scheduled run's (tick/<time>)"
            job.request, job.inputs = ("schedule", batch[len("tick/"):]), (lambda: ([], []))
            return None
        if trigger.stream:
            job.request = ("records", batch, list(zip(datas, identities, strict=True)))
            job.inputs = lambda: (datas, identities)
            return None
        return f"a {trigger.kind} stage's whole input cannot be sent again from here"

    def _records(self, job: _Job, datas: list[bytes], identities: list[dict[str, Any]]) -> str | None:
        """Poison records alone, as the input `replay=<stage>/<batch>`: a stream batch's records, a window's rows, the
        rows of an object that is gone."""
        stage, batch = job.stage, str(job.entries[0]["batch"])
        job.batch_id, job.remap = replay_batch(stage.name, batch), True
        job.inputs = lambda: (datas, identities)
        if stage.trigger.stream:
            job.request = ("records", job.batch_id, list(zip(datas, identities, strict=True)))
            return None
        if any(not data.strip() for data in datas):
            return "a dead-lettered row is empty; there is nothing to run the handler on"
        bucket = self._role(identities[0].get("bucket")) or stage.trigger.source or stage.name
        job.request = ("window", job.batch_id, bucket, [(f"{batch}.jsonl", b"\n".join(datas) + b"\n")])
        return None

    def _object_input(self, job: _Job, datas: list[bytes], identities: list[dict[str, Any]], whole: bool) -> str | None:
        """An object stage's dead letters: while its input object is in its bucket, that object runs again whole under its own
        batch id, exactly as a redelivery of its event would (so its output is rewritten at its own key with every row, and a
        later redelivery of the same event cannot add a row twice). Once the object is gone, only the dead-lettered lines can
        run: an input whose retries ran out, as itself; poison rows, as a replay input (no redelivery can come any more)."""
        from pipeline.local.stages import object_items

        first = identities[0]
        role = self._role(first.get("bucket"))
        key = str(first.get("key") or "")
        if role is None or not key:
            return f"it names the input object {first.get('bucket')}/{key}, which is no bucket of this stack's outputs"
        where = self.ops.location(str(first["bucket"]), key)
        with self.ops.guarded(f"reading the input object {where}"):
            try:
                data: bytes | None = self.store.get(str(first["bucket"]), key)
            except Exception as exc:
                if not is_missing(exc):
                    raise
                data = None
        if data is None:
            if not whole:
                return self._records(job, datas, identities)
            if len(job.entries) == 1 and "line" not in first and not datas[0]:
                return f"its input object {where} is gone (kept {self._retention(role)} days); it cannot be run again: upload the file again instead"
            data = b"\n".join(datas) + b"\n"  # every line of the input, as dead-lettered
        assert job.stage.trigger.source is not None
        job.batch_id = keys.object_batch(key, stage_prefix(job.stage.trigger.source))
        if job.batch_id != str(job.entries[0]["batch"]):
            return f"its input {key!r} does not name the batch {job.entries[0]['batch']!r} it says it is"
        job.request, job.inputs = ("object", role, key, data), object_items(role, key, data)
        return None

    def _role(self, bucket: Any) -> str | None:
        return self.ops.role_of(bucket) if isinstance(bucket, str) and bucket else None

    def _retention(self, role: str) -> int:
        storage = self.spec.storage
        if role == self.spec.uploads_name:
            return int(storage.uploads_days)
        return int(storage.intermediate_days if self.spec.consumers_of(role) else storage.final_days)

    # -- running and landing --------------------------------------------------------------------------

    def _run(self, job: _Job, source: str) -> Outcome:
        stage = job.stage
        stats: dict[str, dict[str, int]] = {}
        assert job.inputs is not None
        reply = self.stages.call(stage, job.request, job.batch_id, job.inputs, stats)
        writes = self.collected.take()
        counts = stats.get(stage.name, {})
        landed = self._land(job, writes)
        again = counts.get("dead_letters", 0)
        outcome = Outcome(stage.name, source, len(job.entries), REPLAYED, "", rows=counts.get("rows", 0), outputs=landed, dead_letters=again)
        if reply is None:
            outcome.status = FAILED
            outcome.message = (f"the handler still failed on the whole input after {stage.retries + 1} attempt(s); "
                               f"dead-lettered again at {self._dead_key(job)}")
        elif again:
            outcome.status = STILL_FAILING
            outcome.message = f"{again} record(s) still fail and were dead-lettered again at {self._dead_key(job)}"
        else:
            outcome.message = f"{outcome.rows} row(s) out" + (f" -> {', '.join(landed)}" if landed else "")
        return outcome

    def _dead_key(self, job: _Job) -> str:
        return self.ops.location(job.item.bucket, keys.dead_letter_key(stage_prefix(job.stage.name), job.batch_id))

    def _land(self, job: _Job, writes: list[tuple[str, str, bytes]]) -> list[str]:
        """Outputs first, then dead letters (naming the inputs they came from), then the replayed object goes."""
        item = job.item
        outputs = [w for w in writes if w[0] != DEAD_LETTER]
        dead = [w for w in writes if w[0] == DEAD_LETTER]
        landed = self._put_outputs(outputs)
        base = max((entry.get("replays") or 0 for entry in job.entries if isinstance(entry.get("replays"), int)), default=0)
        dead_keys = set()
        for _, key, data in dead:
            body = self._renamed(data, job, base)
            with self.ops.guarded(f"writing {self.ops.location(item.bucket, key)}"):
                self.store.put(item.bucket, key, body)
            self.written.add((item.bucket, key))
            dead_keys.add(key)
        own = keys.dead_letter_key(stage_prefix(job.stage.name), job.batch_id)
        with self.ops.guarded(f"removing {self.ops.location(item.bucket, item.key)}"):
            if own not in dead_keys and own != item.key:
                self.store.delete(item.bucket, own)  # left by an interrupted replay of this object: superseded now
            if item.key not in dead_keys:
                self.store.delete(item.bucket, item.key)
        return landed

    def _put_outputs(self, outputs: list[tuple[str, str, bytes]]) -> list[str]:
        landed = []
        for role, key, data in outputs:
            bucket = self.ops.bucket(role)
            with self.ops.guarded(f"writing {self.ops.location(bucket, key)}"):
                self.store.put(bucket, key, data)
            self.written.add((bucket, key))
            landed.append(self.ops.location(bucket, key))
            if self.cascades:
                self._cascade(role, key, data)
        return landed

    def _renamed(self, data: bytes, job: _Job, base: int) -> bytes:
        """A replay's dead letters name where their records first came from and how often they were replayed."""
        import json

        lines = []
        for line in data.splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            index = entry.get("index")
            if job.remap and isinstance(index, int) and 0 <= index < len(job.entries):
                original = job.entries[index]
                entry["input"] = original.get("input")
                entry["replay_of"] = {"batch": original.get("batch"), "index": original.get("index")}
                entry["replays"] = (original.get("replays") or 0) + 1 if isinstance(original.get("replays") or 0, int) else 1
            else:
                entry["replays"] = base + 1
            lines.append(json.dumps(entry, ensure_ascii=False, separators=(",", ":"), default=str))
        return ("\n".join(lines) + "\n").encode("utf-8")

    # -- the local store: readers of new objects run, as in `pipeline run` -------------------------------

    def _cascade(self, source: str, key: str, data: bytes) -> None:
        """An object a replay wrote locally: the object stages that read it run on it now, windowed readers once at the end."""
        from pipeline.local.stages import object_items

        for reader in self.spec.consumers_of(source):
            if reader.trigger.window_source:  # a schedule reads it on its next run (here: once, at the end); an HTTP stage on request
                if reader.trigger.schedule and reader not in self.windows_due:
                    self.windows_due.append(reader)
                continue
            batch = keys.object_batch(key, stage_prefix(source))
            stats: dict[str, dict[str, int]] = {}
            self.stages.call(reader, ("object", source, key, data), batch, object_items(source, key, data), stats)
            for role, written, body in self.collected.take():
                if role == DEAD_LETTER:
                    self.store.put(self.ops.bucket(DEAD_LETTER), written, body)
                    self.written.add((self.ops.bucket(DEAD_LETTER), written))
                else:
                    self._put_outputs([(role, written, body)])

    def _due_windows(self) -> Iterator[Outcome]:
        """Each windowed reader of a replayed output runs once over its window (a local tick)."""
        from pipeline.runtime.window import iso

        local = cast(LocalOperations, self.ops)
        while self.windows_due:
            stage = self.windows_due.pop(0)
            cutoff = time.time()
            stats: dict[str, dict[str, int]] = {}
            window, _ = self.stages.run_window(stage, cast(Any, local.store()), self._land_pending, cutoff, f"replay-{iso(cutoff)}", stats,
                                               take_over=True)
            self._land_pending()
            counts = stats.get(stage.name, {})
            where = local.location(stage.name, stage_prefix(stage.name))
            message = (f"ran over its window ({window.status}): {window.window.get('objects', 0)} object(s), "
                       f"{counts.get('rows', 0)} row(s) out, {counts.get('dead_letters', 0)} dead-lettered")
            status = REPLAYED if window.status in ("ran", "empty", "late") and not counts.get("dead_letters") else STILL_FAILING
            yield Outcome(stage.name, where, 0, status, message, rows=counts.get("rows", 0), dead_letters=counts.get("dead_letters", 0))
            for job in self.window_jobs.pop(stage.name, []):  # the failed window's dead letters: read again by this run?
                again = self._window_letters(job, dry_run=False, run_now=False)
                if again.status == WAITING:
                    again.status, again.message = STILL_FAILING, "the window's run did not read these rows again; still dead-lettered"
                yield again

    def _land_pending(self) -> None:
        pending = self.collected.take()
        self._put_outputs([w for w in pending if w[0] != DEAD_LETTER])
        for _, key, data in (w for w in pending if w[0] == DEAD_LETTER):
            self.store.put(self.ops.bucket(DEAD_LETTER), key, data)
            self.written.add((self.ops.bucket(DEAD_LETTER), key))


def _window_start(batch: str) -> float | None:
    """The watermark a window run started from, from its batch id (`window/start` or `window/20261101T060000[.ffffff]Z`)."""
    text = batch.removeprefix("window/")
    if text == "start":
        return None
    for layout in ("%Y%m%dT%H%M%S.%fZ", "%Y%m%dT%H%M%SZ"):
        with contextlib.suppress(ValueError):
            return datetime.strptime(text, layout).replace(tzinfo=UTC).timestamp()
    return None


def _when(moment: float | None) -> str:
    from pipeline.operations.model import iso

    return iso(moment) or "never committed"
