"""The HTTP side of `pipeline serve`: a standard-library server that answers only what a local development
server should answer, and holds only what it can afford. `serve.py` adds the routes.

Who is answered (as Vite and webpack-dev-server decide it):
- the `Host` must name this machine: `localhost`, a name under `.localhost`, an IP address, or a name
  given with `--allow-host`. A web page whose own name an attacker made resolve to this machine (DNS
  rebinding) sends that name, and is refused before anything is read or done;
- a request a web page on another origin sends is refused: an `Origin` that is not this server's
  (`null` included), or `Sec-Fetch-Site: cross-site|same-site`. A page can POST `text/plain` anywhere
  without a preflight; here it gets 403 and nothing is kept. Tools (curl, scripts) send neither header.

What a connection may hold:
- at most `max_connections` at once (fewer when the file-descriptor limit is low); one more is answered
  503 at once and closed, and a full descriptor table makes the accept loop pause instead of spin;
- the request line and headers must arrive within HEAD_S of the connection (or of the last answer on a
  kept-alive one) and in at most HEAD_BYTES; a body within BODY_S plus one second per MIN_RATE bytes.
  The deadlines are for the whole phase, not per read: a sender trickling a byte at a time is cut off;
- request bodies held at once are at most `budget` bytes: a sender waits for room before its body is
  read (TCP holds the rest back), so twelve senders of 15 MB cost no more than the budget.

Log lines show the sender's text (the request line) with control characters escaped, so a request
cannot write to the operator's terminal.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import ipaddress
import json
import os
import resource
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from pipeline.local.text import printable

MAX_CONNECTIONS = 32
HEAD_S = 10.0  # request line and headers (and the wait for the next request on a kept-alive connection)
HEAD_BYTES = 32 * 1024  # request line and headers together
REQUEST_LINE = 8 * 1024
BODY_S = 10.0  # plus one second per MIN_RATE bytes of the body
MIN_RATE = 1024 * 1024
IO_TIMEOUT_S = 30.0  # any single read or write
DESCRIPTORS_KEPT = 64  # file descriptors left for the runner (workers' pipes, the journal, the store) below the limit


def loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class HostPolicy:
    """Which `Host` and `Origin` values a request may carry (see the module's doc)."""

    def __init__(self, allowed: tuple[str, ...] = ()) -> None:
        self.allowed = {name.lower().rstrip(".") for name in allowed}

    def host_ok(self, name: str | None) -> bool:
        if not name:
            return False
        name = name.lower().rstrip(".")
        if name == "localhost" or name.endswith(".localhost") or name in self.allowed:
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True

    def refusal(self, headers: Any) -> str | None:
        """Why a request is refused, or None."""
        host = headers.get("Host")
        if host is not None:
            try:
                name = urlsplit(f"//{host}").hostname
            except ValueError:
                name = None
            if not self.host_ok(name):
                return (f"Host {printable(host, 100)!r} is not this machine's name: this server answers requests for localhost, "
                        "its IP addresses and the names given with --allow-host")
        origin = headers.get("Origin")
        if origin is not None:
            try:
                parts = urlsplit(origin)
                same = parts.scheme == "http" and host is not None and parts.netloc.lower() == host.lower() and self.host_ok(parts.hostname)
            except ValueError:
                same = False
            if not same:
                return f"requests from web pages of another origin ({printable(origin, 100)}) are refused"
        if headers.get("Sec-Fetch-Site", "").lower() in ("cross-site", "same-site"):
            return "requests from web pages of another site are refused"
        return None


class Budget:
    """Bytes of request bodies held at once: `take` waits for room (or the server stopping)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0
        self.room = threading.Condition()

    @contextlib.contextmanager
    def take(self, size: int, stopping: threading.Event) -> Iterator[bool]:
        with self.room:
            while self.used + size > self.limit and not stopping.is_set():
                self.room.wait(0.5)
            got = not stopping.is_set()
            if got:
                self.used += size
        try:
            yield got
        finally:
            if got:
                with self.room:
                    self.used -= size
                    self.room.notify_all()


class _Connection:
    """One connection: its socket and the moment its current phase must be over (None: no deadline)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.deadline: float | None = None
        self.expired = False
        self.thread: threading.Thread | None = None

    def phase(self, seconds: float | None) -> None:
        self.deadline = None if seconds is None else time.monotonic() + seconds

    def cut(self) -> None:
        """End the connection from another thread: a read it is blocked in returns at once."""
        self.expired = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)


