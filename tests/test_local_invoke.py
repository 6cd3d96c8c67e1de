"""`pipeline invoke STAGE`: one invocation with the stage's trigger semantics (stream records as a batch, an
object's rows, a schedule's window, an HTTP request), its rows on stdout and dead letters on stderr, exit 1
when anything was dead-lettered. Through the installed console script, on the bundled stacks."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from local_project import STREAM_STAGE, files, project, store_of
from test_local_run_stacks import SCORING, UPLOADS, bad_claims, copy_stack

from pipeline.runtime.invoke import decompress

REPO = Path(__file__).resolve().parents[1]


def invoke(env: dict[str, str], exe: str, *args: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([exe, "invoke", *map(str, args)], env=env, capture_output=True, text=True, timeout=120, check=False,
                          input=stdin.decode() if stdin is not None else None, stdin=None if stdin is not None else subprocess.DEVNULL)


def json_lines(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_stream_schedule_and_http_stages(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    spec = copy_stack(SCORING, tmp_path)
    readings = spec.parent / "data" / "readings.jsonl"
    lines = readings.read_bytes().splitlines()

    # A stream stage: the records are one batch (the devices in maintenance are filtered out).
    batch = invoke(cli_env_vars, pipeline_exe, "preprocess", spec, "--input", readings, "--quiet")
    assert batch.returncode == 0, batch.stderr
    assert len(json_lines(batch.stdout)) == 1992 and "preprocess (stream): 2,000 in, 1,992 rows out, 8 filtered out" in batch.stderr
    assert "at most batch_size (1,000)" in batch.stderr  # said, not hidden: a real stream never sends 2,000 at once
    # Malformed readings are dead-lettered one by one (exit 1).
    broken = invoke(cli_env_vars, pipeline_exe, "preprocess", spec, "--input", spec.parent / "data" / "readings-with-errors.jsonl", "--quiet")
    assert broken.returncode == 1 and "5 dead letters" in broken.stderr, broken.stderr
    assert "dead letter 9 (record at line 10, handler raised): ValueError: reading has no device_id" in broken.stderr

    clean = b"\n".join(lines[:20]) + b"\n"
    features = invoke(cli_env_vars, pipeline_exe, "preprocess", spec, "--input", "-", stdin=clean)
    assert features.returncode == 0 and len(json_lines(features.stdout)) == 19, features.stderr  # one device in maintenance: dropped
    assert "20 in, 19 rows out, 1 filtered out (no row, no error), 0 dead letters" in features.stderr

    # A schedule over accumulated outputs: the input is what the source wrote since the last run.
    scored = invoke(cli_env_vars, pipeline_exe, "score-batch", spec, "--input", "-", stdin=features.stdout.encode())
    assert scored.returncode == 0, scored.stderr
    out = json_lines(scored.stdout)
    assert [(r["device_id"], r["ts"]) for r in out if not r.get("summary")] == [(f["device_id"], f["ts"]) for f in json_lines(features.stdout)]
    assert sum(r["readings"] for r in out if r.get("summary")) == 19

    # An HTTP stage: the request body in, the answer's rows out; a bad row is a dead letter (exit 1); a body that is not rows is bad usage.
    body = ("[" + ",".join(line.decode() for line in lines[:3]) + "]").encode()
    answered = invoke(cli_env_vars, pipeline_exe, "score-api", spec, "--input", "-", "--format", "json", stdin=body)
    assert answered.returncode == 0, answered.stderr
    result = json.loads(answered.stdout)
    assert result["status"] == 200 and len(result["rows"]) == 3 and result["dead_letters"] == [] and result["trigger"] == "http"
    with_bad = invoke(cli_env_vars, pipeline_exe, "score-api", spec, "--input", "-", stdin=body[:-1] + b', {"ts": "x"}]')
    assert with_bad.returncode == 1 and len(json_lines(with_bad.stdout)) == 3
    assert "1 dead letter;" in with_bad.stderr and "reading has no device_id" in with_bad.stderr
    not_rows = invoke(cli_env_vars, pipeline_exe, "score-api", spec, "--input", "-", stdin=b"not json")
    assert not_rows.returncode == 2 and "answered 400" in not_rows.stderr and "not JSON" in not_rows.stderr


def test_an_object_stage_on_an_uploaded_file_and_outputs_kept_with_store(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    spec = copy_stack(UPLOADS, tmp_path)
    gz = spec.parent / "data" / "claims-2026-11-01.jsonl.gz"
    clean = invoke(cli_env_vars, pipeline_exe, "process", spec, "--input", gz, "--format", "json", "--quiet")
    assert clean.returncode == 0 and json.loads(clean.stdout)["output"] == "process/process/claims-2026-11-01.jsonl", clean.stderr
    assert len(json.loads(clean.stdout)["rows"]) == len(set(json.loads(line)["claim_id"] for line in decompress(gz.read_bytes()).splitlines()))
    upload = spec.parent / "data" / "claims-with-errors.jsonl"
    kept = tmp_path / "kept"
    result = invoke(cli_env_vars, pipeline_exe, "process", spec, "--input", upload, "--format", "json", "--store", kept, "--quiet")
    assert result.returncode == 1, result.stderr
    answer = json.loads(result.stdout)
    lines = upload.read_text().splitlines()
    bad = bad_claims(lines)
    assert bad and sorted(d["input"]["line"] for d in answer["dead_letters"]) == sorted(bad)
    assert {d["input"]["key"] for d in answer["dead_letters"]} == {f"uploads/{upload.name}"}  # the file is the object, by its name
    assert answer["items"] == len(lines) and answer["output"] == "process/process/claims-with-errors.jsonl"
    assert [json.loads(line) for line in (kept / answer["output"]).read_text().splitlines()] == answer["rows"]
    assert f"output: {kept / answer['output']}" in result.stderr


def test_a_schedule_without_input_a_handler_that_exits_and_usage_errors(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    example = tmp_path / "transactions"
    shutil.copytree(REPO / "stacks" / "transactions", example, ignore=shutil.ignore_patterns(".pipeline"))
    calibrate = invoke(cli_env_vars, pipeline_exe, "calibrate", example / "pipeline.yaml")
    assert calibrate.returncode == 0 and json_lines(calibrate.stdout)[0]["model"], calibrate.stderr
    given = invoke(cli_env_vars, pipeline_exe, "calibrate", example / "pipeline.yaml", "--input", example / "data" / "transactions.jsonl")
    assert given.returncode == 2 and "takes no input" in given.stderr

    handlers = """\
        import sys

        def parse(records, context):
            for record in records:
                if record.json().get("exit"):
                    sys.exit(3)
                yield record.json()
    """
    spec, data = project(tmp_path / "small", handlers, STREAM_STAGE.format(timeout=30), [{"n": 1}, {"n": 2, "exit": True}])
    exited = invoke(cli_env_vars, pipeline_exe, "parse", spec, "--input", data)
    assert exited.returncode == 1 and exited.stdout == ""  # retried (retries: 1), then the whole batch dead-lettered
    assert "2 dead letters, 1 retry" in exited.stderr and "retries exhausted" in exited.stderr and "SystemExit" in exited.stderr

    usage = [(("nope", spec, "--input", data), "has no stage 'nope'; its stages: parse"),
             (("parse", spec), "needs an input"),
             (("parse", spec, "--input", tmp_path / "missing.jsonl"), "does not exist")]
    for args, message in usage:
        result = invoke(cli_env_vars, pipeline_exe, *args)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
    as_json = invoke(cli_env_vars, pipeline_exe, "nope", spec, "--input", data, "--format", "json")
    assert as_json.returncode == 2 and json.loads(as_json.stdout)["error"]["kind"] == "usage"


def test_invoke_leaves_the_runs_store_alone(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    handlers = """\
        def parse(records, context):
            for record in records:
                yield record.json()
    """
    spec, data = project(tmp_path, handlers, STREAM_STAGE.format(timeout=30), [{"n": n} for n in range(25)])
    ran = subprocess.run([pipeline_exe, "run", str(spec), "--input", str(data)], env=cli_env_vars, capture_output=True, text=True,
                         timeout=120, check=False)
    assert ran.returncode == 0, ran.stderr
    before = files(store_of(spec))
    result = invoke(cli_env_vars, pipeline_exe, "parse", spec, "--input", data)
    assert result.returncode == 0 and len(json_lines(result.stdout)) == 25
    assert files(store_of(spec)) == before  # a scratch store, removed afterwards
    refused = invoke(cli_env_vars, pipeline_exe, "parse", spec, "--input", data, "--store", store_of(spec))
    assert refused.returncode == 2 and "is the store of a `pipeline run`" in refused.stderr
    assert files(store_of(spec)) == before
