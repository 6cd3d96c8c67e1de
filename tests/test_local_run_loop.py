"""The local loop people use every day, through the installed console script: one store per pipeline
and stack, a new input or new code starts a new run, live logs, exit codes and counts, stage
requirements, `--watch`, and a terminal on stdin."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pty
import select
import signal
import subprocess
import time
import zipfile
from pathlib import Path
from typing import IO

from local_project import STREAM_STAGE, files, project, rows, run, store_of, write_records

ECHO = """\
def parse(records, context):
    for record in records:
        yield record.json()
"""


def test_two_specs_in_one_folder_keep_their_own_state(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    first, data = project(tmp_path, ECHO, STREAM_STAGE.format(timeout=60), [{"n": n} for n in range(15)], name="alpha", spec_name="a.yaml")
    assert run(cli_env_vars, pipeline_exe, first, "--input", data).returncode == 0
    before = files(store_of(first, "alpha"))
    second, _ = project(tmp_path, ECHO, STREAM_STAGE.format(timeout=60), [], name="beta", spec_name="b.yaml")
    other = tmp_path / "other.jsonl"
    write_records(other, [{"n": -n} for n in range(3)])
    result = run(cli_env_vars, pipeline_exe, second, "--input", other)
    assert result.returncode == 0, result.stderr
    assert files(store_of(first, "alpha")) == before  # untouched, not emptied as "another run"
    assert [r["n"] for r in rows(first, "parse", "alpha")] == list(range(15))
    assert [r["n"] for r in rows(second, "parse", "beta")] == [0, -1, -2]

    # A third spec with the first one's name would share its store (and its cloud stack): refused, nothing touched.
    third, _ = project(tmp_path, ECHO, STREAM_STAGE.format(timeout=60), [], name="alpha", spec_name="c.yaml")
    clash = run(cli_env_vars, pipeline_exe, third, "--input", other)
    assert clash.returncode == 2 and "a.yaml" in clash.stderr and "--store" in clash.stderr, clash.stderr
    assert files(store_of(first, "alpha")) == before


def test_a_new_input_starts_a_new_run_and_the_same_input_resumes(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    spec, data = project(tmp_path, ECHO, STREAM_STAGE.format(timeout=60), [{"n": n} for n in range(25)])
    assert run(cli_env_vars, pipeline_exe, spec, "--input", data).returncode == 0

    write_records(data, [{"n": 100 + n} for n in range(12)])  # fewer records: nothing of the old run may remain
    changed = run(cli_env_vars, pipeline_exe, spec, "--input", data)
    assert changed.returncode == 0, changed.stderr
    assert "the input differs from the last run's" in changed.stderr and "starting a new run" in changed.stderr
    assert "the last run's outputs there are removed" in changed.stderr, changed.stderr
    assert [r["n"] for r in rows(spec, "parse")] == [100 + n for n in range(12)]

    same = run(cli_env_vars, pipeline_exe, spec, "--input", data)
    assert same.returncode == 0 and "0 processed by this run, 2 batches already done" in same.stdout, same.stdout

    # Standard input: the journal's first batch matches, a later one does not; the new run still starts at line 1.
    records = [{"n": 100 + n} for n in range(10)] + [{"n": 200 + n} for n in range(7)]
    text = "".join(json.dumps(r) + "\n" for r in records)
    piped = subprocess.run([pipeline_exe, "run", str(spec), "--input", "-"], input=text, env=cli_env_vars, capture_output=True,
                           text=True, timeout=60, check=False)
    assert piped.returncode == 0 and "starting a new run" in piped.stderr, piped.stderr
    assert [r["n"] for r in rows(spec, "parse")] == [r["n"] for r in records]

    # Changed code is a new run too, not a resume with the old code's outputs.
    (spec.parent / "handlers" / "h.py").write_text(ECHO.replace("yield record.json()", 'yield {**record.json(), "v": 2}'))
    recoded = run(cli_env_vars, pipeline_exe, spec, "--input", data)
    assert recoded.returncode == 0 and "code changed" in recoded.stderr, recoded.stderr
    assert "the last run's outputs there are removed" in recoded.stderr  # said, not done silently
    assert {r["v"] for r in rows(spec, "parse")} == {2}


LOGGING = """\
def parse(records, context):
    for record in records:
        row = record.json()
        context.logger.info("hello from %s", row["n"], n=row["n"])
        print(f"printed {row['n']}")
        if row["n"] == 2:
            raise ValueError("two is not allowed")
        yield row
