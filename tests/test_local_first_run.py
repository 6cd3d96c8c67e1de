"""The everyday local loop as a new user meets it (issue 21, items 2, 5 and part of 11; issue 19, items 18
and part of 19), through the installed console script: `init`, the first run it suggests, the second one
that shows dead letters, the `run` summary at 80 columns, what `init` and a new run say, spec overlays."""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
from pathlib import Path

import pytest
from local_project import project, run, store_of
from test_local_run_stacks import SCORING, copy_stack
from test_local_serve import Server


def cli(env: dict[str, str], exe: str, *args: str | Path, cwd: Path | None = None, columns: int = 80) -> subprocess.CompletedProcess[str]:
    return subprocess.run([exe, *map(str, args)], env={**env, "COLUMNS": str(columns)}, cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False, stdin=subprocess.DEVNULL)


def suggested(output: str) -> list[list[str]]:
    """The `pipeline run ...` commands `init` suggests, in order, without their comments."""
    return [shlex.split(line.split("#", 1)[0])[1:] for line in output.splitlines() if line.strip().startswith("pipeline run ")]


@pytest.mark.parametrize("template", ["transactions", "stream-scoring", "upload-processing"])
def test_the_first_run_init_suggests_succeeds_and_the_second_shows_dead_letters_once_each(template: str, tmp_path: Path, pipeline_exe: str,
                                                                                        cli_env_vars: dict[str, str]) -> None:
    folder = tmp_path / "my-project"
    created = cli(cli_env_vars, pipeline_exe, "init", folder, "--template", template)
    assert created.returncode == 0, created.stderr
    first, second = suggested(created.stdout)
    assert "with-errors" not in " ".join(first) and "with-errors" in " ".join(second)
    assert "dead-lettered" in created.stdout  # the second step is explained before it is run

    ran = cli(cli_env_vars, pipeline_exe, *first, cwd=folder)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "dead letters: 0" in ran.stdout and "Traceback" not in ran.stderr and "error" not in ran.stderr.lower(), ran.stderr

    bad = cli(cli_env_vars, pipeline_exe, *second, cwd=folder)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    dead = int(re.search(r"dead letters: (\d+) ", bad.stdout).group(1))  # type: ignore[union-attr]
    assert dead > 0 and bad.stderr.count("record dead-lettered") == dead
    assert bad.stderr.count("Traceback (most recent call last)") <= dead  # once per record at most
    assert f"{dead} dead letters (listed above)" in bad.stderr
    assert "the last run's outputs there are removed" in bad.stderr  # a new run, and it says what it did to the last one's


RETRIED = """\
def parse(records, context):
    raise RuntimeError("the database is down")
"""


