"""A stage's `requirements:` for local runs: installed once per requirements file into a cache
folder named by the file's hash, which the stage's worker puts at the front of its `sys.path`.

`pip install --target` into `<cache>/requirements/<hash>/` (the hash covers the file's content and
the interpreter, so a changed file or another Python gets its own folder); a finished install
holds a marker file, so a half-finished one (killed, offline) is never used. The cache folder is
the platform's (`pipeline.user_cache`: `$PIPELINE_CACHE_DIR`, else `~/.cache/pipeline-deployer` on Linux).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from pipeline.packaging import requirement_lines

DONE_MARKER = ".installed"
_NOT_FOUND = re.compile(r"No matching distribution found for (\S+)")
_NO_VERSION = re.compile(r"Could not find a version that satisfies the requirement (\S+)")
_OFFLINE = ("Failed to establish a new connection", "Temporary failure in name resolution", "Network is unreachable",
            "Could not fetch URL", "NewConnectionError", "Max retries exceeded")


class RequirementsError(Exception):
    """The requirements could not be installed; the message says which package and what to do."""


def cache_dir() -> Path:
    from pipeline.user_cache import cache_root  # the runner's side of the tool, never shipped to a cloud

    return cache_root()


def _key(requirements: Path) -> str:
    digest = hashlib.sha256(requirements.read_bytes())
    digest.update(f"\n{sys.implementation.cache_tag} {sys.platform} {os.uname().machine}".encode())
    return digest.hexdigest()[:20]


def installed_path(root: Path, requirements: Path, shown: str, notify: Callable[[str], None]) -> Path | None:
    """The folder holding the installed requirements (installing them first if needed); None when the file lists none.
    The file is re-checked to be inside the project `root` as it is read, like packaging does."""
    if not requirement_lines(root, requirements):
        return None
    from pipeline.user_cache import private_folder

    folder = cache_dir() / "requirements"
    target = folder / _key(requirements)
    try:
        private_folder(folder)  # imported code: only from folders this user made (pipeline.user_cache)
        if (target / DONE_MARKER).is_file():
            return private_folder(target)
        return _install(requirements, shown, folder, target, notify)
    except OSError as exc:
        raise RequirementsError(f"cannot install {shown} into the cache {exc.filename or folder}: {exc.strerror or exc}; "
                                "set PIPELINE_CACHE_DIR to a writable folder with free space") from exc


def _install(requirements: Path, shown: str, folder: Path, target: Path, notify: Callable[[str], None]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run installing the same file: wait for it, then use its folder
        if (target / DONE_MARKER).is_file():
            return target
        notify(f"installing {shown} into {target} (once; later runs reuse it)")
        partial = folder / f"{target.name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input",
                   "--target", str(partial), "-r", str(requirements.resolve())]
        result = subprocess.run(command, cwd=requirements.parent, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            raise RequirementsError(_explain(shown, result.stdout + result.stderr))
        (partial / DONE_MARKER).write_text(requirements.read_text(encoding="utf-8"), encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(partial, target)
    return target


def _explain(shown: str, output: str) -> str:
    """pip's failure, reduced to the package it could not get and what to do about it."""
    missing = _NOT_FOUND.findall(output) or _NO_VERSION.findall(output)
    offline = any(marker in output for marker in _OFFLINE)
    last = [line.strip() for line in output.strip().splitlines() if line.strip()][-3:]
    pip_said = "\n  ".join(last) or "(no output)"
    if "No module named pip" in output:
        return f"cannot install {shown}: this Python has no pip ({sys.executable}); install pip, or run from a virtual environment"
    if missing:
        names = ", ".join(sorted(set(missing)))
        why = ("the package index cannot be reached (offline?)" if offline else
               "no package index offered it (offline, a misspelt name, or no version for this Python)")
        return (f"cannot install {shown}: {names} could not be found: {why}. Check the name and version; "
                "when online, run again (the install is cached for later offline runs).\n  pip said: " + pip_said)
    if offline:
        return f"cannot install {shown}: the package index cannot be reached (offline?); connect and run again.\n  pip said: {pip_said}"
    return f"cannot install {shown}:\n  pip said: {pip_said}"
