"""Windows over accumulated outputs through the local runner, end to end with the installed console script:
an HTTP stage with `from` under `pipeline serve` (empty windows, repeated requests, rows refused), a schedule with
`from` beside it with its own watermark, `pipeline run` leaving HTTP stages alone, and `pipeline invoke` on a kept
store with two invocations at once (the lease lets one read the window; the other's object waits for the next)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from local_project import jsonl, project, run, store_of
from test_local_serve import Server

HANDLERS = """\
import os
import time


def parse(records, context):
    for record in records:
        yield record.json()


def report(rows, context):
    for row in rows:
        if row.get("bad"):
            raise ValueError("bad row")
        yield {"n": row["n"], "by": "report"}


def hourly(rows, context):
    rows = list(rows)
    yield {"rows": len(rows)}


def slow(rows, context):
    rows = list(rows)
    open(os.environ["STARTED"], "w").close()
    time.sleep(float(os.environ.get("SLEEP_S", "0")))
    for row in rows:
        yield {"n": row["n"]}
"""
STAGES = """\
  - name: parse
    handler: handlers/h.py:parse
    trigger: {stream: {batch_size: 100, max_batching_window_s: 1}}
  - name: report
    handler: handlers/h.py:report
    trigger: {http: {from: parse}}
  - name: hourly
    handler: handlers/h.py:hourly
    trigger: {schedule: "rate(1 hour)", from: parse}
"""


def records(numbers: range, bad: tuple[int, ...] = ()) -> bytes:
    return b"".join(json.dumps({"n": n, **({"bad": True} if n in bad else {})}).encode() + b"\n" for n in numbers)


def test_serve_runs_an_http_stage_over_what_accumulated(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    spec, _ = project(tmp_path / "project", HANDLERS, STAGES, [])
    store = tmp_path / "served"
    server = Server(pipeline_exe, cli_env_vars, spec, "--store", store, "--quiet")
    try:
        about = server.request("GET", "/")[1]
        assert {"method": "POST", "path": "/stages/report", "does": "no body: report over what parse wrote since its last run"} in about["routes"]
        assert server.request("POST", "/stream", records(range(5), bad=(3,)))[0] == 200

        status, first = server.request("POST", "/stages/report")  # no body at all
        assert status == 200 and first["rows"] == 4 and first["output"] == "report/window/start.jsonl", first
        assert first["window"]["since"] is None and first["window"]["objects"] == 1 and first["dead_letters"] == 1
        assert [(f["index"], f["type"], f["message"]) for f in first["failed"]] == [(3, "ValueError", "bad row")]
        assert first["failed"][0]["key"].startswith("parse/local/")

        status, again = server.request("POST", "/stages/report", b"{}")  # nothing new: no handler call, nothing written
        assert status == 200 and again["window"]["objects"] == 0 and again["output"] is None and again["rows"] == 0, again
        status, refused = server.request("POST", "/stages/report", b'[{"n": 1}]')
        assert status == 400 and "POST an empty body" in refused["error"]

        assert server.request("POST", "/stream", records(range(5, 8)))[0] == 200
        status, second = server.request("POST", "/stages/report", b"")
        assert status == 200 and second["rows"] == 3 and second["window"]["since"] == first["window"]["until"]
        assert second["output"].startswith("report/window/2") and second["output"] != first["output"]

        status, tick = server.request("POST", "/tick")  # the schedule over the same source keeps its own watermark
        assert status == 200 and tick["stages"]["hourly"]["items"] == 8, tick
    finally:
        code, stderr = server.stop(signal.SIGINT)
    assert code == 0 and "Traceback" not in stderr, stderr

    reported = [row["n"] for path in sorted((store / "report" / "report" / "window").iterdir()) for row in jsonl(path)]
    assert sorted(reported) == [0, 1, 2, 4, 5, 6, 7]  # every row once (3 is a dead letter), across two windows
    state = json.loads((store / "report" / "_state" / "report" / "watermark.json").read_text())
    assert state["runs"] == 2 and state["last_run"]["rows"] == 3 and len(state["recent"]) == 2
    assert json.loads((store / "report" / "_state" / "report" / "lease.json").read_text())["expires"] == 0

    # `pipeline run` sends HTTP stages no requests (it says so); its schedule reads the window at the end.
    result = run(cli_env_vars, pipeline_exe, spec, "--input", _input(tmp_path, records(range(8))), "--quiet")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "report: an HTTP stage, not invoked" in result.stdout
    assert not (store_of(spec) / "report").exists() and jsonl(store_of(spec) / "hourly" / "hourly" / "window" / "start.jsonl") == [{"rows": 8}]


def _input(folder: Path, data: bytes) -> Path:
    path = folder / "records.jsonl"
    path.write_bytes(data)
    return path


SLOW_STAGES = """\
  - name: parse
    handler: handlers/h.py:parse
    trigger: {{stream: {{}}}}
  - name: slow
    handler: handlers/h.py:slow
    environment: {{STARTED: "{flag}", SLEEP_S: "{sleep}"}}
    trigger: {{http: {{from: parse}}}}
"""


def invoke(env: dict[str, str], exe: str, spec: Path, store: Path, data: Path, *more: str) -> subprocess.Popen[str]:
    return subprocess.Popen([exe, "invoke", "slow", str(spec), "--input", str(data), "--store", str(store), "--format", "json", *more],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_invocations_at_once_share_one_window(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    flag = tmp_path / "started"
    spec, _ = project(tmp_path / "project", HANDLERS, SLOW_STAGES.format(flag=flag, sleep=3), [])
    store = tmp_path / "kept"
    one, two, three = (tmp_path / f"{name}.jsonl" for name in ("one", "two", "three"))
    for path, numbers in ((one, range(0, 2)), (two, range(2, 4)), (three, range(4, 6))):
        path.write_bytes(records(numbers))

    first = invoke(cli_env_vars, pipeline_exe, spec, store, one)
    deadline = time.monotonic() + 60
    while not flag.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert flag.exists(), first.communicate()
    second = invoke(cli_env_vars, pipeline_exe, spec, store, two)  # while the first holds the lease
    _, err2 = second.communicate(timeout=60)
    out1, err1 = first.communicate(timeout=60)
    assert first.returncode == 0, err1
    answer: dict[str, Any] = json.loads(out1)
    assert answer["status"] == 200 and [r["n"] for r in answer["rows"]] == [0, 1]
    assert second.returncode == 1 and "is running stage slow over its window" in err2 and "the next invocation reads it" in err2, err2
    assert "Traceback" not in err2

    flag.unlink()
    spec.write_text(spec.read_text().replace('SLEEP_S: "3"', 'SLEEP_S: "0"'))
    third = invoke(cli_env_vars, pipeline_exe, spec, store, three)
    out3, err3 = third.communicate(timeout=60)
    assert third.returncode == 0, err3
    assert sorted(r["n"] for r in json.loads(out3)["rows"]) == [2, 3, 4, 5]  # the waiting object, and the new one
    outputs = (store / "slow" / "slow" / "window").iterdir()
    assert sorted(sorted(row["n"] for row in jsonl(path)) for path in outputs) == [[0, 1], [2, 3, 4, 5]]  # two windows, each row once
