"""Issue 21, item 12: the planning server starts on demand, the way build daemons do.

A planning command that had to plan (a cache miss) starts a server in the background on its way
out; the next commands are answered by it, byte for byte as in-process. Never in CI, never with
PIPELINE_SERVER=0, never for a command that did not plan (a cache hit, a bad spec), and never a
second one. Each test runs in a runtime folder of its own and stops what was started.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import EXAMPLE_DIR, cli_env, pipeline_script
from planning_server import wait_for

from pipeline import server_files

pytestmark = pytest.mark.skipif(not server_files.supported(), reason="the planning server needs fork and Unix sockets")

SPEC = EXAMPLE_DIR / "pipeline.yaml"
PLAN = ("plan", str(SPEC), "--cloud", "aws", "--format", "json")


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[dict[str, str]]:
    """An environment as a user's shell has it (no PIPELINE_SERVER, no CI), with a runtime folder of its own."""
    folder = Path(os.path.realpath(__import__("tempfile").mkdtemp(prefix="od-", dir="/tmp")))
    env = {k: v for k, v in cli_env().items() if k not in ("PIPELINE_SERVER", "PIPELINE_SERVER_SOCKET", "CI")}
    env.update({"XDG_RUNTIME_DIR": str(folder), "PIPELINE_CACHE_DIR": str(tmp_path / "cache")})
    yield env
    subprocess.run([pipeline_script(), "server", "stop"], env=env, capture_output=True, timeout=600, check=False)
    for pid in _servers(folder):
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(folder, ignore_errors=True)


def _servers(folder: Path | str) -> list[int]:
    wanted = f"XDG_RUNTIME_DIR={folder}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"pipeline.plan_server" in (entry / "cmdline").read_bytes() and wanted in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _run(env: dict[str, str], *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([pipeline_script(), *args], env={**env, **extra}, capture_output=True, text=True, timeout=600, check=False)


def _log(env: dict[str, str]) -> str:
    logs = list(Path(env["XDG_RUNTIME_DIR"]).glob("pipeline-deployer-*/planner-*.log"))
    return logs[0].read_text() if logs else ""


def test_a_miss_starts_a_server_that_answers_the_next_commands(runtime: dict[str, str]) -> None:
    first = _run(runtime, *PLAN, "--no-cache")
    assert first.returncode == 0, first.stderr
    assert first.stderr == "", "starting a server on demand must not say anything"
    assert len(_servers(runtime["XDG_RUNTIME_DIR"])) == 1, "no server was started on the way out"
    started = _run(runtime, "server", "start")  # waits for the one warming up; never a second one
    assert started.returncode == 0 and "running" in started.stdout, started.stdout + started.stderr
    status = _run(runtime, "server", "status")
    assert status.returncode == 0 and status.stdout.startswith("running"), status.stdout
    second = _run(runtime, *PLAN, "--no-cache")
    assert "-> child" in _log(runtime), "the second command was not answered by the server"
    assert (second.returncode, second.stdout, second.stderr) == (first.returncode, first.stdout, first.stderr)
    third = _run(runtime, "compare", str(SPEC), "--stack", "dev", "--no-cache")
    local = _run(runtime, "compare", str(SPEC), "--stack", "dev", "--no-cache", PIPELINE_SERVER="0")
    assert (third.returncode, third.stdout, third.stderr) == (local.returncode, local.stdout, local.stderr)
    assert len(_servers(runtime["XDG_RUNTIME_DIR"])) == 1
    assert _run(runtime, "server", "stop").stdout.strip() == "stopped"
    assert not _servers(runtime["XDG_RUNTIME_DIR"])


@pytest.mark.parametrize("setting", [{"CI": "true"}, {"PIPELINE_SERVER": "0"}, {"PIPELINE_SERVER": "off", "CI": "1"}],
                         ids=["ci", "opted-out", "both"])
def test_never_in_ci_or_when_opted_out(runtime: dict[str, str], setting: dict[str, str]) -> None:
    result = _run(runtime, *PLAN, "--no-cache", **setting)
    assert result.returncode == 0, result.stderr
    assert not _servers(runtime["XDG_RUNTIME_DIR"])
    assert _run(runtime, "server", "status", **setting).returncode == 1


def test_ci_may_ask_for_one(runtime: dict[str, str]) -> None:
    assert _run(runtime, *PLAN, "--no-cache", CI="true", PIPELINE_SERVER="1").returncode == 0
    assert len(_servers(runtime["XDG_RUNTIME_DIR"])) == 1


def test_commands_that_did_not_plan_start_nothing(runtime: dict[str, str], tmp_path: Path) -> None:
    assert _run(runtime, *PLAN, PIPELINE_SERVER="0").returncode == 0  # fills the cache
    hit = _run(runtime, *PLAN)
    assert hit.returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nstages: 5\n")
    assert _run(runtime, "plan", str(bad), "--cloud", "aws").returncode == 2
    assert _run(runtime, "validate", str(SPEC)).returncode == 0
    assert _run(runtime, "plan", str(SPEC), "--help").returncode == 0
    assert not _servers(runtime["XDG_RUNTIME_DIR"]), "a command that did not plan started a server"


def test_many_misses_at_once_start_one_server(runtime: dict[str, str]) -> None:
    runs = [subprocess.Popen([pipeline_script(), *PLAN, "--no-cache"], env=runtime, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for _ in range(3)]
    assert all(process.wait(timeout=600) == 0 for process in runs)
    assert _run(runtime, "server", "start").returncode == 0  # waits until the winner answers
    wait_for(lambda: len(_servers(runtime["XDG_RUNTIME_DIR"])) == 1, "the servers that lost the race to exit")
