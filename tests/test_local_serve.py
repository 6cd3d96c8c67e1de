"""`pipeline serve`: a real `pipeline serve` subprocess on a free port, driven with a real HTTP client (urllib):
HTTP stages, records into the local stream reaching the stream and schedule stages, files into the landing
bucket, limits and unknown routes, a clean stop, and a server killed mid-request that finishes on restart."""

from __future__ import annotations

import json
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from local_project import jsonl, project, run
from test_local_run_stacks import SCORING, UPLOADS, copy_stack


class Server:
    """`pipeline serve SPEC --port 0 ...`: waits for its `serving ... on URL` line; stderr is collected as it comes."""

    def __init__(self, exe: str, env: dict[str, str], spec: Path, *args: str | Path, preexec_fn: Callable[[], None] | None = None) -> None:
        self.process = subprocess.Popen([exe, "serve", str(spec), "--port", "0", *map(str, args)], env=env, preexec_fn=preexec_fn,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + 90
        while True:
            line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, "the server ended before serving:\n" + "".join(self.seen)
            if match := re.match(r"serving \S+ \(\S+\) on (http://\S+:\d+)$", line.strip()):
                self.url = match.group(1)
                return

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.seen.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def stop(self, how: signal.Signals = signal.SIGINT) -> tuple[int, str]:
        self.process.send_signal(how)
        code = self.process.wait(timeout=60)
        time.sleep(0.1)
        return code, "".join(self.seen)


def test_serve_runs_http_stages_and_takes_records_into_the_stream(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    spec = copy_stack(SCORING, tmp_path)
    readings = (spec.parent / "data" / "readings.jsonl").read_bytes()
    lines = readings.splitlines()
    store = tmp_path / "served"
    server = Server(pipeline_exe, cli_env_vars, spec, "--store", store, "--max-body-mb", "1", "--quiet")
    try:
        status, about = server.request("GET", "/health")
        assert status == 200 and about["pipeline"] == "sensor-scoring"
        assert {(r["method"], r["path"]) for r in about["routes"]} >= {("POST", "/stream"), ("POST", "/stages/score-api"), ("POST", "/tick")}

        # Records into the stream: batched like `pipeline run` (1,000 a batch), archived, preprocessed before the answer.
        status, answer = server.request("POST", "/stream", readings, {"Content-Type": "application/x-ndjson"})
        assert status == 200 and answer["records"] == 2000 and answer["lines"] == [1, 2000], answer
        assert answer["stages"]["preprocess"]["rows"] == 1992 and answer["dead_letters"] == 0 and answer["raw_objects"] == 2
        # The schedule over accumulated outputs: a tick reads what preprocess wrote since the last one, once.
        status, first = server.request("POST", "/tick")
        assert status == 200 and first["stages"]["score-batch"]["items"] == 1992, first
        status, empty = server.request("POST", "/tick")
        assert status == 200 and "items" not in empty["stages"].get("score-batch", {}), empty
        three = "[" + ",".join(line.decode() for line in lines[:3]) + "]"  # a JSON array of records works too
        status, more = server.request("POST", "/stream", three.encode(), {"Content-Type": "application/json"})
        assert status == 200 and more["lines"] == [2001, 2003] and more["stages"]["preprocess"]["rows"] == 3
        status, second = server.request("POST", "/tick")
        assert second["stages"]["score-batch"]["items"] == 3  # only the new feature rows

        # The HTTP stage: rows in, scores out; a bad row is reported and dead-lettered, the rest answered.
        bad = json.dumps({"ts": "2026-11-15T08:00:00Z"})
        status, scored = server.request("POST", "/stages/score-api", ("[" + ",".join([*(line.decode() for line in lines[:3]), bad]) + "]").encode(),
                                        {"Content-Type": "application/json"})
        assert status == 200 and [r["device_id"] for r in scored["rows"]] == [json.loads(line)["device_id"] for line in lines[:3]]
        assert [f["index"] for f in scored["failed"]] == [3] and "device_id" in scored["failed"][0]["message"]
        assert (store / "score-api" / scored["output"]).is_file()  # persist: true keeps the answer
        status, not_rows = server.request("POST", "/stages/score-api", b"this is not JSON")
        assert status == 400 and "not JSON" in not_rows["error"]

        # What is not served, and what is too big.
        status, missing = server.request("POST", "/stages/no-such-stage", b"[]")
        assert status == 404 and "no stage named 'no-such-stage'" in missing["error"] and missing["routes"]
        status, wrong = server.request("POST", "/stages/preprocess", b"[]")
        assert status == 405 and "POST records to /stream" in wrong["error"]
        assert server.request("GET", "/nothing-here")[0] == 404
        assert server.request("PUT", "/uploads/x.jsonl", b"{}")[0] == 404  # this pipeline has no uploads bucket
        status, big = server.request("POST", "/stream", (lines[0] + b"\n") * 20000)  # about 2.6 MB, over --max-body-mb 1
        assert status == 413 and "at most 1,048,576" in big["error"]
        status, claimed = server.request("POST", "/stream", b"{}", {"Content-Length": str(10**12)})  # cut off without reading it
        assert status == 413 and "1,000,000,000,000 bytes" in claimed["error"]
    finally:
        code, stderr = server.stop(signal.SIGINT)
    assert code == 0 and "stopped after" in stderr and "`pipeline serve` again continues this run" in stderr, stderr
    assert "POST /stream 200" in stderr and "POST /stream 413" in stderr and "Traceback" not in stderr

    # The same records through `pipeline run` give the same objects (same batches, same keys, same bytes).
    ran = copy_stack(SCORING, tmp_path / "ran")
    assert run(cli_env_vars, pipeline_exe, ran, "--input", spec.parent / "data" / "readings.jsonl", "--quiet").returncode == 0
    run_root = ran.parent / ".pipeline" / "local" / "sensor-scoring" / "default"
    for bucket in ("preprocess", "raw"):
        for path in sorted((run_root / bucket).rglob("*.jsonl")):
            assert (store / path.relative_to(run_root)).read_bytes() == path.read_bytes(), path
    assert jsonl(run_root / "score-batch" / "score-batch" / "window" / "start.jsonl") == jsonl(
        store / "score-batch" / "score-batch" / "window" / "start.jsonl")  # the first window of each: keyed by its start

    # Served again: the same run goes on (records numbered after the last, ticks after the last).
    again = Server(pipeline_exe, cli_env_vars, spec, "--store", store, "--quiet")
    try:
        status, answer = again.request("POST", "/stream", lines[5] + b"\n")
        assert status == 200 and answer["lines"] == [2004, 2004]
        assert again.request("POST", "/tick")[1]["tick"] == "local-000004"
    finally:
        code, stderr = again.stop(signal.SIGTERM)
    assert code == 0, stderr


def test_serve_takes_files_into_the_landing_bucket(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    spec = copy_stack(UPLOADS, tmp_path)
    gz = spec.parent / "data" / "claims-2026-11-01.jsonl.gz"
    plain = spec.parent / "data" / "claims-with-errors.jsonl"
    store = tmp_path / "served"
    server = Server(pipeline_exe, cli_env_vars, spec, "--store", store, "--quiet")
    try:
        status, landed = server.request("PUT", f"/uploads/{gz.name}", gz.read_bytes())
        assert status == 200 and landed["upload"] == f"uploads/uploads/{gz.name}", landed
        assert landed["stages"]["process"]["invocations"] == 1 and landed["stages"]["process"]["rows"] > 1400 and landed["dead_letters"] == 0
        assert "process/process/claims-2026-11-01.jsonl" in landed["objects"]
        status, posted = server.request("POST", "/uploads/claims%20with%20errors.jsonl", plain.read_bytes())  # POST, and a quoted name
        assert status == 200 and posted["upload"] == "uploads/uploads/claims with errors.jsonl" and posted["dead_letters"] > 0
        status, refused = server.request("PUT", "/uploads/..%2Fescape.jsonl", b"{}")
        assert status == 400 and "cannot be an upload's name" in refused["error"]
        assert server.request("POST", "/stream", b"{}")[0] == 404  # fed by uploads only: no stream
    finally:
        code, stderr = server.stop()
    assert code == 0, stderr
    assert (store / "uploads" / "uploads" / gz.name).read_bytes() == gz.read_bytes()

    ran = copy_stack(UPLOADS, tmp_path / "ran")
    assert run(cli_env_vars, pipeline_exe, ran, "--upload", gz, "--quiet").returncode == 0
    run_root = ran.parent / ".pipeline" / "local" / "claims-intake" / "default"
    key = "process/process/claims-2026-11-01.jsonl"
    assert (store / key).read_bytes() == (run_root / key).read_bytes()  # served or run: the same objects
    assert list((store / "dead-letter" / "process").iterdir())  # (the bad claims' dead letters)


SLOW = """\
import time


def parse(records, context):
    time.sleep(0.2)
    for record in records:
        yield record.json()
"""


def test_a_server_killed_mid_request_finishes_it_when_started_again(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    stage = "  - name: parse\n    handler: handlers/h.py:parse\n    trigger: {stream: {batch_size: 10, max_batching_window_s: 1}}\n"
    spec, _ = project(tmp_path / "project", SLOW, stage, [])
    store = tmp_path / "served"
    body = b"".join(json.dumps({"n": n}).encode() + b"\n" for n in range(100))
    server = Server(pipeline_exe, cli_env_vars, spec, "--store", store, "--quiet")
    outcome: list[Any] = []
    sender = threading.Thread(target=lambda: outcome.append(_try(server, body)), daemon=True)
    sender.start()
    journal = store / "_run" / "journal.jsonl"
    deadline = time.monotonic() + 30
    while journal.read_text().count('"st":"done"') < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.process.kill()  # kill -9 in the middle of the request: some batches done, the rest not
    server.process.wait(timeout=30)
    sender.join(timeout=30)
    assert outcome and outcome[0] is None, "the request finished before the kill: the test proves nothing"
    done_before = sorted(p.name for p in (store / "parse" / "parse" / "local").iterdir())
    assert 0 < len(done_before) < 10

    again = Server(pipeline_exe, cli_env_vars, spec, "--store", store, "--quiet")  # replays the kept records first
    deadline = time.monotonic() + 120  # wait for the replay to finish and the server to listen (a loaded machine is slow)
    while "Ctrl-C to stop" not in "".join(again.seen) and time.monotonic() < deadline:
        time.sleep(0.1)
    code, stderr = again.stop()
    assert code == 0, stderr
    got = [row["n"] for path in sorted((store / "parse" / "parse" / "local").iterdir()) for row in jsonl(path)]
    assert got == list(range(100))  # every record once: nothing lost, nothing twice
    shutil.rmtree(tmp_path / "project" / ".pipeline", ignore_errors=True)


def _try(server: Server, body: bytes) -> Any:
    try:
        return server.request("POST", "/stream", body)
    except (urllib.error.URLError, ConnectionError, OSError):
        return None
