"""Shared fixtures for the spec and CLI tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_DIR = REPO / "stacks" / "transactions"

HANDLER_SOURCE = "def handle(records, context):\n    return []\n"

# A small valid spec the error tests mutate; line numbers below are stable on purpose.
MINIMAL_SPEC = """\
name: demo
stages:
  - name: first
    handler: handlers/h.py:handle
    trigger:
      stream: {}
"""


@pytest.fixture(scope="session", autouse=True)
def private_cache_folder(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the plan cache (and other caches) of this test run out of the user's cache folder, and
    commands off planning servers: neither one the user may have running nor one started on demand
    (the server tests start their own, each in a folder of its own, and stop it)."""
    os.environ.setdefault("PIPELINE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    os.environ["PIPELINE_SERVER"] = "0"


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[..., Path]:
    """Write `pipeline.yaml` (plus handlers/h.py and any `files`) into a fresh folder.

    `text` is dedented; pass `raw=` bytes to write exactly those bytes instead.
    `files` maps relative paths to text (or bytes) written next to the spec, e.g.
    {"stacks/dev.yaml": "...", "handlers/other.py": "..."}.
    """
    counter = [0]

    def write(text: str = MINIMAL_SPEC, *, raw: bytes | None = None, files: dict[str, str | bytes] | None = None,
              name: str = "pipeline.yaml") -> Path:
        counter[0] += 1
        folder = tmp_path / f"spec{counter[0]}"
        (folder / "handlers").mkdir(parents=True)
        (folder / "handlers" / "h.py").write_text(HANDLER_SOURCE, encoding="utf-8")
        (folder / "handlers" / "requirements.txt").write_text("", encoding="utf-8")
        for relative, content in (files or {}).items():
            target = folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(textwrap.dedent(content), encoding="utf-8")
        spec = folder / name
        if raw is not None:
            spec.write_bytes(raw)
        else:
            spec.write_text(textwrap.dedent(text), encoding="utf-8")
        return spec

    return write


@pytest.fixture
def example_spec() -> Path:
    path = EXAMPLE_DIR / "pipeline.yaml"
    assert path.is_file(), path
    return path


def pipeline_script() -> str:
    found = shutil.which("pipeline", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("the 'pipeline' console script is not installed next to this Python")
    return found


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb", "PYTHONIOENCODING": "utf-8"})
    env.pop("FORCE_COLOR", None)
    return env


def _run_cli(*args: str | Path, cwd: str | Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [pipeline_script(), *map(str, args)],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def run_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real `pipeline` console script in a subprocess; returns the CompletedProcess."""
    return _run_cli


@pytest.fixture
def minimal_spec() -> str:
    """A valid one-stage spec; handler handlers/h.py:handle (written by `write_spec`)."""
    return MINIMAL_SPEC


@pytest.fixture
def cli_env_vars() -> dict[str, str]:
    """The environment `run_cli` uses (NO_COLOR=1, COLUMNS=200)."""
    return cli_env()


@pytest.fixture
def pipeline_exe() -> str:
    """Path of the installed `pipeline` console script."""
    return pipeline_script()


@pytest.fixture
def window_clock_ahead(monkeypatch: pytest.MonkeyPatch) -> float:
    """The window runtime's clock two days ahead: a test may then send ticks after the objects it just wrote
    (a window never reads past its function's clock). Returns the shift in seconds."""
    import time

    from pipeline.runtime import window

    shift = 2 * 86400.0
    monkeypatch.setattr(window, "now", lambda: time.time() + shift)
    return shift
