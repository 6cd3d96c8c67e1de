"""Requirements installed for a cloud's platform, kept so packaging does not redo the slow parts.

Building a package with dependencies (`pipeline package`, `deploy`) runs `pip install --target`
for the cloud's platform and deflates the result (tens of MB for Azure) into every stage's zip.
Three things are kept, each only where it cannot change the answer:

* within one run, each distinct requirements text is installed once (every stage of the example
  ships the same wheels);
* across runs, the deflated members of each installed tree, named by the hash of the tree's
  files, so a tree pip installs again, byte for byte, is not deflated again (`zipper`);
* a requirements text in pip's hash-checking mode (every line pinned with `--hash`) determines
  the installed tree completely, so its tree is reused without running pip at all, keyed on the
  text, the platform and Python version, pip's version and pip's settings (its `PIP_*`
  environment, its configuration files and the constraint files they name). Anything less pinned
  is resolved by pip every time: a new release of an unpinned dependency is never missed.

Entries live under the user's cache folder (`pipeline.user_cache`): private, and only entries this
user wrote are read; each is checked against the SHA-256 in its header. `PIPELINE_NO_CACHE=1` (or
`pipeline package --no-cache`) turns it off.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from pipeline import zipper
from pipeline.user_cache import UntrustedCacheError, cache_root, prune_oldest, read_private, warn_untrusted, write_private

FORMAT = "pipeline-deployer package cache"
VERSION = 1
MAX_TREES = 8
MAX_TREE_BYTES = 1024 * 1024 * 1024  # a package may be 1 GB (Azure)
_CONFIG_LIMIT = 1024 * 1024
_OFF = ("1", "true", "yes", "on")
_COMMENT = re.compile(r"(^|\s)#.*$")  # pip's rule: '#' at the start or after whitespace

_installed: dict[tuple[str, str, str], dict[str, bytes]] = {}
_disabled = False


def disable() -> None:
    """`--no-cache` for this process: pip runs and trees are deflated afresh (and nothing is stored)."""
    global _disabled
    _disabled = True


def enabled() -> bool:
    return not _disabled and os.environ.get("PIPELINE_NO_CACHE", "").strip().lower() not in _OFF


def folder() -> Path:
    return cache_root() / "packages"


def entries_digest(entries: Mapping[str, bytes]) -> str:
    """One hash of a set of named files (names and bytes), as packages see them."""
    digest = hashlib.sha256()
    for name in sorted(entries):
        digest.update(f"{len(name)}:{name}:{len(entries[name])}:".encode())
        digest.update(entries[name])
    return digest.hexdigest()


def installed(requirements: bytes, platform: str, python_version: str, install: Callable[[], dict[str, bytes]]) -> dict[str, bytes]:
    """The tree `install()` (pip) makes for this requirements text, from this run or the cache when
    that cannot differ from installing again; the tree's members are remembered deflated."""
    memo = (hashlib.sha256(requirements).hexdigest(), platform, python_version)
    if memo in _installed:
        return _installed[memo]
    use = enabled()
    key = _pinned_key(requirements, platform, python_version) if use and hash_pinned(requirements) else None
    tree = _pinned_tree(key) if key else None
    if tree is None:
        tree = install()
        if use:
            _keep(tree, key)
    _installed[memo] = tree
    return tree


def hash_pinned(requirements: bytes) -> bool:
    """pip's hash-checking mode for every requirement: each line names a project and its `--hash`es
    (no options, includes or URLs that could bring in more)."""
    text = requirements.decode("utf-8", errors="replace").replace("\\\n", " ")
    lines = [line for line in (_COMMENT.sub("", raw).strip() for raw in text.splitlines()) if line]
    return bool(lines) and all(not line.startswith("-") and "--hash=" in line and "://" not in line and "@" not in line for line in lines)


# ---- trees ------------------------------------------------------------------------------------------

def _tree_path(digest: str) -> Path:
    return folder() / "trees" / f"{digest}.zip"


def _pinned_path(key: str) -> Path:
    return folder() / "pinned" / f"{key}.json"


