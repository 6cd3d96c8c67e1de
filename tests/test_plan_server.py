"""The warm planning server, through the real console script: the same bytes and exit codes as a
command run in its own process, start, stop and status, and stale code refused."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import EXAMPLE_DIR, cli_env, pipeline_script

from pipeline import plan_server

pytestmark = pytest.mark.skipif(not plan_server.supported(), reason="the planning server needs fork and Unix sockets")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[dict[str, str]]:
    # A short folder: a Unix socket path must stay under ~100 bytes.
    folder = Path(tempfile.mkdtemp(prefix="pl-"))
    env = {**cli_env(), "PIPELINE_SERVER": "1", "PIPELINE_SERVER_SOCKET": str(folder / "planner.sock"), "PIPELINE_NO_CACHE": "1"}
    started = _pipeline(env, "server", "start", "--idle-minutes", "5", cwd=folder)
    assert started.returncode == 0, started.stderr
    assert "running" in started.stdout
    env["SERVER_FOLDER"] = str(folder)
    yield env
    _pipeline(env, "server", "stop")


def _pipeline(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([pipeline_script(), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300, check=False)


def _served(env: dict[str, str]) -> list[str]:
    return [line for line in (Path(env["SERVER_FOLDER"]) / "server.log").read_text().splitlines() if "-> child" in line]


@pytest.mark.parametrize("args", [
    ["compare", str(EXAMPLE_DIR / "pipeline.yaml"), "--stack", "dev"],
    ["plan", str(EXAMPLE_DIR / "pipeline.yaml"), "--cloud", "azure", "--format", "json"],
    ["compare", str(EXAMPLE_DIR / "pipeline.yaml"), "--stack", "nope"],  # a bad stack: exit 2 and the same message
], ids=["compare", "plan-json", "bad-stack"])
def test_the_server_answers_like_a_fresh_process(server: dict[str, str], args: list[str]) -> None:
    remote = _pipeline(server, *args)
    local = _pipeline({**server, "PIPELINE_SERVER": "0"}, *args)
    assert (remote.returncode, remote.stdout, remote.stderr) == (local.returncode, local.stdout, local.stderr)
    assert any(f"pipeline {args[0]} " in line for line in _served(server)), "the command did not go through the server"


def test_commands_that_are_not_plans_run_here(server: dict[str, str]) -> None:
    before = len(_served(server))
    assert _pipeline(server, "validate", str(EXAMPLE_DIR / "pipeline.yaml")).returncode == 0
    assert _pipeline(server, "compare", "--help").returncode == 0
    assert len(_served(server)) == before


def test_changed_code_or_distributions_stop_the_server(server: dict[str, str]) -> None:
    """The server's fingerprint covers every folder on its sys.path, its working folder included."""
    (Path(server["SERVER_FOLDER"]) / "newly_installed-1.0.dist-info").mkdir()
    args = ["plan", str(EXAMPLE_DIR / "pipeline.yaml"), "--cloud", "aws", "--format", "json"]
    result = _pipeline(server, *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout == _pipeline({**server, "PIPELINE_SERVER": "0"}, *args).stdout
    assert "changed: stopping" in (Path(server["SERVER_FOLDER"]) / "server.log").read_text()
    status = _pipeline(server, "server", "status")
    assert status.returncode == 1 and "no planning server" in status.stdout


def test_stop_and_status(server: dict[str, str]) -> None:
    assert _pipeline(server, "server", "status").returncode == 0
    assert "already running" in _pipeline(server, "server", "start").stdout
    assert _pipeline(server, "server", "stop").stdout.strip() == "stopped"
    assert _pipeline(server, "server", "status").returncode == 1
    assert not os.path.exists(server["PIPELINE_SERVER_SOCKET"])
    # With no server the console script plans by itself.
    assert _pipeline(server, "plan", str(EXAMPLE_DIR / "pipeline.yaml"), "--cloud", "gcp", "--format", "json").returncode == 0
