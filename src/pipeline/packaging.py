"""Function packages: one deterministic zip per stage.

A package holds the user's handler folder, the runtime shim (the neutral `pipeline.runtime`
plus the cloud's entry module), the stage's requirements and whatever layout the cloud's host
expects. Entries are sorted and written with a fixed timestamp and permissions, so the same
inputs give a byte-identical archive and its hash only changes when the code does; that hash
names the uploaded object and so drives redeploys.
"""

from __future__ import annotations

import hashlib
import importlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from pipeline.backend import FunctionCode
from pipeline.errors import PipelineError, Problem, SpecError
from pipeline.spec.paths import SKIPPED_FOLDERS, UnsafePathError, project_tree, read_project_file, refused

FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold
FILE_MODE = 0o644 << 16
REQUIREMENTS_LIMIT = 1024 * 1024  # bytes of a stage's requirements file


@dataclass(frozen=True)
class Package:
    stage: str
    path: Path
    sha256: str
    size: int  # bytes of the zip
    unpacked: int  # bytes of all entries
    files: int


def _tree(folder: Path, prefix: str) -> dict[str, bytes]:
    entries = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not SKIPPED_FOLDERS.intersection(path.relative_to(folder).parts) and path.suffix != ".pyc":
            entries[f"{prefix}{path.relative_to(folder).as_posix()}"] = path.read_bytes()
    return entries


def handler_sources(code: FunctionCode) -> dict[str, bytes]:
    """The handler's whole folder at its path relative to the spec (handlers may import neighbours).

    Every file is re-checked as it is read (see spec.paths): a symlink leading out of the project,
    or a file swapped for one after validation, is refused rather than shipped."""
    handler_dir = (code.root / code.handler_file).parent
    prefix = handler_dir.relative_to(code.root).as_posix()
    prefix = "" if prefix == "." else prefix + "/"
    entries = {}
    try:
        for name, path in project_tree(code.root, handler_dir):
            entries[prefix + name] = read_project_file(code.root, path)
    except UnsafePathError as exc:
        raise refused(exc, handler_dir, "package the handler folder") from None
    return entries


def runtime_sources(modules: Sequence[str]) -> dict[str, bytes]:
    """Source of the runtime shim: whole packages (`pipeline.runtime`) or single modules
    (`pipeline_aws.runtime`), each with its parent packages' `__init__.py` so imports work.
    Read once per process: every stage of a cloud ships the same shim."""
    return dict(_runtime_sources(tuple(modules)))


@cache
def _runtime_sources(modules: tuple[str, ...]) -> dict[str, bytes]:
    entries: dict[str, bytes] = {}
    for name in modules:
        module = importlib.import_module(name)
        file = Path(module.__file__ or "")
        parts = name.split(".")
        for depth in range(1, len(parts)):
            parent = importlib.import_module(".".join(parts[:depth]))
            entries["/".join(parts[:depth]) + "/__init__.py"] = Path(parent.__file__ or "").read_bytes()
        if file.name == "__init__.py":
            local_only = {f"{m}.py" for m in getattr(module, "LOCAL_ONLY", ())}  # e.g. the local runner
            tree = _tree(file.parent, "/".join(parts) + "/")
            entries.update({k: v for k, v in tree.items() if k.rsplit("/", 1)[-1] not in local_only})
        else:
            entries["/".join(parts) + ".py"] = file.read_bytes()
    return entries


def requirement_lines(root: Path, requirements: Path | None) -> list[str]:
    """The stage's requirements, re-checked to be a file inside the project `root` as it is read."""
    if requirements is None:
        return []
    try:
        text = read_project_file(root, requirements, REQUIREMENTS_LIMIT).decode("utf-8")
    except UnsafePathError as exc:
        raise refused(exc, requirements, "package the requirements file") from None
    except UnicodeDecodeError:
        raise SpecError([Problem("the requirements file is not UTF-8 text", file=str(requirements), hint="save it as UTF-8")]) from None
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    return [line for line in lines if line]


