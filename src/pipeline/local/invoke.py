"""`pipeline invoke`: one invocation of one stage on given input, with the semantics it has in the
pipeline (its worker process, environment, model, `timeout_s`, `retries`, dead letters), in a store
of its own, so a run's store and journal are never touched.

What the input is depends on the stage's trigger, as in the cloud:

* stream: each non-blank line is a record; all of them are one batch;
* objects: the input is one new object of the source (JSON lines, gzip or not), named after the file;
* schedule: no input; with `from`, the input is the one object the source wrote since the last run
  (the stage runs over that window, with the clouds' window code on the scratch store);
* http: the input is the request body (a JSON array of rows, or JSON lines); not retried, as a
  synchronous call is not: the caller gets the status. With `from`, like a schedule with `from`: the
  input is one object of the source, and the answer is the window's (what was read and written).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from pipeline.local.errors import LocalUsageError
from pipeline.local.journal import RunLog
from pipeline.local.layout import DEAD_LETTER_BUCKET, LOG_NAME
from pipeline.local.lines import LINE_WIDTH, PARTITION, LineRecord
from pipeline.local.stage_process import Reply
from pipeline.local.stages import Inputs, LocalRunError, LocalStages, Stats, object_items, output_of
from pipeline.runtime import keys
from pipeline.runtime.entry import tick_name
from pipeline.runtime.logs import JsonLogger
from pipeline.runtime.store import LocalStore
from pipeline.runtime.window import iso
from pipeline.spec.load import LoadedSpec
from pipeline.spec.model import StageSpec


@dataclass
class Invocation:
    """What one invocation did: the rows out, the dead letters (as stored), and for an HTTP stage its answer."""

    stage: str
    trigger: str
    items: int = 0
    filtered: int = 0  # inputs that gave no row and no dead letter
    rows: list[Any] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    retries: int = 0
    failed: bool = False  # the whole input failed (retries exhausted, or an HTTP request answered 5xx)
    output_key: str | None = None
    status: int | None = None  # HTTP stages
    answer: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "trigger": self.trigger, "items": self.items, "filtered": self.filtered, "rows": self.rows, "dead_letters": self.dead_letters,
                "retries": self.retries, "failed": self.failed, "output": self.output_key, "status": self.status,
                "notes": self.notes}


class _RecordingStore(LocalStore):
    """A LocalStore that remembers what was written, in order (the invocation's outputs and dead letters)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, durable=False)
        self.written: list[tuple[str, str]] = []

    def put(self, bucket: str, key: str, data: bytes) -> None:
        super().put(bucket, key, data)
        self.written.append((bucket, key))

    def put_file(self, bucket: str, key: str, tmp: str) -> None:
        super().put_file(bucket, key, tmp)
        self.written.append((bucket, key))


def invoke_stage(loaded: LoadedSpec, stage_name: str, data: bytes | None, input_name: str, store_root: Path,
                 on_log: Callable[[dict[str, Any]], None] | None = None, notify: Callable[[str], None] | None = None) -> Invocation:
    """Invoke `stage_name` once on `data` (None: no input) named `input_name`; outputs land under `store_root`."""
    spec = loaded.spec
    stage = next((s for s in spec.stages if s.name == stage_name), None)
    if stage is None:
        raise LocalUsageError(f"{spec.name} has no stage {stage_name!r}; its stages: {', '.join(s.name for s in spec.stages)}")
    trigger = stage.trigger
    if trigger.schedule and not trigger.from_stage and data:
        raise LocalUsageError(f"stage {stage.name} runs on a schedule without `from`: it takes no input (leave out --input)")
    if data is None and not (trigger.schedule and not trigger.from_stage):
        raise LocalUsageError(f"stage {stage.name} needs an input: pass --input FILE (or - for stdin); {_what_input(stage)}")
    store_root.mkdir(parents=True, exist_ok=True)
    store = _RecordingStore(store_root)
    run_log = RunLog(store_root / LOG_NAME, spec.name, on_log)
    logger = JsonLogger(cast(Any, run_log), flush=False, pipeline=spec.name, logger="runner")
    stages = LocalStages(loaded, store, logger, run_log.worker_line, notify or (lambda message: None))
    result = Invocation(stage.name, trigger.kind)
    stats: Stats = {}
    try:
        stages.start([stage])
        if trigger.window_source:
            called = _window(stage, data or b"", input_name, store, stages, stats, result)
            if called is not None and output_of(called, stage) is not None:
                result.rows = _rows(store.get(stage.name, called.result["output_key"]))
        elif trigger.http:
            result.status, result.answer, _ = stages.call_http(stage, data or b"", "", stats)
            result.rows = list(result.answer.get("rows", []))
            result.failed = result.status >= 500
        else:
            request, batch_id, inputs = _request(stage, data or b"", input_name, result, stages)
            called = stages.call(stage, request, batch_id, inputs, stats)
            result.failed = called is None
            if called is not None and output_of(called, stage) is not None:
                result.rows = _rows(store.get(stage.name, called.result["output_key"]))
        counts = stats.get(stage.name, {})
        result.items, result.retries, result.filtered = counts.get("items", 0), counts.get("retries", 0), counts.get("filtered", 0)
        for bucket, key in store.written:
            if bucket == DEAD_LETTER_BUCKET:
                result.dead_letters.extend(json.loads(line) for line in store.get(bucket, key).splitlines() if line.strip())
            elif bucket == stage.name and key.startswith(f"{stage.name}/"):
                result.output_key = f"{bucket}/{key}"
    finally:
        stages.stop()
        run_log.close()
    return result


def _rows(output: bytes) -> list[Any]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def _window(stage: StageSpec, data: bytes, name: str, store: _RecordingStore, stages: LocalStages, stats: Stats,
            result: Invocation) -> Reply | None:
    """A stage over accumulated outputs: the input lands as one new object of its source, then the stage runs over its
    window (everything new since the store's last run of it: with --store, a later invocation reads only what is new)."""
    settings = stages.dead_letterers[stage.name].settings
    key = f"{settings.input_prefix}{name}"
    LocalStore.put(store, settings.input_bucket, key, data)
    cutoff = max(time.time(), next(store.list(settings.input_bucket, key))[1])
    window, reply = stages.run_window(stage, store, lambda: None, cutoff, f"invoke-{iso(cutoff)}", stats, take_over=False)
    if window.status == "busy":
        holder = window.holder or {}
        raise LocalRunError(f"another invocation ({holder.get('run')}) is running stage {stage.name} over its window in "
                            f"{store.root}; your input is stored there and the next invocation reads it: try again in "
                            f"{window.retry_after_s} s")
    result.failed = window.status == "dead_lettered"
    if stage.trigger.http:
        result.status, result.answer, _ = window.answer()
    if window.status in ("empty", "late"):
        result.notes.append(f"the window held nothing new ({window.status})")
    return reply


def _what_input(stage: StageSpec) -> str:
    trigger = stage.trigger
    if trigger.stream:
        return "its records, one per line"
    if trigger.window_source:
        return f"one object of {trigger.source}: JSON lines, gzip or not"
    if trigger.http:
        return "the request body: a JSON array of rows, or JSON lines"
    return f"one object of {trigger.source}: JSON lines, gzip or not"


def _request(stage: StageSpec, data: bytes, name: str, result: Invocation,
             stages: LocalStages) -> tuple[tuple[Any, ...], str, Inputs]:
    """The worker request for the stage's trigger, its batch id, and its items for dead letters."""
    trigger = stage.trigger
    if trigger.stream:
        assert trigger.stream is not None
        arrival = time.time()
        records = [LineRecord(line.rstrip(b"\r"), number, arrival) for number, line in enumerate(data.split(b"\n"), start=1)
                   if line.strip()]
        if not records:
            raise LocalUsageError(f"the input holds no records for stage {stage.name} (one per line)")
        if len(records) > trigger.stream.batch_size:
            result.notes.append(f"{len(records):,} records in one batch; the stream delivers at most batch_size "
                                f"({trigger.stream.batch_size:,}) to one invocation")
        batch_id = keys.stream_batch(PARTITION, records[0].line, records[-1].line, LINE_WIDTH)
        request = ("stream", batch_id, [r.data for r in records], [r.line for r in records], [r.arrival_time for r in records])
        return request, batch_id, lambda: ([r.data for r in records], [r.describe() for r in records])
    settings = stages.dead_letterers[stage.name].settings
    key = f"{settings.input_prefix}{name}"
    lines = object_items(settings.input_bucket, key, data)
    if trigger.objects:
        return ("object", settings.input_bucket, key, data), keys.object_batch(key, settings.input_prefix), lines
    tick = tick_name()
    return ("schedule", tick), keys.schedule_batch(tick), lambda: ([], [])
