"""`pipeline run` gives handlers the clouds' semantics: an invocation that exits, crashes or runs past
its timeout is retried and then dead-lettered, rows must be JSON, and the machine's own failures
(read-only store, closed stdin) get a clear message. All through the installed console script."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from local_project import STREAM_STAGE, dead_letters, project, rows, run, store_of

from pipeline.local.lines import LineSplitter


@pytest.mark.parametrize("how", ["sys.exit(0)", "os._exit(0)", "sys.exit(3)"])
def test_a_handler_that_ends_its_process_is_retried_then_dead_lettered(how: str, tmp_path: Path, pipeline_exe: str,
                                                                        cli_env_vars: dict[str, str]) -> None:
    handlers = f"""\
        import os, sys

        def parse(records, context):
            for record in records:
                row = record.json()
                if row.get("exit"):
                    {how}
                yield row
    """
    records = [{"n": n, "exit": n == 14} for n in range(30)]
    spec, data = project(tmp_path, handlers, STREAM_STAGE.format(timeout=60), records)
    result = run(cli_env_vars, pipeline_exe, spec, "--input", data)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "internal error" not in result.stderr
    # The batch holding record 14 (lines 11-20) failed twice (1 retry) and went to dead letters whole; the others ran.
    assert [row["n"] for row in rows(spec, "parse")] == [*range(10), *range(20, 30)]
    dead = dead_letters(spec, "parse")
    assert [json.loads(base64.b64decode(d["data_base64"]))["n"] for d in dead] == list(range(10, 20))
    assert {d["reason"] for d in dead} == {"retries exhausted"}
    error = dead[0]["error"]
    if how.startswith("sys.exit"):
        assert error["type"] == "SystemExit" and "sys.exit" in error["message"] and any("h.py" in f for f in error["traceback"])
    else:
        assert error["type"] == "ProcessExited" and "exited with code 0" in error["message"]
    assert "dead letters: 10 (parse 10" in result.stdout and "1 whole inputs failed" in result.stdout
    assert "records in: 30" in result.stdout  # the run reached the end of its input


def test_a_hanging_handler_is_stopped_at_its_timeout_then_dead_lettered(tmp_path: Path, pipeline_exe: str,
                                                                         cli_env_vars: dict[str, str]) -> None:
    handlers = """\
        import time

        def wait_forever():
            time.sleep(3600)

        def parse(records, context):
            for record in records:
                row = record.json()
                if row.get("hang"):
                    wait_forever()
                yield row
    """
    records = [{"n": n, "hang": n == 3} for n in range(20)]
    spec, data = project(tmp_path, handlers, STREAM_STAGE.format(timeout=1), records)
    result = run(cli_env_vars, pipeline_exe, spec, "--input", data, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert [row["n"] for row in rows(spec, "parse")] == list(range(10, 20))  # the next batch ran after the stopped one
    dead = dead_letters(spec, "parse")
    assert len(dead) == 10 and dead[0]["error"]["type"] == "TimeoutError"
    assert "timeout_s (1 s)" in dead[0]["error"]["message"]
    assert dead[0]["error"]["traceback"][-2:] == ["h.py:10 in parse", "h.py:4 in wait_forever"]  # where it hung
    assert "retries" in result.stdout and "TimeoutError" in result.stderr  # shown as it happened


NOT_JSON = """\
    import math

    BAD = {"object": lambda: object(), "set": lambda: {1, 2}, "bytes": lambda: b"raw", "nan": lambda: math.nan,
           "inf": lambda: {"x": [math.inf]}}

    def parse(records, context):
        for record in records:
            row = record.json()
            kind = row["kind"]
            yield {"n": row["n"], "value": BAD[kind]() if kind in BAD else kind}

    def parse_list(records, context):  # rows returned after the last record: the runtime has to find the culprit
        return [{"n": r.json()["n"], "value": BAD[r.json()["kind"]]() if r.json()["kind"] in BAD else "ok"} for r in records]
