"""Errors a user can act on: each names where the problem is and what would be valid."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec, located as precisely as the input allows."""

    message: str
    file: str = ""
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based
    path: str = ""  # dotted field path, e.g. "stages[1].trigger.schedule"
    hint: str = ""  # what would be valid

    def location(self) -> str:
        parts = [self.file or "<input>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)

    def render(self) -> str:
        where = self.location()
        field_part = f" {self.path}:" if self.path else ""
        text = f"{where}:{field_part} {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text


@dataclass
class SpecError(Exception):
    """A spec that cannot be used; carries every problem found, not just the first."""

    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(p.render() for p in self.problems)


class PipelineError(Exception):
    """A failure that is not the spec's fault but still has a clear explanation (exit code 1)."""


class UnknownBackendError(PipelineError):
    """A cloud name with no installed backend: bad usage (exit code 2)."""
