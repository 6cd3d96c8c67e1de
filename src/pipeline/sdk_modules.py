"""Load only the cloud-SDK modules a plan uses.

Why: a generated Pulumi SDK service package (`pulumi_aws.s3`, `pulumi_azure_native.web`, ...) has an
`__init__.py` that star-imports every resource module of the service, so touching one class loads 20-190
modules; a three-cloud compare spent most of its start-up there. `install()` puts a finder on
`sys.meta_path` that gives such a package a module whose attributes resolve on first use: an index, built
from the star-imports in order and each submodule's literal `__all__`, says which submodule defines a name,
and only that submodule is imported.

Why it cannot change a plan: the package is made lazy only when its `__init__.py` has exactly the generated
shape (checked with `ast`; the statement kinds are listed in `_build_index`) and every star-imported submodule
has one literal `__all__`; otherwise the real `__init__.py` runs. A name the index does not know (including `__all__`,
so `from pkg import *` stays right) makes the package *fall back*: the real `__init__.py` runs in the
module's namespace and the answer comes from there; `fallbacks()` lists those so a test can insist that
planning never needs one. Deploys do not call `install()`: they keep real imports.

Indexes are cached on disk (see `_index`: building one reads the whole service). The core never imports a
cloud SDK; this module uses only the standard library. `PIPELINE_LAZY_SDK=0` turns it off (to compare).
"""

from __future__ import annotations

import ast
import contextlib
import enum
import hashlib
import importlib
import importlib.abc
import importlib.machinery
import json
import os
import re
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from pipeline.user_cache import cache_root, read_private, write_private

# The top-level packages of the Pulumi SDKs the backends import (providers/*/src); their service packages are
# the ones made lazy. The top-level packages themselves register resource modules: they are never touched.
SDK_ROOTS = frozenset({"pulumi_aws", "pulumi_gcp", "pulumi_azure_native", "pulumi_random"})
OFF_SWITCH = "PIPELINE_LAZY_SDK"

# `__all__ = [...]` alone on its lines; generated modules hold exactly one, a flat list of strings.
_ALL_LITERAL = re.compile(rb"^__all__ = (\[[^\]]*\])[ \t]*\r?$", re.MULTILINE)
# The statements a generated `__init__.py` runs for their bindings alone (`from .. import _utilities` at any
# depth); the lazy package runs them as written. Also checked on what the cache gives back: it becomes code.
_PRELUDE = re.compile(r"import builtins as _builtins|import typing|from \.{2,} import _utilities")

_fallbacks: list[tuple[str, str]] = []
_fallback_lock = threading.RLock()


@dataclass(frozen=True)
class PackageIndex:
    """What a generated `__init__.py` would bind, without running it.

    `exports`: name -> the submodule whose star-import binds it last (Python's rule: later star-imports win).
    `submodules`: the package's module files; a loaded one is an attribute of the package (the import system
    binds it), unless a star-import rebinds its name (`get_bucket` the function over `get_bucket` the module).
    `prelude`: the plain imports (`_builtins`, `typing`, `_utilities`), run as written."""

    exports: dict[str, str]
    submodules: frozenset[str]
    prelude: tuple[str, ...]


def install() -> None:
    """Make SDK service packages imported from now on lazy; a no-op if done already or `PIPELINE_LAZY_SDK=0`.

    Packages already imported stay as they are. The finder goes just before the standard path finder, so
    any finder placed earlier (editable installs, test hooks) still comes first."""
    if os.environ.get(OFF_SWITCH, "").strip().lower() in {"0", "false", "no", "off"}:
        return
    if any(isinstance(finder, LazySdkFinder) for finder in sys.meta_path):
        return
    finders = sys.meta_path
    position = next((i for i, f in enumerate(finders) if f is importlib.machinery.PathFinder), len(finders))
    finders.insert(position, LazySdkFinder(SDK_ROOTS))


def fallbacks() -> list[tuple[str, str]]:
    """(package, name) for each time a lazy package had to run its real `__init__.py` (a copy)."""
    with _fallback_lock:
        return list(_fallbacks)


class LazySdkFinder(importlib.abc.MetaPathFinder):
    """Finds the packages under `roots` with the standard path finder and, for a package, hands the
    decision to `_LazyPackageLoader` (which reads its `__init__.py` only when it is actually executed)."""

    def __init__(self, roots: frozenset[str]) -> None:
        self.roots = roots

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        root, dot, _ = fullname.partition(".")
        if not dot or root not in self.roots:
            return None
        parent_name, _, child = fullname.rpartition(".")
        parent = sys.modules.get(parent_name)
        if isinstance(parent, _LazyPackage) and child in _index_of(parent).submodules:
            return None  # a resource module of a lazy package: a plain file, the path finder's job
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if (spec is None or spec.submodule_search_locations is None or spec.origin is None
                or not isinstance(spec.loader, importlib.machinery.SourceFileLoader)):
            return None  # not a package from source: nothing to do, the path finder finds it again
        spec.loader = _LazyPackageLoader(spec.loader)
        return spec


