"""`pipeline run`: the example end to end on this machine, resuming, and what it refuses."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emulators import EXAMPLE

DATA = EXAMPLE / "data" / "transactions.jsonl"


def copy_example(tmp_path: Path) -> Path:
    target = tmp_path / "transactions"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns(".pipeline"))
    return target / "pipeline.yaml"


def objects(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.jsonl"))
            if p.is_file() and p.relative_to(root).parts[0] != "_run"}


def rows(root: Path, bucket: str) -> list[dict[str, Any]]:
    return [json.loads(line) for p in sorted((root / bucket).rglob("*.jsonl")) for line in p.read_text().splitlines()]


def test_example_runs_end_to_end(tmp_path: Path, run_cli: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    spec = copy_example(tmp_path)
    result = run_cli("run", spec, "--stack", "dev", "--input", DATA)
    assert result.returncode == 1, result.stderr  # the sample data has 6 malformed records: dead letters fail the run
    root = spec.parent / ".pipeline" / "local" / "txn-scoring" / "dev"
    assert "records in: 2,000" in result.stdout and "dead letters: 6 (preprocess 6) in:" in result.stdout, result.stdout
    listed = [line.strip() for line in result.stdout.splitlines() if line.strip().endswith(".jsonl")]
    assert listed and all((spec.parent / path).is_file() for path in listed)  # the summary says where they are
    assert "6 dead letters" in result.stderr and "internal error" not in result.stderr

    assert sorted(p.name for p in (root / "raw" / "raw" / "local").iterdir()) == [
        "000000000001-000000000500.jsonl", "000000000501-000000001000.jsonl", "000000001001-000000001500.jsonl", "000000001501-000000002000.jsonl"]
    raw = b"".join((root / "raw" / "raw" / "local" / name).read_bytes() for name in sorted(p.name for p in (root / "raw" / "raw" / "local").iterdir()))
    assert raw == DATA.read_bytes()

    features, scores = rows(root, "preprocess"), rows(root, "score")
    dead = rows(root, "dead-letter")
    inputs = [json.loads(line) for line in DATA.read_text().splitlines()]
    usd = {t["txn_id"] for t in inputs if t["currency"] == "USD"}
    assert len(dead) == 6 and all(d["stage"] == "preprocess" and "missing amount" in d["error"]["message"] for d in dead)
    assert {f["txn_id"] for f in features} == usd - {json.loads(__import__("base64").b64decode(d["data_base64"]))["txn_id"] for d in dead}
    assert [s["txn_id"] for s in scores] == [f["txn_id"] for f in features]  # every feature row scored, in order
    assert len(rows(root, "calibrate")) == 1 and (root / "calibrate" / "calibrate" / "tick" / "end.jsonl").is_file()

    # A second run over the same input finds everything done: no new object, none changed.
    before = {k: v for k, v in objects(root).items() if not k.startswith("calibrate")}
    again = run_cli("run", spec, "--stack", "dev", "--input", DATA)
    assert again.returncode == 1, again.stderr
    assert "0 processed by this run" in again.stdout and "4 batches already done" in again.stdout.replace(",", "")
    assert {k: v for k, v in objects(root).items() if not k.startswith("calibrate")} == before


def test_stdin_input_with_a_batching_window(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    spec = copy_example(tmp_path)
    text = "\n".join(DATA.read_text().splitlines()[:30]) + "\n"
    result = subprocess.run([pipeline_exe, "run", str(spec), "--input", "-"], input=text, capture_output=True, text=True,
                            env=cli_env_vars, timeout=60, check=False)
    assert "records in: 30" in result.stdout, result.stderr
    root = spec.parent / ".pipeline" / "local" / "txn-scoring" / "default"
    assert [p.name for p in (root / "preprocess" / "preprocess" / "local").iterdir()] == ["000000000001-000000000030.jsonl"]


def test_missing_input_and_bad_spec_are_usage_errors(tmp_path: Path, run_cli: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    spec = copy_example(tmp_path)
    result = run_cli("run", spec, "--input", tmp_path / "nope.jsonl")
    assert result.returncode == 2 and "does not exist" in result.stderr
    assert run_cli("run", tmp_path / "missing.yaml", "--input", DATA).returncode == 2
