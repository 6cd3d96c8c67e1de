"""Where the tool keeps its caches: the platform's per-user cache folder, private to the user.

`$PIPELINE_CACHE_DIR` wins (CI and tests point it at a temporary folder); otherwise the folder
each platform reserves for caches: `$XDG_CACHE_HOME` or `~/.cache` on Linux, `~/Library/Caches`
on macOS, `%LOCALAPPDATA%` on Windows, each with a `pipeline-deployer` folder inside.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from pathlib import Path

APP = "pipeline-deployer"


def cache_root() -> Path:
    if os.environ.get("PIPELINE_CACHE_DIR"):
        return Path(os.environ["PIPELINE_CACHE_DIR"])
    home = os.path.expanduser("~")
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or os.path.join(home, "AppData", "Local")) / APP / "Cache"
    if sys.platform == "darwin":
        return Path(home) / "Library" / "Caches" / APP
    return Path(os.environ.get("XDG_CACHE_HOME") or os.path.join(home, ".cache")) / APP


def private_folder(path: Path) -> Path:
    """Create `path` (and parents) with every folder from the cache root down readable by this user
    only: the caches hold plans of private code."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    root = cache_root()
    for folder in (path, *path.parents):
        if folder != root and root not in folder.parents:
            break
        if os.name == "posix" and stat.S_IMODE(folder.stat().st_mode) != 0o700:
            os.chmod(folder, 0o700)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write atomically (a reader sees the old file or the new one, never half) with mode 0600."""
    private_folder(path.parent)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