def return_large_blocks() -> None:
    """Have glibc's malloc give blocks of 1 MiB and more back to the system when they are freed. By default
    it raises that threshold to the size of the last large block freed and then keeps such blocks in each
    thread's arena: a server that read a dozen large bodies in a dozen threads would keep the memory of all
    of them long after the budget let them go. Elsewhere (another C library) nothing is done."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(-3, 1024 * 1024)  # M_MMAP_THRESHOLD


def connection_limit(wanted: int = MAX_CONNECTIONS) -> int:
    """`wanted`, or fewer so that the connections and the runner fit under the file-descriptor limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = DESCRIPTORS_KEPT
    return max(1, min(wanted, soft - in_use - DESCRIPTORS_KEPT))


class GuardedServer(ThreadingHTTPServer):
    """A thread per connection, bounded as the module's doc says; IPv4 or IPv6 as the address asks."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[GuardedHandler], policy: HostPolicy, budget: Budget,
                 log: Callable[[str], None]) -> None:
        infos = socket.getaddrinfo(address[0], address[1], type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        self.address_family = infos[0][0]
        self.policy, self.budget, self.log = policy, budget, log
        self.stopping = threading.Event()
        self.max_connections = MAX_CONNECTIONS
        self.connections: dict[int, _Connection] = {}
        self.lock = threading.Lock()
        super().__init__((str(infos[0][4][0]), int(infos[0][4][1])), handler)
        threading.Thread(target=self._reap, name="pipeline-http-deadlines", daemon=True).start()

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # `::` takes IPv4 too, like `0.0.0.0`
        super().server_bind()

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            return super().get_request()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                time.sleep(0.1)  # no descriptor for it now: the listening socket stays readable, so do not spin
            raise

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.lock:
            full = len(self.connections) >= self.max_connections
            if not full:
                connection = _Connection(request)
                self.connections[id(request)] = connection
                connection.phase(HEAD_S)
        if full:
            self._refuse(request)
            return
        thread = threading.Thread(target=self.process_request_thread, args=(request, client_address), daemon=True)
        connection.thread = thread
        thread.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.lock:
                self.connections.pop(id(request), None)

    def connection(self, request: Any) -> _Connection:
        with self.lock:
            return self.connections[id(request)]

    def _refuse(self, request: socket.socket) -> None:
        body = json.dumps({"error": f"this server has {self.max_connections} connections open; send the request again shortly"}).encode()
        head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Retry-After: 1\r\nConnection: close\r\n\r\n").encode()
        with contextlib.suppress(OSError):
            request.settimeout(0.5)
            request.sendall(head + body)
        self.shutdown_request(request)
        self.log(f"connection refused: {self.max_connections} connections are open")

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that broke (the sender went away, a deadline cut it): one line, never a traceback."""
        import sys

        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)) or (isinstance(error, OSError) and self.stopping.is_set()):
            return
        self.log(f"a request from {client_address[0]} failed: {type(error).__name__}: {printable(str(error), 300)}")

    def _reap(self) -> None:
        while True:
            time.sleep(0.25)
            now = time.monotonic()
            with self.lock:
                late = [c for c in self.connections.values() if c.deadline is not None and now > c.deadline and not c.expired]
            for connection in late:
                connection.cut()

    def close_all(self, patience: float) -> None:
        """On the way out: connections not waiting for an answer are cut at once; the rest get `patience` seconds
        to write theirs (an answer saying what was kept must reach its sender)."""
        with self.lock:
            connections = list(self.connections.values())
        end = time.monotonic() + patience
        for connection in connections:
            if connection.deadline is not None:
                connection.cut()
        for connection in connections:
            if connection.thread is not None:
                connection.thread.join(max(0.0, end - time.monotonic()))
            connection.cut()


