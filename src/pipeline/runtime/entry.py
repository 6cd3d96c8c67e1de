"""What every cloud entry point shares: one runner per process, input filtering, tick names, and runs over
windows of accumulated outputs (scheduled or requested over HTTP), so each cloud only adapts its events.

A function container serves many invocations; the handler module, the storage client and the
model file are set up on the first one and reused (cold start pays once).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from pipeline.runtime.invoke import Settings, StageRunner, make_runner
from pipeline.runtime.store import ObjectStore

if TYPE_CHECKING:
    from datetime import datetime

    from pipeline.runtime.store import WindowStore
    from pipeline.runtime.window import WindowOutcome

_runners: dict[tuple[Settings, str], StageRunner] = {}


def cached_runner(make_store: Callable[[], ObjectStore], root: str | None = None, model_store: Callable[[], ObjectStore] | None = None) -> StageRunner:
    """The stage runner for the current environment, built on first use.

    `root` is where the deployed code lives (the handler path is relative to it); `model_store`
    reads the model artifact when it lives in another account than the data (Azure).
    """
    settings = Settings.from_env()
    code_root = root or os.environ.get("PIPELINE_CODE_ROOT") or os.getcwd()
    runner = _runners.get((settings, code_root))
    if runner is None:
        store = make_store()
        runner = make_runner(settings, store, code_root)
        if model_store is not None and settings.model_bucket and not os.environ.get("PIPELINE_MODEL_PATH"):
            from pipeline.runtime.context import cached_download

            models = model_store()
            bucket, key = settings.model_bucket, settings.model_key
            runner.context._model_loader = lambda: cached_download(models.get, bucket, key)
        _runners[(settings, code_root)] = runner
    return runner


def reset() -> None:
    """Forget cached runners (tests change the environment between cases)."""
    _runners.clear()


def wanted(settings: Settings, bucket: str, key: str) -> bool:
    """Only objects of the source: the right bucket and prefix (never the stage's own output), and files,
    not folder markers. A stage's outputs are `.jsonl`; uploads may be any name (gzip is detected by content)."""
    if settings.input_bucket and bucket != settings.input_bucket:
        return False
    return key.startswith(settings.input_prefix) and not key.endswith("/") and len(key) > len(settings.input_prefix)


def tick_name(when: str | datetime | None = None) -> str:
    """A schedule run's name from its scheduled time (RFC 3339 text or datetime), to the second, UTC.

    The same scheduled time redelivered gives the same name, hence the same output key.
    """
    from datetime import UTC, datetime

    if when is None:
        moment = datetime.now(UTC).replace(microsecond=0)
    elif isinstance(when, datetime):
        moment = when
    else:
        moment = datetime.fromisoformat(when.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def tick_time(tick: str) -> float:
    """The epoch seconds a tick name (`tick_name`) stands for."""
    from datetime import UTC, datetime

    return datetime.strptime(tick, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()


def window_store(stage: StageRunner) -> WindowStore:
    """The stage's store, which must do conditional writes for windows (every cloud's store here does)."""
    store = stage.store
    if not (hasattr(store, "put_if") and hasattr(store, "read_versioned") and hasattr(store, "list_sized")):
        raise RuntimeError(f"stage {stage.settings.stage}: its store {type(store).__name__} cannot run windows (no conditional writes)")
    return cast("WindowStore", store)


def window_run(stage: StageRunner, when: str | datetime | None, last_attempt: bool = False) -> WindowOutcome:
    """A scheduled run over the stage's window, cut off at its scheduled time (the same on every retry of it)."""
    from pipeline.runtime.window import run_window

    tick = tick_name(when)
    outcome = run_window(stage, window_store(stage), tick_time(tick), tick, last_attempt)
    stage.logger.info("window run", run=tick, **outcome.summary())
    return outcome


def window_request(stage: StageRunner, body: bytes, now: float | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    """An HTTP request to a stage over accumulated outputs: (status, JSON body, extra headers). The body carries no
    rows (empty or `{}`); the window is cut off at the request's time. 200 with what the run read and wrote (also
    when there was nothing new), 409 with Retry-After while another run holds the lease, 500 when it failed (retry)."""
    import time
    import uuid

    from pipeline.runtime.errors import BatchFailedError
    from pipeline.runtime.window import NO_ROWS_ERROR, StateError, WindowConflictError, iso, run_window, takes_no_rows

    if not takes_no_rows(body):
        return 400, {"error": NO_ROWS_ERROR}, {}
    cutoff = time.time() if now is None else now
    run = f"request-{iso(cutoff)}-{uuid.uuid4().hex[:8]}"
    try:
        outcome = run_window(stage, window_store(stage), cutoff, run)
    except (BatchFailedError, WindowConflictError) as exc:
        cause = exc.cause if isinstance(exc, BatchFailedError) else exc
        return 500, {"error": f"{type(cause).__name__}: {cause}", "retryable": True}, {}
    except StateError as exc:
        stage.logger.error(str(exc))
        return 500, {"error": str(exc), "retryable": False}, {}
    stage.logger.info("window run", run=run, **outcome.summary())
    return outcome.answer()