class _LazyPackageLoader(importlib.abc.Loader):
    """Executes a package lazily when its `__init__.py` has the generated shape, else for real.

    Everything else a loader is asked (source for tracebacks, resource readers) is the real loader's job."""

    def __init__(self, real: importlib.machinery.SourceFileLoader) -> None:
        self.real = real
        self.index: PackageIndex | None = None

    def __getattr__(self, name: str) -> Any:
        if name == "real":  # not set yet (a copy being made): no delegating to itself
            raise AttributeError(name)
        return getattr(self.real, name)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        self.index = _index(Path(self.real.path))
        if self.index is None:
            self.real.exec_module(module)
            return
        exec(compile("\n".join(self.index.prelude), self.real.path, "exec"), module.__dict__)
        module.__class__ = _LazyPackage

    def run_real_init(self, module: ModuleType) -> None:
        """Make a lazy package the real one: a plain module, its `__init__.py` run in its namespace."""
        module.__class__ = ModuleType
        code = self.real.get_code(module.__name__)
        if code is None:
            raise ImportError(f"no code for {module.__name__}", name=module.__name__)
        exec(code, module.__dict__)


def _index_of(module: ModuleType) -> PackageIndex:
    loader = module.__dict__["__spec__"].loader
    assert isinstance(loader, _LazyPackageLoader) and loader.index is not None
    return loader.index


