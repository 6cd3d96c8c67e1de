"""`pipeline serve` attacked and faulted as a web page, a slow or greedy client, and a signal would (issue 19,
items 3, 4, 5, 6 and part of 19): each through a real `pipeline serve` subprocess and real sockets (headless
Chromium for the web page)."""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from local_project import jsonl, project
from test_local_run_stacks import SCORING, UPLOADS, copy_stack
from test_local_serve import Server

READING = b'{"device_id": "pump-001", "ts": "2026-11-15T08:00:00Z", "vibration_mm_s": 2.5, "temperature_c": 40.1, "pressure_kpa": 300.0}'


def address(server: Server) -> tuple[str, int]:
    parts = urlsplit(server.url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def send(server: Server, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """One request with exactly these headers (a `Host` given replaces the real one)."""
    host, port = address(server)
    connection = http.client.HTTPConnection(host, port, timeout=120)
    headers = dict(headers or {})
    connection.putrequest(method, path, skip_host="Host" in headers, skip_accept_encoding=True)
    for name, value in {**headers, "Content-Length": str(len(body))}.items():
        connection.putheader(name, value)
    connection.endheaders(body)
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()
    return response.status, answer


def kept_lines(store: Path) -> int:
    stream = store / "_run" / "stream.jsonl"
    return len(stream.read_bytes().splitlines()) if stream.exists() else 0


def test_only_this_machine_and_its_own_origin_are_answered(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    spec = copy_stack(SCORING, tmp_path)
    store = tmp_path / "served"
    server = Server(pipeline_exe, cli_env_vars, spec, "--store", store, "--quiet", "--allow-host", "devbox.lan")
    _, port = address(server)
    try:
        refused = [
            ("POST", "/stream", {"Host": f"rebound.attacker.example:{port}", "Origin": f"http://rebound.attacker.example:{port}"}),  # DNS rebinding
            ("GET", "/", {"Host": f"rebound.attacker.example:{port}"}),  # ... reading the answer
            ("POST", "/stream", {"Host": f"localhost.attacker.example:{port}"}),
            ("POST", "/stream", {"Origin": "https://attacker.example", "Content-Type": "text/plain"}),  # a page's simple POST: no preflight
            ("POST", "/tick", {"Origin": "null"}),  # a sandboxed frame or a file:// page
            ("POST", "/stages/score-api", {"Origin": f"http://localhost:{port + 1}"}),  # another local dev server's page
            ("POST", "/stream", {"Sec-Fetch-Site": "cross-site"}),
            ("POST", "/stream", {"Host": f"127.0.0.1:{port}", "Origin": f"http://127.0.0.1:{port}@attacker.example"}),
        ]
        for method, path, headers in refused:
            status, answer = send(server, method, path, READING if method == "POST" else b"", headers)
            assert status == 403, (headers, answer)
            assert "refused" in answer["error"] or "not this machine's name" in answer["error"], answer
        host, _ = address(server)
        for doubled in (f"Host: localhost:{port}\r\nHost: rebound.attacker.example:{port}", "Host: localhost\r\nContent-Length: 1\r\nContent-Length: 200"):
            with socket.create_connection((host, port)) as sock:  # which one counts would be a matter of opinion: neither
                sock.sendall(f"POST /stream HTTP/1.1\r\n{doubled}\r\n\r\n{READING.decode()}".encode())
                assert _closed_or_answered(sock).startswith(b"HTTP/1.1 400 ")
        assert kept_lines(store) == 0 and not list((store / "score-api").rglob("*.jsonl"))
        assert '"@tick"' not in (store / "_run" / "journal.jsonl").read_text()

        answered = [
            {"Host": f"localhost:{port}"},
            {"Host": f"app.localhost:{port}"},
            {"Host": f"127.0.0.1:{port}", "Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"},  # its own page
            {"Host": f"devbox.lan:{port}"},  # --allow-host
            {"Host": f"192.168.1.20:{port}"},  # any IP address: a rebinding page sends its name, never an address
        ]
        for headers in answered:
            status, answer = send(server, "POST", "/stream", READING, headers)
            assert status == 200, (headers, answer)
        assert kept_lines(store) == len(answered)
    finally:
        code, stderr = server.stop()
    assert code == 0 and "POST /stream 403 Forbidden: Host 'rebound.attacker.example" in stderr, stderr


ATTACK = """<!doctype html><html><body><script>
(async () => {
  const target = "TARGET", out = [];
  for (const [path, body] of [["/stream", 'READING'], ["/tick", ""], ["/stages/score-api", '[READING]']]) {
    try { await fetch(target + path, {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body}); out.push("sent " + path); }
    catch (error) { out.push("failed " + path); }
  }
  try { const answer = await fetch(target + "/health"); out.push("read " + (await answer.text())); } catch (error) { out.push("not read"); }
  const done = document.createElement("pre"); done.id = "done"; done.textContent = out.join("\\n"); document.body.appendChild(done);
})();
</script></body></html>"""


def test_a_web_page_on_another_origin_cannot_send_records_ticks_or_requests(tmp_path: Path, pipeline_exe: str,
                                                                             cli_env_vars: dict[str, str]) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("needs headless Chromium")
    spec = copy_stack(SCORING, tmp_path)
    store = tmp_path / "served"
    server = Server(pipeline_exe, cli_env_vars, spec, "--store", store, "--quiet")
    site = tmp_path / "site"
    site.mkdir()
    (site / "attack.html").write_text(ATTACK.replace("TARGET", server.url).replace("READING", READING.decode()), encoding="utf-8")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

    attacker = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: Quiet(*a, directory=str(site)))
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    try:
        page = f"http://127.0.0.1:{attacker.server_address[1]}/attack.html"
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=20000"]
        dom = subprocess.run([chromium, *flags, "--dump-dom", page], capture_output=True, text=True, timeout=180, check=True).stdout
        assert 'id="done"' in dom and "sent /stream" in dom, dom  # the page ran and its requests went out
        assert "read {" not in dom  # and it read nothing
    finally:
        attacker.shutdown()
        code, stderr = server.stop()
    assert code == 0, stderr
    assert "POST /stream 403 Forbidden" in stderr and "POST /tick 403 Forbidden" in stderr and "POST /stages/score-api 403" in stderr, stderr
    assert kept_lines(store) == 0 and not list((store / "score-api").rglob("*.jsonl"))
    assert '"@tick"' not in (store / "_run" / "journal.jsonl").read_text()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _low_descriptor_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))


