"""How stream records become the batch files stream stages run on: one job, decided from the spec alone (no Pulumi),
so the plan, the sizing and the price read the same answer.

A **Cloud Storage subscription** writes the topic into a bucket as Avro files (`write_metadata`: each record keeps its
message id, publish time and attributes) and starts a new file when `max_bytes` is reached or `max_duration` passes
(https://cloud.google.com/pubsub/docs/cloudstorage; pulumi-gcp `SubscriptionCloudStorageConfigArgs`: max_bytes 1 KB -
10 GiB, "may be exceeded in cases where messages are larger than the limit"; max_duration 1-10 minutes and at most the
ack deadline). Each finished file is one invocation of every stage that reads it.

Per stream stage, the file it gets holds at most:

* `batch_size` records (the spec's "most records per invocation");
* the records the workload brings in `max_batching_window_s` (at least 1 s: a window of 0 takes what arrives in about
  a second, as a poll would), so at the stated workload a file closes when the spec's window ends, not after the 60 s
  floor of `max_duration`: the window is honoured where traffic allows. Below the workload a file waits at most
  `max_duration` (the window, at least 60 s), which is the latency floor GCP gives a quiet stream;
* what the stage's memory holds: the runtime keeps about `RUNTIME_FILE_FACTOR` times a file's bytes (the file, the
  decoded records and their rows), so `max_bytes <= memory x MEMORY_USABLE / RUNTIME_FILE_FACTOR`.

Stages whose files come out the same share **one** subscription (each subscription bills every byte again). When
the stream is archived, the raw archive's subscription writes the files the first stream stage's group reads
(`raw/`, kept `raw_days`): no second subscription, no second copy. Other groups get their own subscription into a
batch bucket of the group's first stage. With the archive off every group has its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.sizing import MEMORY_USABLE
from pipeline.spec.model import PipelineSpec, StageSpec

MIN_DURATION_S, MAX_DURATION_S = 60, 600  # max_duration: 1-10 minutes
MIN_BYTES, MAX_BYTES = 1024, 10 * 2**30  # max_bytes: "Min 1 KB, max 10 GiB" (1 KB read as 1,024 B: valid either way)
MIN_WINDOW_S = 1.0  # a window of 0: what arrives in about a second
# One Avro record with write_metadata: the data plus subscription name (~80 B), message_id (~17 B), publish_time
# (a long) and the attributes map with varint lengths; assumed ~120 B on top of the record.
AVRO_METADATA_BYTES = 120
RUNTIME_FILE_FACTOR = 6  # the runtime holds about 6x a batch file's bytes while it runs the stage on it
# The archive's files when no stream stage reads them: large files, few Class A operations (5 min matches Firehose).
ARCHIVE_DURATION_S = 300
ARCHIVE_BYTES = 64 * 2**20
ARCHIVE_KEY, ARCHIVE_PREFIX = "raw", "raw/"


def retention_days(max_event_age_s: int) -> int:
    """Batch files must outlive every retry of their event (max_event_age_s), plus a day to read a dead letter's pointer."""
    return math.ceil(max_event_age_s / 86_400) + 1


def files_days(spec: PipelineSpec, stages: Sequence[str]) -> int:
    """How long the batch files `stages` read must be kept: past every retry, and as long as a dead letter is kept
    (storage.dead_letter_days): an event in a dead-letter topic is only a pointer to its batch file, so replaying it
    after the file expired would read nothing and the records would be lost."""
    return max(spec.storage.dead_letter_days, *(retention_days(spec.stage(name).max_event_age_s) for name in stages))


def avro_record_bytes(spec: PipelineSpec) -> int:
    return spec.workload.record_bytes + AVRO_METADATA_BYTES


def memory_bytes(memory_mb: int) -> int:
    """The largest batch file a stage with `memory_mb` can run on."""
    return int(memory_mb * 2**20 * MEMORY_USABLE / RUNTIME_FILE_FACTOR)


@dataclass(frozen=True)
class Files:
    """One Cloud Storage subscription's file settings, and what they give at the workload."""

    max_bytes: int
    duration_s: int
    records_per_file: float  # at the workload (at least the first record of a file)
    open_s: float  # how long a file stays open at the workload: from its first record to its close
    limit: str  # what closes a file at the workload: "batch_size", "window", "memory", "max_duration" or "bytes floor"

    @property
    def key(self) -> tuple[int, int]:
        return self.max_bytes, self.duration_s