class _LazyPackage(ModuleType):
    """A generated SDK package whose names are imported on first use (see the module docstring)."""

    def __getattr__(self, name: str) -> Any:
        index = _index_of(self)
        source = index.exports.get(name)
        if source is not None:
            value = getattr(_submodule(self, source), name)
            self.__dict__[name] = value  # what the real `__init__.py` binds; next time a plain lookup
            return value
        if name in index.submodules:
            return self.__dict__.setdefault(name, _submodule(self, name))
        return _fall_back(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        # The import system binds a submodule on its package when it first loads it. Where the real
        # `__init__.py` rebinds that name by a star-import (`get_bucket` the function over `get_bucket` the
        # module), keep the name unbound: `__getattr__` answers with what the real package holds.
        if isinstance(value, ModuleType) and getattr(value, "__name__", None) == f"{self.__name__}.{name}" and name in _index_of(self).exports:
            return
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        index = _index_of(self)
        return sorted(set(self.__dict__) | set(index.exports) | index.submodules)


def _submodule(package: ModuleType, name: str) -> ModuleType:
    """Import `package.name` through the import statement's own path (`__import__`, as the real `__init__.py`
    would): `python -X importtime` then accounts for it, and an already loaded one costs a dict lookup."""
    fullname = f"{package.__name__}.{name}"
    __import__(fullname)
    return sys.modules[fullname]


def _fall_back(module: ModuleType, name: str) -> Any:
    """Run the real `__init__.py` in the module's namespace, note it, and answer from there."""
    with _fallback_lock:
        if isinstance(module, _LazyPackage):  # not already fallen back (by another thread, say)
            loader = module.__dict__["__spec__"].loader
            _fallbacks.append((module.__name__, name))
            loader.run_real_init(module)
    return getattr(module, name)


def _index(init: Path) -> PackageIndex | None:
    """The package's index (None: not the generated shape), from the on-disk cache when the folder is unchanged.

    Why a cache: building reads every module of the service in full (to be sure `__all__` is assigned once),
    5-40 ms a package, 100-200 ms for the ~28 packages of a three-cloud compare; a cache hit is one listing
    of the folder and a small JSON file. The key is the folder's path; the entry holds a fingerprint of the
    folder's listing with each module's size and mtime, so an upgraded or edited SDK is indexed afresh."""
    folder = init.parent
    try:
        fingerprint, plain = _fingerprint(folder)
    except OSError:
        return None
    entry = _cache_file(folder)
    cached = _read_cached(entry, fingerprint)
    if cached is not _Miss.MISS:
        return cached
    index = _build_index(init, plain)
    _write_cached(entry, fingerprint, index)
    return index


def _build_index(init: Path, plain: set[str]) -> PackageIndex | None:
    """Read the `__init__.py` (with `ast`) and each star-imported module's `__all__`; None at the first
    thing that is not exactly as the Pulumi generator writes it."""
    try:
        tree = ast.parse(init.read_bytes(), str(init))
    except (OSError, SyntaxError, ValueError):
        return None
    prelude: list[str] = []
    prelude_names: set[str] = set()
    exports: dict[str, str] = {}
    from_imported: list[str] = []
    for statement in tree.body:
        if isinstance(statement, ast.Import | ast.ImportFrom) and _PRELUDE.fullmatch(text := ast.unparse(statement)):
            prelude.append(text)
            prelude_names.update(alias.asname or alias.name for alias in statement.names)
        elif isinstance(statement, ast.ImportFrom) and statement.level == 1 and statement.module and "." not in statement.module \
                and [(a.name, a.asname) for a in statement.names] == [("*", None)]:
            names = _literal_all(init.parent, statement.module, plain)
            if names is None:
                return None
            exports.update(dict.fromkeys(names, statement.module))
        elif isinstance(statement, ast.ImportFrom) and statement.level == 1 and statement.module is None \
                and all(a.asname is None and a.name in plain for a in statement.names):
            from_imported.extend(a.name for a in statement.names)
        else:
            return None
    # Any module file of the folder may be loaded (by the `__init__.py`, or by a sibling's `from . import x`),
    # and the import system then binds it on the package: its name is an attribute of the real package.
    submodules = frozenset(plain - {"__init__"})
    if prelude_names & (set(exports) | submodules):
        return None
    if any(name in exports for name in from_imported):
        return None  # `from . import x` next to an exported x: an order-dependent shape not worth modelling
    # A name that is both a submodule and exported must be exported by that very submodule (`get_bucket`):
    # only then is the real binding certainly the export (the module binds first, when it loads).
    if any(exports[name] != name for name in submodules & set(exports)):
        return None
    return PackageIndex(exports, submodules, tuple(prelude))


def _fingerprint(folder: Path) -> tuple[str, set[str]]:
    """A digest of the folder's listing (each module's size and mtime), and the names the import system can
    only load from `name.py` (no `name/` package, no `name.*.so` or stray `name.pyc` beside it, which it could
    prefer). `__pycache__` is left out: it changes as modules are compiled, the sources do not."""
    digest = hashlib.sha256()
    sources: set[str] = set()
    others: set[str] = set()
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name == "__pycache__":
            continue
        stem, _, suffix = entry.name.partition(".")
        (sources if suffix == "py" and entry.is_file() else others).add(stem)
        status = entry.stat()
        digest.update(f"{entry.name}\0{entry.is_dir()}\0{status.st_size}\0{status.st_mtime_ns}\n".encode())
    return digest.hexdigest(), sources - others


def _literal_all(folder: Path, module: str, plain: set[str]) -> list[str] | None:
    """The one literal `__all__` of `folder/module.py`, or None if it has not exactly one."""
    if module not in plain:
        return None
    try:
        data = (folder / f"{module}.py").read_bytes()
    except OSError:
        return None
    found = _ALL_LITERAL.search(data)
    if found is None or data.count(b"__all__") != 1:
        return None
    before = data[:found.start()]
    if before.count(b'"""') % 2 or before.count(b"'''") % 2:
        return None  # inside a docstring: not an assignment
    try:
        names = ast.literal_eval(found.group(1).decode())
    except (ValueError, SyntaxError, UnicodeDecodeError):
        return None
    if not (isinstance(names, list) and all(isinstance(n, str) and n.isidentifier() for n in names)):
        return None
    return names


# --- the on-disk cache of indexes ------------------------------------------------------------------------

_CACHE_FORMAT = 2
_CACHE_LIMIT = 16 * 1024 * 1024  # bytes: an index is a few hundred kB


class _Miss(enum.Enum):
    """Nothing usable in the cache: absent, stale or not well formed."""

    MISS = "miss"


def _cache_file(folder: Path) -> Path:
    key = hashlib.sha256(os.fsencode(folder.resolve())).hexdigest()[:24]
    return cache_root() / "sdk-index" / f"{folder.name}-{key}.json"


def _read_cached(entry: Path, fingerprint: str) -> PackageIndex | Literal[_Miss.MISS] | None:
    """The cached index (or None, cached as "not generated"), or MISS."""
    try:
        data = json.loads(read_private(entry, _CACHE_LIMIT))  # only an entry of this user's (pipeline.user_cache)
        if data["format"] != _CACHE_FORMAT or data["fingerprint"] != fingerprint:
            return _Miss.MISS
        found = data["index"]
        if found is None:
            return None
        exports, submodules, prelude = found["exports"], found["submodules"], found["prelude"]
    except (OSError, ValueError, TypeError, KeyError):
        return _Miss.MISS
    if not (isinstance(exports, dict) and isinstance(submodules, list) and isinstance(prelude, list)
            and all(isinstance(n, str) and n.isidentifier() for n in [*submodules, *exports])
            and all(m in submodules for m in exports.values())
            and all(isinstance(p, str) and _PRELUDE.fullmatch(p) for p in prelude)):
        return _Miss.MISS
    return PackageIndex(exports, frozenset(submodules), tuple(prelude))


def _write_cached(entry: Path, fingerprint: str, index: PackageIndex | None) -> None:
    """Write atomically (a private temporary file renamed over the entry); a cache that cannot be written
    (read-only home, full disk) only costs the next run the same work again."""
    found = None if index is None else {"exports": index.exports, "submodules": sorted(index.submodules), "prelude": list(index.prelude)}
    with contextlib.suppress(OSError):
        write_private(entry, json.dumps({"format": _CACHE_FORMAT, "fingerprint": fingerprint, "index": found}).encode())
