"""Deterministic object keys: a redelivered input maps to the same output key, so a retry
overwrites its earlier output instead of adding a duplicate (effectively-once without a lock table).

Every key is built from the input's identity only: shard/partition + first/last sequence number
for stream batches, the message id for one pushed message, the source object key for object
stages, the scheduled time for schedule stages, the window's start for runs over accumulated outputs. Keys use only `[A-Za-z0-9/_.=-]` (other
characters are escaped as `=XX`), so no cloud URL-encodes them differently in its events.

Object stages key on the source key, not its generation: the upstream key already names the
records it holds, and GCS/Azure give an identical rewrite (a retried upstream batch) a new
generation/ETag, which would turn one retry into two downstream objects. The generation is kept in
logs and dead-letter entries instead.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-/]")
SUFFIX = ".jsonl"
RAW_PREFIX = "raw/"


def _escape(match: re.Match[str]) -> str:
    return "".join(f"={b:02X}" for b in match.group(0).encode("utf-8"))


def safe(part: str, *, keep_slash: bool = False) -> str:
    """Escape a key part into the portable character set; injective, so ids never collide."""
    text = _UNSAFE.sub(_escape, part)
    if not keep_slash:
        text = text.replace("/", "=2F")
    return text.strip("/") or "_"


def sequence(value: int | str, width: int = 20) -> str:
    """Zero-padded numbers sort in order as text; strings (Kinesis sequence numbers) pass through."""
    if isinstance(value, int):
        return f"{value:0{width}d}"
    return safe(value)


def stream_batch(partition: str, first: int | str, last: int | str, width: int = 20) -> str:
    """A stream batch: one shard/partition, a contiguous sequence range."""
    return f"{safe(partition)}/{sequence(first, width)}-{sequence(last, width)}"


def message_batch(message_id: str) -> str:
    """One pushed message (Pub/Sub push delivers one per request)."""
    return f"msg/{safe(message_id)}"


# What an uploaded file may be called: JSON lines, optionally gzip-compressed. Stripped from batch ids so
# `day1.jsonl.gz` becomes the output `<stage>/day1.jsonl`, not `day1.jsonl.gz.jsonl`.
_INPUT_SUFFIXES = (".gz", SUFFIX, ".ndjson", ".json")


def object_batch(source_key: str, input_prefix: str = "") -> str:
    """An object stage's input: the source key, minus the source's prefix and file suffixes."""
    key = source_key[len(input_prefix):] if input_prefix and source_key.startswith(input_prefix) else source_key
    for suffix in _INPUT_SUFFIXES:
        if key.endswith(suffix) and len(key) > len(suffix):
            key = key[: -len(suffix)]
    return safe(key, keep_slash=True)


def request_batch(request_id: str) -> str:
    """One HTTP request, named by its body's content hash: a retried request overwrites its own output."""
    return f"req/{safe(request_id)}"


def schedule_batch(tick: str) -> str:
    """A schedule run, named by its scheduled time (e.g. 20261101T060000Z) or local tick."""
    return f"tick/{safe(tick)}"


def window_batch(since: float | None) -> str:
    """A run over a window of accumulated outputs, named by the window's start (the watermark it started
    from, UTC; `start` for the first run): every run from the same state, a retry or one that overlapped
    it, writes the same key, with at most more rows, so no row lands in two objects."""
    if since is None:
        return "window/start"
    from datetime import UTC, datetime

    moment = datetime.fromtimestamp(since, UTC)
    text = moment.strftime("%Y%m%dT%H%M%S") + (f".{moment.microsecond:06d}" if moment.microsecond else "")
    return f"window/{text}Z"


def output_key(prefix: str, batch_id: str) -> str:
    return f"{prefix}{batch_id}{SUFFIX}"


def dead_letter_key(prefix: str, batch_id: str) -> str:
    """Dead letters of one input, in the dead-letter bucket under the stage's prefix."""
    return f"{prefix}{batch_id}{SUFFIX}"


def raw_key(batch_id: str) -> str:
    return f"{RAW_PREFIX}{batch_id}{SUFFIX}"