def test_idle_connections_cannot_starve_a_low_descriptor_limit(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    spec = copy_stack(SCORING, tmp_path)
    server = Server(pipeline_exe, cli_env_vars, spec, "--store", tmp_path / "served", "--quiet", preexec_fn=_low_descriptor_limit)
    host, port = address(server)
    idle: list[socket.socket] = []
    try:
        for _ in range(115):  # connections that never send a byte
            idle.append(socket.create_connection((host, port), timeout=60))
        before = _cpu_seconds(server.process.pid)
        time.sleep(2)
        assert _cpu_seconds(server.process.pid) - before < 0.5  # the accept loop does not spin
        # Each is closed by the server: over the bound at once with a 503, the others when their header time is up.
        endings = [_closed_by_server(sock) for sock in idle]
        refused = sum(1 for ending in endings if ending.startswith(b"HTTP/1.1 503 "))
        assert refused >= 20 and all(ending == b"" or ending.startswith(b"HTTP/1.1 503 ") for ending in endings), refused
        status, answer = send(server, "GET", "/health")
        assert status == 200 and answer["pipeline"] == "sensor-scoring"
        assert send(server, "POST", "/stream", READING)[0] == 200
    finally:
        for sock in idle:
            sock.close()
        code, stderr = server.stop()
    assert code == 0 and "Traceback" not in stderr, stderr


def _trickle(sock: socket.socket, first: bytes, each: bytes, stop: threading.Event) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(first)
        while not stop.wait(1.0):
            sock.sendall(each)


def _closed_by_server(sock: socket.socket) -> bytes:
    """What the server answered before it closed the connection (b"" when it just closed it)."""
    sock.settimeout(60)  # far beyond the server's deadlines: a server without them fails here
    got = b""
    with contextlib.suppress(ConnectionError):
        while chunk := sock.recv(4096):
            got += chunk
    return got


def test_headers_and_bodies_sent_a_byte_at_a_time_are_cut_off(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    spec = copy_stack(SCORING, tmp_path)
    store = tmp_path / "served"
    server = Server(pipeline_exe, cli_env_vars, spec, "--store", store, "--quiet")
    host, port = address(server)
    stop = threading.Event()
    try:
        head = socket.create_connection((host, port))  # never ends its headers, sending a header line every second
        threading.Thread(target=_trickle, args=(head, b"POST /tick HTTP/1.1\r\nHost: localhost\r\n", b"X-More: a\r\n", stop), daemon=True).start()
        body = socket.create_connection((host, port))  # a 1,000-byte body, a byte every second
        start = b"POST /stream HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n"
        threading.Thread(target=_trickle, args=(body, start, b"x", stop), daemon=True).start()
        assert _closed_by_server(head) == b""
        assert _closed_by_server(body) == b""
        assert send(server, "GET", "/health")[0] == 200  # the server itself goes on
    finally:
        stop.set()
        code, stderr = server.stop()
    assert code == 0 and "Traceback" not in stderr, stderr
    assert kept_lines(store) == 0 and '"@tick"' not in (store / "_run" / "journal.jsonl").read_text()


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_many_large_bodies_at_once_are_held_within_the_budget(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    spec = copy_stack(SCORING, tmp_path)
    server = Server(pipeline_exe, cli_env_vars, spec, "--store", tmp_path / "served", "--quiet", "--max-body-mb", "16")
    body = b"x" * (15 * 1024 * 1024)  # not rows: each is read whole, then answered 400
    try:
        assert send(server, "GET", "/health")[0] == 200
        before = _peak_rss(server.process.pid)
        answers: list[int] = []
        senders = [threading.Thread(target=lambda: answers.append(send(server, "POST", "/stages/score-api", body)[0])) for _ in range(12)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        grown = _peak_rss(server.process.pid) - before
    finally:
        code, stderr = server.stop()
    assert answers == [400] * 12, answers
    assert grown < 80 * 1024 * 1024, f"the server grew by {grown / 2**20:.0f} MiB for 12 bodies of 15 MiB"  # 2 x 16 MiB held at most
    assert code == 0, stderr


SLOW = """\
import time


def parse(records, context):
    time.sleep(0.3)
    for record in records:
        yield record.json()
"""
SLOW_STAGE = "  - name: parse\n    handler: handlers/h.py:parse\n    trigger: {stream: {batch_size: 10, max_batching_window_s: 1}}\n"


def _records(first: int, count: int) -> bytes:
    return b"".join(json.dumps({"n": n}).encode() + b"\n" for n in range(first, first + count))


def _parsed(store: Path) -> list[int]:
    folder = store / "parse" / "parse" / "local"
    return sorted(row["n"] for path in sorted(folder.iterdir()) for row in jsonl(path)) if folder.exists() else []


def test_sigterm_in_the_middle_of_a_request_says_exactly_what_was_kept(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    spec, _ = project(tmp_path / "project", SLOW, SLOW_STAGE, [])
    store = tmp_path / "served"
    server = Server(pipeline_exe, cli_env_vars, spec, "--store", store, "--quiet")
    answers: dict[str, tuple[int, dict[str, Any]]] = {}
    first = threading.Thread(target=lambda: answers.setdefault("first", send(server, "POST", "/stream", _records(0, 100))))
    first.start()
    journal = store / "_run" / "journal.jsonl"
    while journal.read_text().count('"st":"done"') < 2:
        time.sleep(0.02)  # the first request is being processed: its records are kept
    second = threading.Thread(target=lambda: answers.setdefault("second", send(server, "POST", "/stream", _records(100, 10))))
    second.start()  # queued behind the first
    time.sleep(0.5)
    code, stderr = server.stop(signal.SIGTERM)
    first.join()
    second.join()
    assert code == 0, stderr
    status, answer = answers["first"]
    assert status == 202 and answer["kept"] is True and answer["processed"] is False and answer["lines"] == [1, 100], answer
    assert "do not send them again" in answer["message"]
    status, answer = answers["second"]
    assert status == 503 and answer["kept"] is False and "send it again" in answer["error"], answer
    assert kept_lines(store) == 100

    again = Server(pipeline_exe, cli_env_vars, spec, "--store", store, "--quiet")  # finishes the kept records first
    try:
        status, answer = send(again, "POST", "/stream", _records(100, 10))  # the refused request, sent again
        assert status == 200 and answer["lines"] == [101, 110], answer
    finally:
        code, stderr = again.stop()
    assert code == 0, stderr
    assert _parsed(store) == list(range(110))  # each record once: the kept ones were not sent again, the refused ones were


def test_killed_again_and_again_a_client_with_idempotency_keys_gets_every_record_once(tmp_path: Path, pipeline_exe: str,
                                                                                     cli_env_vars: dict[str, str]) -> None:
    spec, _ = project(tmp_path / "project", SLOW.replace("0.3", "0.05"), SLOW_STAGE, [])
    store = tmp_path / "served"
    rng = random.Random(20261207)
    requests = [(f"request-{i:03d}", _records(i * 25, 25)) for i in range(16)]
    server = Server(pipeline_exe, cli_env_vars, spec, "--store", store, "--quiet")
    kills = 0
    for number, (key, body) in enumerate(requests):
        while True:
            killer = None
            late = kills < 3 and number >= len(requests) - 6  # a busy machine answered too fast so far: kill at once
            if late or (kills < 8 and rng.random() < 0.6):  # kill -9 somewhere in the middle of this request
                killer = threading.Timer(rng.uniform(0.0, 0.02) if late else rng.uniform(0.0, 0.4), server.process.kill)
                killer.start()
            try:
                status, answer = send(server, "POST", "/stream", body, {"Idempotency-Key": key})
            except (ConnectionError, http.client.HTTPException, OSError):
                status = 0
            if killer is not None:
                killer.cancel()
                killer.join()
            if server.process.poll() is not None or status == 0:  # no answer: start it again and send the same request again
                server.process.kill()
                server.process.wait()
                kills += 1
                server = Server(pipeline_exe, cli_env_vars, spec, "--store", store, "--quiet")
                continue
            assert status == 200, answer
            break
    code, stderr = server.stop()
    assert code == 0, stderr
    assert kills >= 3, "the server was hardly ever killed: the test proves nothing"
    assert _parsed(store) == list(range(16 * 25))  # nothing lost, nothing twice
    assert kept_lines(store) == 16 * 25


DEEP = b"[" * 100_000 + b"]" * 100_000


def test_deeply_nested_json_is_a_clear_400_and_invoke_exits_2(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    spec = copy_stack(SCORING, tmp_path)
    store = tmp_path / "served"
    server = Server(pipeline_exe, cli_env_vars, spec, "--store", store)
    try:
        status, answer = send(server, "POST", "/stream", DEEP)
        assert status == 400 and "nested too deeply" in answer["error"], answer
        status, answer = send(server, "POST", "/stages/score-api", DEEP)
        assert status == 400 and "nested too deeply" in answer["error"] and "retryable" not in answer, answer
        status, answer = send(server, "POST", "/stages/score-api", b"\x1f\x8b\x08\x00broken gzip")
        assert status == 400 and "gzip" in answer["error"], answer
        assert send(server, "POST", "/stream", READING)[0] == 200  # still serving
    finally:
        code, stderr = server.stop()
    assert code == 0 and "Traceback" not in stderr, stderr
    assert kept_lines(store) == 1

    deep = tmp_path / "deep.json"
    deep.write_bytes(DEEP)
    invoked = subprocess.run([pipeline_exe, "invoke", "score-api", str(spec), "--input", str(deep)], env=cli_env_vars,
                             capture_output=True, text=True, timeout=120, check=False)
    assert invoked.returncode == 2 and "nested too deeply" in invoked.stderr and "Traceback" not in invoked.stderr, invoked.stderr

    # In an object (an uploaded file), such a line is one line that is not JSON: dead-lettered alone, the rest processed.
    claims = copy_stack(UPLOADS, tmp_path / "claims")
    upload = tmp_path / "claims.jsonl"
    good = {"claim_id": "c-1", "policy_id": "P000001", "partner": "acme", "amount": 10.0, "currency": "USD", "incident_date": "2026-10-01",
            "category": "auto", "photos": False, "prior_claims": 0}
    upload.write_bytes(json.dumps(good).encode() + b"\n" + DEEP + b"\n")
    processed = subprocess.run([pipeline_exe, "invoke", "process", str(claims), "--input", str(upload), "--format", "json"], env=cli_env_vars,
                               capture_output=True, text=True, timeout=120, check=False)
    assert processed.returncode == 1, processed.stderr
    answer = json.loads(processed.stdout)
    assert [row["claim_id"] for row in answer["rows"]] == ["c-1"] and [d["input"]["line"] for d in answer["dead_letters"]] == [1], answer


def test_request_lines_are_escaped_in_the_log_and_ipv6_loopback_serves(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    spec = copy_stack(SCORING, tmp_path)
    server = Server(pipeline_exe, cli_env_vars, spec, "--store", tmp_path / "served", "--host", "::1")
    host, port = address(server)
    assert server.url == f"http://[::1]:{port}"
    try:
        status, answer = send(server, "GET", "/health", headers={"Host": f"[::1]:{port}"})
        assert status == 200 and answer["pipeline"] == "sensor-scoring"
        with socket.create_connection((host, port)) as sock:  # a request line that would clear the operator's terminal
            sock.sendall(b"GET /\x1b[2J\x1b]0;owned\x07 HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert _closed_or_answered(sock).startswith(b"HTTP/1.1 404")
        with socket.create_connection((host, port)) as sock:  # not even HTTP
            sock.sendall(b"\x1b[31mhello\x1b[0m\r\n\r\n")
            assert _closed_or_answered(sock).startswith(b"HTTP/1.1 400")
    finally:
        code, stderr = server.stop()
    assert code == 0, stderr
    assert "\x1b" not in stderr and "\x07" not in stderr, repr(stderr)
    assert "GET /\\x1b[2J\\x1b]0;owned\\x07 404 Not Found" in stderr, stderr
    assert "warning" not in stderr  # ::1 is loopback


def _closed_or_answered(sock: socket.socket) -> bytes:
    sock.settimeout(60)
    got = b""
    with contextlib.suppress(ConnectionError):
        while chunk := sock.recv(4096):
            got += chunk
            if b"\r\n\r\n" in got:
                break
    return got
