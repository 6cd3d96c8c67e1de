"""`pipeline run` on the bundled stacks that use uploads, schedules over accumulated outputs and an HTTP
stage (`stacks/upload-processing`, `stacks/stream-scoring`), through the installed console script."""

from __future__ import annotations

import gzip
import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

from local_project import jsonl, project, rows, run, store_of

from pipeline.runtime.window import STATE

REPO = Path(__file__).resolve().parents[1]
UPLOADS = REPO / "stacks" / "upload-processing"
SCORING = REPO / "stacks" / "stream-scoring"


def copy_stack(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / source.name
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".pipeline", "__pycache__"))
    return target / "pipeline.yaml"


def bad_claims(lines: list[str]) -> set[int]:
    """Which lines of a partner file the stack's handler cannot take, each tried alone (the runtime isolates them)."""
    spec = importlib.util.spec_from_file_location("upload_processing_handler", UPLOADS / "handlers" / "process.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    bad = set()
    for index, line in enumerate(lines):
        try:
            list(module.process([json.loads(line)], None))
        except Exception:
            bad.add(index)
    return bad


def test_uploaded_files_land_in_the_uploads_bucket_and_run_the_object_stage(tmp_path: Path, pipeline_exe: str,
                                                                            cli_env_vars: dict[str, str]) -> None:
    spec = copy_stack(UPLOADS, tmp_path)
    gz, plain = spec.parent / "data" / "claims-2026-11-01.jsonl.gz", spec.parent / "data" / "claims-with-errors.jsonl"
    result = run(cli_env_vars, pipeline_exe, spec, "--upload", gz, "--upload", plain, "--quiet")
    assert result.returncode == 1, result.stdout + result.stderr  # the sample of bad claims: dead letters
    assert "uploads: 2 files (2 processed by this run)" in result.stdout and "internal error" not in result.stderr
    assert "records in" not in result.stdout  # no stream input, nothing said about one
    root = store_of(spec, "claims-intake")
    assert (root / "uploads" / "uploads" / gz.name).read_bytes() == gz.read_bytes()  # as uploaded, under its own name
    assert (root / "uploads" / "uploads" / plain.name).read_bytes() == plain.read_bytes()

    total_dead = 0
    for path, text in ((gz, gzip.decompress(gz.read_bytes()).decode()), (plain, plain.read_text())):
        lines = text.splitlines()
        stem = path.name.split(".")[0]
        dead = jsonl(root / "dead-letter" / "process" / f"{stem}.jsonl")
        bad = bad_claims(lines)
        assert {d["input"]["line"] for d in dead} == bad and len(dead) == len(bad) and (path is gz) == (not bad)  # gz: all good
        assert all(d["input"]["key"] == f"uploads/{path.name}" and d["input"]["bucket"] == "uploads" for d in dead)
        assert path is gz or "not JSON" in {d["reason"] for d in dead}  # the line that is not JSON, dead-lettered by the runtime
        claims = jsonl(root / "process" / "process" / f"{stem}.jsonl")
        good_ids = {json.loads(lines[i])["claim_id"] for i in range(len(lines)) if i not in bad}
        assert {c["claim_id"] for c in claims} == good_ids and all(c["amount_usd"] > 0 for c in claims)
        total_dead += len(dead)
    assert f"dead letters: {total_dead} (process {total_dead})" in result.stdout

    before = {p: p.read_bytes() for p in root.rglob("*.jsonl*") if "_run" not in p.parts}
    again = run(cli_env_vars, pipeline_exe, spec, "--upload", gz, "--upload", plain, "--quiet")
    assert again.returncode == 1 and "uploads: 2 files (0 processed by this run, 2 already done)" in again.stdout, again.stdout
    assert {p: p.read_bytes() for p in root.rglob("*.jsonl*") if "_run" not in p.parts} == before

    fewer = run(cli_env_vars, pipeline_exe, spec, "--upload", plain, "--quiet")  # another set of files: another run
    assert "the uploaded files (--upload) differ from the last run's: starting a new run" in fewer.stderr
    assert not (root / "uploads" / "uploads" / gz.name).exists() and (root / "process" / "process" / "claims-with-errors.jsonl").is_file()


def test_upload_usage_errors(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    spec = copy_stack(UPLOADS, tmp_path)
    data = spec.parent / "data" / "claims-2026-11-02.jsonl"
    cases: list[tuple[tuple[Any, ...], str]] = [
        ((spec,), "is fed by uploads: pass its files with --upload FILE"),
        ((spec, "--input", data), "has no stream, so nothing reads --input records"),
        ((spec, "--upload", tmp_path / "missing.jsonl"), "does not exist"),
        (("--upload", data, spec.parent / "data" / "claims-2026-11-01.jsonl.gz"), "repeat --upload before each file"),
        ((spec, "--upload", data, "--upload", tmp_path / "claims-2026-11-02.jsonl"), "would both land as 'claims-2026-11-02.jsonl'"),
        ((copy_stack(SCORING, tmp_path / "scoring"), "--upload", data), "has no uploads bucket"),
    ]
    (tmp_path / "claims-2026-11-02.jsonl").write_bytes(data.read_bytes())
    for args, message in cases:
        result = run(cli_env_vars, pipeline_exe, *args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_stream_scoring_scores_what_preprocess_wrote_and_says_the_http_stage_was_not_invoked(tmp_path: Path, pipeline_exe: str,
                                                                                             cli_env_vars: dict[str, str]) -> None:
    spec = copy_stack(SCORING, tmp_path)
    readings = spec.parent / "data" / "readings.jsonl"
    result = run(cli_env_vars, pipeline_exe, spec, "--input", readings, "--quiet")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "score-api: an HTTP stage, not invoked" in result.stdout and "pipeline invoke score-api" in result.stdout
    score_api_row = next(line for line in result.stdout.splitlines() if line.strip("│ ").startswith("score-api"))
    assert "0" not in score_api_row.split("http", 1)[1] and "-" in score_api_row  # no counts shown as zeros

    features = rows(spec, "preprocess", name="sensor-scoring")
    scored = rows(spec, "score-batch", name="sensor-scoring")
    per_reading = [s for s in scored if not s.get("summary")]
    assert len(features) == 1992 and [(s["device_id"], s["ts"]) for s in per_reading] == [(f["device_id"], f["ts"]) for f in features]
    summaries = [s for s in scored if s.get("summary")]
    assert {s["device_id"] for s in summaries} == {f["device_id"] for f in features}
    assert sum(s["readings"] for s in summaries) == len(features)
    root = store_of(spec, "sensor-scoring")
    mark = json.loads((root / "score-batch" / "_state" / "score-batch" / STATE).read_text())
    assert mark["last_run"]["objects"] == 2 and mark["runs"] == 1  # both preprocess outputs, read in one run
    assert "dead letters: 0" in result.stdout

    output = root / "score-batch" / "score-batch" / "window" / "start.jsonl"  # the first window: keyed by its start
    before = output.read_bytes()
    again = run(cli_env_vars, pipeline_exe, spec, "--input", readings, "--quiet")
    assert "0 processed by this run" in again.stdout and output.read_bytes() == before


BOTH = """\
def parse(records, context):
    for record in records:
        yield {"from": "stream", **record.json()}


def take(rows, context):
    for row in rows:
        yield {"from": "upload", **row}


def count(rows, context):
    rows = list(rows)
    yield {"rows": len(rows), "sources": sorted({row["from"] for row in rows})}
"""
BOTH_STAGES = """\
  - name: parse
    handler: handlers/h.py:parse
    trigger: {stream: {batch_size: 10, max_batching_window_s: 1}}
  - name: take
    handler: handlers/h.py:take
    trigger: {objects: {from: uploads}}
  - name: count
    handler: handlers/h.py:count
    trigger: {schedule: "rate(1 hour)", from: take}
"""


def test_records_and_uploads_in_one_run(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    spec, data = project(tmp_path, BOTH, BOTH_STAGES, [{"n": n} for n in range(25)], header="stream: {archive: false}\nuploads: {}\n")
    upload = tmp_path / "batch one.jsonl"  # any name: it is the object's name in the landing bucket
    upload.write_text("".join(json.dumps({"u": n}) + "\n" for n in range(7)))
    result = run(cli_env_vars, pipeline_exe, spec, "--input", data, "--upload", upload)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "uploads: 1 file (1 processed by this run)" in result.stdout and "records in: 25 (25 processed by this run)" in result.stdout
    assert len(rows(spec, "parse")) == 25 and [r["u"] for r in rows(spec, "take")] == list(range(7))
    assert (store_of(spec) / "uploads" / "uploads" / "batch one.jsonl").is_file()
    assert (store_of(spec) / "take" / "take" / "batch=20one.jsonl").is_file()  # output keys are escaped into the portable set
    assert rows(spec, "count") == [{"rows": 7, "sources": ["upload"]}]  # the schedule read the upload stage's output once
    again = run(cli_env_vars, pipeline_exe, spec, "--input", data)  # the same records without the upload: another run
    assert again.returncode == 0 and "the uploaded files (--upload) differ" in again.stderr
    assert rows(spec, "take") == [] and len(rows(spec, "parse")) == 25
