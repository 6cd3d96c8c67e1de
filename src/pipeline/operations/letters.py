"""The records the runtime dead-lettered, read from the dead-letter bucket of any target.

The runtime writes one object per input under `<stage>/` (`keys.dead_letter_key`), a JSON line per dead
record: `{pipeline, stage, batch, index, reason, input, error: {type, message, traceback}, data_base64}`
(`invoke.StageRunner._dead_entry`), and a replay adds `replays` and `replay_of`. Reading changes nothing.
A line that is not such an entry is shown as unreadable rather than skipped: a dead letter nobody can see
is a failure nobody fixes.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.operations.model import RECORD, DeadLetter
from pipeline.operations.protocol import Operations
from pipeline.runtime.window import is_missing
from pipeline.spec.model import StageSpec
from pipeline.wiring import stage_prefix

RETRIES_EXHAUSTED = "retries exhausted"
UNREADABLE = "unreadable dead letter"


@dataclass(frozen=True)
class LetterObject:
    """One dead-letter object: the dead letters of one input."""

    stage: str
    bucket: str
    key: str
    modified: float
    size: int


@dataclass(frozen=True)
class RecordRef:
    """Where a record's dead letter is: its object, and its line there."""

    object: LetterObject
    line: int


def letter_objects(ops: Operations, stages: Sequence[StageSpec], earliest: float | None = None) -> Iterator[LetterObject]:
    """Every dead-letter object of `stages`, oldest first per stage (modified at or after `earliest`)."""
    store, bucket = ops.store(), ops.bucket("dead-letter")
    for stage in stages:
        with ops.guarded(f"listing the dead letters of stage {stage.name} in {ops.location(bucket, stage_prefix(stage.name))}"):
            found = [LetterObject(stage.name, bucket, key, modified, size) for key, modified, size in store.list_sized(bucket, stage_prefix(stage.name))
                     if (earliest is None or modified >= earliest) and not key.endswith("/")]
        found.sort(key=lambda item: (item.modified, item.key))
        yield from found


def read_entries(ops: Operations, item: LetterObject) -> list[dict[str, Any]] | None:
    """The entries of a dead-letter object (a line that is not JSON becomes {"unreadable": text}); None when it is gone."""
    store = ops.store()
    with ops.guarded(f"reading {ops.location(item.bucket, item.key)}"):
        try:
            data = store.get(item.bucket, item.key)
        except Exception as exc:
            if is_missing(exc):
                return None  # replayed or expired since the listing
            raise
    entries: list[dict[str, Any]] = []
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        entries.append(entry if isinstance(entry, dict) else {"unreadable": line[:500].decode("utf-8", "replace")})
    return entries


def attempts_of(entry: dict[str, Any], stage: StageSpec) -> int:
    """Deliveries a dead record had: every attempt of the stage for an input whose retries ran out, one for a record
    the handler raised on (the runtime dead-letters it at once), plus one per replay since."""
    replays = entry.get("replays")
    extra = replays if isinstance(replays, int) and replays > 0 else 0
    return (stage.retries + 1 if entry.get("reason") == RETRIES_EXHAUSTED else 1) + extra


def to_letter(ops: Operations, stage: StageSpec, item: LetterObject, line: int, entry: dict[str, Any]) -> DeadLetter:
    """One entry as a DeadLetter (an unreadable line as one that says so, and cannot be replayed)."""
    kept = f"dead-letter bucket {ops.location(item.bucket, stage_prefix(stage.name))}"
    where = f"{ops.location(item.bucket, item.key)} line {line + 1}"
    if "unreadable" in entry or not isinstance(entry.get("data_base64", ""), str):
        return DeadLetter(stage.name, RECORD, UNREADABLE, "", "this line is not a dead-letter entry the runtime writes", kept, where,
                          item.modified, None, data=str(entry.get("unreadable", "")).encode(), ref=None,
                          notes=["left as it is: fix or remove the object by hand"])
    error: dict[str, Any] = entry["error"] if isinstance(entry.get("error"), dict) else {}
    source: dict[str, Any] = entry["input"] if isinstance(entry.get("input"), dict) else {}
    try:
        data = base64.b64decode(entry.get("data_base64") or "", validate=True)
    except (binascii.Error, ValueError):
        data = b""
    trace = error.get("traceback")
    return DeadLetter(
        stage.name, RECORD, str(entry.get("reason") or "handler raised"), str(error.get("type") or ""), str(error.get("message") or ""),
        kept, where, item.modified, attempts_of(entry, stage), data=data,
        input=source, batch=str(entry.get("batch") or ""),
        index=entry.get("index") if isinstance(entry.get("index"), int) else None,
        traceback=[str(frame) for frame in trace] if isinstance(trace, list) else [], ref=RecordRef(item, line))


def runtime_letters(ops: Operations, stages: Sequence[StageSpec], earliest: float | None = None) -> Iterator[DeadLetter]:
    """Every record the runtime dead-lettered for `stages`, as DeadLetters, oldest object first."""
    by_name = {stage.name: stage for stage in stages}
    for item in letter_objects(ops, stages, earliest):
        entries = read_entries(ops, item)
        for line, entry in enumerate(entries or ()):
            yield to_letter(ops, by_name[item.stage], item, line, entry)
