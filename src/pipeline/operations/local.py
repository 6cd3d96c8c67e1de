"""The local store of `pipeline run` / `serve` as a day-two target: the same commands, on the same files.

Buckets are folders named after their role keys under `.pipeline/local/<name>/<stack>/` (or `--store`), so
`bucket(key)` is the key itself. Reading needs no lock (every object is replaced atomically); replaying
writes, so it takes the store's lock, the one `pipeline run` and `pipeline serve` hold while they run, and
refuses while either does, and refuses a store that another spec's runs claimed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from pipeline.operations.protocol import Operations, OperationsStore
from pipeline.runtime.store import LocalStore
from pipeline.spec.load import LoadedSpec


class DeletingLocalStore(LocalStore):
    """The runner's store, plus `delete` (a removed key's now-empty folders stay: the clouds have none to remove)."""

    def delete(self, bucket: str, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(bucket, key))


class LocalOperations(Operations):
    name = "local"
    title = "local store"

    def __init__(self, loaded: LoadedSpec, root: Path | None = None) -> None:
        from pipeline.local.layout import default_root

        super().__init__(loaded.spec, loaded.stack, loaded.base_dir, {})
        self.loaded = loaded
        self.root = (root or default_root(loaded)).absolute()
        self._store: DeletingLocalStore | None = None

    def exists(self) -> bool:
        return self.root.is_dir()

    def missing_note(self) -> str:
        return f"no local store at {self.root}: nothing has run there yet (`pipeline run` or `pipeline serve` makes it)"

    def store(self) -> OperationsStore:
        if self._store is None:
            self._store = DeletingLocalStore(self.root, durable=True)
        return self._store

    def bucket(self, key: str) -> str:
        return key

    def role_of(self, bucket: str) -> str | None:
        return bucket

    def location(self, bucket: str, key: str = "") -> str:
        path = self.root / bucket
        return f"{path}/{key}" if key else f"{path}/"

    def replay_note(self) -> str:
        return ("each dead letter is run again through the stage's current handler (this checkout's code, requirements and "
                "model) in its worker process, with its retries; outputs land at keys derived from the dead letter, "
                "then the dead letter is removed, and the stages that read those outputs run on them as in `pipeline run`")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store as `pipeline run` does (same lock file), or raise LocalRunError naming who has it."""
        from pipeline.local.errors import StoreConflictError
        from pipeline.local.layout import RUN_DIR
        from pipeline.local.stages import LocalRunError

        run_dir = self.root / RUN_DIR
        run_dir.mkdir(parents=True, exist_ok=True)
        claim = run_dir / "spec"
        mine = str(self.loaded.path.resolve())
        if claim.is_file():
            theirs = claim.read_text(encoding="utf-8").strip()
            if theirs != mine and Path(theirs).is_file():
                raise StoreConflictError(f"{self.root} holds the local runs of {theirs}, not of {mine}; pass --store with this spec's store")
        lock = os.open(run_dir / "lock", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LocalRunError(f"a `pipeline run` or `pipeline serve` is using {self.root}; stop it (Ctrl-C), then replay: "
                                    "a replay and a run must not write the same store at once") from None
            yield
        finally:
            os.close(lock)  # (releases the lock)