def files_for(spec: PipelineSpec, max_bytes: int, duration_s: int, limit: str) -> Files:
    """What files of `max_bytes` / `duration_s` hold at the workload's rate.

    A file opens with its first record and holds `floor(max_bytes / record)` records (at least one); at `rate` it fills
    in `(records - 1) / rate` seconds unless `max_duration` closes it first."""
    rate = spec.workload.records_per_second
    per_file = max(1, math.floor(max_bytes / avro_record_bytes(spec)))
    fill_s = (per_file - 1) / rate if rate > 0 else math.inf
    if fill_s > duration_s:
        return Files(max_bytes, duration_s, 1 + rate * duration_s, float(duration_s), "max_duration")
    return Files(max_bytes, duration_s, float(per_file), fill_s, limit)


def stage_files(spec: PipelineSpec, stage: StageSpec) -> Files:
    """The files this stream stage would choose alone (see the module docstring)."""
    trigger = stage.trigger.stream
    assert trigger is not None
    record = avro_record_bytes(spec)
    window = max(float(trigger.max_batching_window_s), MIN_WINDOW_S)
    wanted = min(float(trigger.batch_size), math.ceil(spec.workload.records_per_second * window))
    limits = {"batch_size": trigger.batch_size * record, "window": math.ceil(wanted) * record, "memory": memory_bytes(stage.memory_mb)}
    limit, size = min(limits.items(), key=lambda item: item[1])
    if size < MIN_BYTES:
        limit, size = "bytes floor", MIN_BYTES
    duration = max(MIN_DURATION_S, min(MAX_DURATION_S, trigger.max_batching_window_s))
    return files_for(spec, min(size, MAX_BYTES), duration, limit)


@dataclass(frozen=True)
class Source:
    """Where a group of stream stages finds its batch files."""

    key: str  # "raw" (the archive bucket) or the stage whose trigger owns the batch bucket and its subscription
    prefix: str  # the files' name prefix in that bucket
    files: Files
    stages: tuple[str, ...]  # every stage that reads these files, the owner first

    @property
    def archive(self) -> bool:
        return self.key == ARCHIVE_KEY

    @property
    def owner(self) -> str:
        return self.stages[0]


def sources(spec: PipelineSpec) -> dict[str, Source]:
    """Every stream stage's batch source (stage name -> Source); stages with the same files share one."""
    groups: dict[tuple[int, int], list[StageSpec]] = {}
    for stage in spec.stages:
        if stage.trigger.stream:
            groups.setdefault(stage_files(spec, stage).key, []).append(stage)
    archived = spec.stream is not None and spec.stream.archive
    out: dict[str, Source] = {}
    for number, members in enumerate(groups.values()):
        files = stage_files(spec, members[0])
        names = tuple(s.name for s in members)
        # The archive keeps its files raw_days: long enough for every retry of the group's stages, or they get their own.
        # (A dead letter older than raw_days points at an expired archive file: the raw_days the user chose governs.)
        lasts = spec.storage.raw_days >= max(retention_days(s.max_event_age_s) for s in members)
        key, prefix = (ARCHIVE_KEY, ARCHIVE_PREFIX) if archived and lasts and number == 0 else (members[0].name, f"{members[0].name}/")
        source = Source(key, prefix, files, names)
        out.update({name: source for name in names})
    return out


def archive_files(spec: PipelineSpec) -> Files:
    """The raw archive's files: those of the stages that read it, else large ones."""
    shared = next((s for s in sources(spec).values() if s.archive), None)
    if shared is not None:
        return shared.files
    return files_for(spec, ARCHIVE_BYTES, ARCHIVE_DURATION_S, "max_bytes")


def owned(spec: PipelineSpec) -> list[Source]:
    """The batch sources with their own subscription and bucket (not the archive), once each."""
    seen: dict[str, Source] = {}
    for source in sources(spec).values():
        if not source.archive:
            seen.setdefault(source.key, source)
    return list(seen.values())
