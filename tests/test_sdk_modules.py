"""`pipeline.sdk_modules`: SDK service packages load only the modules a plan uses, and plans do not change.

The bundled stacks are planned on every cloud twice, in two fresh processes (with the lazy packages, and with
`PIPELINE_LAZY_SDK=0`): the plans must be byte-identical and the lazy side must never fall back. The finder's
own rules are checked on small generated-shaped packages written to a temporary folder.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pipeline import sdk_modules, user_cache

TESTS = Path(__file__).resolve().parent
SDKS = ("pulumi_aws", "pulumi_gcp", "pulumi_azure_native")

# Plans every bundled stack (each overlay) on every installed cloud; prints the plans, the fallbacks, how many
# modules of each SDK were loaded and which packages were made lazy.
PLAN_EVERYTHING = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, TESTS)
    from bundled import bundled_stacks
    from pipeline import sdk_modules
    from pipeline.backend import backend_names
    from pipeline.errors import SpecError
    from pipeline.planner import plan
    from pipeline.spec.load import load_spec

    plans = {}
    for stack, (spec, overlays) in bundled_stacks().items():
        for overlay in overlays:
            for cloud in backend_names():
                try:
                    plans[f"{stack}/{overlay}/{cloud}"] = plan(load_spec(spec, overlay), cloud).to_json()
                except SpecError as exc:
                    plans[f"{stack}/{overlay}/{cloud}"] = f"SpecError: {exc}"
    print(json.dumps({
        "plans": plans,
        "fallbacks": sdk_modules.fallbacks(),
        # Loaded for real: the SDKs' top-level packages hold a not-yet-executed LazyLoader stub for every service.
        "modules": {sdk: sum(n.startswith(sdk + ".") and type(m).__name__ != "_LazyModule" for n, m in list(sys.modules.items())) for sdk in SDKS},
        "lazy": sorted(n for n, m in list(sys.modules.items()) if type(m).__name__ == "_LazyPackage"),
    }))
""").replace("TESTS", repr(str(TESTS))).replace("SDKS", repr(SDKS))


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test indexes into its own cache folder."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("PIPELINE_CACHE_DIR", str(folder))
    return folder