"""


def test_handler_logs_and_tracebacks_show_on_stderr_unless_quiet(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    spec, data = project(tmp_path, LOGGING, STREAM_STAGE.format(timeout=60), [{"n": n} for n in range(4)])
    loud = run(cli_env_vars, pipeline_exe, spec, "--input", data)
    assert loud.returncode == 1
    assert "parse | INFO hello from 0" in loud.stderr and "parse | printed 3" in loud.stderr
    assert "ValueError: two is not allowed" in loud.stderr and 'h.py", line 7, in parse' in loud.stderr
    assert "invoke.py" not in loud.stderr  # the runtime's own frames are left out

    quiet = run(cli_env_vars, pipeline_exe, spec, "--input", data, "--quiet", "--fresh")
    assert quiet.returncode == 1
    assert "hello" not in quiet.stderr and "printed" not in quiet.stderr and "Traceback" not in quiet.stderr
    log = (store_of(spec) / "run.log").read_text()
    assert "hello from 0" in log and "printed 3" in log and "two is not allowed" in log  # run.log keeps everything


def _read_until(stream: IO[bytes], needle: bytes, timeout: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], 0.1)
        if ready:
            chunk = os.read(stream.fileno(), 65536)
            if not chunk:
                break
            seen += chunk
    return seen


def test_handler_logs_show_as_they_happen(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    spec, _ = project(tmp_path, LOGGING, STREAM_STAGE.format(timeout=60), [])
    process = subprocess.Popen([pipeline_exe, "run", str(spec), "--input", "-"], env=cli_env_vars, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdin is not None and process.stderr is not None
    try:
        process.stdin.write(b'{"n": 7}\n')
        process.stdin.flush()
        seen = _read_until(process.stderr, b"printed 7", timeout=30)  # the batching window (1 s) closes the batch
        assert b"hello from 7" in seen and b"printed 7" in seen, seen
        assert process.poll() is None  # while the run is still going: its input is still open
    finally:
        process.stdin.close()
        process.wait(timeout=60)
    assert process.returncode == 0


def test_exit_code_and_summary_count_filtered_rows_and_dead_letters(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    handlers = """\
        def parse(records, context):
            for record in records:
                row = record.json()
                if row["n"] % 2:
                    continue
                if row["n"] == 8:
                    raise ValueError("eight")
                yield row
    """
    spec, data = project(tmp_path, handlers, STREAM_STAGE.format(timeout=60), [{"n": n} for n in range(8)])
    clean = run(cli_env_vars, pipeline_exe, spec, "--input", data)
    assert clean.returncode == 0, clean.stderr
    assert "filtered out (no row, no error): parse 4" in clean.stdout and "dead letters: 0" in clean.stdout

    write_records(data, [{"n": n} for n in range(12)])
    failed = run(cli_env_vars, pipeline_exe, spec, "--input", data)
    assert failed.returncode == 1
    assert "filtered out (no row, no error): parse 6" in failed.stdout
    listed = [line.strip() for line in failed.stdout.splitlines() if line.startswith("  parse/")]
    assert len(listed) == 1 and (store_of(spec) / "dead-letter" / listed[0]).is_file(), failed.stdout
    assert "dead letters: 1 (parse 1), each with its error, in dead-letter/:" in failed.stdout and "1 dead letters" in failed.stderr


REQUIRES = """\
import localdep


def parse(records, context):
    for record in records:
        yield {**record.json(), "value": localdep.VALUE}