"""


@pytest.mark.parametrize("function", ["parse", "parse_list"])
def test_rows_that_are_not_json_dead_letter_the_record_that_made_them(function: str, tmp_path: Path, pipeline_exe: str,
                                                                       cli_env_vars: dict[str, str]) -> None:
    kinds = ["ok", "object", "ok", "set", "bytes", "ok", "nan", "inf", "ok"]
    stage = STREAM_STAGE.format(timeout=60).replace("h.py:parse", f"h.py:{function}")
    spec, data = project(tmp_path, NOT_JSON, stage, [{"n": n, "kind": kind} for n, kind in enumerate(kinds)])
    result = run(cli_env_vars, pipeline_exe, spec, "--input", data)
    assert result.returncode == 1, result.stderr

    def strict(text: str) -> Any:
        return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} written to an output"))

    output = store_of(spec) / "parse" / "parse" / "local" / "000000000001-000000000009.jsonl"
    assert [strict(line)["n"] for line in output.read_text().splitlines()] == [0, 2, 5, 8]
    dead = dead_letters(spec, "parse")
    assert [d["index"] for d in dead] == [1, 3, 4, 6, 7] and {d["reason"] for d in dead} == {"handler raised"}
    assert all(d["error"]["type"] == "RowNotJSONError" for d in dead)
    messages = [d["error"]["message"] for d in dead]
    assert "object" in messages[0] and "set" in messages[1] and "bytes" in messages[2]
    assert all("not JSON compliant" in m for m in messages[3:])
    assert "dead letters: 5" in result.stdout


def test_splitting_a_huge_line_is_linear() -> None:
    """A 50 MB line in 64 KiB reads: every byte is scanned and copied a bounded number of times."""

    class Counted(bytes):
        scanned = copied = 0

        def rfind(self, *args: Any) -> int:  # type: ignore[override]
            Counted.scanned += len(self)
            return super().rfind(*args)

        def find(self, *args: Any) -> int:  # type: ignore[override]
            Counted.scanned += len(self)
            return super().find(*args)

        def split(self, *args: Any, **kwargs: Any) -> list[bytes]:  # type: ignore[override]
            Counted.scanned += len(self)
            return super().split(*args, **kwargs)

        def __getitem__(self, key: Any) -> Any:  # slices copy
            value = super().__getitem__(key)
            Counted.copied += len(value) if isinstance(value, bytes) else 0
            return value

        def __add__(self, other: bytes) -> bytes:  # type: ignore[override]
            Counted.copied += len(self) + len(other)
            return bytes(self) + other

        def __radd__(self, other: bytes) -> bytes:
            Counted.copied += len(self) + len(other)
            return other + bytes(self)

    size, piece = 50 << 20, 64 << 10
    line = b'{"blob": "' + b"x" * (size - 13) + b'"}\n'
    splitter = LineSplitter()
    out = []
    for start in range(0, len(line), piece):
        out.extend(splitter.feed(Counted(line[start:start + piece])))
    out.extend(splitter.finish())
    assert out == [line]
    assert Counted.scanned <= 2 * len(line) and Counted.copied <= 2 * len(line), (Counted.scanned, Counted.copied)


def test_a_big_record_on_stdin_goes_through(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    handlers = """\
        def parse(records, context):
            for record in records:
                row = record.json()
                yield {"n": row["n"], "size": len(row["blob"])}
    """
    spec, _ = project(tmp_path, handlers, STREAM_STAGE.format(timeout=60), [])
    records = [{"n": 0, "blob": "y" * (20 << 20)}, {"n": 1, "blob": "z"}]
    text = "".join(json.dumps(r) + "\n" for r in records)
    result = subprocess.run([pipeline_exe, "run", str(spec), "--input", "-"], input=text, env=cli_env_vars, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert rows(spec, "parse") == [{"n": 0, "size": 20 << 20}, {"n": 1, "size": 1}]


def test_a_closed_stdin_is_explained(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    spec, _ = project(tmp_path, "def parse(records, context):\n    return []\n", STREAM_STAGE.format(timeout=60), [])
    result = subprocess.run(["sh", "-c", f'exec "{pipeline_exe}" run "{spec}" --input - <&-'], env=cli_env_vars, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 1, result.stderr
    assert "standard input" in result.stderr and "closed" in result.stderr and "--input FILE" in result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr


def test_a_read_only_store_is_explained(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    spec, data = project(tmp_path / "p", "def parse(records, context):\n    return []\n", STREAM_STAGE.format(timeout=60), [{"n": 1}])
    store = tmp_path / "store"
    store.mkdir()
    if os.geteuid() == 0:  # root writes through permission bits: a read-only file system it is
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(store)], capture_output=True, check=False).returncode:
            pytest.skip("cannot mount a read-only tmpfs here")
    else:
        store.chmod(0o555)
    try:
        result = run(cli_env_vars, pipeline_exe, spec, "--input", data, "--store", store / "runs")
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", "-l", str(store)], check=False)
        store.chmod(0o755)
    assert result.returncode == 1, result.stderr
    assert str(store / "runs") in result.stderr and "--store" in result.stderr
    assert "read-only" in result.stderr or "permission denied" in result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr


def test_ctrl_c_says_what_is_done_and_how_to_resume(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    handlers = """\
        import time

        def parse(records, context):
            for record in records:
                yield record.json()
            time.sleep(0.2)
    """
    spec, data = project(tmp_path, handlers, STREAM_STAGE.format(timeout=60), [{"n": n} for n in range(400)])
    process = subprocess.Popen([pipeline_exe, "run", str(spec), "--input", str(data)], env=cli_env_vars, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    journal = store_of(spec) / "_run" / "journal.jsonl"
    while process.poll() is None and (not journal.exists() or journal.read_text().count('"done"') < 3):
        time.sleep(0.02)
    process.send_signal(2)  # SIGINT, what Ctrl-C sends
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted:" in stderr and "records are done and kept in" in stderr and str(store_of(spec)) in stderr
    assert "Run the same command again to resume" in stderr and "Traceback" not in stderr
    resumed = run(cli_env_vars, pipeline_exe, spec, "--input", data)
    assert resumed.returncode == 0 and "batches already done" in resumed.stdout, resumed.stderr
    assert [row["n"] for row in rows(spec, "parse")] == list(range(400))
