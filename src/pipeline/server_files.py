"""Where the planning server's socket, lock and log live, and the checks that make them trustworthy.

The console script hands a planning server its whole environment (cloud keys, the Pulumi
passphrase) and its terminal, and prints what comes back as the plan. So it talks only to a server
of the same user and of the same installation:

* the folder (`$XDG_RUNTIME_DIR/pipeline-deployer-<uid>`, else the temp folder's, a predictable name
  another user could create first) must be a real folder owned by this user, mode 0700; the
  socket a socket owned by this user, not open to others; and the process listening on it must run
  as this user (`SO_PEERCRED` on Linux, `LOCAL_PEERCRED` on macOS), checked before a byte is sent;
* each installation (interpreter, prefix, where the tool's code is) gets its own socket, lock and
  log (`planner-<id>.sock`), so a server started from another venv or checkout is never asked;
  the request still carries the full fingerprint (`plan_cache.tool_fingerprint`), and a server
  whose code differs declines.

Anything that fails a check raises `UntrustedServerError`, whose message says what is wrong and
what to do; callers then plan in-process.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pipeline

if TYPE_CHECKING:
    import socket

# A Unix socket's path must fit in sun_path (108 bytes on Linux, 104 on macOS), terminator included.
MAX_SOCKET_PATH = 100
PROTOCOL = 2  # of the requests the console script sends and the server reads (`plan_server.parse_request`)
# Soft limits a command runs under, as the caller set them (`ulimit`); the child takes them on.
LIMITS = ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_STACK")


def interpreter_settings() -> dict[str, Any]:
    """What, besides the code, decides how the same command behaves in an interpreter: a server whose
    settings differ from the caller's declines (the caller plans in-process)."""
    import locale

    return {"utf8_mode": sys.flags.utf8_mode, "locale_encoding": locale.getpreferredencoding(False),
            "filesystem_encoding": sys.getfilesystemencoding(), "gid": os.getgid(), "egid": os.getegid(),
            "groups": sorted(os.getgroups())}


def setting() -> str:
    """"off", "on" or "auto" (the default), from PIPELINE_SERVER: 0/false/no/off never use or start a
    server, 1/true/yes/on start one on demand even in CI."""
    value = os.environ.get("PIPELINE_SERVER", "").strip().lower()
    return "off" if value in ("0", "false", "no", "off") else "on" if value in ("1", "true", "yes", "on") else "auto"


def supported() -> bool:
    """POSIX with fork and descriptor passing (the server's modules import POSIX-only ones: ask here first)."""
    import socket

    return os.name == "posix" and hasattr(socket, "send_fds") and hasattr(os, "fork")


class UntrustedServerError(OSError):
    """The server's folder, socket or process is not this user's own, private one."""


@dataclass(frozen=True)
class Place:
    """Where one installation's server lives."""

    folder: Path
    socket: Path
    lock: Path  # held (flock) by the running server from start to exit; holds its pid
    log: Path


def installation_id() -> str:
    """Which installation this is: the interpreter, its prefix and where the tool's code lives."""
    where = os.path.dirname(os.path.realpath(pipeline.__file__))
    text = f"{sys.executable}\0{sys.prefix}\0{where}\0{sys.version}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def place() -> Place:
    """`$PIPELINE_SERVER_SOCKET` (its lock and log beside it), else this installation's files in a
    folder of this user's under the runtime folder, or the temp folder where there is none."""
    if os.environ.get("PIPELINE_SERVER_SOCKET"):
        path = Path(os.environ["PIPELINE_SERVER_SOCKET"])
        return Place(path.parent, path, path.with_name(path.name + ".lock"), path.with_name(path.name + ".log"))
    import tempfile

    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    folder = Path(base) / f"pipeline-deployer-{os.getuid()}"
    name = f"planner-{installation_id()}"
    return Place(folder, folder / f"{name}.sock", folder / f"{name}.lock", folder / f"{name}.log")


def _untrusted(path: Path, what: str) -> UntrustedServerError:
    return UntrustedServerError(errno.EPERM, f"{path} {what}; only a private folder and socket of your own are used "
                                "(remove it, or set XDG_RUNTIME_DIR or PIPELINE_SERVER_SOCKET to a place of yours)")


def check_folder(folder: Path, create: bool = False) -> None:
    """The server's folder must be a real folder (not a symlink) of this user's, mode 0700. With
    `create` (starting a server) it is made if missing, and made private if it is ours but open."""
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, 0o700)
    info = os.lstat(folder)  # FileNotFoundError: no server (yet)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise _untrusted(folder, "is a symlink or not a folder")
    if info.st_uid != os.getuid():
        raise _untrusted(folder, f"belongs to uid {info.st_uid}, not to you (uid {os.getuid()})")
    if stat.S_IMODE(info.st_mode) & 0o077:
        if not create:
            raise _untrusted(folder, f"has mode {stat.S_IMODE(info.st_mode):04o}, open to others (it must be 0700)")
        os.chmod(folder, 0o700, follow_symlinks=False)


def check_socket(path: Path) -> None:
    """The socket must be a socket of this user's that others cannot open."""
    info = os.lstat(path)  # FileNotFoundError: no server
    if not stat.S_ISSOCK(info.st_mode):
        raise _untrusted(path, "is not a socket")
    if info.st_uid != os.getuid():
        raise _untrusted(path, f"belongs to uid {info.st_uid}, not to you (uid {os.getuid()})")
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise _untrusted(path, f"has mode {stat.S_IMODE(info.st_mode):04o}, open to others (it must be 0600)")


def peer_uid(connection: socket.socket) -> int | None:
    """The uid of the process at the other end of a connected Unix socket, or None where the kernel
    cannot tell (then the private folder and socket checks are the guard)."""
    import socket
    import struct

    if hasattr(socket, "SO_PEERCRED"):  # Linux: struct ucred {pid, uid, gid}
        _, uid, _ = struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
        return int(uid)
    option = getattr(socket, "LOCAL_PEERCRED", None)
    if option is not None:  # macOS/BSD: struct xucred {u_int version; uid_t uid; short ngroups; gid_t groups[16]}
        data = connection.getsockopt(0, option, struct.calcsize("IIh16I"))
        return int(struct.unpack_from("II", data)[1])
    return None


def check_peer(connection: socket.socket, path: Path) -> None:
    uid = peer_uid(connection)
    if uid is not None and uid != os.getuid():
        raise _untrusted(path, f"is served by a process of uid {uid}, not yours (uid {os.getuid()})")


def open_private_file(path: Path, flags: int) -> int:
    """A descriptor of a file of this user's in the (checked) server folder: created 0600 if
    missing, never through a symlink, refused if someone else's."""
    descriptor = os.open(path, flags | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o600)
    info = os.fstat(descriptor)
    if info.st_uid != os.getuid() or not stat.S_ISREG(info.st_mode):
        os.close(descriptor)
        raise _untrusted(path, f"belongs to uid {info.st_uid} or is not a regular file")
    return descriptor


def usable(where: Place) -> str | None:
    """Why this place cannot hold a server at all (a socket path too long), else None."""
    if len(os.fsencode(where.socket)) > MAX_SOCKET_PATH:
        return f"the socket path {where.socket} is longer than {MAX_SOCKET_PATH} bytes; set PIPELINE_SERVER_SOCKET to a shorter one"
    return None
