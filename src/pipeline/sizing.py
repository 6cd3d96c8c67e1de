"""Capacity and latency of a planned pipeline, worked out the same way on every cloud.

The comparison is only fair if every cloud is asked to carry the same work. So the work is
described once, per record (`workload.stages.<stage>`: `ms_per_record`, `ms_per_invocation`,
`output_ratio`), and what reaches each stage (`StageDemand`) is derived here from the spec alone.
Each backend then says only what its own design decides: how many records one invocation gets
(its batching), how many invocations may run at once (its scaling limits, sized here with the same
headroom everywhere), and how long its trigger waits before invoking. From those three numbers this
module derives invocations, invocation time, capacity and output objects, and the pricing of every
cloud bills exactly those.

Formulas:

* an invocation of n records takes `ms_per_invocation + n x ms_per_record`;
* a stage sustains `concurrency x n / invocation time` records per second (its capacity);
* a stage needs `ceil(demand x HEADROOM x invocation time / n)` concurrent invocations;
* every invocation that yields rows writes one output object (HTTP stages only with `persist`), so
  the next stage is triggered once per object and receives `n x output_ratio` rows each time;
* a path's latency is the sum, stage by stage, of the trigger's wait and the invocation's time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.spec.model import PipelineSpec, StageSpec

HEADROOM = 1.25  # every cloud is sized to carry 25 % more than the stated workload
# A parsed JSON row takes several times its text in memory (dicts, strings, floats as objects); a schedule over
# accumulated outputs holds one run's rows at once, so its memory must hold them with room for the handler.
PARSED_ROW_FACTOR = 5
MEMORY_USABLE = 0.8
# An object stage holds one whole object while its handler runs: the bytes, the decompressed text, its lines and
# the parsed rows. Measured with tracemalloc on 28 MiB of 580-byte JSON lines (`pipeline.runtime.invoke.run_object`):
# 6.5x the uncompressed bytes at peak, plain or gzip-compressed.
OBJECT_HELD_FACTOR = 6.5
MAX_MEMORY_MB = 10_240  # the spec's limit for memory_mb
SECONDS_PER_MONTH = 730 * 3600

Problem = tuple[tuple[str | int, ...], str, str]


@dataclass(frozen=True)
class StreamSizing:
    """How many stream units carry the workload, and why (shown in plans and comparisons)."""

    units: int  # shards, partitions or throughput units; 0 where the service has no units
    unit_name: str  # "shard", "partition", ...
    mode: str  # "provisioned", "on-demand", ...
    partitions: int  # ordering keys spread over this many partitions (= units on AWS)
    capacity_records_per_second: float
    capacity_bytes_per_second: float
    reasoning: list[str] = field(default_factory=list)

    def describe(self) -> str:
        units = f"{self.units} {self.unit_name}{'s' if self.units != 1 else ''}" if self.units else self.unit_name
        return f"{units} ({self.mode})"


@dataclass(frozen=True)
class StageDemand:
    """What reaches one stage per second, from the spec alone: the same numbers for every cloud."""

    stage: str
    records_per_second: float  # records (stream) or rows (objects, requests, accumulated outputs) in
    events_per_second: float | None  # objects, requests or runs; None for a stream, which each cloud batches its own way
    source: str  # human text: "the stream", "objects of preprocess", ...

    @property
    def records_per_event(self) -> float:
        """Rows one event carries (an object's rows, a request's rows, a run's accumulated rows)."""
        if not self.events_per_second:
            return 0.0
        return self.records_per_second / self.events_per_second


@dataclass(frozen=True)
class StageSizing:
    """One stage as a cloud's plan carries it. Built with `stage_sizing`, which derives every number
    from the three a backend decides (records per invocation, concurrency, trigger wait)."""

    stage: str
    trigger: str
    demand_records_per_second: float
    records_per_invocation: float
    invocations_per_second: float
    invocation_ms: float
    concurrency: int  # invocations that may run at once under this plan
    capacity_records_per_second: float
    output_objects_per_second: float
    output_rows_per_object: float
    latency_s: float  # typical wait from input available to invocation start
    latency_max_s: float  # worst case under normal operation (a full window, a schedule interval)
    reasoning: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # the cloud knobs sized: {"max_instances": 12, ...}
    # Synchronous (HTTP) stages: the share of requests the plan refuses for want of a free instance (`erlang_b`)
    # where the platform refuses at once; None where nothing is refused (or the stage is not synchronous).
    blocking: float | None = None

    @property
    def invocations_per_month(self) -> float:
        return self.invocations_per_second * SECONDS_PER_MONTH

    @property
    def output_objects_per_month(self) -> float:
        return self.output_objects_per_second * SECONDS_PER_MONTH

    @property
    def records_per_month(self) -> float:
        return self.demand_records_per_second * SECONDS_PER_MONTH

    @property
    def busy_seconds_per_month(self) -> float:
        """Seconds of function time a month: what per-duration billing charges (before any rounding)."""
        return self.invocations_per_month * self.invocation_ms / 1000

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["invocations_per_month"] = self.invocations_per_month
        return data


@dataclass(frozen=True)
class Sizing:
    """The stream (if any) and every stage, as one cloud's plan sizes them."""

    stream: StreamSizing | None
    stages: dict[str, StageSizing]

    def to_dict(self) -> dict[str, Any]:
        return {"stream": asdict(self.stream) if self.stream else None, "stages": {k: v.to_dict() for k, v in self.stages.items()}}


# ---- the neutral model -----------------------------------------------------------------------------


def invocation_ms(spec: PipelineSpec, stage: StageSpec, records: float) -> float:
    """Time of one invocation that handles `records` records."""
    work = spec.workload.stage(stage.name)
    return work.ms_per_invocation + records * work.ms_per_record


def needed_concurrency(demand_records_per_second: float, records_per_invocation: float, duration_ms: float) -> int:
    """Concurrent invocations that carry the demand with HEADROOM (at least one)."""
    if demand_records_per_second <= 0:
        return 1
    per_invocation = max(records_per_invocation, 1e-9)
    return max(1, math.ceil(demand_records_per_second * HEADROOM * duration_ms / 1000 / per_invocation))


def erlang_b(servers: int, offered_erlangs: float) -> float:
    """The share of requests that find every server busy (Erlang B), for Poisson arrivals offering
    `offered_erlangs` (requests per second x seconds each). A synchronous stage whose platform refuses a
    request at once when its concurrency is used up (a Lambda function URL answers 429) loses this share."""
    if offered_erlangs <= 0:
        return 0.0
    blocked = 1.0
    for k in range(1, max(servers, 0) + 1):
        blocked = offered_erlangs * blocked / (k + offered_erlangs * blocked)
    return blocked


BLOCKING_TARGET = 0.01  # synchronous stages are sized so that at most 1 % of requests find no free instance


def servers_for_blocking(offered_erlangs: float, target: float = BLOCKING_TARGET) -> int:
    """The fewest concurrent invocations that keep Erlang B blocking at or below `target` (at least one)."""
    servers = 1
    while erlang_b(servers, offered_erlangs) > target:
        servers += 1
    return servers


def runs_per_second(stage: StageSpec) -> float:
    return stage.trigger.parsed_schedule.runs_per_month() / SECONDS_PER_MONTH


def schedule_interval_s(stage: StageSpec) -> float:
    return 1 / runs_per_second(stage)


def demand(spec: PipelineSpec, stage: StageSpec, sized: dict[str, StageSizing]) -> StageDemand:
    """What reaches `stage`, given the sizing of the stages before it (their output objects)."""
    trigger, work = stage.trigger, spec.workload
    uploads = spec.uploads_name

    def source_output(name: str) -> tuple[float, float, str]:
        """(objects/s, rows/s, text) a stage or the uploads bucket writes."""
        if name == uploads:
            files = work.uploads.files_per_hour / 3600
            return files, files * work.uploads.records_per_file, f"files uploaded to {name}"
        source = sized[name]
        return source.output_objects_per_second, source.output_objects_per_second * source.output_rows_per_object, f"objects of {name}"

    if trigger.stream:
        return StageDemand(stage.name, work.records_per_second, None, "the stream")
    if trigger.http:
        requests = work.http_requests_per_second(stage.name)
        if trigger.http.from_stage:
            _, rows, text = source_output(trigger.http.from_stage)
            return StageDemand(stage.name, rows, requests, f"HTTP-requested runs over accumulated {text}")
        return StageDemand(stage.name, requests * work.http.rows_per_request, requests, "HTTP requests")
    if trigger.objects:
        objects, rows, text = source_output(trigger.objects.from_stage)
        return StageDemand(stage.name, rows, objects, text)
    runs = runs_per_second(stage)
    if trigger.from_stage:
        _, rows, text = source_output(trigger.from_stage)
        return StageDemand(stage.name, rows, runs, f"scheduled runs over accumulated {text}")
    return StageDemand(stage.name, 0.0, runs, "scheduled runs")


def stage_sizing(spec: PipelineSpec, stage: StageSpec, demand: StageDemand, *, records_per_invocation: float, concurrency: int,
                 latency_s: float, latency_max_s: float, reasoning: list[str] | None = None,
                 settings: dict[str, Any] | None = None, blocking: float | None = None) -> StageSizing:
    """Derive a stage's invocations, capacity and outputs from what the backend decided.

    Event-fed stages (objects, requests, runs) get one invocation per event; a stream stage gets
    `demand / records_per_invocation` invocations.
    """
    if demand.events_per_second is not None:
        invocations = demand.events_per_second
        records_per_invocation = demand.records_per_event
    else:
        records_per_invocation = max(records_per_invocation, 1.0)
        invocations = demand.records_per_second / records_per_invocation
    duration = invocation_ms(spec, stage, records_per_invocation)
    capacity = concurrency * records_per_invocation / (duration / 1000) if duration > 0 else math.inf
    ratio = spec.workload.stage(stage.name).output_ratio
    writes = stage.writes_objects
    rows_per_object = records_per_invocation * ratio
    if stage.trigger.schedule and not stage.trigger.from_stage:
        rows_per_object = max(rows_per_object, 1.0)  # a run without inputs still writes what it yields (assume one row)
    objects = invocations if writes and rows_per_object > 0 else 0.0
    lines = list(reasoning or [])
    lines.append(f"{demand.records_per_second:,.1f} rec/s from {demand.source}; {records_per_invocation:,.1f} per invocation "
                 f"taking {duration:,.0f} ms; {concurrency:,} concurrent -> capacity {capacity:,.0f} rec/s")
    return StageSizing(
        stage=stage.name, trigger=stage.trigger.kind, demand_records_per_second=demand.records_per_second,
        records_per_invocation=records_per_invocation, invocations_per_second=invocations, invocation_ms=duration,
        concurrency=concurrency, capacity_records_per_second=capacity, output_objects_per_second=objects,
        output_rows_per_object=rows_per_object, latency_s=latency_s, latency_max_s=latency_max_s,
        reasoning=lines, settings=dict(settings or {}), blocking=blocking,
    )


def size_pipeline(spec: PipelineSpec, stream: StreamSizing | None,
                  size_stage: Callable[[StageSpec, StageDemand, StreamSizing | None], StageSizing]) -> Sizing:
    """Size every stage in spec order (a stage only reads earlier stages, so its demand is known)."""
    sized: dict[str, StageSizing] = {}
    for stage in spec.stages:
        sized[stage.name] = size_stage(stage, demand(spec, stage, sized), stream)
    return Sizing(stream, sized)


def capacity_problems(spec: PipelineSpec, sizing: Sizing, cloud: str) -> list[Problem]:
    """What the plan cannot carry: a stage below its demand, or an invocation longer than its timeout."""
    problems: list[Problem] = []
    for index, stage in enumerate(spec.stages):
        sized = sizing.stages[stage.name]
        at: tuple[str | int, ...] = ("stages", index)
        if sized.invocation_ms > stage.timeout_s * 1000:
            problems.append(((*at, "timeout_s"),
                             f"one invocation of {sized.records_per_invocation:,.0f} record(s) takes {sized.invocation_ms / 1000:,.1f} s "
                             f"on {cloud} (workload.stages.{stage.name}), longer than timeout_s {stage.timeout_s}",
                             "raise timeout_s, or lower batch_size / the work per record"))
        if stage.trigger.window_source:
            held = sized.records_per_invocation * spec.workload.record_bytes * PARSED_ROW_FACTOR
            if held > stage.memory_mb * 1024 * 1024 * MEMORY_USABLE:
                problems.append(((*at, "memory_mb"),
                                 f"one run reads ~{sized.records_per_invocation:,.0f} accumulated rows (~{held / 2**20:,.0f} MB once parsed), "
                                 f"more than memory_mb {stage.memory_mb} holds",
                                 "run the schedule more often (or call the HTTP stage more often), or raise memory_mb"))
        if stage.trigger.objects:
            problems.extend(_object_memory(spec, stage, sized, at))
        if sized.demand_records_per_second > 0 and sized.capacity_records_per_second < sized.demand_records_per_second:
            problems.append((("workload", "records_per_second") if stage.trigger.stream else at,
                             f"stage {stage.name!r} can sustain {sized.capacity_records_per_second:,.0f} rec/s on {cloud} "
                             f"({sized.concurrency:,} concurrent invocations, the most this plan can have), below the "
                             f"{sized.demand_records_per_second:,.0f} rec/s it receives",
                             "; ".join(sized.reasoning[-2:])))
    return problems


def _object_memory(spec: PipelineSpec, stage: StageSpec, sized: StageSizing, at: tuple[str | int, ...]) -> list[Problem]:
    """An object stage's memory must hold one object of its source as the runtime reads it (OBJECT_HELD_FACTOR x its
    bytes: rows per object x record_bytes), or every attempt at a big file fails and it is dead-lettered."""
    record_bytes = spec.workload.record_bytes
    size = sized.records_per_invocation * record_bytes
    usable = stage.memory_mb * 2**20 * MEMORY_USABLE
    if size * OBJECT_HELD_FACTOR <= usable:
        return []
    source = stage.trigger.source
    what = ("uploads.records_per_file" if source == spec.uploads_name else f"the rows per object stage {source} writes")
    fits = usable / OBJECT_HELD_FACTOR
    needed = math.ceil(size * OBJECT_HELD_FACTOR / MEMORY_USABLE / 2**20)
    return [((*at, "memory_mb"),
             f"one object of {source} is ~{size / 2**20:,.0f} MB ({sized.records_per_invocation:,.0f} rows of {record_bytes:,} B, from "
             f"{what}); the runtime holds about {OBJECT_HELD_FACTOR:g}x an object's bytes while the handler runs (~{size * OBJECT_HELD_FACTOR / 2**20:,.0f} MB), "
             f"more than memory_mb {stage.memory_mb} holds: the largest object that fits is ~{fits / 2**20:,.0f} MB "
             f"({fits / record_bytes:,.0f} rows)",
             f"raise memory_mb to {needed:,}, or write objects of at most {fits / record_bytes:,.0f} rows" if needed <= MAX_MEMORY_MB else
             f"no stage's memory holds it (memory_mb is at most {MAX_MEMORY_MB:,}): write objects of at most "
             f"{MAX_MEMORY_MB * 2**20 * MEMORY_USABLE / OBJECT_HELD_FACTOR / record_bytes:,.0f} rows (at memory_mb {MAX_MEMORY_MB:,})")]


@dataclass(frozen=True)
class Latency:
    """One path from a source to a stage nobody reads: typical and worst-case seconds end to end."""

    path: list[str]
    typical_s: float
    max_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "end_to_end_s": self.typical_s, "end_to_end_max_s": self.max_s}


