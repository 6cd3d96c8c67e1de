"""The local runner's base: its state, and invoking a stage on one input (see `pipeline.local.runner`)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pipeline.local.batches import Batch, Consumer
from pipeline.local.journal import Journal, QueuedWriter
from pipeline.local.layout import RAW_BUCKET, RAW_CONSUMER, default_root
from pipeline.local.stage_process import Reply
from pipeline.local.stages import Inputs, LocalStages, Stats, add_stats, object_items, output_of
from pipeline.local.summary import RunSummary
from pipeline.runtime import keys
from pipeline.runtime.store import LocalStore
from pipeline.spec.load import LoadedSpec
from pipeline.spec.model import StageSpec


class StageInvoker:
    """The runner's state, and one input of a stage: invoked (retried, then dead-lettered) and its output passed on
    to the stages that read it. `Feeder` takes the inputs through; `LocalRun` owns the store and the journal."""

    writer: QueuedWriter  # these three are opened with the store (`LocalRun._open`)
    journal: Journal
    stages: LocalStages

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
        self.primary: Consumer | None = None
        self.consumers: list[Consumer] = []
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

    def _raw_archive(self, batch: Batch) -> None:
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
