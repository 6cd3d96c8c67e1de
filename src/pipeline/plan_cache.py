"""A content-addressed cache of plans and comparisons, so an unchanged spec answers at once.

A plan is a pure function of the merged spec, the files the program ships (handler folders,
requirements, models), the tool's and backends' code, and the installed SDK versions. Like
ccache's direct mode, an entry is found in two steps, both without importing pydantic, Pulumi or a
cloud SDK:

1. the *key* hashes what can be read without understanding the spec: the command and its options,
   the spec file's bytes and path, the stack overlays next to it, the source of the tool and of
   every installed backend, and the names (with versions) of every installed distribution;
2. the entry then lists the other files the result depends on (found while planning, from the
   spec) with their content hashes; all must still match.

Only successful results are stored. An entry that cannot be read, was written by another format
or version, or names another key is ignored and replaced. Entries live under the user's cache
folder (`pipeline.user_cache`), private to the user; `--no-cache` or `PIPELINE_NO_CACHE=1` turns
the cache off. The oldest entries beyond `MAX_ENTRIES` are removed when a new one is written.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.spec.paths import SKIPPED_FOLDERS
from pipeline.user_cache import cache_root, write_private

if TYPE_CHECKING:
    from pipeline.spec.load import LoadedSpec

FORMAT = "pipeline-deployer plan cache"
VERSION = 1
MAX_ENTRIES = 256
BACKENDS_GROUP = "pipeline.backends"
_OFF = ("1", "true", "yes", "on")


def enabled(flag: bool = True) -> bool:
    """The cache is used unless `--no-cache` was given or PIPELINE_NO_CACHE is set to a true value."""
    return flag and os.environ.get("PIPELINE_NO_CACHE", "").strip().lower() not in _OFF


def folder() -> Path:
    return cache_root() / "plans"


@dataclass(frozen=True)
class Request:
    """One command's question: which command, with which options, about which spec file."""

    command: str  # "plan" or "compare"
    spec_path: Path
    options: dict[str, Any] = field(default_factory=dict)  # e.g. {"clouds": ["aws"], "stack": "dev"}

    def key(self) -> str:
        spec = self.spec_path
        overlays = spec.parent / "stacks"
        parts = {
            "format": FORMAT,
            "version": VERSION,
            "command": self.command,
            "options": self.options,
            "spec": [str(spec), os.path.realpath(spec), file_sha256(spec)],
            "overlays": {p.name: file_sha256(p) for p in sorted(overlays.glob("*.yaml"))} if overlays.is_dir() else {},
            "tool": tool_fingerprint(),
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def lookup(request: Request) -> Any | None:
    """The stored result for `request`, or None (no entry, a damaged or foreign one, or an input changed)."""
    key = request.key()
    try:
        entry = json.loads(_entry_path(key).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("format") != FORMAT or entry.get("version") != VERSION or entry.get("key") != key:
        return None
    inputs = entry.get("inputs")
    if not isinstance(inputs, list) or "result" not in entry:
        return None
    project = os.path.realpath(request.spec_path.parent)
    for item in inputs:
        if not (isinstance(item, list) and len(item) == 2 and all(isinstance(v, str) for v in item)):
            return None
        if os.path.commonpath([project, os.path.realpath(item[0])]) != project:
            return None  # inputs live in the project folder (spec.paths); anything else is not our entry
        if fingerprint(Path(item[0])) != item[1]:
            return None
    return entry["result"]


def store(request: Request, loaded: LoadedSpec, result: Any) -> None:
    """Keep `result` for `request`. A cache that cannot be written is not an error: the user still
    gets the answer, just not faster next time."""
    key = request.key()
    entry = {
        "format": FORMAT,
        "version": VERSION,
        "key": key,
        "inputs": [[str(path), fingerprint(path)] for path in plan_inputs(loaded)],
        "result": result,
    }
    try:
        write_private(_entry_path(key), json.dumps(entry).encode())  # key order kept: it is the clouds' order
        _prune(folder(), MAX_ENTRIES)
    except OSError:
        pass


def plan_inputs(loaded: LoadedSpec) -> list[Path]:
    """Files and folders a plan reads besides the spec: each stage's handler folder (shipped whole),
    its requirements file and its model."""
    root = loaded.base_dir
    paths: dict[str, Path] = {}
    for stage in loaded.spec.stages:
        found = [(root / stage.handler_file).parent]
        found += [root / name for name in (stage.requirements, stage.model) if name]
        for path in found:
            paths.setdefault(os.path.realpath(path), path)
    return [paths[name] for name in sorted(paths)]


# ---- fingerprints -------------------------------------------------------------------------------

def file_sha256(path: Path) -> str:
    """Hash of a file's bytes; "" when it is missing or unreadable (so it appearing is a change too)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def fingerprint(path: Path) -> str:
    """A file's hash, or a folder's (every file's relative name and bytes, as packages see them)."""
    if not path.is_dir():
        return file_sha256(path)
    digest = hashlib.sha256(b"folder\0")
    for name, file in _files(path):
        digest.update(f"{name}\0{file_sha256(file)}\0".encode())
    return digest.hexdigest()


def _files(root: Path) -> Iterator[tuple[str, Path]]:
    for current, folders, files in os.walk(root):
        folders[:] = sorted(f for f in folders if f not in SKIPPED_FOLDERS)
        for name in sorted(files):
            if not name.endswith(".pyc"):
                path = Path(current, name)
                yield path.relative_to(root).as_posix(), path


@cache
def tool_fingerprint() -> str:
    """The tool's own code, every installed backend's code, the installed distributions (Pulumi and
    the cloud SDKs with their versions) and the interpreter: what makes the same spec plan differently."""
    digest = hashlib.sha256(f"{sys.version}\0{sys.platform}\0".encode())
    distributions = list(_distribution_folders())
    for name in sorted({folder.name for folder in distributions}):
        digest.update(f"dist\0{name}\0".encode())
    for package in sorted({"pipeline", *_backend_packages(distributions)}):
        spec = importlib.util.find_spec(package)
        for location in (spec.submodule_search_locations or []) if spec else []:
            digest.update(f"package\0{package}\0{fingerprint(Path(location))}\0".encode())
    return digest.hexdigest()


def _site_folders() -> Iterable[Path]:
    for entry in sys.path:
        path = Path(entry or ".")
        if path.is_dir():
            yield path


def _distribution_folders() -> Iterator[Path]:
    """Every installed distribution's metadata folder (`pulumi_aws-7.51.1.dist-info`), found by name:
    importlib.metadata would cost tens of milliseconds."""
    for site in _site_folders():
        try:
            names = os.listdir(site)
        except OSError:
            continue
        yield from (site / name for name in names if name.endswith((".dist-info", ".egg-info")))


def _backend_packages(folders: Iterable[Path] | None = None) -> Iterator[str]:
    """Top-level packages that provide `pipeline.backends` entry points, read from each
    distribution's entry_points.txt (the same files importlib.metadata reads)."""
    for folder in _distribution_folders() if folders is None else folders:
        try:
            text = (folder / "entry_points.txt").read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        yield from _group_modules(text, BACKENDS_GROUP)


def _group_modules(text: str, group: str) -> Iterator[str]:
    inside = False
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            inside = line == f"[{group}]"
        elif inside and "=" in line:
            yield line.split("=", 1)[1].strip().split(":", 1)[0].split(".", 1)[0]


# ---- storage ------------------------------------------------------------------------------------

def _entry_path(key: str) -> Path:
    return folder() / key[:2] / f"{key}.json"


def _prune(root: Path, keep: int) -> None:
    entries = [path for path in root.glob("*/*.json")]
    if len(entries) <= keep:
        return
    def age(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:
            return 0.0
    for path in sorted(entries, key=age)[: len(entries) - keep]:
        path.unlink(missing_ok=True)
