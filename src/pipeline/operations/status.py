"""`pipeline status`: per stage, how far a windowed stage has read and what waits for its next run, its last
successful run, and how many dead letters it has, read-only, from any target.

A windowed stage (a schedule or an HTTP stage with `from`) keeps its state in its own bucket
(`_state/<stage>/watermark.json`, `window.py`): the watermark (`until`), the keys read lately, the last run
and the lease. What waits is what the next run would read now: the source's objects past the watermark,
listed exactly as a run lists them (`Windows.status`). A schedule without `from` has no state; its last
successful run is its newest output (`<stage>/tick/<time>.jsonl`). Event-driven stages have neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.operations.letters import letter_objects, read_entries
from pipeline.operations.model import iso
from pipeline.operations.protocol import Operations
from pipeline.runtime.window import StateError, window_status
from pipeline.spec.model import StageSpec
from pipeline.wiring import stage_prefix

MAX_OBJECTS_READ = 500  # dead-letter objects read to count their records; beyond, only objects are counted
TICK = "tick/"


def stage_status(ops: Operations, stage: StageSpec) -> dict[str, Any]:
    """One stage's entry: trigger, what it reads, its window or last run, its dead letters."""
    trigger = stage.trigger
    entry: dict[str, Any] = {"stage": stage.name, "trigger": trigger.kind, "reads": trigger.source}
    if trigger.window_source:
        entry["window"] = _window(ops, stage)
        last = (entry["window"].get("last_run") or {}) if isinstance(entry["window"].get("last_run"), dict) else {}
        entry["last_success"] = last.get("finished_at")
    elif trigger.schedule:
        entry["last_success"] = _last_tick(ops, stage)
    entry["dead_letters"] = dead_letter_counts(ops, stage)
    return entry


def _window(ops: Operations, stage: StageSpec) -> dict[str, Any]:
    settings = ops.settings(stage)
    with ops.guarded(f"reading the window state of stage {stage.name} ({ops.location(settings.state_bucket, settings.state_prefix)})"):
        try:
            found = window_status(ops.store(), settings)
        except StateError as exc:
            return {"error": str(exc)}
    waiting = found["waiting"]
    return {"source": stage.trigger.window_source, "watermark": found["until"], "runs": found["runs"], "recent_keys": found["recent"],
            "last_run": found["last_run"], "lease": found["lease"],
            "waiting": {"objects": waiting["objects"], "bytes": waiting["bytes"], "since": waiting["oldest"]},
            "state": ops.location(settings.state_bucket, settings.state_prefix)}


def _last_tick(ops: Operations, stage: StageSpec) -> str | None:
    """A schedule without `from`: when its newest run's output was written (runs without rows write nothing)."""
    if not stage.writes_objects:
        return None
    bucket = ops.bucket(stage.name)
    with ops.guarded(f"listing the outputs of stage {stage.name} in {ops.location(bucket, stage_prefix(stage.name) + TICK)}"):
        newest = max((modified for _, modified, _ in ops.store().list_sized(bucket, stage_prefix(stage.name) + TICK)), default=None)
    return iso(newest)


def dead_letter_counts(ops: Operations, stage: StageSpec) -> dict[str, Any]:
    """Inputs and records the runtime dead-lettered, and events the stage's failure queues hold."""
    objects = list(letter_objects(ops, [stage]))
    records: int | None = 0
    for item in objects[:MAX_OBJECTS_READ]:
        records = (records or 0) + len(read_entries(ops, item) or ())
    if len(objects) > MAX_OBJECTS_READ:
        records = None
    with ops.guarded(f"counting the failure queue of stage {stage.name}"):
        queued = ops.queued_count(stage)
    return {"inputs": len(objects), "records": records, "queued_events": queued,
            "oldest": iso(objects[0].modified) if objects else None, "newest": iso(max(o.modified for o in objects)) if objects else None}


def pipeline_status(ops: Operations, stages: Sequence[StageSpec]) -> list[dict[str, Any]]:
    return [stage_status(ops, stage) for stage in stages]