def _keep(tree: dict[str, bytes], key: str | None) -> None:
    """Remember the tree's deflated members from an earlier run, or store them for the next."""
    digest = entries_digest(tree)
    try:
        archive = _read_tree(digest)
        if archive is not None:
            zipper.remember_members(archive, tree)
            _touch(_tree_path(digest))
        else:
            body = zipper.zip_bytes(tree)  # deflates each member once; packages built next reuse them
            _write(_tree_path(digest), {"tree": digest}, body)
            _prune(folder() / "trees", MAX_TREES)
        if key:
            _write(_pinned_path(key), {"tree": digest}, b"")
    except UntrustedCacheError as exc:
        warn_untrusted("package cache", exc)
    except (OSError, ValueError):
        pass  # an unwritable or damaged cache costs time, never the answer


def _pinned_tree(key: str) -> dict[str, bytes] | None:
    try:
        pointer = _read(_pinned_path(key), {}, 4096)
        digest = pointer[0].get("tree") if pointer else None
        if not isinstance(digest, str):
            return None
        archive = _read_tree(digest)
        if archive is None:
            return None
        tree = zipper.read_members(archive)
        if entries_digest(tree) != digest:
            return None
        _touch(_tree_path(digest))
        return tree
    except UntrustedCacheError as exc:
        warn_untrusted("package cache", exc)
    except (OSError, ValueError):
        pass
    return None


def _read_tree(digest: str) -> bytes | None:
    found = _read(_tree_path(digest), {"tree": digest}, MAX_TREE_BYTES)
    return found[1] if found else None


def _write(path: Path, fields: dict[str, str], body: bytes) -> None:
    header = {"format": FORMAT, "version": VERSION, **fields, "sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body)}
    write_private(path, json.dumps(header).encode() + b"\n" + body)


def _read(path: Path, expected: dict[str, str], limit: int) -> tuple[dict[str, object], bytes] | None:
    """(header, body) of an entry whose header and checksum check out; None when there is none or it does not."""
    try:
        data = read_private(path, limit)
    except FileNotFoundError:
        return None
    head, newline, body = data.partition(b"\n")
    header = json.loads(head) if newline else None
    if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("version") != VERSION:
        return None
    if any(header.get(name) != value for name, value in expected.items()):
        return None
    if header.get("bytes") != len(body) or header.get("sha256") != hashlib.sha256(body).hexdigest():
        return None
    return header, body


def _touch(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.utime(path)  # the newest used are kept


def _prune(root: Path, keep: int) -> None:
    prune_oldest(list(root.glob("*.zip")), keep)


# ---- what pip would do differently -----------------------------------------------------------------

def _pinned_key(requirements: bytes, platform: str, python_version: str) -> str:
    parts = {"format": FORMAT, "version": VERSION, "requirements": hashlib.sha256(requirements).hexdigest(), "platform": platform,
             "python": python_version, "implementation": "cp", "pip": _pip_version(), "settings": _pip_settings()}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _pip_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pip")
    except PackageNotFoundError:
        return ""


def _config_files() -> Iterator[Path]:
    """pip's configuration files, in the places pip reads them (https://pip.pypa.io/en/stable/topics/configuration/)."""
    if os.environ.get("PIP_CONFIG_FILE"):
        yield Path(os.environ["PIP_CONFIG_FILE"])
    yield Path("/etc/pip.conf")
    for base in (os.environ.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(os.pathsep):
        yield Path(base) / "pip" / "pip.conf"
    home = Path(os.path.expanduser("~"))
    yield home / ".pip" / "pip.conf"
    yield Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "pip" / "pip.conf"
    yield Path(sys.prefix) / "pip.conf"


def _contents(path: Path) -> bytes:
    from pipeline.spec.paths import read_regular_file

    try:
        return read_regular_file(path, _CONFIG_LIMIT)
    except (OSError, ValueError):
        return b""


def _pip_settings() -> str:
    """pip's environment, configuration files and the constraint files they name, as one hash."""
    digest = hashlib.sha256()
    environment = {name: value for name, value in os.environ.items() if name.startswith("PIP_")}
    digest.update(json.dumps(environment, sort_keys=True).encode())
    constraints = shlex.split(environment.get("PIP_CONSTRAINT", ""))
    for path in _config_files():
        text = _contents(path)
        digest.update(f"{path}\0{hashlib.sha256(text).hexdigest()}\0".encode())
        for line in text.decode("utf-8", errors="replace").splitlines():
            name, _, value = line.partition("=")
            if name.strip() == "constraint":
                constraints += shlex.split(value)
    for constraint in constraints:
        digest.update(f"constraint\0{constraint}\0{hashlib.sha256(_contents(Path(constraint))).hexdigest()}\0".encode())
    return digest.hexdigest()