def test_a_retried_input_shows_its_traceback_once(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    stage = "  - name: parse\n    handler: handlers/h.py:parse\n    retries: 3\n    trigger: {stream: {batch_size: 10, max_batching_window_s: 1}}\n"
    spec, data = project(tmp_path, RETRIED, stage, [{"n": n} for n in range(5)])
    result = run(cli_env_vars, pipeline_exe, spec, "--input", data)
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("Traceback (most recent call last)") == 1, result.stderr
    assert result.stderr.count("the same error again: RuntimeError: the database is down") == 3
    log = (store_of(spec) / "run.log").read_text()
    assert log.count("the database is down") >= 4  # run.log keeps every attempt


WIDE = """\
import time


def parse(records, context):
    for record in records:
        row = record.json()
        if row["n"] == 7:
            raise ValueError("record seven is bad")
        if row["n"] % 4 == 0:
            continue
        yield row


def totals(rows, context):
    count = 0
    for row in rows:
        count += 1
    yield {"rows": count}


def fails(rows, context):
    raise TimeoutError("the service did not answer")
"""
WIDE_STAGES = """\
  - name: parse-and-validate-1
    handler: handlers/h.py:parse
    trigger: {stream: {batch_size: 10, max_batching_window_s: 1}}
  - name: aggregate-per-window
    handler: handlers/h.py:totals
    trigger: {objects: {from: parse-and-validate-1}}
  - name: call-a-slow-service2
    handler: handlers/h.py:fails
    retries: 1
    trigger: {objects: {from: parse-and-validate-1}}
"""


def test_the_run_summary_reads_at_80_columns(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    spec, data = project(tmp_path / "a-project-with-a-long-name", WIDE, WIDE_STAGES, [{"n": n} for n in range(40)])
    result = cli(cli_env_vars, pipeline_exe, "run", spec, "--input", data, "--quiet")
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), "\n".join(line for line in lines if len(line) > 80)
    assert "…" not in result.stdout
    header = next(i for i, line in enumerate(lines) if line.startswith("stage"))
    for word in ("trigger", "runs", "in", "out", "filtered", "dead", "retries", "failed"):
        assert word in lines[header] or word in lines[header - 1], (word, lines[header - 1:header + 1])
    rows = {line.split()[0]: line.split()[1:] for line in lines[header + 2:header + 5]}
    assert set(rows) == {"parse-and-validate-1", "aggregate-per-window", "call-a-slow-service2"}  # names whole
    runs, taken, out, filtered, dead, retries, failed = (int(v.replace(",", "")) for v in rows["parse-and-validate-1"][1:])
    assert (runs, taken, out, filtered, dead, retries, failed) == (4, 40, 29, 10, 1, 0, 0)  # n % 4 == 0 gave no row; n == 7 raised
    assert rows["aggregate-per-window"][1:] == ["4", "29", "4", "0", "0", "0", "0"]  # it aggregated: nothing filtered out
    assert rows["call-a-slow-service2"][-2:] == ["4", "4"]  # retried, then failed as a whole
    listed = [line.strip() for line in lines if line.startswith("  ") and line.strip().endswith(".jsonl")]
    assert listed and all((store_of(spec) / "dead-letter" / key).is_file() for key in listed)  # whole, one a line


def test_init_says_what_it_named_the_pipeline_and_refuses_what_it_cannot_make(tmp_path: Path, pipeline_exe: str,
                                                                             cli_env_vars: dict[str, str]) -> None:
    created = cli(cli_env_vars, pipeline_exe, "init", tmp_path / "Fraud Scoring")
    assert created.returncode == 0, created.stderr
    assert "pipeline name: fraud-scoring, after the folder (--name NAME sets another)" in created.stdout
    assert "the template calls it txn-scoring" in created.stdout and "cd " + shlex.quote(str(tmp_path / "Fraud Scoring")) in created.stdout
    assert all(len(line) <= 80 for line in created.stdout.splitlines() if str(tmp_path) not in line), created.stdout
    named = cli(cli_env_vars, pipeline_exe, "init", tmp_path / "other", "--name", "fraud-two")
    assert "pipeline name: fraud-two (--name NAME sets another)" in named.stdout

    a_file = tmp_path / "notes.txt"
    a_file.write_text("hello\n")
    refused = cli(cli_env_vars, pipeline_exe, "init", a_file)
    assert refused.returncode == 2 and f"{a_file} is a file, not a folder" in refused.stderr, refused.stderr
    under_a_file = cli(cli_env_vars, pipeline_exe, "init", a_file / "project")
    assert under_a_file.returncode == 2 and f"cannot create {a_file / 'project'}" in under_a_file.stderr, under_a_file.stderr
    assert "internal error" not in under_a_file.stderr and "Traceback" not in under_a_file.stderr
    assert a_file.read_text() == "hello\n"


def test_a_relative_store_works_from_any_folder(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    spec = copy_stack(SCORING, tmp_path / "project")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = cli(cli_env_vars, pipeline_exe, "run", spec, "--input", spec.parent / "data" / "readings.jsonl", "--store", "here", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert (elsewhere / "here" / "preprocess" / "preprocess" / "local").is_dir() and not (spec.parent / "here").exists()


def test_serving_after_a_run_says_the_runs_outputs_are_removed(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    spec = copy_stack(SCORING, tmp_path)
    assert run(cli_env_vars, pipeline_exe, spec, "--input", spec.parent / "data" / "readings-with-errors.jsonl", "--quiet").returncode == 1
    server = Server(pipeline_exe, cli_env_vars, spec, "--quiet")
    code, stderr = server.stop(signal.SIGINT)
    assert code == 0 and "the store holds a run of `pipeline run`" not in stderr
    assert "starting a new run" in stderr and "the last run's outputs there are removed" in stderr, stderr


ONE_STAGE = "name: overlaid\nstages:\n  - name: first\n    handler: handlers/h.py:handle\n    trigger:\n      stream: {}\n"


def test_overlays_empty_or_changing_a_trigger_kind_and_control_characters(tmp_path: Path, pipeline_exe: str,
                                                                          cli_env_vars: dict[str, str]) -> None:
    (tmp_path / "handlers").mkdir()
    (tmp_path / "handlers" / "h.py").write_text("def handle(records, context):\n    return []\n")
    (tmp_path / "stacks").mkdir()
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(ONE_STAGE)
    (tmp_path / "stacks" / "notes.yaml").write_text("# nothing set for this stack yet\n\n  # (indented comment)\n")
    (tmp_path / "stacks" / "blank.yaml").write_text("")
    (tmp_path / "stacks" / "kind.yaml").write_text("# make it a schedule here\nstages:\n  - name: first\n    trigger:\n      schedule: rate(1 hour)\n")
    for stack in ("notes", "blank"):
        valid = cli(cli_env_vars, pipeline_exe, "validate", spec, "--stack", stack)
        assert valid.returncode == 0 and "valid: overlaid" in valid.stdout, valid.stderr

    kind = cli(cli_env_vars, pipeline_exe, "validate", spec, "--stack", "kind", "--format", "json")
    assert kind.returncode == 2, kind.stdout
    (problem,) = json.loads(kind.stdout)["error"]["problems"]
    assert problem["file"].endswith("kind.yaml") and (problem["line"], problem["column"]) == (5, 7), problem
    assert "cannot change the trigger of stage 'first' from 'stream'" in problem["message"] and "pipeline.yaml:6)" in problem["message"]

    spec.write_text(ONE_STAGE + 'description: "ring \x07 the bell"\n')
    bell = cli(cli_env_vars, pipeline_exe, "validate", spec, "--format", "json")
    (problem,) = json.loads(bell.stdout)["error"]["problems"]
    assert bell.returncode == 2 and (problem["line"], problem["column"]) == (7, 20), problem
    assert "control character U+0007" in problem["message"] and "\\x07" in problem["hint"]
    text = cli(cli_env_vars, pipeline_exe, "validate", spec)
    assert text.returncode == 2 and "pipeline.yaml:7:20:" in text.stderr and "\x07" not in text.stderr


QUOTING = """\
def parse(records, context):
    for record in records:
        raise ValueError(f"unknown status {record.json()['status']}")
"""


def test_an_error_quoting_a_record_cannot_write_to_the_terminal(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    stage = "  - name: parse\n    handler: handlers/h.py:parse\n    trigger: {stream: {batch_size: 10, max_batching_window_s: 1}}\n"
    spec, data = project(tmp_path, QUOTING, stage, [{"status": "\x1b]0;owned\x07\x1b[2J"}])
    result = run(cli_env_vars, pipeline_exe, spec, "--input", data)
    assert result.returncode == 1 and "unknown status \\x1b]0;owned\\x07\\x1b[2J" in result.stderr, result.stderr
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
