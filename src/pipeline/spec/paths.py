"""Files a spec names, and the spec files themselves, read safely.

Whatever a spec's paths point at leaves the machine: handler folders and requirements go into
function packages, model files are uploaded. A `../` escape or a symlink leading out of the
project would publish a file the user never meant to (an SSH key, /etc/passwd), so every such
path must resolve, symlinks followed, inside the *project folder* (the folder holding the spec).
That is checked when the spec is validated and again when a file is read for shipping, since the
file may have been swapped in between.

Reading is bounded too: only regular files are read (a FIFO would block forever, /dev/zero would
fill memory), FIFOs are never opened in a way that blocks, and callers pass a size limit.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from pipeline.errors import Problem, SpecError, echo

MAX_SPEC_BYTES = 1024 * 1024  # a spec or overlay file (safe_yaml.MAX_BYTES; here so readers need not import YAML)
PATH_HINT = "write a path relative to the spec file's folder that stays inside it"
OUTSIDE_HINT = "keep every file the spec names inside the spec's folder; symlinks are followed"
# Folders never shipped from a handler folder: caches, virtualenvs, VCS data, our own build output.
SKIPPED_FOLDERS = frozenset({"__pycache__", ".pipeline", ".mypy_cache", ".pytest_cache", ".venv", "venv", ".git"})


class UnsafePathError(ValueError):
    """A path that cannot be used. A ValueError, so a pydantic validator turns it into a located
    error; `hint` says what would be valid."""

    def __init__(self, message: str, hint: str = PATH_HINT):
        super().__init__(f"{message}; {hint}" if hint else message)
        self.message, self.hint = message, hint


class FileTooLargeError(UnsafePathError):
    """A file over the caller's size limit (`size` is a lower bound if it `grew` while being read)."""

    def __init__(self, size: int, limit: int, grew: bool = False):
        super().__init__(f"the file is {size:,} bytes{' or more' if grew else ''}; at most {limit:,} bytes are read", "")
        self.size, self.limit, self.grew = size, limit, grew


class NotRegularFileError(UnsafePathError):
    """A directory, FIFO, device or socket where a file is expected; `kind` says which."""

    def __init__(self, path: Path, kind: str):
        super().__init__(f"{echo(str(path))} is {kind}, not a file", "name a regular file")
        self.kind = kind


