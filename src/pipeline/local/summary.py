"""What a local run did, stage by stage: the counts `pipeline run` prints and `pipeline serve` answers with."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

_COUNTS = ("invocations", "items", "rows", "filtered", "dead_letters", "retries", "failed_batches")


@dataclass
class StageStats:
    name: str
    trigger: str
    invocations: int = 0
    items: int = 0
    rows: int = 0
    filtered: int = 0  # inputs that gave no row and were not dead-lettered (in - rows - dead letters, per invocation)
    dead_letters: int = 0
    retries: int = 0
    failed_batches: int = 0  # retries exhausted: the whole input went to dead letters

    def add(self, other: dict[str, int]) -> None:
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + other.get(name, 0))


@dataclass
class RunSummary:
    pipeline: str
    stack: str
    root: Path
    records_in: int = 0
    records_this_run: int = 0
    batches_resumed: int = 0
    batches_skipped: int = 0
    raw_objects: int = 0
    uploads_in: int = 0
    uploads_this_run: int = 0
    uploads_skipped: int = 0  # landed and processed by an earlier run of the same inputs
    stream_input: bool = True  # False: the run had uploads only
    archive: bool = False  # the stream's records are archived raw
    seconds: float = 0.0
    new_run: str | None = None  # why this run started over (None: resumed or continued the journal's run)
    stages: dict[str, StageStats] = field(default_factory=dict)
    dead_letter_keys: list[str] = field(default_factory=list)  # keys in the dead-letter bucket, e.g. "preprocess/local/...jsonl"

    @property
    def throughput(self) -> float:
        return self.records_this_run / self.seconds if self.seconds > 0 else 0.0

    @property
    def dead_letters(self) -> int:
        return sum(s.dead_letters for s in self.stages.values())

    @property
    def failed(self) -> bool:
        """Something was dead-lettered or an input failed for good: the run did not succeed."""
        return any(s.dead_letters or s.failed_batches for s in self.stages.values())

    @property
    def not_invoked(self) -> list[str]:
        """HTTP stages: `pipeline run` sends them no requests (`pipeline serve` and `pipeline invoke` do)."""
        return [s.name for s in self.stages.values() if s.trigger == "http"]
