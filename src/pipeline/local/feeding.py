"""The local runner's inputs in motion: stream batches (planned, pipelined, done) and schedule ticks."""

from __future__ import annotations

import os
import sys
import time
from bisect import bisect_right
from pathlib import Path

from pipeline.local.batches import Batch, Consumer, InputChanged, Lines, Planned, Read, lines_of
from pipeline.local.inputs import FileInput, StdinInput, digest_of
from pipeline.local.invoking import StageInvoker
from pipeline.local.layout import TICK
from pipeline.local.lines import LINE_WIDTH, PARTITION
from pipeline.local.stages import LocalRunError, Stats, output_of
from pipeline.runtime import keys
from pipeline.runtime.window import WindowOutcome
from pipeline.spec.model import StageSpec


class Feeder(StageInvoker):
    """Takes the inputs through: stream records batched per consumer and pipelined through the stages' workers,
    and schedule ticks (see `pipeline.local.runner`'s module doc)."""

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

    def _flush(self, consumer: Consumer) -> None:
        records = consumer.pending
        consumer.pending, consumer.target = Lines(), None
        first, last = records.numbers[0], records.numbers[-1]
        digest = self._digest(records)
        plan = consumer.planned.get(first)
        if plan is not None:
            if (plan.last, plan.count, plan.digest) != (last, len(records), digest):
                raise InputChanged(f"records at lines {first}-{plan.last} differ")
            if plan.done:  # finished by an earlier run: checked, nothing to redo
                if consumer is self.primary:
                    self.summary.batches_skipped += 1
                return
            if consumer is self.primary:
                self.summary.batches_resumed += 1
        else:
            if self.completed:
                raise InputChanged(f"it has more records, from line {first}")
            entry = {"c": consumer.name, "st": "plan", "s": first, "e": last, "n": len(records), "h": digest}
            self.writer.submit(self.journal.append, entry)
            consumer.planned[first] = Planned(last, len(records), digest)
        batch = Batch(consumer, records, keys.stream_batch(PARTITION, first, last, LINE_WIDTH), {})
        if consumer.stage is None:
            self._raw_archive(batch)
            self._complete(batch)
        else:
            self._advance(consumer, batch)

    def _digest(self, records: Lines) -> str:
        """The digest of a batch's lines, worked out once for all the consumers that batch them alike."""
        span = (records.numbers[0], records.numbers[-1])
        digest = self.digests.get(span)
        if digest is None:
            if len(self.digests) > 256:
                self.digests.clear()
            digest = self.digests[span] = digest_of(b"\n".join(records.datas))
        return digest

    def _advance(self, consumer: Consumer, batch: Batch | None) -> None:
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

    def _begin(self, stage: StageSpec, batch: Batch) -> None:
        records = batch.records
        batch.call = self.stages.begin(stage, ("stream", batch.batch_id, records.datas, records.numbers, records.arrivals))

    def _receive(self, batch: Batch) -> None:
        """The stage's reply (after its retries, or its dead letters), its writes queued."""
        assert batch.call is not None
        records = batch.records
        batch.reply = self.stages.finish(batch.call, batch.batch_id, lambda: (records.datas, records.identities()), batch.stats)

    def _begin_reads(self, stage: StageSpec, batch: Batch) -> None:
        """The batch's output to the workers of the object stages that read it."""
        tmp = output_of(batch.reply, stage) if batch.reply is not None else None
        if batch.reply is not None and tmp is not None:
            for reader, request, batch_id, inputs in self._readers(stage.name, batch.reply.result["output_key"], tmp):
                batch.reads.append(Read(reader, self.stages.begin(reader, request), batch_id, inputs))

    def _finish_reads(self, batch: Batch) -> None:
        """The readers' replies (every one, so their workers are free), then what they wrote to its readers."""
        for read in batch.reads:
            read.reply = self.stages.finish(read.call, read.batch_id, read.inputs, batch.stats)
        for read in batch.reads:
            self._pass_on(read.stage, read.reply, batch.stats)

    def _complete(self, batch: Batch) -> None:
        """The batch is done: its `done` line (after everything it wrote)."""
        consumer, first = batch.consumer, batch.records.numbers[0]
        if consumer is self.primary:
            self.summary.records_this_run += len(batch.records)
        consumer.planned[first].done = True
        self.redo_left.discard((consumer.name, first))
        self._record_done({"c": consumer.name, "st": "done", "s": first, "stats": batch.stats})

    def _offer(self, consumer: Consumer, records: Lines, now: float) -> None:
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

    def _input(self, source: str) -> FileInput | StdinInput:
        if source != "-":
            return FileInput(Path(source))
        if sys.stdin is None:
            raise LocalRunError("--input - reads standard input, but it is closed; pipe the records in, or pass --input FILE")
        try:
            fd = sys.stdin.buffer.fileno()
            os.fstat(fd)
        except (OSError, ValueError, AttributeError):
            raise LocalRunError("--input - reads standard input, but it is closed; pipe the records in, or pass --input FILE") from None
        windows = [s.trigger.stream.max_batching_window_s for s in self.spec.stages if s.trigger.stream and s.trigger.stream.max_batching_window_s > 0]
        return StdinInput(fd, min([*windows, 1.0]), spool=len(self.journal.entries) > 1)

    def _stream(self, data: FileInput | StdinInput) -> int:
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
                if isinstance(data, StdinInput) and not self.completed and line_no > planned_until:
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
                    raise InputChanged(f"it ends before line {consumer.target.last}")
                self._flush(consumer)
            later = [first for first in consumer.planned if first > last_record]
            if later:
                raise InputChanged(f"it ends before line {min(later)}")
        self._settle()
        summary.records_in = records_in
        return line_no
