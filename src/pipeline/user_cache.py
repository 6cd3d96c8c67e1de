"""Where the tool keeps its caches, and the one rule for trusting what is in them.

`$PIPELINE_CACHE_DIR` wins (CI and tests point it at a temporary folder); otherwise the folder
each platform reserves for caches: `$XDG_CACHE_HOME` or `~/.cache` on Linux, `~/Library/Caches`
on macOS, `%LOCALAPPDATA%` on Windows, each with a `pipeline-deployer` folder inside.

A cache answers instead of the real work, so whoever can write into it can forge answers (a plan
cache entry is printed as the plan; an installed requirements folder is imported). On a shared
machine a cache folder may sit in a place other users can write to (a shared `PIPELINE_CACHE_DIR`,
`XDG_CACHE_HOME=/tmp/...`), so nothing is trusted by where it is, only by who made it: every folder
from the cache root down must belong to this user (folders of ours that others could read are
made 0700 as they are used), and every entry must be a regular file of this user's, 0600. Folders
are walked with descriptors (`openat`-style, no symlinks below the root), so a folder swapped
between the check and the use is caught too. Anything else raises `UntrustedCacheError`, which
callers treat as "no cache" after one warning.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

APP = "pipeline-deployer"
_POSIX = os.name == "posix" and os.open in os.supports_dir_fd and os.mkdir in os.supports_dir_fd
_FOLDER_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_warned: set[str] = set()


class UntrustedCacheError(OSError):
    """A cache folder or entry this user did not make, or that others could have changed."""


def cache_root() -> Path:
    if os.environ.get("PIPELINE_CACHE_DIR"):
        return Path(os.environ["PIPELINE_CACHE_DIR"])
    home = os.path.expanduser("~")
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or os.path.join(home, "AppData", "Local")) / APP / "Cache"
    if sys.platform == "darwin":
        return Path(home) / "Library" / "Caches" / APP
    return Path(os.environ.get("XDG_CACHE_HOME") or os.path.join(home, ".cache")) / APP


def warn_untrusted(what: str, error: OSError) -> None:
    """Say once per process why a cache is not used (the command still answers, only slower)."""
    if what not in _warned:
        _warned.add(what)
        print(f"warning: not using the {what}: {error}", file=sys.stderr, flush=True)


def _owner_problem(info: os.stat_result, shown: Path) -> str | None:
    if info.st_uid != os.getuid():
        return (f"{shown} belongs to uid {info.st_uid}, not to you (uid {os.getuid()}); a cache must be your own "
                "(remove it, or set PIPELINE_CACHE_DIR to a folder of yours)")
    return None


def _checked_folder(descriptor: int, shown: Path) -> int:
    """`descriptor` if it is a folder of this user's, made private (0700) if it was not; closed and raised otherwise."""
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISDIR(info.st_mode):
            raise UntrustedCacheError(errno.ENOTDIR, f"{shown} is not a folder")
        problem = _owner_problem(info, shown)
        if problem:
            raise UntrustedCacheError(errno.EPERM, problem)
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.fchmod(descriptor, 0o700)  # ours: only its openness is wrong
        return descriptor
    except BaseException:
        os.close(descriptor)
        raise


def _parts_below_root(path: Path) -> tuple[Path, tuple[str, ...]]:
    root = cache_root()
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return path, ()  # a folder of its own (not under the cache root): trusted by the same rule, from itself
    if any(part in ("..", ".") for part in parts):
        raise UntrustedCacheError(errno.EINVAL, f"{path} is not a plain path under {root}")
    return root, parts


def _open_root(root: Path, create: bool) -> int:
    if create:
        with contextlib.suppress(FileExistsError):
            os.makedirs(root, mode=0o700)
    return _checked_folder(os.open(root, _FOLDER_FLAGS), root)  # the root itself may be a symlink the user made


@contextlib.contextmanager
def _folder(path: Path, create: bool) -> Iterator[int]:
    """A descriptor of `path`, reached from the cache root one checked folder at a time (no symlinks)."""
    root, parts = _parts_below_root(path)
    descriptor = _open_root(root, create)
    try:
        shown = root
        for part in parts:
            shown = shown / part
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o700, dir_fd=descriptor)
            try:
                below = os.open(part, _FOLDER_FLAGS | _NOFOLLOW, dir_fd=descriptor)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UntrustedCacheError(exc.errno, f"{shown} is a symlink or not a folder; a cache folder must be a real folder of yours") from None
                raise
            checked = _checked_folder(below, shown)  # closes `below` when it raises
            os.close(descriptor)
            descriptor = checked
        yield descriptor
    finally:
        os.close(descriptor)


def private_folder(path: Path) -> Path:
    """Create `path` (and what leads to it from the cache root), every folder this user's and private;
    UntrustedCacheError when one is not."""
    if not _POSIX:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path
    with _folder(path, create=True):
        return path


def read_private(path: Path, limit: int) -> bytes:
    """An entry's bytes, if it and every folder above it (to the cache root) are this user's and private.
    FileNotFoundError when there is none; UntrustedCacheError for anything else's; at most `limit` bytes."""
    if not _POSIX:
        with open(path, "rb") as handle:
            return _bounded(handle.read(limit + 1), path, limit)
    with _folder(path.parent, create=False) as folder:
        try:
            descriptor = os.open(path.name, os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0), dir_fd=folder)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UntrustedCacheError(exc.errno, f"{path} is a symlink; a cache entry must be a file of yours") from None
            raise
        with os.fdopen(descriptor, "rb") as handle:
            info = os.fstat(descriptor)
            if not stat.S_ISREG(info.st_mode):
                raise UntrustedCacheError(errno.EINVAL, f"{path} is not a regular file")
            problem = _owner_problem(info, path)
            if problem:
                raise UntrustedCacheError(errno.EPERM, problem)
            if stat.S_IMODE(info.st_mode) & 0o077:
                raise UntrustedCacheError(errno.EPERM, f"{path} has mode {stat.S_IMODE(info.st_mode):04o}; cache entries are 0600")
            return _bounded(handle.read(limit + 1), path, limit)


def _bounded(data: bytes, path: Path, limit: int) -> bytes:
    if len(data) > limit:
        raise UntrustedCacheError(errno.EFBIG, f"{path} is larger than any entry this tool writes ({limit:,} bytes)")
    return data


def write_private(path: Path, data: bytes) -> None:
    """Write atomically (a reader sees the old file or the new one, never half) with mode 0600, into
    folders checked as `private_folder` does. A unique temporary name, so concurrent writers never
    share one."""
    if not _POSIX:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".tmp-{secrets.token_hex(8)}-{path.name}")
        try:
            temporary.write_bytes(data)
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return
    with _folder(path.parent, create=True) as folder:
        name = f".tmp-{secrets.token_hex(8)}-{path.name}"
        descriptor = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600, dir_fd=folder)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                os.fchmod(handle.fileno(), 0o600)  # whatever the umask
            os.replace(name, path.name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=folder)
            raise


def remove_private(path: Path) -> None:
    """Remove an entry of ours (pruning); a missing one is not an error."""
    if not _POSIX:
        path.unlink(missing_ok=True)
        return
    with _folder(path.parent, create=False) as folder, contextlib.suppress(FileNotFoundError):
        os.unlink(path.name, dir_fd=folder)


def prune_oldest(entries: list[Path], keep: int) -> None:
    """Remove all but the `keep` most recently written of `entries` (each through `remove_private`)."""
    if len(entries) <= keep:
        return

    def age(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:
            return 0.0

    for path in sorted(entries, key=age)[: len(entries) - keep]:
        remove_private(path)
