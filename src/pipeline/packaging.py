"""Function packages: one deterministic zip per stage.

A package holds the user's handler folder, the runtime shim (the neutral `pipeline.runtime`
plus the cloud's entry module), the stage's requirements and whatever layout the cloud's host
expects. Entries are sorted and written with a fixed timestamp and permissions (`zipper`), so the
same inputs give a byte-identical archive and its hash only changes when the code does; that hash
names the uploaded object and so drives redeploys.

Vendored requirements come from `package_cache` (installed once per run, deflated once per
content). A zip is written under a unique temporary name and renamed into place, so concurrent
`plan`/`compare`/`package` runs of one project never trip over each other's half-written files,
and each reports the hash of the bytes it wrote.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from pipeline import package_cache, zipper
from pipeline.errors import PipelineError, Problem, SpecError
from pipeline.roles import FunctionCode
from pipeline.spec.paths import SKIPPED_FOLDERS, UnsafePathError, project_tree, read_project_file, refused
from pipeline.zipper import FILE_MODE, FIXED_TIME  # noqa: F401 (where callers have always found them)

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
            entries.update(_tree(file.parent, "/".join(parts) + "/"))
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
    """Binary wheels for the cloud's platform (never the build machine's), installed as entries under
    `target_prefix`; once per requirements text in a run, from the cache where that is the same (`package_cache`)."""
    text = requirements.read_bytes()
    tree = package_cache.installed(text, platform, python_version, lambda: _pip_install(requirements, platform, python_version))
    return {target_prefix + name: data for name, data in tree.items()}


def _pip_install(requirements: Path, platform: str, python_version: str) -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--disable-pip-version-check",
                   "--target", tmp, "--platform", platform, "--python-version", python_version,
                   "--implementation", "cp", "--only-binary=:all:", "-r", str(requirements)]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise PipelineError(f"could not install {requirements.name} for {platform} / Python {python_version}:\n{result.stderr.strip()}")
        return {name: data for name, data in _tree(Path(tmp), "").items() if ".dist-info/RECORD" not in name}


# Archives assembled by this process, by the digest of their entries: stages with the same handler
# folder and requirements share one package per cloud, and a compare assembles each distinct one once.
_built: dict[str, tuple[bytes, str]] = {}


def write_zip(entries: Mapping[str, bytes], target: Path) -> tuple[str, int, int]:
    """Sorted entries, fixed time and mode, fixed compression: byte-identical for identical input.
    (SHA-256, zipped size, unpacked size) of what was written."""
    unpacked = sum(len(v) for v in entries.values())
    key = package_cache.entries_digest(entries)
    if key not in _built:
        data = zipper.zip_bytes(entries)
        _built[key] = (data, hashlib.sha256(data).hexdigest())
    data, digest = _built[key]
    _write_atomically(target, data)
    return digest, len(data), unpacked


def _write_atomically(target: Path, data: bytes) -> None:
    """Under a name no other run uses, then renamed over `target`: a reader (a deploy, another plan)
    sees the old archive or the new one, never half of one, and concurrent runs never collide."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)  # mode as the umask says
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


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
