"""What every cloud entry point shares: one runner per process, input filtering, tick names.

A function container serves many invocations; the handler module, the storage client and the
model file are set up on the first one and reused (cold start pays once).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from pipeline.runtime.invoke import Settings, StageRunner, make_runner
from pipeline.runtime.store import ObjectStore

if TYPE_CHECKING:
    from datetime import datetime

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
