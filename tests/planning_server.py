"""Starting, reading and stopping planning servers in tests, through the real console script.

Every server lives in a short folder of its own (`PIPELINE_SERVER_SOCKET`: a socket path must stay
under ~100 bytes), and every test stops what it started, so no server outlives the test run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from conftest import cli_env, pipeline_script

# How long a poll for something the server does in the background may go on. These are safety nets
# against a hung test, not timings: every wait below ends as soon as its condition holds.
_POLLS = 3000
_POLL_S = 0.1


@dataclass
class Server:
    folder: Path
    env: dict[str, str]

    @property
    def socket(self) -> Path:
        return Path(self.env["PIPELINE_SERVER_SOCKET"])

    @property
    def log(self) -> Path:
        return self.socket.with_name(self.socket.name + ".log")

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def served(self) -> list[str]:
        return [line for line in self.log_text().splitlines() if "-> child" in line]

    def run(self, *args: str | Path, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        return run(self.env, *args, cwd=cwd, **env)

    def pid(self) -> int | None:
        """The pid the running server wrote into its lock file."""
        lock = self.socket.with_name(self.socket.name + ".lock")
        text = lock.read_text().strip() if lock.exists() else ""
        return int(text) if text.isdigit() else None


def run(env: dict[str, str], *args: str | Path, cwd: Path | None = None, stdin: int | None = subprocess.DEVNULL,
        **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([pipeline_script(), *map(str, args)], capture_output=True, text=True, env={**env, **extra}, cwd=cwd,
                          timeout=600, check=False, stdin=stdin)


def environment(folder: Path, **extra: str) -> dict[str, str]:
    return {**cli_env(), "PIPELINE_SERVER": "1", "PIPELINE_SERVER_SOCKET": str(folder / "planner.sock"), "PIPELINE_NO_CACHE": "1", **extra}


def short_folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="pl-", dir="/tmp"))


@contextmanager
def started(cwd: Path | None = None, **extra: str) -> Iterator[Server]:
    folder = short_folder()
    server = Server(folder, environment(folder, **extra))
    result = server.run("server", "start", "--idle-minutes", "10", cwd=cwd or folder)
    assert result.returncode == 0, result.stdout + result.stderr
    try:
        yield server
    finally:
        stop(server)
        shutil.rmtree(folder, ignore_errors=True)


def stop(server: Server) -> None:
    """Stop it, and make sure no process of it is left (kill what still holds its socket in its environment)."""
    server.run("server", "stop")
    for pid in processes_of(server):
        os.kill(pid, signal.SIGKILL)


def processes_of(server: Server) -> list[int]:
    """Server processes started with this server's socket (read from /proc)."""
    found = []
    wanted = f"PIPELINE_SERVER_SOCKET={server.socket}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if b"pipeline.plan_server" in command and wanted in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def wait_for(condition: object, what: str) -> None:
    """Poll `condition()` until it is true; fail (never hang) after a generous number of polls."""
    for _ in range(_POLLS):
        if condition():  # type: ignore[operator]
            return
        time.sleep(_POLL_S)
    raise AssertionError(f"gave up waiting for {what}")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def many_stages(folder: Path, stages: int = 40) -> Path:
    """A spec slow enough to plan that a test can act while it runs (benchmarks/compare.py's shape)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "h.py").write_text("def handle(rows, context):\n    return []\n")
    lines = ["name: slow", "clouds: {gcp: {project: slow-project}}", "stages:", '  - {name: s1, handler: "h.py:handle", trigger: {stream: {}}}']
    lines += [f'  - {{name: s{i}, handler: "h.py:handle", trigger: {{objects: {{from: s{i - 1}}}}}}}' for i in range(2, stages + 1)]
    spec = folder / "pipeline.yaml"
    spec.write_text("\n".join(lines) + "\n")
    return spec