class _HeadReader:
    """The connection's reader, counting what the request line and headers take (at most HEAD_BYTES) and
    noting whether the headers ended with their blank line (not with the connection)."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.left = HEAD_BYTES
        self.last = b""

    def readline(self, size: int = -1) -> bytes:
        if self.left <= 0:
            raise http.client.LineTooLong(f"request line and headers longer than {HEAD_BYTES:,} bytes")
        line = self.raw.readline(self.left + 1 if size < 0 else min(size, self.left + 1))
        self.left -= len(line)
        self.last = line
        return line

    def read(self, size: int = -1) -> bytes:
        return self.raw.read(size)

    def close(self) -> None:
        self.raw.close()


class GuardedHandler(BaseHTTPRequestHandler):
    """Requests as the module's doc bounds them; `serve.py` adds the `do_*` methods."""

    server: GuardedServer
    server_version = "pipeline-serve"
    protocol_version = "HTTP/1.1"
    timeout = IO_TIMEOUT_S

    def setup(self) -> None:
        super().setup()
        self.state = self.server.connection(self.request)
        self.head = _HeadReader(self.rfile)  # type: ignore[arg-type]
        self.rfile = self.head  # type: ignore[assignment]

    def handle(self) -> None:
        self.close_connection = True
        self.handle_one_request()
        while not self.close_connection and not self.state.expired and not self.server.stopping.is_set():
            self.state.phase(HEAD_S)
            self.handle_one_request()

    def handle_one_request(self) -> None:
        self.head.left, self.command, self.path = HEAD_BYTES, "", ""
        try:
            self.raw_requestline = self.head.readline(REQUEST_LINE + 1)
            if not self.raw_requestline or self.state.expired:
                self.close_connection = True
                return
            if len(self.raw_requestline) > REQUEST_LINE:
                self.requestline = self.request_version = ""
                self.close_connection = True
                self._answer(414, {"error": f"the request line is longer than {REQUEST_LINE:,} bytes"})
                return
            if not self.parse_request():
                return
            if self.state.expired or self.head.last not in (b"\r\n", b"\n"):  # cut off in the headers: not a request
                self.close_connection = True
                return
            self.state.phase(None)
            doubled = [name for name in ("Host", "Content-Length", "Transfer-Encoding", "Origin") if len(self.headers.get_all(name) or ()) > 1]
            if doubled:  # which one would count is a matter of opinion between a proxy and us: take none
                self.close_connection = True
                self._answer(400, {"error": f"the request has more than one {doubled[0]} header"})
                return
            refusal = self.server.policy.refusal(self.headers)
            if refusal is not None:
                self.close_connection = True
                self._answer(403, {"error": refusal})
                return
            method = getattr(self, f"do_{self.command}", None)
            if method is None:
                self.close_connection = True
                self._answer(405, {"error": f"method {printable(self.command, 20)} is not served"}, allow="GET, POST, PUT")
                return
            method()
            self.wfile.flush()
        except TimeoutError:
            self.close_connection = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (a bad request line, headers too long) as JSON answers, logged like any other."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # (a request line it could not read: still answer with a status line)
            self.request_version = "HTTP/1.0"
        self._answer(code, {"error": explain or message or HTTPStatus(code).phrase})

    def log_message(self, format: str, *args: Any) -> None:
        return  # each request is logged once, by _answer, with what it did

    @contextlib.contextmanager
    def body(self, size: int) -> Iterator[bytes | None]:
        """The body (`size` bytes), read once there is room for it in the budget and within its deadline;
        None when the server stopped first. Held against the budget until the block ends."""
        with self.server.budget.take(size, self.server.stopping) as got:
            if not got:
                yield None
                return
            self.state.phase(BODY_S + size / MIN_RATE)
            data = self.head.read(size)  # into one object of its size (the deadline cuts a slow sender off)
            self.state.phase(None)
            if len(data) < size or self.state.expired:
                raise ConnectionError("the body came too slowly" if self.state.expired else "the body ended before its Content-Length")
            yield data

    def drain(self, size: int) -> None:
        """Read and drop `size` bytes of a body that is refused, so the sender can read the answer."""
        self.state.phase(BODY_S + size / MIN_RATE)
        left = size
        while left > 0 and (chunk := self.head.read(min(left, 1 << 20))):
            left -= len(chunk)
        self.state.phase(None)

    def _answer(self, status: int, body: dict[str, Any], allow: str | None = None, detail: str | None = None) -> None:
        data = (json.dumps(body, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Content-Type-Options", "nosniff")
            if allow is not None:
                self.send_header("Allow", allow)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client went away: what was done stays done
            self.close_connection = True
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
        said = detail if detail is not None else str(body.get("error") or "")
        target = urlsplit(self.path).path if self.path else ""
        line = f"{self.command or '-'} {target or '-'} {status} {reason}" + (f": {said}" if said else "")
        self.server.log(printable(line, 500))
