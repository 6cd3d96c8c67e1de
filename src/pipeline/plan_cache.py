"""A content-addressed cache of plans and comparisons, so an unchanged spec answers at once.

A plan is a pure function of the merged spec, the files the program ships (handler folders,
requirements, models), the tool's and backends' code, and the installed SDK versions. Like
ccache's direct mode, an entry is found in two steps, both without importing pydantic, Pulumi or a
cloud SDK:

1. the *key* hashes what can be read without understanding the spec: the command and its options,
   the spec file's bytes and path, the stack overlays next to it, and the installation (the
   interpreter, the import path, the source of the tool and of every installed backend, and the
   names with versions of every installed distribution);
2. the entry then lists the other files the result depends on (found while planning, from the
   spec) with their content hashes; all must still match.

Exactly-once, even while files change under a running command: the spec and overlays are read
once, bounded (a FIFO or /dev/zero is refused, never read), and those very bytes are both hashed
into the key and handed to the loader (`Request.read`), so an edit saved mid-run can never file
the old answer under the new text. The other inputs are fingerprinted after loading and again
before storing; a difference, or any file time newer than the first fingerprint (an edit undone
in between), stores nothing.

Only successful results are stored. An entry is one header line (format, version, key, inputs, and
the SHA-256 and length of the result) then the result; anything that does not check out entirely,
and any entry or folder this user did not make or others could write (`pipeline.user_cache`), is
ignored and replaced. `--no-cache` or `PIPELINE_NO_CACHE=1` turns the cache off. The oldest
entries beyond `MAX_ENTRIES` are removed when a new one is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import stat
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.spec.paths import MAX_SPEC_BYTES, SKIPPED_FOLDERS, FileTooLargeError, read_regular_file
from pipeline.user_cache import UntrustedCacheError, cache_root, prune_oldest, read_private, warn_untrusted, write_private

if TYPE_CHECKING:
    from pipeline.spec.load import LoadedSpec

FORMAT = "pipeline-deployer plan cache"
VERSION = 2
MAX_ENTRIES = 256
MAX_ENTRY_BYTES = 64 * 1024 * 1024
BACKENDS_GROUP = "pipeline.backends"
_OFF = ("1", "true", "yes", "on")
_CHUNK = 1024 * 1024
# File times come from a coarse kernel clock: a write just before the first fingerprint may carry a
# time slightly older than it. Anything changed this close to it counts as changed during the run.
_CLOCK_SLACK_NS = 50_000_000
# What each command's result must at least hold, and of which type (its checksum already proves it is
# what was stored; this catches an entry made by hand).
_RESULT_SHAPE: dict[str, dict[str, type]] = {
    "plan": {"cloud": str, "pipeline": str, "stack": str, "resources": list},
    "compare": {"schema_version": int, "pipeline": str, "stack": str, "clouds": dict},
}


def enabled(flag: bool = True) -> bool:
    """The cache is used unless `--no-cache` was given or PIPELINE_NO_CACHE is set to a true value."""
    return flag and os.environ.get("PIPELINE_NO_CACHE", "").strip().lower() not in _OFF


def folder() -> Path:
    return cache_root() / "plans"


@dataclass(frozen=True)
class _Snapshot:
    inputs: list[tuple[str, str]]  # (path, fingerprint) of every input besides the spec and overlays
    since_ns: int  # when they were fingerprinted


@dataclass
class Request:
    """One command's question: which command, with which options, about which spec file.

    Make one per command run: it remembers the spec and overlay bytes it read, which are what the
    key covers and what the loader gets (`read`)."""

    command: str  # "plan" or "compare"
    spec_path: Path
    options: dict[str, Any] = field(default_factory=dict)  # e.g. {"clouds": ["aws"], "stack": "dev"}
    _files: dict[str, bytes | Exception] = field(default_factory=dict, repr=False)
    _snapshot: _Snapshot | None = field(default=None, repr=False)

    def read(self, path: Path, limit: int) -> bytes:
        """`load_spec`'s reader: a spec or overlay file, read once (bounded, regular files only) and
        then always these bytes, so the key and the plan see the same text."""
        name = str(path)
        if name not in self._files:
            try:
                self._files[name] = read_regular_file(path, limit)
            except (OSError, ValueError) as exc:  # the loader turns these into located problems
                self._files[name] = exc
        found = self._files[name]
        if isinstance(found, Exception):
            raise found
        if len(found) > limit:  # read before under a larger limit than the caller's
            raise FileTooLargeError(len(found), limit)
        return found

    def key(self) -> str | None:
        """The entry's key, or None when the spec cannot be read (the loader then says why)."""
        spec = self.spec_path
        limit = MAX_SPEC_BYTES  # the loader's own limit: both refuse the same files
        try:
            spec_bytes = self.read(spec, limit)
        except (OSError, ValueError):
            return None
        overlays: dict[str, str] = {}
        stacks = spec.parent / "stacks"
        try:
            names = sorted(name for name in os.listdir(stacks) if name.endswith(".yaml"))
        except OSError:
            names = []
        for name in names:
            try:
                overlays[name] = hashlib.sha256(self.read(stacks / name, limit)).hexdigest()
            except (OSError, ValueError) as exc:
                overlays[name] = f"unreadable: {type(exc).__name__}"
        parts = {
            "format": FORMAT,
            "version": VERSION,
            "command": self.command,
            "options": self.options,
            "spec": [str(spec), os.path.realpath(spec), hashlib.sha256(spec_bytes).hexdigest()],
            "overlays": overlays,
            "tool": tool_fingerprint(),
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    def watch(self, loaded: LoadedSpec) -> None:
        """Fingerprint the other inputs now, after loading and before planning; `store` checks them again.

        Planning writes its packages under `.pipeline/` next to the spec. When a handler folder is the
        spec's own folder, that folder is made here, the first time, and the clock started a
        file-time tick later, so its creation is not taken for an edit (once per such project)."""
        inputs = plan_inputs(loaded)
        if any(os.path.realpath(path) == os.path.realpath(loaded.base_dir) for path in inputs):
            try:
                (loaded.base_dir / ".pipeline").mkdir()  # the folder `Backend.package` builds in
                time.sleep(_CLOCK_SLACK_NS / 1e9)
            except OSError:
                pass  # there already (or not ours to make: planning will say so)
        since = time.time_ns()
        project = project_of(loaded.path)
        self._snapshot = _Snapshot([(str(path), fingerprint(path, project)) for path in inputs], since)


def lookup(request: Request) -> Any | None:
    """The stored result for `request`, or None (no entry, a damaged, foreign or untrusted one, or an input changed)."""
    key = request.key()
    if key is None:
        return None
    try:
        data = read_private(_entry_path(key), MAX_ENTRY_BYTES)
    except UntrustedCacheError as exc:
        warn_untrusted("plan cache", exc)
        return None
    except OSError:
        return None
    parsed = _parse(data, key, request.command)
    if parsed is None:
        return None
    inputs, result = parsed
    project = project_of(request.spec_path)
    for path, expected in inputs:
        if not _within(os.path.realpath(path), project):
            return None  # inputs live in the project folder (spec.paths); anything else is not our entry
        if fingerprint(Path(path), project) != expected:
            return None
    return result


def store(request: Request, result: Any) -> None:
    """Keep `result` for `request` if nothing it was computed from changed during the run. A cache
    that cannot be written is not an error: the user still gets the answer, just not faster next time."""
    snapshot, key = request._snapshot, request.key()
    if snapshot is None or key is None:
        return
    newest, project = 0, project_of(request.spec_path)
    for path, expected in snapshot.inputs:
        now, changed_ns = _scan(Path(path), project)
        if now != expected:
            return
        newest = max(newest, changed_ns)
    if newest >= snapshot.since_ns - _CLOCK_SLACK_NS:
        return  # written while this command ran (perhaps changed and changed back): not what was planned
    if _tool_files_changed():
        return  # the tool's or a backend's code changed under this command
    body = json.dumps(result).encode()  # key order kept: it is the clouds' order
    header = {"format": FORMAT, "version": VERSION, "key": key, "inputs": [list(item) for item in snapshot.inputs],
              "result_sha256": hashlib.sha256(body).hexdigest(), "result_bytes": len(body)}
    try:
        write_private(_entry_path(key), json.dumps(header).encode() + b"\n" + body)
        _prune(folder(), MAX_ENTRIES)
    except UntrustedCacheError as exc:
        warn_untrusted("plan cache", exc)
    except OSError:
        pass


def _parse(data: bytes, key: str, command: str) -> tuple[list[tuple[str, str]], Any] | None:
    """(inputs, result) of an entry that checks out entirely, else None."""
    head, newline, body = data.partition(b"\n")
    if not newline:
        return None
    try:
        header = json.loads(head)
    except ValueError:
        return None
    if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("version") != VERSION or header.get("key") != key:
        return None
    inputs = header.get("inputs")
    if not (isinstance(inputs, list) and all(isinstance(item, list) and len(item) == 2 and all(isinstance(v, str) for v in item) for item in inputs)):
        return None
    if header.get("result_bytes") != len(body) or header.get("result_sha256") != hashlib.sha256(body).hexdigest():
        return None
    try:
        result = json.loads(body)
    except ValueError:
        return None
    shape = _RESULT_SHAPE.get(command, {})
    if not isinstance(result, dict) or not all(isinstance(result.get(name), kind) for name, kind in shape.items()):
        return None
    return [(path, print_) for path, print_ in inputs], result


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

def fingerprint(path: Path, project: str | None) -> str:
    """A file's hash, or a folder's (every file's relative name and bytes, as packages see them);
    `project` is the real path of the project folder, which links may not leave (None: the
    installation's own code, where nothing is checked)."""
    return _scan(path, project)[0]


def project_of(spec: Path) -> str:
    """The project folder as the loader defines it: where the spec really lives."""
    return os.path.dirname(os.path.realpath(spec))


def _scan(path: Path, project: str | None) -> tuple[str, int]:
    """(fingerprint, newest change time in ns of the file, or of the folder and everything in it).

    Only regular files inside the project are read, in chunks: a FIFO, a device, a socket
    or a link leading elsewhere is recorded by what it is, never opened (it could hang, never end,
    or be huge); planning refuses those anyway, so such an entry is simply a miss."""
    try:
        info = os.stat(path)
    except OSError:
        return "", 0
    if not stat.S_ISDIR(info.st_mode):
        return _inside(path, info, project)
    digest = hashlib.sha256(b"folder\0")
    newest = info.st_ctime_ns
    for current, folders, files in os.walk(path):
        folders[:] = sorted(f for f in folders if f not in SKIPPED_FOLDERS)
        with contextlib.suppress(OSError):
            newest = max(newest, os.stat(current).st_ctime_ns)
        for name in sorted(files):
            if name.endswith(".pyc"):
                continue
            file = Path(current, name)
            try:
                found, changed = _inside(file, os.stat(file), project)
            except OSError:
                found, changed = "", 0  # a broken link
            newest = max(newest, changed)
            digest.update(f"{file.relative_to(path).as_posix()}\0{found}\0".encode())
    return digest.hexdigest(), newest


def _inside(path: Path, info: os.stat_result, project: str | None) -> tuple[str, int]:
    real = os.path.realpath(path) if project is not None else ""
    if project is not None and not _within(real, project):
        return f"a link to {real}", info.st_ctime_ns
    return _file(path, info)


def _within(path: str, folder: str) -> bool:
    try:
        return os.path.commonpath([folder, path]) == folder
    except ValueError:  # another drive
        return False


def _file(path: Path, info: os.stat_result) -> tuple[str, int]:
    if not stat.S_ISREG(info.st_mode):
        return f"not a file: {stat.S_IFMT(info.st_mode):o}", info.st_ctime_ns
    digest = hashlib.sha256()
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return "", info.st_ctime_ns
    with os.fdopen(descriptor, "rb") as handle:
        opened = os.fstat(descriptor)
        if not stat.S_ISREG(opened.st_mode):  # swapped for something else since the stat
            return f"not a file: {stat.S_IFMT(opened.st_mode):o}", opened.st_ctime_ns
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest(), max(info.st_ctime_ns, opened.st_ctime_ns)


def import_path() -> list[str]:
    """sys.path without the entry Python put first for the program being run (the console script's
    folder, or the working folder of `python -c`/`-m`): the same for the console script and for a
    planning server started with `python -P`, and never a caller's working folder."""
    return list(sys.path if sys.flags.safe_path else sys.path[1:])


_tool_code: list[tuple[Path, int]] = []  # (package folder, when its fingerprint was taken)


def _tool_files_changed() -> bool:
    """Whether a file of the tool's or a backend's code changed since `tool_fingerprint` read it (a
    checkout switched under a running command): times only, no hashing."""
    for location, since in _tool_code:
        for current, folders, files in os.walk(location):
            folders[:] = [f for f in folders if f not in SKIPPED_FOLDERS]
            for name in files:
                if not name.endswith(".pyc"):
                    with contextlib.suppress(OSError):
                        if os.stat(os.path.join(current, name)).st_ctime_ns >= since - _CLOCK_SLACK_NS:
                            return True
    return False


@cache
def tool_fingerprint() -> str:
    """The installation: the interpreter, the import path, the installed distributions (Pulumi and the
    cloud SDKs with their versions) and the code of the tool and of every installed backend, where it
    is and what it holds. What makes the same spec plan differently, or another installation answer."""
    _tool_code.clear()
    digest = hashlib.sha256(f"{sys.version}\0{sys.platform}\0{sys.executable}\0{sys.prefix}\0{sys.base_prefix}\0".encode())
    for entry in import_path():
        digest.update(f"path\0{os.path.abspath(entry)}\0".encode())
    distributions = list(_distribution_folders())
    for name in sorted({f"{folder.parent}\0{folder.name}" for folder in distributions}):
        digest.update(f"dist\0{name}\0".encode())
    for package in sorted({"pipeline", *_backend_packages(distributions)}):
        spec = importlib.util.find_spec(package)
        for location in (spec.submodule_search_locations or []) if spec else []:
            _tool_code.append((Path(location), time.time_ns()))
            digest.update(f"package\0{package}\0{os.path.abspath(location)}\0{fingerprint(Path(location), None)}\0".encode())
    return digest.hexdigest()


def _site_folders() -> Iterable[Path]:
    for entry in import_path():
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
    prune_oldest(list(root.glob("*/*.json")), keep)
