"""The operations face of a target (a deployed stack on one cloud, or the local store): what day-two commands
need from it, so the core never imports a cloud SDK.

The core reads and replays the records the runtime dead-lettered itself, over the target's `store()` (the
same store classes the function runtime uses, plus `delete`); a cloud adds what only it keeps: its failure
queues (`queued`), the way to send one of their events through again (`redrive`), and how its SDK's errors
read to a person (`explain`). A backend returns its implementation from `Backend.operations(outputs)`.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pipeline.errors import PipelineError
from pipeline.operations.model import DeadLetter
from pipeline.runtime.store import WindowStore

if TYPE_CHECKING:
    from pipeline.runtime.invoke import Settings
    from pipeline.spec.model import PipelineSpec, StageSpec


class OperationsStore(WindowStore, Protocol):
    """A runtime store (get, put, list with sizes, versioned reads) that can also delete an object."""

    def delete(self, bucket: str, key: str) -> None:
        """Remove the object; removing one that is already gone is not an error."""


class AccessError(PipelineError):
    """The target refused, or could not be reached: the message says which permission or setting (exit 1)."""


class UnrecoverableError(PipelineError):
    """A queued dead letter that can no longer be sent again as it was (past the stream's retention, its object gone):
    the message says why and what to do instead. It stays where it is."""


class OutputsError(PipelineError):
    """The stack's deploy outputs are missing or do not describe this spec (exit 1; a bad --outputs file is usage, exit 2)."""

    exit_code = 1


@dataclass
class Redriven:
    """What redriving one queued event did: `ok` only once the event was sent and removed from its failure queue."""

    letter: DeadLetter
    ok: bool
    action: str  # what was done (or, with dry_run, would be)
    error: str = ""


class Operations(ABC):
    """One target's day-two face. `outputs` are the stack's deploy outputs (`pipeline outputs --json`); locally empty."""

    name = ""  # "local", "aws", "gcp", "azure"
    title = ""  # "local store", "AWS", ...

    def __init__(self, spec: PipelineSpec, stack: str, base_dir: Path, outputs: Mapping[str, Any]) -> None:
        self.spec, self.stack, self.base_dir, self.outputs = spec, stack, base_dir, dict(outputs)

    # -- where things are -----------------------------------------------------------------------------

    def exists(self) -> bool:
        """Whether there is anything to read (a local store that never ran is not there; a stack is taken to be)."""
        return True

    def missing_note(self) -> str:
        """What to say when `exists()` is false."""
        return ""

    @abstractmethod
    def store(self) -> OperationsStore:
        """The store holding the pipeline's buckets (created on first use; may raise AccessError)."""

    def bucket(self, key: str) -> str:
        """The physical bucket of a role key (`dead-letter`, a stage's name, the uploads name, `raw`), from the outputs."""
        buckets = self.outputs.get("buckets") or {}
        name = buckets.get(key) if isinstance(buckets, Mapping) else None
        if not isinstance(name, str) or not name:
            raise OutputsError(f"the stack's outputs name no bucket for {key!r} (they name: {', '.join(sorted(buckets)) or 'none'}); "
                               "was this stack deployed from this spec and stack overlay?")
        return name

    def role_of(self, bucket: str) -> str | None:
        """The role key of a physical bucket name (what a dead letter's `input.bucket` says), or None."""
        buckets = self.outputs.get("buckets") or {}
        return next((key for key, name in buckets.items() if name == bucket), None) if isinstance(buckets, Mapping) else None

    @abstractmethod
    def location(self, bucket: str, key: str = "") -> str:
        """How a person names an object or prefix on this target: s3://b/k, gs://b/k, a blob URL, a local path."""

    def settings(self, stage: StageSpec) -> Settings:
        """The stage's runtime settings with this target's bucket names (what its function reads from its environment)."""
        from pipeline.runtime.invoke import Settings
        from pipeline.wiring import stage_env

        env = stage_env(self.spec, self.stack, stage, self.bucket)
        return Settings.from_env({key: str(value) for key, value in env.items()})

    # -- what only the target keeps -----------------------------------------------------------------

    def queued(self, stage: StageSpec, earliest: float | None) -> Iterator[DeadLetter]:
        """Events the stage's failure queues keep, read without removing them. None by default (the local store)."""
        return iter(())

    def records_of(self, letter: DeadLetter) -> list[DeadLetter]:
        """The records a queued letter stands for, when it names them only by range (a stream batch): read back, read-only,
        for `dlq show`. By default (and when they can no longer be had: the letter then says why) the letter itself."""
        return [letter]

    def queued_count(self, stage: StageSpec) -> int | None:
        """How many events the stage's failure queues hold (approximate where the cloud only says so); None: no queue."""
        return None

    def redrive(self, letters: Sequence[DeadLetter], dry_run: bool) -> Iterator[Redriven]:
        """Send queued events through their stage again by the cloud's own path, removing each from its queue only
        after the send succeeded. Yields one result per letter, as it goes (Ctrl-C between two loses nothing)."""
        return iter(())

    def replay_note(self) -> str:
        """How this target replays records the runtime dead-lettered, said plainly in the command's output."""
        return ("records the runtime dead-lettered are run again through the stage's handler from this checkout "
                f"(its current code, requirements and model) on this machine; outputs and dead letters are written to the {self.title} "
                "buckets with your credentials, at keys derived from each dead letter, before the dead letter is removed")

    def explain(self, exc: BaseException, doing: str) -> str | None:
        """A person's message for an SDK error met while `doing` something (a missing credential, bucket or permission,
        naming the permission); None when the error is not one the target knows (then it is a bug)."""
        return None

    @contextlib.contextmanager
    def guarded(self, doing: str) -> Iterator[None]:
        """Turn the target's own errors into AccessError (exit 1, no traceback)."""
        try:
            yield
        except (AccessError, OutputsError):
            raise
        except Exception as exc:
            message = self.explain(exc, doing)
            if message is None:
                raise
            raise AccessError(message) from exc
