"""Helpers for the attack and fault tests of the plan cache, the planning server and packaging.

* `other_user()`: a `preexec_fn` that turns a child process into another local user (uid/gid
  65534, "nobody"): the tests run as root in CI, so "another user" is a real other uid.
* `shared_folder()`: a world-writable, sticky folder (like /tmp) both users can create things in.
* `injected(folder, code)`: a `sitecustomize.py` for PYTHONPATH that runs `code` at start-up in the
  real console script: the way to edit files at an exact moment of a command (between loading the
  spec and storing its answer), which no timing could hit reliably.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

OTHER_UID = 65534


def need_root() -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to act as another user (CI runs the tests as root)")


def other_user() -> Callable[[], None]:
    """preexec_fn: become uid/gid 65534 with no supplementary groups."""
    need_root()

    def become() -> None:
        os.setgroups([])
        os.setgid(OTHER_UID)
        os.setuid(OTHER_UID)

    return become


def shared_folder() -> Path:
    """A folder every user may create entries in, sticky like /tmp (removed by the caller)."""
    path = Path(tempfile.mkdtemp(prefix="shared-", dir="/tmp"))
    os.chmod(path, 0o1777)
    return path


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


_HOOK = """
import importlib.abc, importlib.machinery, os, sys

{code}

class _Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != {module!r}:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            wrap(module)

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get("FAULT"):
    sys.meta_path.insert(0, _Hook())
"""


def injected(folder: Path, module: str, code: str) -> dict[str, str]:
    """Environment additions for a Python that, when FAULT is set in its environment, calls `wrap(module)`
    (defined by `code`, dedented) right after `module` is imported. The same PYTHONPATH goes into
    every run of a test (the import path is part of the plan cache's key); only FAULT differs."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(_HOOK.format(code=textwrap.dedent(code), module=module))
    return {"PYTHONPATH": str(folder)}
