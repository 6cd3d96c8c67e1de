"""What a handler gets besides its input: the stage, the model file, a logger, the settings.

The model artifact lives in object storage in the cloud; `model_path` downloads it to local disk
on first use (once per container), so stages without a model never pay for it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from pipeline.runtime.logs import JsonLogger


class Context:
    """The second argument of every handler."""

    def __init__(self, stage: str, *, logger: JsonLogger | None = None, env: Mapping[str, str] | None = None,
                 model_path: str | None = None, model_loader: Callable[[], str] | None = None, trigger: str = "") -> None:
        self.stage = stage
        self.trigger = trigger
        self.env: Mapping[str, str] = env if env is not None else os.environ
        self.logger = logger or JsonLogger(stage=stage)
        self._model_path = model_path
        self._model_loader = model_loader

    @property
    def model_path(self) -> str | None:
        """Local path of the stage's model artifact (None when the stage has no `model`)."""
        if self._model_path is None and self._model_loader is not None:
            self._model_path = self._model_loader()
        return self._model_path

    @property
    def pipeline(self) -> str:
        return self.env.get("PIPELINE_NAME", "")

    @property
    def stack(self) -> str:
        return self.env.get("PIPELINE_STACK", "")

    def __repr__(self) -> str:
        return f"Context(stage={self.stage!r}, trigger={self.trigger!r})"


def cached_download(get: Callable[[str, str], bytes], bucket: str, key: str, directory: str | None = None) -> str:
    """Fetch an artifact once per container into /tmp (the only writable disk on Lambda and Cloud Functions).

    The key is content-addressed (models/<sha>/<file>), so a cached file is never stale.
    """
    import tempfile

    root = directory or os.path.join(tempfile.gettempdir(), "pipeline-artifacts")
    path = os.path.join(root, *key.split("/"))
    if not os.path.isfile(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.part"
        with open(tmp, "wb") as handle:
            handle.write(get(bucket, key))
        os.replace(tmp, path)
    return path


def model_loader_from_env(get: Callable[[str, str], bytes], env: Mapping[str, str]) -> Callable[[], str] | None:
    """A loader for PIPELINE_MODEL_BUCKET/KEY, or a fixed PIPELINE_MODEL_PATH (packaged or local file)."""
    if env.get("PIPELINE_MODEL_PATH"):
        path = env["PIPELINE_MODEL_PATH"]
        return lambda: path
    bucket, key = env.get("PIPELINE_MODEL_BUCKET"), env.get("PIPELINE_MODEL_KEY")
    if not bucket or not key:
        return None
    return lambda: cached_download(get, bucket, key)
