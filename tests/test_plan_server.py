"""The warm planning server, through the real console script: the same bytes and exit codes as a
command run in its own process; start, stop and status; and the faults of issue 19 (malformed
requests, the caller's umask and streams, a caller that dies, another installation, code in the
working folder, a busy server, concurrent starts)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import EXAMPLE_DIR, pipeline_script
from planning_server import Server, alive, environment, many_stages, processes_of, short_folder, started, stop, wait_for

from pipeline import server_files

pytestmark = pytest.mark.skipif(not server_files.supported(), reason="the planning server needs fork and Unix sockets")

SPEC = EXAMPLE_DIR / "pipeline.yaml"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with started() as running:
        yield running


def _local(server: Server, *args: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
    return server.run(*args, PIPELINE_SERVER="0", **env)


@pytest.mark.parametrize("args", [
    ["compare", str(SPEC), "--stack", "dev"],
    ["plan", str(SPEC), "--cloud", "azure", "--format", "json"],
    ["compare", str(SPEC), "--stack", "nope"],  # a bad stack: exit 2 and the same message
    ["plan", "/dev/zero", "--cloud", "aws"],  # issue 19, item 16: refused before reading, here too
], ids=["compare", "plan-json", "bad-stack", "dev-zero"])
def test_the_server_answers_like_a_fresh_process(server: Server, args: list[str]) -> None:
    before = len(server.served())
    remote = server.run(*args)
    local = _local(server, *args)
    assert (remote.returncode, remote.stdout, remote.stderr) == (local.returncode, local.stdout, local.stderr)
    assert len(server.served()) == before + 1, "the command did not go through the server"


def test_stdout_and_stderr_interleave_as_the_callers_interpreter_would(server: Server, tmp_path: Path) -> None:
    """The child rebuilds its streams as the caller had them: the server may run unbuffered
    (PYTHONUNBUFFERED in its environment) while this caller is block-buffered, or the other way."""
    args = [pipeline_script(), "plan", str(SPEC), "--cloud", "gcp", "--format", "scan"]
    for unbuffered in ("1", ""):
        env = {k: v for k, v in server.env.items() if k != "PYTHONUNBUFFERED"} | ({"PYTHONUNBUFFERED": unbuffered} if unbuffered else {})
        remote = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, timeout=600, check=False)
        local = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**env, "PIPELINE_SERVER": "0"}, timeout=600, check=False)
        assert remote.stdout == local.stdout, f"PYTHONUNBUFFERED={unbuffered!r}"


def test_commands_that_are_not_plans_run_here(server: Server) -> None:
    before = len(server.served())
    assert server.run("validate", SPEC).returncode == 0
    assert server.run("compare", "--help").returncode == 0
    assert len(server.served()) == before


def test_the_callers_umask_decides_the_modes_of_what_a_command_writes(server: Server, tmp_path: Path) -> None:
    """Issue 19, item 8: 0644 instead of 0600 under `umask 077`."""
    modes = {}
    for mode in ("1", "0"):
        target = tmp_path / f"plan-{mode}.json"
        result = subprocess.run(["sh", "-c", f'umask 077 && exec "{pipeline_script()}" plan "{SPEC}" --cloud aws --format json -o "{target}"'],
                                env={**server.env, "PIPELINE_SERVER": mode}, capture_output=True, text=True, timeout=600, check=False)
        assert result.returncode == 0, result.stderr
        modes[mode] = stat.S_IMODE(target.stat().st_mode)
    assert modes == {"1": 0o600, "0": 0o600}


def _raw(server: Server, payload: bytes, descriptors: list[int] | None = None, keep_open: bool = False) -> socket.socket | str:
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.connect(str(server.socket))
    if descriptors:
        socket.send_fds(connection, [payload[:1]], descriptors)
        payload = payload[1:]
    connection.sendall(payload)
    if keep_open:
        return connection
    with connection:
        connection.settimeout(30)
        try:
            connection.shutdown(socket.SHUT_WR)
            return connection.makefile("rb").read().decode(errors="replace")
        except ConnectionResetError:  # closed on us with our bytes unread: refused
            return ""


def _framed(body: bytes) -> bytes:
    return struct.pack("!I", len(body)) + body


_RUN = {"protocol": 2, "kind": "run", "argv": ["plan", str(SPEC)], "argv0": "pipeline", "cwd": "/", "env": {}, "umask": 0o22,
        "installation": "x", "fingerprint": "x", "settings": {}, "stdio": [None, None, None], "limits": {}, "nice": 0}


@pytest.mark.parametrize("payload", [
    _framed(b"not json"),
    _framed(b"[1, 2, 3]"),
    _framed(b"5"),
    _framed(b'"a string"'),
    _framed(b"null"),
    _framed(json.dumps({"protocol": 2}).encode()),
    _framed(json.dumps({"protocol": 2, "kind": "run"}).encode()),
    _framed(json.dumps({k: v for k, v in _RUN.items() if k != "argv"}).encode()),
    _framed(json.dumps({**_RUN, "argv": "plan"}).encode()),
    _framed(json.dumps({**_RUN, "argv": [1, 2]}).encode()),
    _framed(json.dumps({**_RUN, "env": ["A=1"]}).encode()),
    _framed(json.dumps({**_RUN, "cwd": "relative"}).encode()),
    _framed(json.dumps({**_RUN, "umask": "077"}).encode()),
    _framed(json.dumps({**_RUN, "stdio": "tty"}).encode()),
    _framed(json.dumps({**_RUN, "limits": {"RLIMIT_NOPE": 1}}).encode()),
    _framed(json.dumps({**_RUN, "protocol": 1, "argv": ["plan"]}).encode()),
    _framed(json.dumps(_RUN).encode()),  # well formed, but no descriptors and another installation
    _framed(b"\xff\xfe\x00"),
    struct.pack("!I", 2**31) + b"{}",
    struct.pack("!I", 100) + b"{}",  # shorter than it says, then gone
    b"\x00\x00",
    b"",
], ids=["not-json", "array", "number", "string", "null", "no-kind", "run-nothing-else", "no-argv", "argv-string", "argv-numbers", "env-list",
        "cwd-relative", "umask-string", "stdio-string", "unknown-limit", "old-protocol", "not-ours", "binary", "huge-length", "short", "half-header",
        "nothing"])
def test_malformed_requests_are_refused_and_the_server_goes_on(server: Server, payload: bytes) -> None:
    """Issue 19, item 7: a request that is not an object, or lacks argv, killed the server."""
    answer = _raw(server, payload)
    assert not answer.startswith(("accepted", "exit")), answer
    status = server.run("server", "status")
    assert status.returncode == 0 and status.stdout.startswith("running"), status.stdout
    assert server.run("plan", SPEC, "--cloud", "aws").returncode == 0


def test_descriptors_beyond_three_are_refused(server: Server, tmp_path: Path) -> None:
    files = [os.open(tmp_path / f"f{i}", os.O_CREAT | os.O_RDWR) for i in range(5)]
    try:
        answer = _raw(server, _framed(json.dumps(_RUN).encode()), descriptors=files)
    finally:
        for fd in files:
            os.close(fd)
    assert answer.startswith(("refused", "declined")) or answer == "", answer
    assert server.run("server", "status").returncode == 0


def test_a_client_that_holds_the_server_busy_does_not_hide_it(server: Server) -> None:
    """Issue 19, item 19: `server status` said none was running while a client held the server."""
    held = [_raw(server, b"\x00\x00\x01", keep_open=True) for _ in range(3)]
    try:
        status = server.run("server", "status")
        assert status.returncode == 0 and status.stdout.startswith("running"), status.stdout
        result = server.run("plan", SPEC, "--cloud", "gcp", "--format", "json")
        assert result.returncode == 0 and result.stdout == _local(server, "plan", SPEC, "--cloud", "gcp", "--format", "json").stdout
    finally:
        for connection in held:
            assert isinstance(connection, socket.socket)
            connection.close()


def test_concurrent_starts_leave_exactly_one_server() -> None:
    """Issue 19, item 19: two concurrent `server start` left an orphan server."""
    folder = short_folder()
    one = Server(folder, environment(folder))
    try:
        starts = [subprocess.Popen([pipeline_script(), "server", "start", "--idle-minutes", "5"], env=one.env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True) for _ in range(3)]
        outputs = [process.communicate(timeout=600) for process in starts]
        assert all(process.returncode == 0 for process in starts), outputs
        pids = {out.split("running ", 1)[1].split()[0] for out, _ in outputs}
        assert len(pids) == 1, outputs
        wait_for(lambda: len(processes_of(one)) == 1, "the servers that lost the race to exit")
        assert processes_of(one) == [int(next(iter(pids)))]
    finally:
        stop(one)
    wait_for(lambda: not processes_of(one), "the server to stop")


def test_stop_and_status() -> None:
    with started() as server:
        assert server.run("server", "status").returncode == 0
        assert "already running" in server.run("server", "start").stdout
        assert server.run("server", "stop").stdout.strip() == "stopped"
        status = server.run("server", "status")
        assert status.returncode == 1 and "no planning server" in status.stdout
        assert not server.socket.exists()
        assert not processes_of(server)
        # With no server the console script plans by itself.
        assert server.run("plan", SPEC, "--cloud", "gcp", "--format", "json").returncode == 0


# ---- the caller's process is the command's life ---------------------------------------------------------

def _slow_command(tmp_path: Path) -> tuple[list[str], Path]:
    spec = many_stages(tmp_path / "slow")
    target = tmp_path / "report.md"
    return [pipeline_script(), "compare", str(spec), "--format", "markdown", "-o", str(target)], target


def _child_of(server: Server, before: int) -> int:
    wait_for(lambda: len(server.served()) > before, "the server to take the command")
    return int(server.served()[before].rsplit(" ", 1)[1])


@pytest.mark.parametrize("how", ["SIGTERM", "SIGHUP", "SIGKILL", "timeout"])
def test_a_command_dies_with_its_caller(server: Server, tmp_path: Path, how: str) -> None:
    """Issue 19, item 9: killing the client left the child running, writing files after the caller gave up."""
    command, target = _slow_command(tmp_path)
    before = len(server.served())
    if how == "timeout":  # coreutils' timeout sends SIGTERM to the command it runs; started once the server has the command
        caller = subprocess.Popen(["timeout", "--signal=TERM", "600", *command], env=server.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        child = _child_of(server, before)
        timeout_child = int(Path(f"/proc/{caller.pid}/task/{caller.pid}/children").read_text().split()[0])
        os.kill(timeout_child, signal.SIGTERM)
    else:
        caller = subprocess.Popen(command, env=server.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        child = _child_of(server, before)
        os.kill(caller.pid, getattr(signal, how))
    caller.wait(timeout=600)
    wait_for(lambda: not alive(child), f"child {child} to die with its caller")
    assert not target.exists(), "the command wrote its output after its caller was gone"


def _group(pgid: int) -> list[int]:
    """Live processes of a process group (read from /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def test_workers_of_a_command_die_with_its_caller(server: Server, tmp_path: Path) -> None:
    """`compare --jobs 3` plans in worker processes: they go too, and write nothing."""
    command, target = _slow_command(tmp_path)
    before = len(server.served())
    caller = subprocess.Popen([*command, "--jobs", "3"], env=server.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    child = _child_of(server, before)
    wait_for(lambda: len(_group(child)) > 1, "the command's workers to start")
    os.kill(caller.pid, signal.SIGTERM)
    caller.wait(timeout=600)
    wait_for(lambda: not _group(child), "the command and its workers to die")
    assert not target.exists()


def test_ctrl_c_interrupts_the_command_as_in_process(server: Server, tmp_path: Path) -> None:
    command, target = _slow_command(tmp_path)
    before = len(server.served())
    caller = subprocess.Popen(command, env=server.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    child = _child_of(server, before)
    caller.send_signal(signal.SIGINT)
    _, err = caller.communicate(timeout=600)
    assert caller.returncode == 130, err  # as in-process (which says "interrupted" or not, depending on where Ctrl-C lands)
    assert "Traceback" not in err
    wait_for(lambda: not alive(child), "the child to end")
    assert not target.exists()


# ---- what the server runs, and for whom -----------------------------------------------------------------

_HIJACK = """
import os
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "HIJACKED"), "a") as marker:
    marker.write(f"{os.getpid()}\\n")
raise ImportError("a module planted in the working folder ran")
"""


def test_modules_in_the_working_folder_never_run_in_the_server(tmp_path: Path) -> None:
    """Issue 19, item 2: `server start` ran `python -m`, which puts the working folder first on sys.path."""
    planted = tmp_path / "planted"
    planted.mkdir()
    for name in ("typer", "pydantic", "yaml", "pulumi", "rich"):
        (planted / f"{name}.py").write_text(_HIJACK)
    with started(cwd=planted) as server:
        result = server.run("plan", SPEC, "--cloud", "aws", "--format", "json", cwd=planted)
        assert result.returncode == 0, result.stderr
        assert len(server.served()) == 1
        assert not (planted / "HIJACKED").exists(), "a module from the working folder ran in the server"


def _other_checkout(tmp_path: Path) -> Path:
    """A copy of the tool's code elsewhere (another checkout) whose plans say so on stderr."""
    root = tmp_path / "other-checkout"
    shutil.copytree(Path(server_files.__file__).parent, root / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    app = root / "pipeline" / "cli" / "app.py"
    app.write_text(app.read_text().replace('    """Show exactly what would be created on a cloud: offline, no credentials, no Pulumi CLI."""',
                                           '    """Show exactly what would be created on a cloud: offline, no credentials, no Pulumi CLI."""\n'
                                           '    print("OTHER CHECKOUT", file=sys.stderr)', 1))
    return root


def test_a_server_of_another_installation_never_answers(tmp_path: Path) -> None:
    """Issue 19, item 10: the socket belonged to the uid, so a server started from another venv or
    checkout answered this installation's commands with its own code."""
    other = _other_checkout(tmp_path)
    args = ("plan", str(SPEC), "--cloud", "aws", "--format", "json")
    with started(PYTHONPATH=str(other)) as server:  # a server of the other checkout, on the socket this caller uses
        here = server.run(*args, PYTHONPATH="")
        assert here.returncode == 0 and "OTHER CHECKOUT" not in here.stderr
        assert here.stdout == _local(server, *args, PYTHONPATH="").stdout
        assert not server.served() and "another installation" in server.log_text()
        there = server.run(*args)  # the other checkout's own client is served
        assert there.returncode == 0 and "OTHER CHECKOUT" in there.stderr and len(server.served()) == 1
    # Without PIPELINE_SERVER_SOCKET, each installation has a socket of its own.
    default_env = {k: v for k, v in environment(short_folder()).items() if k != "PIPELINE_SERVER_SOCKET"}
    runtime = short_folder()
    default_env["XDG_RUNTIME_DIR"] = str(runtime)
    mine = subprocess.run([sys.executable, "-c", "from pipeline import server_files; print(server_files.place().socket)"],
                          env=default_env, capture_output=True, text=True, check=True).stdout
    theirs = subprocess.run([sys.executable, "-c", "from pipeline import server_files; print(server_files.place().socket)"],
                            env={**default_env, "PYTHONPATH": str(other)}, capture_output=True, text=True, check=True).stdout
    assert mine != theirs and mine.startswith(str(runtime)) and theirs.startswith(str(runtime))


def test_changed_code_or_distributions_stop_the_server(tmp_path: Path) -> None:
    """The fingerprint covers every distribution on the import path: a new one makes the server
    stale. It declines (the command plans by itself), stops, and the command starts a server of the
    new code on its way out, which answers from then on."""
    site = tmp_path / "site"
    site.mkdir()
    with started(PYTHONPATH=str(site)) as server:
        stale = server.pid()
        (site / "newly_installed-1.0.dist-info").mkdir()
        args = ["plan", str(SPEC), "--cloud", "aws", "--format", "json"]
        result = server.run(*args)
        assert result.returncode == 0, result.stderr
        assert result.stdout == _local(server, *args).stdout
        assert not server.served()
        wait_for(lambda: "changed: stopping" in server.log_text(), "the stale server to stop")
        wait_for(lambda: stale is not None and not alive(stale), "the stale server to be gone")
        again = server.run("server", "start")  # the one the command started on its way out, or a new one
        assert again.returncode == 0 and f"running {stale} " not in again.stdout, again.stdout
        assert server.run(*args).stdout == result.stdout and len(server.served()) == 1
