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
    assert result.returncode == 0, result.stderr  # the sample data is clean: the first run succeeds
    root = spec.parent / ".pipeline" / "local" / "txn-scoring" / "dev"
    assert "records in: 2,000" in result.stdout and "dead letters: 0" in result.stdout, result.stdout
    assert "Traceback" not in result.stderr and "error" not in result.stderr, result.stderr

    assert sorted(p.name for p in (root / "raw" / "raw" / "local").iterdir()) == [
        "000000000001-000000000500.jsonl", "000000000501-000000001000.jsonl", "000000001001-000000001500.jsonl", "000000001501-000000002000.jsonl"]
    raw = b"".join((root / "raw" / "raw" / "local" / name).read_bytes() for name in sorted(p.name for p in (root / "raw" / "raw" / "local").iterdir()))
    assert raw == DATA.read_bytes()

    features, scores = rows(root, "preprocess"), rows(root, "score")
    inputs = [json.loads(line) for line in DATA.read_text().splitlines()]
    assert [f["txn_id"] for f in features] == [t["txn_id"] for t in inputs if t["currency"] == "USD"]
    assert f"filtered out (no row, no error): preprocess {len(inputs) - len(features):,}" in result.stdout  # the other currencies
    assert [s["txn_id"] for s in scores] == [f["txn_id"] for f in features]  # every feature row scored, in order
    assert len(rows(root, "calibrate")) == 1 and (root / "calibrate" / "calibrate" / "tick" / "end.jsonl").is_file()

    # A second run over the same input finds everything done: no new object, none changed.
    before = {k: v for k, v in objects(root).items() if not k.startswith("calibrate")}
    again = run_cli("run", spec, "--stack", "dev", "--input", DATA)
    assert again.returncode == 0, again.stderr
    assert "0 processed by this run" in again.stdout and "4 batches already done" in again.stdout.replace(",", "")
    assert {k: v for k, v in objects(root).items() if not k.startswith("calibrate")} == before

    # The sample of bad records: each is dead-lettered with its error, listed, and the run exits 1.
    bad = run_cli("run", spec, "--stack", "dev", "--input", DATA.with_name("transactions-with-errors.jsonl"))
    assert bad.returncode == 1 and "4 dead letters" in bad.stderr, bad.stderr
    assert "dead letters: 4 (preprocess 4), each with its error, in dead-letter/:" in bad.stdout, bad.stdout
    listed = [line.strip() for line in bad.stdout.splitlines() if line.startswith("  ") and line.strip().endswith(".jsonl")]
    assert listed and all((root / "dead-letter" / key).is_file() for key in listed)  # the summary says where they are
    dead = rows(root, "dead-letter")
    assert sorted(d["error"]["type"] for d in dead) == ["JSONDecodeError", "ValueError", "ValueError", "ValueError"]
    assert sorted(int(d["input"]["sequence"]) for d in dead) == [3, 5, 6, 8]  # the lines of the file


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
