"""Ctrl-C and SIGTERM as exceptions in the main thread, which a step that must not be cut in two holds off.

`pipeline run`, `serve` and `invoke` stop on Ctrl-C (KeyboardInterrupt) and SIGTERM (`Stopped`), raised
wherever the main thread is, and the journal makes any such point safe to resume from. A few steps must
happen whole or not at all: `pipeline serve` keeps a request's records and notes what its answer will
say about them; stopped between the two, the sender would be told to send again records that are kept,
and would get each of them twice. Inside `held()` a signal is remembered and raised once the step is over.

Standard library only; the handlers run in the main thread (Python delivers signals there), so the
counters need no lock.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(KeyboardInterrupt):
    """The run was asked to stop by a signal other than Ctrl-C (SIGTERM)."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal_number)
        self.signal_number = signal_number


class _State:
    depth = 0  # how many `held()` blocks the main thread is in
    pending: int | None = None  # the first signal that came while held


def _interrupt(number: int) -> KeyboardInterrupt:
    return KeyboardInterrupt() if number == signal.SIGINT else Stopped(number)


def _on_signal(number: int, frame: FrameType | None) -> None:
    if _State.depth:
        _State.pending = _State.pending or number
        return
    raise _interrupt(number)


@contextmanager
def stoppable() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt and SIGTERM `Stopped` in the main thread while inside (except in `held()`)."""
    previous = {number: signal.signal(number, _on_signal) for number in _SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


class held:  # noqa: N801 - used as a `with` statement, like contextlib's lower-case helpers
    """Inside, Ctrl-C and SIGTERM wait: the first one is raised when the outermost block ends (with the
    block's own exception, if any, as its context: the stop was asked for and wins)."""

    def __enter__(self) -> None:
        _State.depth += 1

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        _State.depth -= 1
        if _State.depth == 0 and _State.pending is not None:
            number, _State.pending = _State.pending, None
            raise _interrupt(number)