def refused(exc: UnsafePathError, file: Path | str, doing: str) -> SpecError:
    """An UnsafePathError met while shipping files, as bad input (exit code 2) naming the file."""
    return SpecError([Problem(f"refusing to {doing}: {exc.message}", file=str(file), hint=exc.hint)])


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _control_character(text: str) -> bool:
    return any(ord(char) < 32 or ord(char) == 127 for char in text)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def resolve_in_project(root: Path, relative: str, what: str) -> Path:
    """The real path of `relative` (a path from the spec) under the project folder `root`.

    Refuses what would ship a file from elsewhere or not a file at all: absolute paths, '..',
    control characters, symlinks (at any level) resolving outside `root`, missing files and
    anything that is not a regular file."""
    if not relative.strip():
        raise UnsafePathError(f"the {what} path is empty")
    if _control_character(relative) or "\\" in relative:
        raise UnsafePathError(f"the {what} path {echo(relative)} contains a control character or a backslash",
                              "write a plain relative path with '/' between folders")
    if PurePosixPath(relative).is_absolute():
        raise UnsafePathError(f"{echo(relative)} is absolute", f"write the {what} path relative to the spec file")
    if ".." in PurePosixPath(relative).parts:
        raise UnsafePathError(f"the {what} path {echo(relative)} uses '..'", "write a path relative to the spec file's folder, without '..'")
    real_root = os.path.realpath(root)
    try:
        real = os.path.realpath(os.path.join(real_root, relative), strict=True)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise UnsafePathError(f"{what} {echo(relative)} does not exist (looked in {real_root})",
                                  "check the spelling; paths are relative to the spec file") from None
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(f"{what} {echo(relative)} is a symlink loop") from None
        raise UnsafePathError(f"{what} {echo(relative)} cannot be used: {exc.strerror}") from None
    if not _inside(real, real_root):
        raise UnsafePathError(f"{what} {echo(relative)} resolves to {echo(real)}, outside the project folder {real_root}",
                              OUTSIDE_HINT)
    try:
        mode = os.stat(real).st_mode
    except OSError as exc:
        raise UnsafePathError(f"{what} {echo(relative)} cannot be used: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise UnsafePathError(f"{what} {echo(relative)} is {_kind(mode)}, not a file", "name a regular file")
    return Path(real)


def read_regular_file(path: Path, limit: int | None, *, no_follow: bool = False) -> bytes:
    """Read a regular file, at most `limit` bytes (UnsafePathError beyond it).

    Checks the type with stat before opening and again on the open descriptor; opens with
    O_NONBLOCK so a file swapped for a FIFO in between cannot block. `no_follow` refuses a
    final symlink (for a path already resolved, so a swap after resolving is caught)."""
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(path, _kind(mode))
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | (getattr(os, "O_NOFOLLOW", 0) if no_follow else 0)
        descriptor = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP and no_follow:
            raise UnsafePathError(f"{echo(str(path))} was replaced by a symlink after it was checked", "") from None
        raise
    with os.fdopen(descriptor, "rb") as handle:
        opened = os.fstat(handle.fileno())
        if not stat.S_ISREG(opened.st_mode):
            raise NotRegularFileError(path, _kind(opened.st_mode))
        if limit is not None and opened.st_size > limit:
            raise FileTooLargeError(opened.st_size, limit)
        data = handle.read(limit + 1 if limit is not None else -1)
    if limit is not None and len(data) > limit:
        raise FileTooLargeError(len(data), limit, grew=True)  # grew after fstat
    return data


def read_project_file(root: Path, path: Path, limit: int | None = None) -> bytes:
    """Re-check, at the moment of reading, that `path` still resolves inside the project and is a
    regular file, then read it: what validation approved may have changed since."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if not _inside(real, real_root):
        raise UnsafePathError(f"{echo(str(path))} resolves to {echo(real)}, outside the project folder {real_root}",
                              OUTSIDE_HINT)
    try:
        return read_regular_file(Path(real), limit, no_follow=True)
    except OSError as exc:  # e.g. removed since it was listed
        raise UnsafePathError(f"{echo(str(path))} cannot be read: {exc.strerror}", "") from None


def project_tree(root: Path, folder: Path) -> Iterator[tuple[str, Path]]:
    """Every regular file under `folder` as (path relative to `folder`, path), refusing any that
    resolves outside the project `root`. SKIPPED_FOLDERS and *.pyc are left out; symlinked folders
    are not descended; FIFOs, sockets, devices and broken links are skipped, never opened."""
    real_root = os.path.realpath(root)
    real_folder = os.path.realpath(folder)
    if not _inside(real_folder, real_root):
        raise UnsafePathError(f"the folder {echo(str(folder))} resolves to {echo(real_folder)}, outside the project folder {real_root}",
                              OUTSIDE_HINT)
    for current, folders, files in os.walk(real_folder, followlinks=False):
        folders[:] = sorted(f for f in folders if f not in SKIPPED_FOLDERS)
        for name in sorted(f for f in files if not f.endswith(".pyc")):
            path = os.path.join(current, name)
            real = os.path.realpath(path)
            if not _inside(real, real_root):
                shown = os.path.relpath(path, real_root)
                raise UnsafePathError(f"{echo(shown)} is a symlink to {echo(real)}, outside the project folder {real_root}",
                                      "replace the link by a copy of the file, or remove it; everything in a handler's folder is shipped")
            try:
                if not stat.S_ISREG(os.stat(real).st_mode):
                    continue
            except OSError:
                continue  # a broken link: nothing to ship
            yield os.path.relpath(path, real_folder).replace(os.sep, "/"), Path(path)


def check_tree(root: Path, folder: Path) -> None:
    """Raise UnsafePathError if anything `project_tree` would ship from `folder` leads out of `root`
    (so `validate` reports it, not only packaging)."""
    for _ in project_tree(root, folder):
        pass