def latency_paths(spec: PipelineSpec, sizing: Sizing) -> list[Latency]:
    """Trigger waits plus invocation times summed along every path that carries data.

    A path starts at the stream, the uploads bucket or an HTTP request (answered synchronously; an HTTP stage
    with `from` continues its source's path) and ends at a stage no event-driven stage reads: a stage read only
    by windowed stages (schedules, HTTP stages with `from`) ends a path of its own (its outputs are there in seconds; a window's interval is another
    path), so a slow schedule never hides how fast the stream is processed. A schedule with no `from` carries
    no data and has no path.
    """
    paths: dict[str, Latency] = {}
    for stage in spec.stages:
        trigger = stage.trigger
        if trigger.schedule and not trigger.from_stage:
            continue
        sized = sizing.stages[stage.name]
        source = trigger.source
        before = paths.get(source) if source else None
        start = before.path if before else [source or ("stream" if trigger.stream else "HTTP request")]
        hop = sized.invocation_ms / 1000
        paths[stage.name] = Latency([*start, stage.name], (before.typical_s if before else 0.0) + sized.latency_s + hop,
                                    (before.max_s if before else 0.0) + sized.latency_max_s + hop)
    read = {stage.trigger.source for stage in spec.stages if not stage.trigger.window_source}
    return [latency for name, latency in paths.items() if name not in read]