def _plan_everything(lazy: bool) -> subprocess.Popen[str]:
    # PIPELINE_CACHE_DIR is the test's own (empty) folder: the lazy side builds every index it uses.
    env = {**os.environ, sdk_modules.OFF_SWITCH: "1" if lazy else "0"}
    return subprocess.Popen([sys.executable, "-c", PLAN_EVERYTHING], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_bundled_plans_are_identical_and_need_no_fallback() -> None:
    # Both sides at once: each is one process planning everything (the machine's second core is the other).
    runs = {"lazy": _plan_everything(lazy=True), "real": _plan_everything(lazy=False)}
    results: dict[str, dict[str, Any]] = {}
    for mode, process in runs.items():
        stdout, stderr = process.communicate(timeout=900)
        assert process.returncode == 0, f"{mode}: {stderr}"
        results[mode] = json.loads(stdout.splitlines()[-1])
    lazy, real = results["lazy"], results["real"]

    assert lazy["fallbacks"] == [], "planning made a lazy SDK package run its real __init__.py"
    assert sorted(lazy["plans"]) == sorted(real["plans"])
    assert not [p for p in lazy["plans"].values() if p.startswith("SpecError")], "a bundled stack no longer plans"
    for key, document in real["plans"].items():
        assert lazy["plans"][key] == document, f"{key}: the plan differs with lazy SDK packages"
    # The mechanism was really on (and really off): otherwise the comparison above proves nothing.
    assert real["lazy"] == []
    assert {name.split(".")[0] for name in lazy["lazy"]} >= set(SDKS)
    for sdk in SDKS:
        assert lazy["modules"][sdk] < real["modules"][sdk] / 2, (sdk, lazy["modules"][sdk], real["modules"][sdk])


def test_importing_the_module_and_installing_imports_no_cloud_sdk() -> None:
    code = textwrap.dedent("""
        import sys
        import pipeline, pipeline.sdk_modules
        pipeline.sdk_modules.install()
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("pulumi_aws", "pulumi_gcp", "pulumi_azure_native", "pulumi_random")))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_off_switch_makes_install_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "meta_path", [f for f in sys.meta_path if not isinstance(f, sdk_modules.LazySdkFinder)])
    monkeypatch.setenv(sdk_modules.OFF_SWITCH, "0")
    sdk_modules.install()
    assert not any(isinstance(f, sdk_modules.LazySdkFinder) for f in sys.meta_path)
    monkeypatch.delenv(sdk_modules.OFF_SWITCH)
    sdk_modules.install()
    sdk_modules.install()
    assert sum(isinstance(f, sdk_modules.LazySdkFinder) for f in sys.meta_path) == 1  # idempotent


# --- the finder's rules, on a package shaped like a generated one ------------------------------------------

GENERATED_INIT = """\
# coding=utf-8
# *** WARNING: this file was generated by pulumi-language-python. ***

import builtins as _builtins
from .. import _utilities
import typing
# Export this package's modules as members:
from ._enums import *
from .alpha import *
from .beta import *
from .get_thing import *
from ._inputs import *
from . import outputs
"""

# The SDKs' top-level packages reach their service packages through importlib.util.LazyLoader (their
# `_utilities.lazy_import`); the fake one does the same, so that path is exercised too.
ROOT_INIT = """\
import importlib.util, sys
from . import _utilities

def _lazy_import(fullname):
    spec = importlib.util.find_spec(fullname)
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[fullname] = module
    spec.loader.exec_module(module)
    return module

svc = _lazy_import(__name__ + ".svc")
"""

SERVICE_MODULES = {
    "_enums.py": "__all__ = ['Color']\nColor = 'color'\n",
    "_inputs.py": "__all__ = [\n    'AlphaArgs',\n    'Shared',\n]\nAlphaArgs = 'alpha-args'\nShared = 'from _inputs'\n",
    "outputs.py": "__all__ = ['AlphaOut']\nAlphaOut = 'alpha-out'\n",
    "alpha.py": '"""Alpha."""\nfrom . import _helpers\nfrom ._inputs import *\n\n__all__ = [\'Alpha\', \'Shared\']\nAlpha = \'alpha\'\nShared = \'from alpha\'\n',
    "beta.py": "__all__ = ['Beta', 'Shared']\nBeta = 'beta'\nShared = 'from beta'\n",
    "get_thing.py": "__all__ = ['GetThingResult', 'get_thing']\nGetThingResult = 'result'\ndef get_thing():\n    return 'thing'\n",
    "_helpers.py": "HELPED = True\n",  # imported by alpha only: bound on the package by the import system
}


@pytest.fixture
def fake_sdk(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Write a fake SDK (a top-level package and a generated-shaped `svc`) and put a finder for it in place;
    returns a function taking files to add or replace in `svc` and returning the root's (unique) name."""
    roots: list[str] = []
    finder = sdk_modules.LazySdkFinder(frozenset())
    sys.meta_path.insert(0, finder)
    sys.path.insert(0, str(tmp_path))

    def make(lazy: bool = True, files: dict[str, str] | None = None) -> str:
        root = f"fakesdk_{uuid.uuid4().hex[:12]}"
        (tmp_path / root).mkdir()
        (tmp_path / root / "__init__.py").write_text(ROOT_INIT)
        (tmp_path / root / "_utilities.py").write_text("UTILITIES = True\n")
        for relative, text in {"__init__.py": GENERATED_INIT, **SERVICE_MODULES, **(files or {})}.items():
            target = tmp_path / root / "svc" / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        roots.append(root)
        if lazy:
            finder.roots = frozenset(roots)
        importlib.invalidate_caches()
        return root

    yield make
    sys.meta_path.remove(finder)
    sys.path.remove(str(tmp_path))
    for name in [m for m in sys.modules if m.split(".")[0] in roots]:
        del sys.modules[name]


def loaded(root: str) -> set[str]:
    """The service's submodules loaded so far."""
    prefix = f"{root}.svc."
    return {name.removeprefix(prefix) for name in sys.modules if name.startswith(prefix)}


def is_lazy(module: ModuleType) -> bool:
    module.__spec__  # noqa: B018 -- a module still behind the top-level's LazyLoader executes on first touch
    return type(module).__name__ == "_LazyPackage"


def test_a_name_loads_only_the_submodule_that_defines_it(fake_sdk: Callable[..., str]) -> None:
    root = fake_sdk()
    service = importlib.import_module(f"{root}.svc")
    assert is_lazy(service)
    assert loaded(root) == set()
    assert service.Beta == "beta"
    assert loaded(root) == {"beta"}
    assert service.Color == "color"
    assert loaded(root) == {"beta", "_enums"}
    assert not [f for f in sdk_modules.fallbacks() if f[0].startswith(root)]


def test_the_prelude_binds_as_written(fake_sdk: Callable[..., str]) -> None:
    import builtins
    import typing

    service = importlib.import_module(f"{fake_sdk()}.svc")
    assert service._builtins is builtins
    assert service.typing is typing
    assert service._utilities.UTILITIES is True


def test_a_later_star_import_wins(fake_sdk: Callable[..., str]) -> None:
    root = fake_sdk()
    service = importlib.import_module(f"{root}.svc")
    assert service.Shared == "from _inputs"  # alpha, beta and _inputs export it; _inputs comes last
    assert "beta" not in loaded(root)


def test_submodules_are_attributes_and_exports_shadow_them(fake_sdk: Callable[..., str]) -> None:
    root = fake_sdk()
    service = importlib.import_module(f"{root}.svc")
    assert service.outputs is sys.modules[f"{root}.svc.outputs"]
    assert service.alpha is sys.modules[f"{root}.svc.alpha"]
    # `get_thing` is a submodule, and its star-import rebinds the name to its function, as the real package does.
    assert service.GetThingResult == "result"
    assert callable(service.get_thing) and service.get_thing() == "thing"
    # Importing the submodule directly must not rebind the name to the module either.
    fresh = fake_sdk()
    importlib.import_module(f"{fresh}.svc.get_thing")
    assert callable(sys.modules[f"{fresh}.svc"].get_thing)
    assert callable(importlib.import_module(fresh).svc.get_thing)  # through the top-level's LazyLoader
    assert not [f for f in sdk_modules.fallbacks() if f[0].startswith((root, fresh))]


def test_the_lazy_package_answers_as_the_real_one(fake_sdk: Callable[..., str]) -> None:
    lazy_root, real_root = fake_sdk(), fake_sdk(lazy=False)
    lazy = importlib.import_module(f"{lazy_root}.svc")
    real = importlib.import_module(f"{real_root}.svc")
    assert is_lazy(lazy) and not is_lazy(real)
    names = {n for n in dir(real) if not n.startswith("__")}
    assert set(dir(lazy)) >= names
    for name in sorted(names):
        assert describe(getattr(lazy, name), lazy_root) == describe(getattr(real, name), real_root), name
    assert not [f for f in sdk_modules.fallbacks() if f[0].startswith(lazy_root)]


def describe(value: Any, root: str) -> Any:
    """A value in terms that do not depend on the fake SDK's name: a module by its name below the root."""
    if isinstance(value, ModuleType):
        return ("module", value.__name__.replace(root, "ROOT"))
    if callable(value):
        return ("callable", value.__module__.replace(root, "ROOT"), value.__name__)
    return value


def test_star_import_from_the_package_is_the_real_one(fake_sdk: Callable[..., str]) -> None:
    lazy_root, real_root = fake_sdk(), fake_sdk(lazy=False)
    lazy_names: dict[str, Any] = {}
    real_names: dict[str, Any] = {}
    exec(f"from {lazy_root}.svc import *", lazy_names)
    exec(f"from {real_root}.svc import *", real_names)
    assert {k: describe(v, lazy_root) for k, v in lazy_names.items() if k != "__builtins__"} == \
           {k: describe(v, real_root) for k, v in real_names.items() if k != "__builtins__"}
    assert (f"{lazy_root}.svc", "__all__") in sdk_modules.fallbacks()  # a package without __all__: answered for real


def test_a_module_file_the_init_does_not_name_is_imported_on_use(fake_sdk: Callable[..., str]) -> None:
    root = fake_sdk()
    service = importlib.import_module(f"{root}.svc")
    assert service._helpers.HELPED is True  # real: bound once alpha (which the real __init__ loads) imports it
    assert loaded(root) == {"_helpers"}
    assert not [f for f in sdk_modules.fallbacks() if f[0].startswith(root)]


def test_an_unknown_name_falls_back_to_the_real_init(fake_sdk: Callable[..., str]) -> None:
    root = fake_sdk()
    service = importlib.import_module(f"{root}.svc")
    assert service.Alpha == "alpha"
    assert not hasattr(service, "NoSuchName")  # the real package has no such name either
    assert (f"{root}.svc", "NoSuchName") in sdk_modules.fallbacks()
    assert not is_lazy(service)  # from now on the real package, every submodule loaded by its __init__
    assert loaded(root) == {"_enums", "_inputs", "outputs", "alpha", "beta", "get_thing", "_helpers"}
    assert service.Shared == "from _inputs" and service.get_thing() == "thing" and service.Alpha == "alpha"


@pytest.mark.parametrize("files", [
    pytest.param({"__init__.py": GENERATED_INIT + "EXTRA = 1\n"}, id="an-unexpected-statement"),
    pytest.param({"__init__.py": GENERATED_INIT.replace("import typing", "import typing as t")}, id="an-unexpected-import"),
    pytest.param({"__init__.py": GENERATED_INIT.replace("from . import outputs", "from . import outputs as o")}, id="an-aliased-submodule"),
    pytest.param({"beta.py": "Beta = 'beta'\nShared = 'from beta'\n"}, id="no-__all__"),
    pytest.param({"beta.py": "__all__ = ['Beta']\n__all__ += ['Shared']\nBeta = 'beta'\nShared = 'from beta'\n"}, id="__all__-changed-later"),
    pytest.param({"beta.py": "__all__ = ['Beta'] + ['Shared']\nBeta = 'beta'\nShared = 'from beta'\n"}, id="__all__-not-a-literal"),
    pytest.param({"beta.py": '"""\n__all__ = [\'Beta\']\n"""\nBeta = \'beta\'\nShared = \'from beta\'\n'}, id="__all__-in-a-docstring"),
    pytest.param({"alpha.py": "__all__ = ['Alpha', 'beta']\nAlpha = 'alpha'\nbeta = 'shadows the module'\n"}, id="an-export-shadows-another-submodule"),
    pytest.param({"_enums.py": "__all__ = ['Color', '_utilities']\nColor = 'c'\n_utilities = 'shadow'\n"}, id="an-export-shadows-the-prelude"),
    pytest.param({"beta/__init__.py": "__all__ = ['Beta', 'Shared']\nBeta = 'package'\nShared = 'from beta'\n"}, id="a-package-beside-a-module"),
])
def test_anything_not_generated_is_imported_for_real(fake_sdk: Callable[..., str], files: dict[str, str]) -> None:
    root = fake_sdk(files=files)
    service = importlib.import_module(f"{root}.svc")
    assert not is_lazy(service)
    assert {"alpha", "beta", "_enums", "outputs"} <= loaded(root)


def test_a_missing_submodule_fails_as_the_real_import_does(fake_sdk: Callable[..., str]) -> None:
    root = fake_sdk(files={"__init__.py": GENERATED_INIT + "from .missing import *\n"})
    with pytest.raises(ModuleNotFoundError, match="missing"):
        is_lazy(importlib.import_module(f"{root}.svc"))


# --- the on-disk index cache ---------------------------------------------------------------------------------


def service_init(root: str) -> Path:
    return Path(importlib.util.find_spec(root).submodule_search_locations[0]) / "svc" / "__init__.py"  # type: ignore[union-attr]


def test_the_index_is_cached_privately_and_reused(fake_sdk: Callable[..., str], private_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = fake_sdk()
    assert importlib.import_module(f"{root}.svc").Alpha == "alpha"
    entries = list((private_cache / "sdk-index").iterdir())
    assert len(entries) == 1 and entries[0].name.startswith("svc-")
    assert (private_cache.stat().st_mode & 0o777, entries[0].parent.stat().st_mode & 0o777, entries[0].stat().st_mode & 0o777) == (0o700, 0o700, 0o600)
    built = sdk_modules._index(service_init(root))
    monkeypatch.setattr(sdk_modules, "_build_index", lambda *_: pytest.fail("the cached index was not used"))
    assert sdk_modules._index(service_init(root)) == built


def test_a_changed_module_is_indexed_afresh(fake_sdk: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> None:
    root = fake_sdk()
    init = service_init(root)
    assert sdk_modules._index(init).exports["Shared"] == "_inputs"  # type: ignore[union-attr]
    (init.parent / "_inputs.py").write_text("__all__ = ['AlphaArgs']\nAlphaArgs = 'alpha-args'\n")
    assert sdk_modules._index(init).exports["Shared"] == "beta"  # type: ignore[union-attr]
    (init.parent / "beta.py").write_text("Beta = 'no __all__ any more'\n")
    assert sdk_modules._index(init) is None
    (init.parent / "gamma.py").write_text("__all__ = ['Gamma']\nGamma = 'gamma'\n")  # a new file: in the listing
    (init.parent / "beta.py").write_text(SERVICE_MODULES["beta.py"])
    assert "gamma" in sdk_modules._index(init).submodules  # type: ignore[union-attr]


@pytest.mark.parametrize("garbage", [b"", b"{not json", b'{"format": 1, "fingerprint": "x"}', b"[]", b'{"format": 1, "index": {"exports": 3}}'])
def test_a_corrupt_entry_is_ignored_and_replaced(fake_sdk: Callable[..., str], private_cache: Path, garbage: bytes) -> None:
    root = fake_sdk()
    init = service_init(root)
    built = sdk_modules._index(init)
    (entry,) = (private_cache / "sdk-index").iterdir()
    entry.write_bytes(garbage)
    assert sdk_modules._index(init) == built
    assert json.loads(entry.read_bytes())["index"]["exports"] == built.exports  # type: ignore[union-attr]


def test_an_unwritable_cache_only_costs_time(fake_sdk: Callable[..., str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("PIPELINE_CACHE_DIR", str(blocker))
    root = fake_sdk()
    assert importlib.import_module(f"{root}.svc").Beta == "beta"
    assert is_lazy(sys.modules[f"{root}.svc"])


@pytest.mark.parametrize(("platform", "env", "expected"), [
    ("linux", {"PIPELINE_CACHE_DIR": "/x/mine"}, "/x/mine"),
    ("linux", {"XDG_CACHE_HOME": "/x/xdg"}, "/x/xdg/pipeline-deployer"),
    ("linux", {}, "HOME/.cache/pipeline-deployer"),
    ("darwin", {}, "HOME/Library/Caches/pipeline-deployer"),
    ("win32", {"LOCALAPPDATA": "/x/local"}, "/x/local/pipeline-deployer/Cache"),
])
def test_the_cache_is_in_the_platform_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, platform: str, env: dict[str, str], expected: str) -> None:
    for name in ("PIPELINE_CACHE_DIR", "XDG_CACHE_HOME", "LOCALAPPDATA"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(sys, "platform", platform)
    assert user_cache.cache_root() == Path(expected.replace("HOME", str(tmp_path)))


def test_a_cached_prelude_must_be_one_of_the_generated_statements(fake_sdk: Callable[..., str], private_cache: Path) -> None:
    root = fake_sdk()
    init = service_init(root)
    built = sdk_modules._index(init)
    (entry,) = (private_cache / "sdk-index").iterdir()
    document = json.loads(entry.read_bytes())
    document["index"]["prelude"].append("import os; os.environ['TAMPERED'] = '1'")  # the cache is data, never code
    entry.write_text(json.dumps(document))
    assert sdk_modules._index(init) == built
    assert "TAMPERED" not in json.loads(entry.read_bytes())["index"]["prelude"][-1]
