"""Issue 19, item 1: another local user squats the planning server's predictable place.

With `XDG_RUNTIME_DIR` unset the socket lives in the temp folder under a name anyone can compute.
Another user (a real other uid here: the tests run as root and the attacker drops to 65534) makes
that folder first, or plants a socket, or listens behind a socket that looks like ours. The
console script must send nothing there (not its environment with cloud keys, not its terminal),
say why, plan in its own process and print the true plan; `server start` must refuse.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import EXAMPLE_DIR, cli_env, pipeline_script
from faults import OTHER_UID, need_root, other_user, remove, shared_folder
from planning_server import wait_for

from pipeline import server_files

pytestmark = pytest.mark.skipif(not server_files.supported(), reason="the planning server needs fork and Unix sockets")

SPEC = EXAMPLE_DIR / "pipeline.yaml"
SECRET = "AKIA-NOT-FOR-OTHER-USERS"
ATTACKER_PYTHON = "/usr/bin/python3"

# A fake server run by the other user: it records whatever arrives, writes a forged plan into any
# descriptors it is handed and claims success.
_FAKE_SERVER = r"""
import os, socket, sys
import selectors
folder, names, mode, log = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3], 8), sys.argv[4]
os.makedirs(folder, exist_ok=True)
os.chmod(folder, mode)
selector = selectors.DefaultSelector()
for name in names:  # the name this installation uses, and the one older versions used
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path = os.path.join(folder, name)
    listener.bind(path)
    os.chmod(path, 0o777)
    listener.listen(8)
    selector.register(listener, selectors.EVENT_READ)
open(log + ".ready", "w").close()
while True:
    key, _ = selector.select()[0]
    connection, _ = key.fileobj.accept()
    with connection:
        received, fds = b"", []
        connection.settimeout(5)
        try:
            while True:
                data, more, _, _ = socket.recv_fds(connection, 65536, 8)
                fds += more
                if not data:
                    break
                received += data
                if len(received) >= 4 and len(received) >= 4 + int.from_bytes(received[:4], "big"):
                    break
        except OSError:
            pass
        with open(log, "ab") as out:
            out.write(b"CONNECTION " + str(len(received)).encode() + b"\n" + received + b"\n")
        for fd in fds:
            try:
                os.write(fd, b"FORGED PLAN\n")
            except OSError:
                pass  # the caller's stdin
            os.close(fd)  # holding the caller's pipes open would leave whoever reads them waiting
        try:
            connection.sendall(b"accepted 1\nexit 0\n")
        except OSError:
            pass
