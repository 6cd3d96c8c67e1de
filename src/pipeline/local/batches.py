"""Stream records as the runner batches them: in columns (`Lines`), per consumer (a stream stage or the raw archive),
planned in the journal (`Planned`), and in the workers' hands (`Batch`, `Read`)."""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

from pipeline.local.lines import LineRecord
from pipeline.local.stage_process import Reply
from pipeline.local.stages import Call, Inputs, Stats
from pipeline.spec.model import StageSpec


class InputChanged(Exception):  # noqa: N818 - a signal inside the runner, never seen by users
    """The input disagrees with the journal's run: start a new run from the input's beginning."""


@dataclass
class Planned:
    last: int
    count: int
    digest: str
    done: bool = False


class Lines:
    """Input records in columns: their bytes, line numbers and arrival times. The runner only batches
    and forwards records, so it builds no object per record (the stage's worker builds the `Record`s
    its handler sees)."""

    __slots__ = ("arrivals", "datas", "numbers")

    def __init__(self, datas: list[bytes] | None = None, numbers: list[int] | None = None,
                 arrivals: list[float | None] | None = None) -> None:
        self.datas = datas if datas is not None else []
        self.numbers = numbers if numbers is not None else []
        self.arrivals = arrivals if arrivals is not None else []

    def __len__(self) -> int:
        return len(self.numbers)

    def take(self, other: Lines, start: int, end: int) -> None:
        """Append `other`'s records [start, end)."""
        self.datas += other.datas[start:end]
        self.numbers += other.numbers[start:end]
        self.arrivals += other.arrivals[start:end]

    def identities(self) -> list[dict[str, Any]]:
        """What dead letters and logs say about each record (only when some are dead-lettered)."""
        return [LineRecord(data, number, arrival).describe() for data, number, arrival in zip(self.datas, self.numbers, self.arrivals, strict=True)]


_strip_newline = operator.methodcaller("rstrip", b"\r\n")


def lines_of(chunk: list[bytes], first: int, arrival: float | None) -> Lines:
    """Lines read from the input (with their newlines), numbered from `first`, as records: blank lines are
    skipped (their numbers too). The common case, no blank line, costs no Python code per line."""
    datas = list(map(_strip_newline, chunk))
    if all(datas) and not any(map(bytes.isspace, datas)):
        numbers = list(range(first, first + len(datas)))
    else:
        kept = [i for i, data in enumerate(datas) if data and not data.isspace()]
        datas, numbers = [datas[i] for i in kept], [first + i for i in kept]
    return Lines(datas, numbers, [arrival] * len(datas))


class Consumer:
    """Batches records for one stream consumer: a stream stage, or the raw archive (`stage` None)."""

    def __init__(self, name: str, batch_size: int, window_s: float, stage: StageSpec | None) -> None:
        self.name, self.batch_size, self.window_s, self.stage = name, batch_size, window_s, stage
        self.planned: dict[int, Planned] = {}
        self.pending = Lines()
        self.first_arrival = 0.0
        self.target: Planned | None = None
        self.computing: Batch | None = None  # in the stage's worker (see LocalRun._advance)
        self.reading: Batch | None = None  # its output in the workers of the stages that read it


@dataclass
class Read:
    """A stream stage's output in the worker of an object stage that reads it."""

    stage: StageSpec
    call: Call
    batch_id: str
    inputs: Inputs
    reply: Reply | None = None


@dataclass
class Batch:
    """A stream batch between its `plan` and `done` lines."""

    consumer: Consumer
    records: Lines
    batch_id: str
    stats: Stats
    call: Call | None = None  # a stream stage's batch, handed to the stage's worker
    reply: Reply | None = None  # ... and what came back (None: dead-lettered)
    reads: list[Read] = field(default_factory=list)
