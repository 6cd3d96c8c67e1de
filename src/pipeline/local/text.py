"""Text that others wrote (a request line, a record quoted in an error), made safe for the operator's terminal.

A control character sent raw to a terminal is a command to it: ESC starts sequences that move the
cursor, clear the screen, set the window title or, on some terminals, answer back as if typed. Log lines
that quote someone else's text show such characters as escapes instead.
"""

from __future__ import annotations


def printable(text: str, limit: int | None = None, keep: str = "") -> str:
    """`text` with control characters (C0, DEL, C1, and other unprintable ones; those in `keep` excepted) as
    \\xNN or \\uNNNN escapes, cut to `limit` characters (with "..." after) when a limit is given."""
    cut = text if limit is None else text[:limit]
    shown = "".join(c if c.isprintable() or c == " " or c in keep else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}"
                    for c in cut)
    return shown + ("..." if limit is not None and len(text) > limit else "")
