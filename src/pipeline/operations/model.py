"""One dead letter, whatever kept it, and how letters group by cause for `pipeline dlq list`.

A dead letter is either a *record* the runtime dead-lettered (a poison record, or every record of an input
whose retries ran out; kept in the dead-letter bucket under `<stage>/`, one object per input), or an *event*
a cloud's failure queue kept (AWS on-failure SQS, GCP dead-letter subscription, Azure poison queue or Event
Grid dead letters), or a stream *batch* the queue describes only by its range (a Kinesis on-failure record).
Grouping by cause puts letters of one stage that failed the same way together, whatever the varying parts
of their messages (ids, numbers, quoted values) say, so one bad deploy reads as one line, not thousands.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

RECORD, EVENT, BATCH = "record", "event", "batch"
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_HEX = re.compile(r"\b[0-9a-f]{8,}\b", re.IGNORECASE)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
CAUSE_LIMIT = 200


@dataclass
class DeadLetter:
    """What failed, why, where it is kept, and (for replay) the backend's handle to it (`ref`, never shown)."""

    stage: str
    kind: str  # RECORD, EVENT or BATCH
    reason: str  # "handler raised", "not JSON", "retries exhausted", or the cloud's condition
    error_type: str
    error_message: str
    kept: str  # where letters like this one are kept: "dead-letter bucket s3://b/score/", "SQS queue q"
    where: str  # this letter exactly: an object and line, a message id
    time: float | None  # when it was dead-lettered (epoch seconds), when the store or queue says
    attempts: int | None  # deliveries it had before it was given up on, when known
    data: bytes | None = None  # the record's bytes (records); None for events, which carry `event`
    event: Any = None  # the failed event as the queue kept it (decoded JSON when it is JSON)
    input: dict[str, Any] = field(default_factory=dict)  # where the record came from (shard and sequence, object and line)
    batch: str = ""  # the runtime's batch id of the input it belonged to
    index: int | None = None  # its position in that input
    traceback: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the reader could not tell (an unreadable line, a peek limit)
    ref: Any = None  # backend-private: what replay and removal need (an object key, a receipt handle)

    @property
    def cause(self) -> tuple[str, ...]:
        """What letters of one group share: stage, kind, reason, error type and the message's fixed words."""
        return (self.stage, self.kind, self.reason, self.error_type, normalized(self.error_message), self.kept)


def normalized(message: str) -> str:
    """A message with its varying parts (quoted values, long hex ids, numbers) replaced, to group by."""
    text = _QUOTED.sub("'…'", message[: CAUSE_LIMIT * 4])
    text = _HEX.sub("…", text)
    return _NUMBER.sub("N", text)[:CAUSE_LIMIT]


@dataclass
class Group:
    """Letters of one stage with one cause: how many, since when, the first one's error, where they are kept."""

    stage: str
    kind: str
    reason: str
    error_type: str
    error_message: str  # the earliest letter's own message
    kept: str
    count: int = 0
    first: float | None = None
    last: float | None = None
    example: str = ""  # where the earliest letter is

    def add(self, letter: DeadLetter) -> None:
        self.count += 1
        if letter.time is not None:
            if self.first is None or letter.time < self.first:
                self.first, self.error_message, self.example = letter.time, letter.error_message, letter.where
            if self.last is None or letter.time > self.last:
                self.last = letter.time
        elif not self.example:
            self.example = letter.where


def group(letters: Iterable[DeadLetter]) -> list[Group]:
    """Letters grouped by cause, in stage order of first appearance, most frequent cause first within a stage."""
    groups: dict[tuple[str, ...], Group] = {}
    order: dict[str, int] = {}
    for letter in letters:
        order.setdefault(letter.stage, len(order))
        found = groups.get(letter.cause)
        if found is None:
            found = groups[letter.cause] = Group(letter.stage, letter.kind, letter.reason, letter.error_type, letter.error_message,
                                                 letter.kept, example=letter.where)
        found.add(letter)
    return sorted(groups.values(), key=lambda g: (order[g.stage], -g.count, g.first or 0.0))


def parse_duration(text: str) -> float:
    """`30m`, `2h`, `7d`, `1h30m`, `45s`, `2w` -> seconds; ValueError naming what would be valid."""
    cleaned = text.strip()
    parts = _DURATION.findall(cleaned)
    if not cleaned or _DURATION.sub("", cleaned).strip() or not parts:
        raise ValueError(f"{text!r} is not a duration; write a number and a unit (s, m, h, d or w), e.g. 30m, 2h, 7d or 1h30m")
    seconds = sum(float(value) * _UNITS[unit.lower()] for value, unit in parts)
    if seconds <= 0:
        raise ValueError(f"{text!r} is no time at all; give a positive duration such as 30m")
    return seconds


def cutoff(since: float | None, now: float | None = None) -> float | None:
    """The earliest time a letter may have to be shown for `--since` (None: all of them)."""
    return None if since is None else (time.time() if now is None else now) - since


def shown(letter: DeadLetter, earliest: float | None) -> bool:
    """Whether `--since` keeps a letter; one whose time nobody knows is kept (hiding it would hide a failure)."""
    return earliest is None or letter.time is None or letter.time >= earliest


def iso(moment: float | None) -> str | None:
    """RFC 3339 UTC, to the second (the precision a person reads; JSON keeps it too)."""
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def epoch(text: Any) -> float | None:
    """An RFC 3339 time (as the clouds write them: `Z` or an offset, up to nanoseconds) -> epoch seconds, or None."""
    if not isinstance(text, str) or not text:
        return None
    value = text.strip().replace("Z", "+00:00")
    match = re.match(r"^(.*T\d\d:\d\d:\d\d)(\.\d+)?(.*)$", value)
    if match:  # Python reads at most 6 digits of a second's fraction; Pub/Sub and Event Grid write up to 9
        head, fraction, zone = match.groups()
        value = head + (fraction[:7] if fraction else "") + (zone or "+00:00")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