def vendor(requirements: Path, platform: str, python_version: str, target_prefix: str = "") -> dict[str, bytes]:
    """Install binary wheels for the cloud's platform (never the build machine's) and return them as entries."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--disable-pip-version-check",
                   "--target", tmp, "--platform", platform, "--python-version", python_version,
                   "--implementation", "cp", "--only-binary=:all:", "-r", str(requirements)]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise PipelineError(f"could not install {requirements.name} for {platform} / Python {python_version}:\n{result.stderr.strip()}")
        return {name: data for name, data in _tree(Path(tmp), target_prefix).items() if ".dist-info/RECORD" not in name}


@dataclass(frozen=True)
class _Built:
    path: Path
    sha256: str
    size: int


# Zips written by this process, by the digest of their entries: stages with the same handler folder
# and requirements share one package per cloud, and a compare builds each distinct package once.
_built: dict[str, _Built] = {}


def _entries_digest(entries: Mapping[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in sorted(entries):
        digest.update(f"{len(name)}:{name}:{len(entries[name])}:".encode())
        digest.update(entries[name])
    return digest.hexdigest()


def _sha256_of(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def write_zip(entries: Mapping[str, bytes], target: Path) -> tuple[str, int, int]:
    """Sorted entries, fixed time and mode, fixed compression: byte-identical for identical input."""
    unpacked = sum(len(v) for v in entries.values())
    key = _entries_digest(entries)
    earlier = _built.get(key)
    if earlier is not None and _sha256_of(earlier.path) == earlier.sha256:  # still there and unchanged
        if earlier.path != target:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(earlier.path, target)
        return earlier.sha256, earlier.size, unpacked
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(".tmp")
    with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.external_attr = FILE_MODE
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, so the mode bits are honoured
            archive.writestr(info, entries[name], compresslevel=9)
    temporary.replace(target)
    data = target.read_bytes()
    _built[key] = _Built(target, hashlib.sha256(data).hexdigest(), len(data))
    return _built[key].sha256, _built[key].size, unpacked


def build(stage: str, entries: Mapping[str, bytes], target: Path, limit_bytes: int, limit_unpacked: int, cloud: str) -> Package:
    """Write the zip and enforce the cloud's package limits before anything is deployed."""
    digest, size, unpacked = write_zip(entries, target)
    if limit_bytes and size > limit_bytes:
        raise PipelineError(f"the {cloud} package for stage {stage!r} is {size / 1e6:,.1f} MB zipped, over the {limit_bytes / 1e6:,.0f} MB limit; "
                            "trim its requirements or move large files to the model artifact")
    if limit_unpacked and unpacked > limit_unpacked:
        raise PipelineError(f"the {cloud} package for stage {stage!r} is {unpacked / 1e6:,.1f} MB unpacked, over the {limit_unpacked / 1e6:,.0f} MB limit; "
                            "trim its requirements")
    return Package(stage, target, digest, size, unpacked, len(entries))


@dataclass(frozen=True)
class Recipe:
    """What a cloud needs in a package, declared by its backend."""

    cloud: str
    runtime_modules: tuple[str, ...]  # shim source to include, e.g. ("pipeline.runtime", "pipeline_aws.runtime")
    runtime_requirements: tuple[str, ...] = ()  # what the shim needs that the cloud's runtime lacks
    layout: Mapping[str, bytes] | None = None  # host files: main.py, function_app.py, host.json ...
    vendor_platform: str = ""  # pip --platform for wheels shipped inside the package ("" = the cloud builds remotely)
    vendor_python: str = "3.12"
    vendor_prefix: str = ""  # where wheels go inside the zip (Azure: .python_packages/lib/site-packages/)
    limit_bytes: int = 0
    limit_unpacked: int = 0


def stage_package(stage: str, code: FunctionCode, recipe: Recipe, target: Path, vendor_dependencies: bool) -> Package:
    """Assemble and write one stage's package. Dependencies are vendored only when deploying
    (`vendor_dependencies`): an offline plan must not reach PyPI."""
    entries = {**handler_sources(code), **runtime_sources(recipe.runtime_modules), **(recipe.layout or {})}
    lines = [*requirement_lines(code.root, code.requirements), *recipe.runtime_requirements]
    if lines:
        entries["requirements.txt"] = ("\n".join(lines) + "\n").encode()
    if vendor_dependencies and recipe.vendor_platform and lines:
        with tempfile.TemporaryDirectory() as tmp:
            combined = Path(tmp) / "requirements.txt"
            combined.write_bytes(entries["requirements.txt"])
            entries.update(vendor(combined, recipe.vendor_platform, recipe.vendor_python, recipe.vendor_prefix))
    return build(stage, entries, target, recipe.limit_bytes, recipe.limit_unpacked, recipe.cloud)
