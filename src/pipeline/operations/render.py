"""What `pipeline dlq` and `pipeline status` print: readable text at 80 columns, and JSON for scripts.

Every record and message passes through a `Masker` first; the JSON carries the same facts as the text
(a record in full, masked; text shortens it), with times in RFC 3339 UTC.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from pipeline.operations.mask import Masker, shorten
from pipeline.operations.model import DeadLetter, Group, iso
from pipeline.operations.protocol import Redriven
from pipeline.operations.replay import Outcome

RECORD_PREVIEW = 400  # characters of a record `show` prints as text
ERROR_PREVIEW = 300


def error_text(reason: str, error_type: str, message: str) -> str:
    detail = f"{error_type}: {message}" if error_type else message
    return f"{reason}: {detail}" if detail else reason


def group_dict(group: Group, masker: Masker) -> dict[str, Any]:
    return {"stage": group.stage, "kind": group.kind, "reason": group.reason, "count": group.count, "first": iso(group.first),
            "last": iso(group.last), "error": {"type": group.error_type, "message": masker.text(group.error_message)},
            "kept": group.kept, "example": group.example}


def letter_dict(letter: DeadLetter, masker: Masker) -> dict[str, Any]:
    """One letter for JSON and JSON lines: the record whole (masked), or the event as the queue kept it (masked)."""
    shape, value = masker.record(letter.data)
    body: dict[str, Any] = {
        "stage": letter.stage, "kind": letter.kind, "reason": letter.reason, "time": iso(letter.time), "attempts": letter.attempts,
        "error": {"type": letter.error_type, "message": masker.text(letter.error_message), "traceback": letter.traceback},
        "kept": letter.kept, "where": letter.where, "batch": letter.batch, "index": letter.index, "input": masker.scrub(letter.input),
    }
    if letter.data is not None:
        body["record"] = value
        body["record_format"] = shape
    if letter.event is not None:
        body["event"] = masker.scrub(letter.event)
    if letter.notes:
        body["notes"] = letter.notes
    return body


def list_lines(groups: Sequence[Group], masker: Masker) -> list[str]:
    lines: list[str] = []
    for group in groups:
        noun = {"record": "record", "event": "event", "batch": "batch"}.get(group.kind, "letter")
        span = f"{iso(group.first)} .. {iso(group.last)}" if group.first is not None and group.last != group.first else (iso(group.first) or "time unknown")
        lines.append(f"{group.stage}  {group.count:,} {noun}{'s' if group.count != 1 else ''}  {span}")
        lines.append(f"  {shorten(masker.text(error_text(group.reason, group.error_type, group.error_message)), ERROR_PREVIEW)}")
        lines.append(f"  kept in {group.kept}")
    return lines


def show_lines(letter: DeadLetter, masker: Masker) -> list[str]:
    attempts = f", {letter.attempts} attempt{'s' if letter.attempts != 1 else ''}" if letter.attempts is not None else ""
    lines = [f"{letter.stage}  {letter.kind}  {iso(letter.time) or 'time unknown'}{attempts}", f"  where:  {letter.where}"]
    if letter.input:
        lines.append(f"  input:  {shorten(json.dumps(masker.scrub(letter.input), ensure_ascii=False, default=str), RECORD_PREVIEW)}")
    lines.append(f"  error:  {shorten(masker.text(error_text(letter.reason, letter.error_type, letter.error_message)), ERROR_PREVIEW)}")
    lines += [f"          at {frame}" for frame in letter.traceback[-3:]]
    if letter.data is not None:
        shape, value = masker.record(letter.data)
        text = json.dumps(value, ensure_ascii=False) if shape == "json" else str(value)
        label = {"json": "record", "text": "record", "base64": "record (binary, base64)", "none": "record"}[shape]
        lines.append(f"  {label}: {shorten(text, RECORD_PREVIEW)}")
    if letter.event is not None:
        lines.append(f"  event:  {shorten(json.dumps(masker.scrub(letter.event), ensure_ascii=False, default=str), RECORD_PREVIEW)}")
    lines += [f"  note:   {note}" for note in letter.notes]
    return lines


def outcome_line(outcome: Outcome) -> str:
    what = f"{outcome.records} record(s)" if outcome.records else "window"
    return f"{outcome.status:<13} {outcome.stage}  {outcome.source}: {what}: {outcome.message}"


def redriven_line(result: Redriven, masker: Masker) -> str:
    status = "redriven" if result.ok else "failed"
    text = result.action + (f": {result.error}" if result.error else "")
    return f"{status:<13} {result.letter.stage}  {result.letter.where}: {masker.text(text)}"


def redriven_dict(result: Redriven, masker: Masker) -> dict[str, Any]:
    return {"stage": result.letter.stage, "where": result.letter.where, "kind": result.letter.kind, "ok": result.ok,
            "action": masker.text(result.action), "error": masker.text(result.error)}


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1000
    return f"{count} B"


def _second(text: Any) -> str:
    """An RFC 3339 time to the second, as a table shows it (JSON keeps the fraction)."""
    return re.sub(r"\.\d+Z$", "Z", str(text)) if text else "-"


def status_rows(entries: Iterable[dict[str, Any]]) -> list[tuple[str, str, str, str, str]]:
    """(stage, trigger, read up to / last run, waiting, dead letters) per stage, as the text table shows them."""
    rows = []
    for entry in entries:
        trigger = entry["trigger"] + (f" <- {entry['reads']}" if entry.get("reads") else "")
        window = entry.get("window")
        if isinstance(window, dict) and "error" in window:
            mark, waiting = "state unreadable", str(window["error"])
        elif isinstance(window, dict):
            last = window.get("last_run") or {}
            mark = _second(window.get("watermark")) if window.get("watermark") else "nothing read yet"
            if last:
                mark += f" (run {window.get('runs')}: {last.get('objects', 0)} objects, {last.get('rows', 0)} rows)"
            held = window.get("lease") or {}
            if held.get("held"):
                mark += f"; running now (until {_second(held.get('expires'))})"
            pending = window.get("waiting") or {}
            waiting = f"{pending.get('objects', 0):,} objects, {_size(int(pending.get('bytes') or 0))} since {_second(pending.get('since'))}" \
                if pending.get("objects") else "nothing"
        else:
            mark = _second(entry["last_success"]) if entry.get("last_success") else ("no run yet" if entry["trigger"] == "schedule" else "-")
            waiting = "-"
        dead = entry.get("dead_letters") or {}
        parts = []
        if dead.get("inputs"):
            records = dead.get("records")
            parts.append(f"{records:,} records" if records is not None else f"{dead['inputs']:,} inputs")
        if dead.get("queued_events"):
            parts.append(f"{dead['queued_events']:,} queued events")
        rows.append((entry["stage"], trigger, mark, waiting, ", ".join(parts) or "none"))
    return rows
