"""Schedules over accumulated outputs under `pipeline run`: each tick reads what the source wrote since the
last successful run, a failed run is retried with the same window, and when its retries are exhausted the
watermark stays put so the next run reads those objects again. Through the installed console script."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from pathlib import Path

from local_project import dead_letters, project, rows, store_of

HANDLERS = """\
import os


def parse(records, context):
    for record in records:
        yield record.json()


def _fail_first_time(rows, flag):
    rows = list(rows)  # takes every row, then fails: the whole run fails, as a crashed container would
    if rows and not os.path.exists(flag):
        open(flag, "w").close()
        raise ConnectionError("the first run over accumulated rows fails")
    return rows


def retried(rows, context):
    for row in _fail_first_time(rows, os.environ["FLAG_RETRIED"]):
        yield {"n": row["n"], "by": "retried"}


def exhausted(rows, context):
    for row in _fail_first_time(rows, os.environ["FLAG_EXHAUSTED"]):
        yield {"n": row["n"], "by": "exhausted"}
"""

STAGES = """\
  - name: parse
    handler: handlers/h.py:parse
    trigger: {{stream: {{batch_size: 5, max_batching_window_s: 1}}}}
  - name: retried
    handler: handlers/h.py:retried
    retries: 1
    environment: {{FLAG_RETRIED: "{flags}/retried"}}
    trigger: {{schedule: "rate(1 hour)", from: parse}}
  - name: exhausted
    handler: handlers/h.py:exhausted
    retries: 0
    environment: {{FLAG_EXHAUSTED: "{flags}/exhausted"}}
    trigger: {{schedule: "rate(1 hour)", from: parse}}
"""


def test_ticks_read_each_object_once_and_a_failed_window_is_read_again(tmp_path: Path, pipeline_exe: str,
                                                                        cli_env_vars: dict[str, str]) -> None:
    flags = tmp_path / "flags"
    flags.mkdir()
    spec, _ = project(tmp_path / "project", HANDLERS, STAGES.format(flags=flags), [])
    process = subprocess.Popen([pipeline_exe, "run", str(spec), "--input", "-", "--tick", "0.5", "--quiet"], env=cli_env_vars,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdin is not None
    process.stdin.write(b"".join(json.dumps({"n": n}).encode() + b"\n" for n in range(5)))  # one whole batch: flushed at once
    process.stdin.flush()
    time.sleep(3.5)  # ticks come while the input is quiet: the first fails, later ones read on
    stdout, stderr = process.communicate(b"".join(json.dumps({"n": n}).encode() + b"\n" for n in range(5, 10)), timeout=60)
    assert process.returncode == 1, stdout.decode() + stderr.decode()  # `exhausted` dead-lettered its first window

    windows = sorted(p.name for p in (store_of(spec) / "retried" / "retried" / "window").iterdir())
    assert len(windows) >= 2 and "start.jsonl" in windows, windows  # rows came in more than one run: keyed by each window's start
    # A failed run retried with the same window: every row once, nothing dead-lettered.
    assert sorted(row["n"] for row in rows(spec, "retried")) == list(range(10))
    assert dead_letters(spec, "retried") == []
    # Retries exhausted: the window's rows are dead-lettered and the watermark stays, so a later run reads them again.
    dead = dead_letters(spec, "exhausted")
    assert sorted(json.loads(base64.b64decode(d["data_base64"]))["n"] for d in dead) == list(range(5))
    assert {d["reason"] for d in dead} == {"retries exhausted"} and dead[0]["error"]["type"] == "ConnectionError"
    assert dead[0]["input"]["key"] == "parse/local/000000000001-000000000005.jsonl"
    assert sorted(row["n"] for row in rows(spec, "exhausted")) == list(range(10))
    assert "retried" in stdout.decode() and "dead letters: 5 (exhausted 5" in stdout.decode()
