"""How a handler says "retry the whole batch" without importing anything cloud-specific.

Per-record exceptions dead-letter that record; these mean "something outside this record is
wrong, try again later": a downstream dependency is down, a quota was hit.
"""

from __future__ import annotations

# Builtin exception types that signal a transient condition, never a bad record.
TRANSIENT: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError, MemoryError)


class RetryBatch(Exception):  # noqa: N818 - reads as an instruction: raise RetryBatch
    """Raise (from a handler) to have the whole batch or event retried by the platform."""

    retryable = True


def is_retryable(exc: BaseException) -> bool:
    """True for transient errors: builtin network/timeouts, or any exception class with `retryable = True`.

    The attribute lets a handler mark its own exception types without importing the runtime.
    """
    return isinstance(exc, TRANSIENT) or bool(getattr(exc, "retryable", False))


class BatchFailedError(Exception):
    """The whole batch must be retried; `cause` is the handler's exception."""

    def __init__(self, stage: str, batch_id: str, cause: BaseException) -> None:
        super().__init__(f"stage {stage}: batch {batch_id} failed and will be retried: {type(cause).__name__}: {cause}")
        self.cause = cause
        self.batch_id = batch_id
