"""How a local run ends other than by finishing: bad usage (exit 2), a store that is another spec's, an interruption."""

from __future__ import annotations

from pipeline.local.stages import LocalRunError


class LocalUsageError(LocalRunError):
    """Bad usage rather than a failed run (exit 2): an upload that cannot be one, a store that is not this spec's."""


class StoreConflictError(LocalUsageError):
    """The store belongs to another spec."""


class LocalRunInterrupted(Exception):  # noqa: N818 - an outcome, not an error
    """Ctrl-C or SIGTERM: the message says what is done and how to resume; `signal_number` for the exit code."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.signal_number = signal_number
