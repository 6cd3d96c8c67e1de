"""Errors a user can act on: each names where the problem is and what would be valid."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

ECHO_LIMIT = 60  # characters of a user's value quoted back in a message
MESSAGE_LIMIT = 1000  # characters of one message or hint: a last line of defence for text we did not write
PROBLEMS_SHOWN = 50  # problems a SpecError lists; the rest are counted


def echo(value: object, limit: int = ECHO_LIMIT) -> str:
    """A user's value as a message quotes it: `repr` (so control characters, trailing newlines and
    look-alike characters show), cut to `limit` characters with the full length noted.

    Why: messages quote what the user wrote, and a spec value can be megabytes; quoting it whole
    once turned a 50 kB value into 44 MB of error text. Every message that quotes input uses this.
    """
    text = repr(value)
    if len(text) <= limit:
        return text
    size = len(value) if isinstance(value, (str, bytes)) else len(text)
    return f"{text[: max(limit - 1, 1)]}... ({size:,} characters)"


def odd_character(value: object) -> str:
    """Name the first character of a text that is a control character or not ASCII, e.g.
    " (it contains U+0430 CYRILLIC SMALL LETTER A)", so a look-alike ('dаta' with a Cyrillic 'а',
    a fullwidth '１') or a stray newline is explained rather than just refused; "" if there is none."""
    for char in value if isinstance(value, str) else "":
        if not (" " <= char <= "~"):
            name = unicodedata.name(char, "") or ("a control character" if unicodedata.category(char) == "Cc" else "an unnamed character")
            return f" (it contains U+{ord(char):04X} {name})" if name.isupper() else f" (it contains U+{ord(char):04X}, {name})"
    return ""


def clip(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """Cut a whole message (e.g. one from pydantic or YAML that may quote input) to a readable length."""
    return text if len(text) <= limit else f"{text[: limit - 1]}... ({len(text):,} characters in all)"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec, located as precisely as the input allows."""

    message: str
    file: str = ""
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based
    path: str = ""  # dotted field path, e.g. "stages[1].trigger.schedule"
    hint: str = ""  # what would be valid
    check: str = ""  # for a problem that is not in a file: which check found it (a deploy preflight's "credentials", ...)

    def location(self) -> str:
        parts = [self.file or "<input>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)

    def render(self) -> str:
        if self.check and not self.file:
            return clip(self.message) + (f" ({clip(self.hint)})" if self.hint else "")
        where = self.location()
        field_part = f" {clip(self.path, ECHO_LIMIT * 3)}:" if self.path else ""
        text = f"{where}:{field_part} {clip(self.message)}"
        if self.hint:
            text += f" ({clip(self.hint)})"
        return text


@dataclass
class SpecError(Exception):
    """A spec that cannot be used; carries every problem found, not just the first."""

    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        shown = [p.render() for p in self.problems[:PROBLEMS_SHOWN]]
        hidden = len(self.problems) - len(shown)
        if hidden > 0:
            shown.append(f"... and {hidden:,} more problem{'s' if hidden != 1 else ''} (fix these first)")
        return "\n".join(shown)


class PipelineError(Exception):
    """A failure that is not the spec's fault but still has a clear explanation (exit code 1)."""


class UnknownBackendError(PipelineError):
    """A cloud name with no installed backend: bad usage (exit code 2)."""
