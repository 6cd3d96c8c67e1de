"""What a local run depends on, and noticing when it changes.

`fingerprint` names the code of a run (the effective spec, the files of every handler's folder
as the cloud package would hold them, requirements and models): a run whose fingerprint differs
from the journal's starts over instead of resuming with outputs of other code. `--watch` polls
the same files plus the spec, its overlay and the inputs (modification time and size; no new
dependency and nothing to install).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from pipeline import __version__
from pipeline.spec.load import LoadedSpec, overlay_path
from pipeline.spec.paths import SKIPPED_FOLDERS

HASHED_BYTES = 4 << 20  # bigger files (a model) are named by size and modification time instead of content
MAX_FILES = 5000  # a handler folder is code, not a data lake: stop looking after this many files

Snapshot = dict[Path, tuple[int, int] | None]


def _folder_files(folder: Path) -> list[Path]:
    found: list[Path] = []
    for current, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_FOLDERS and not d.startswith("."))
        found.extend(Path(current, name) for name in sorted(files) if not name.endswith(".pyc"))
        if len(found) >= MAX_FILES:
            break
    return found[:MAX_FILES]


def code_files(loaded: LoadedSpec) -> list[Path]:
    """Every file a stage's function is built from: its handler's folder, requirements and model."""
    base = loaded.base_dir
    files: set[Path] = set()
    for stage in loaded.spec.stages:
        files.update(_folder_files((base / stage.handler_file).parent))
        files.update(base / name for name in (stage.requirements, stage.model) if name)
    return sorted(files)


def fingerprint(loaded: LoadedSpec) -> str:
    digest = hashlib.sha256(f"pipeline {__version__}\n".encode())
    digest.update(loaded.spec.model_dump_json().encode())
    for path in code_files(loaded):
        digest.update(f"\n{path.relative_to(loaded.base_dir) if path.is_relative_to(loaded.base_dir) else path}\n".encode())
        try:
            info = path.stat()
            if info.st_size > HASHED_BYTES:
                digest.update(f"{info.st_size}:{info.st_mtime_ns}".encode())
            else:
                digest.update(path.read_bytes())
        except OSError:
            digest.update(b"<missing>")
    return digest.hexdigest()[:16]


def watched_files(spec: Path, stack: str | None, loaded: LoadedSpec | None, source: str | None, uploads: Iterable[Path] = ()) -> list[Path]:
    """The spec, its overlay, the code (when the spec loaded), the input file and the uploaded files."""
    files = [spec]
    if stack:
        files.append(overlay_path(spec, stack))
    if loaded is not None:
        files.extend(code_files(loaded))
    if source and source != "-":
        files.append(Path(source))
    files.extend(uploads)
    return files


def snapshot(paths: Iterable[Path]) -> Snapshot:
    state: Snapshot = {}
    for path in paths:
        try:
            info = path.stat()
            state[path] = (info.st_mtime_ns, info.st_size)
        except OSError:
            state[path] = None
    return state


def wait_for_change(files: Callable[[], list[Path]], since: Snapshot, interval_s: float = 0.5) -> list[Path]:
    """Block until a file of `files()` (asked again on every poll, so new files count) differs from
    `since` (taken before the last run started, so an edit made during a run counts); return which."""
    while True:
        now = snapshot(files())
        changed = sorted(p for p in since.keys() | now.keys() if since.get(p) != now.get(p))
        if changed:
            while True:  # settle: an editor or a copy may still be writing (a half-written file is no input)
                time.sleep(interval_s)
                settled = snapshot(files())
                if settled == now:
                    return sorted(p for p in since.keys() | now.keys() if since.get(p) != now.get(p))
                now = settled
        time.sleep(interval_s)