"""


def _wheel(folder: Path) -> None:
    """A tiny pure-Python wheel, so installing requirements works with no index at all."""
    files = {"localdep/__init__.py": b"VALUE = 42\n",
             "localdep-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: localdep\nVersion: 1.0\n",
             "localdep-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"
                     for name, data in files.items()) + "localdep-1.0.dist-info/RECORD,,\n"
    folder.mkdir(parents=True)
    with zipfile.ZipFile(folder / "localdep-1.0-py3-none-any.whl", "w") as wheel:
        for name, data in {**files, "localdep-1.0.dist-info/RECORD": record.encode()}.items():
            wheel.writestr(name, data)


def test_stage_requirements_are_installed_once_into_a_cache(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    stage = STREAM_STAGE.format(timeout=60) + "    requirements: handlers/requirements.txt\n"
    spec, data = project(tmp_path / "p", REQUIRES, stage, [{"n": 1}])
    _wheel(spec.parent / "handlers" / "wheels")
    (spec.parent / "handlers" / "requirements.txt").write_text("--find-links wheels\nlocaldep==1.0\n")
    env = {**cli_env_vars, "PIP_NO_INDEX": "1", "PIPELINE_CACHE_DIR": str(tmp_path / "cache")}  # offline

    first = run(env, pipeline_exe, spec, "--input", data)
    assert first.returncode == 0, first.stderr
    assert "installing the requirements of stage parse" in first.stderr and rows(spec, "parse") == [{"n": 1, "value": 42}]
    again = run(env, pipeline_exe, spec, "--input", data, "--fresh")
    assert again.returncode == 0 and "installing" not in again.stderr, again.stderr
    assert len([p for p in (tmp_path / "cache" / "requirements").iterdir() if p.is_dir()]) == 1


def test_a_missing_requirement_offline_is_named(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    stage = STREAM_STAGE.format(timeout=60) + "    requirements: handlers/requirements.txt\n"
    spec, data = project(tmp_path / "p", REQUIRES, stage, [{"n": 1}])
    (spec.parent / "handlers" / "requirements.txt").write_text("pipeline-deployer-no-such-package==1.0\n")
    env = {**cli_env_vars, "PIP_NO_INDEX": "1", "PIPELINE_CACHE_DIR": str(tmp_path / "cache")}
    result = run(env, pipeline_exe, spec, "--input", data)
    assert result.returncode == 1, result.stderr
    assert "pipeline-deployer-no-such-package" in result.stderr and "could not be found" in result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr

    # Without requirements the import itself fails: named, before any input is taken.
    spec.write_text("".join(line for line in spec.read_text().splitlines(keepends=True) if "requirements:" not in line))
    missing = run(env, pipeline_exe, spec, "--input", data)
    assert missing.returncode == 1 and "No module named 'localdep'" in missing.stderr and "requirements" in missing.stderr, missing.stderr
    assert not (store_of(spec) / "parse").exists()


def test_watch_runs_again_when_a_handler_or_the_input_changes(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    handlers = ECHO.replace("yield record.json()", 'yield {**record.json(), "x": 2}')
    spec, data = project(tmp_path, handlers, STREAM_STAGE.format(timeout=60), [{"n": n} for n in range(3)])
    process = subprocess.Popen([pipeline_exe, "run", str(spec), "--input", str(data), "--watch", "--quiet"], env=cli_env_vars,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None
    try:
        assert b"run.log" in _read_until(process.stdout, b"run.log", timeout=60)
        assert {r["x"] for r in rows(spec, "parse")} == {2}

        # Same size, likely the same second: stale bytecode (.pyc keys on whole seconds and size) must not run.
        (spec.parent / "handlers" / "h.py").write_text(handlers.replace('"x": 2', '"x": 3'))
        assert b"run.log" in _read_until(process.stdout, b"run.log", timeout=60)
        assert {r["x"] for r in rows(spec, "parse")} == {3}

        write_records(data, [{"n": n} for n in range(5)])
        assert b"run.log" in _read_until(process.stdout, b"run.log", timeout=60)
        assert [r["n"] for r in rows(spec, "parse")] == list(range(5))
        assert process.stderr is not None
        seen = b""
        while seen.count(b"watching") < 3 and process.poll() is None:  # idle again: what Ctrl-C ends
            seen += _read_until(process.stderr, b"watching", timeout=10)
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, seen + stderr  # the last run's exit code
    assert seen.count(b"running again") == 2


def test_a_terminal_on_stdin_is_told_it_is_read(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    spec, _ = project(tmp_path, ECHO, STREAM_STAGE.format(timeout=60), [])
    controller, terminal = pty.openpty()
    process = subprocess.Popen([pipeline_exe, "run", str(spec)], env=cli_env_vars, stdin=terminal, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, cwd=tmp_path)
    os.close(terminal)
    try:
        assert process.stderr is not None
        seen = _read_until(process.stderr, b"standard input", timeout=30)
        assert b"reading JSON-lines records from standard input" in seen and b"Ctrl-D" in seen, seen
        os.write(controller, b'{"n": 5}\n\x04')  # a record, then Ctrl-D: end of input
        stdout, _ = process.communicate(timeout=60)
    finally:
        os.close(controller)
    assert process.returncode == 0 and b"records in: 1" in stdout
    assert rows(spec, "parse") == [{"n": 5}]