"""


@dataclass
class Squat:
    base: Path  # the shared temp folder (TMPDIR of the victim)
    folder: Path  # where the victim's server would live
    socket_name: str
    log: Path  # what the fake server received
    env: dict[str, str]


@pytest.fixture
def shared() -> Iterator[Path]:
    need_root()
    if not os.access(ATTACKER_PYTHON, os.X_OK):
        pytest.skip(f"{ATTACKER_PYTHON} is needed for the other user's fake server")
    base = shared_folder()
    yield base
    remove(base)


def _victim_env(base: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in cli_env().items() if k not in ("XDG_RUNTIME_DIR", "PIPELINE_SERVER_SOCKET")}
    return {**env, "TMPDIR": str(base), "PIPELINE_SERVER": "1", "PIPELINE_NO_CACHE": "1", "AWS_SECRET_ACCESS_KEY": SECRET, **extra}


def _place(env: dict[str, str]) -> server_files.Place:
    """Where the console script with this environment looks for its server."""
    import sys

    code = "from pipeline import server_files as s; p = s.place(); print(p.folder); print(p.socket.name)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split("\n")
    folder = Path(out[0])
    return server_files.Place(folder, folder / out[1], folder / "lock", folder / "log")


def _fake_server(folder: Path, name: str, mode: str, log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    os.chown(log.parent, OTHER_UID, OTHER_UID)
    process = subprocess.Popen([ATTACKER_PYTHON, "-c", _FAKE_SERVER, str(folder), name, mode, str(log)], preexec_fn=other_user(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: Path(str(log) + ".ready").exists() or process.poll() is not None, "the other user's fake server")
    assert process.poll() is None, "the fake server did not start"
    return process


def _plan(env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([pipeline_script(), "plan", str(SPEC), "--cloud", "aws", "--format", "json", *extra], env=env,
                          capture_output=True, text=True, timeout=600, check=False)


def _truth(env: dict[str, str]) -> str:
    result = _plan({**env, "PIPELINE_SERVER": "0"})
    assert result.returncode == 0, result.stderr
    return result.stdout


def _assert_refused(result: subprocess.CompletedProcess[str], truth: str, log: Path, uid_shown: bool = True) -> None:
    assert result.returncode == 0, result.stderr
    assert result.stdout == truth, "the plan did not come from this process"
    assert "FORGED" not in result.stdout + result.stderr
    assert "not using the planning server" in result.stderr and "planning in this process" in result.stderr
    if uid_shown:
        assert str(OTHER_UID) in result.stderr
    received = log.read_bytes() if log.exists() else b""
    assert SECRET.encode() not in received and b'"argv"' not in received, "the request reached the other user"


@pytest.mark.parametrize("mode", ["0700", "0777"])
def test_a_folder_made_first_by_another_user_is_never_used(shared: Path, tmp_path: Path, mode: str) -> None:
    env = _victim_env(shared)
    place = _place(env)
    log = shared / "attacker" / "received"
    fake = _fake_server(place.folder, f"{place.socket.name},planner.sock", mode, log)
    try:
        _assert_refused(_plan(env), _truth(env), log)
        assert not log.exists(), "the console script connected to another user's socket"
        # and it starts no server of its own there, nor writes anything into that folder
        before = sorted(os.listdir(place.folder))
        start = subprocess.run([pipeline_script(), "server", "start"], env=env, capture_output=True, text=True, timeout=600, check=False)
        assert start.returncode == 1 and str(place.folder) in start.stderr and str(OTHER_UID) in start.stderr, start.stderr
        auto = _plan({**env, "PIPELINE_SERVER": "auto"})  # a miss that would start a server on demand
        assert auto.returncode == 0 and "not using the planning server" in auto.stderr
        assert sorted(os.listdir(place.folder)) == before
    finally:
        fake.kill()


def test_a_symlinked_folder_is_never_followed(shared: Path) -> None:
    env = _victim_env(shared)
    place = _place(env)
    target = shared / "elsewhere"
    log = shared / "attacker" / "received"
    fake = _fake_server(target, f"{place.socket.name},planner.sock", "0777", log)
    try:
        subprocess.run(["ln", "-s", str(target), str(place.folder)], preexec_fn=other_user(), check=True)
        _assert_refused(_plan(env), _truth(env), log, uid_shown=False)
        assert not log.exists()
    finally:
        fake.kill()


def _move_in(socket_path: Path, place: server_files.Place, owner: int) -> None:
    """Put the other user's listening socket where ours would be, in our own private folder."""
    place.folder.mkdir(mode=0o700, exist_ok=True)
    shutil.move(str(socket_path), str(place.socket))
    os.lchown(place.socket, owner, owner)
    os.chmod(place.socket, 0o600)


def test_a_socket_of_another_user_in_our_folder_is_never_used(shared: Path) -> None:
    env = _victim_env(shared)
    place = _place(env)
    log = shared / "attacker" / "received"
    theirs = shared / "theirs"
    fake = _fake_server(theirs, "planner.sock", "0777", log)
    try:
        _move_in(theirs / "planner.sock", place, OTHER_UID)
        _assert_refused(_plan(env), _truth(env), log)
        assert not log.exists()
    finally:
        fake.kill()


def test_a_process_of_another_user_behind_a_socket_that_looks_like_ours_gets_nothing(shared: Path) -> None:
    """The folder and the socket are ours and private, but another user listens behind it: the
    peer's uid (SO_PEERCRED) is checked after connecting and before a byte is sent."""
    env = _victim_env(shared)
    place = _place(env)
    log = shared / "attacker" / "received"
    theirs = shared / "theirs"
    fake = _fake_server(theirs, "planner.sock", "0777", log)
    try:
        _move_in(theirs / "planner.sock", place, 0)
        _assert_refused(_plan(env), _truth(env), log)
        wait_for(lambda: log.exists(), "the fake server to note the connection")
        assert log.read_bytes().startswith(b"CONNECTION 0\n"), "bytes reached the other user's process"
    finally:
        fake.kill()
