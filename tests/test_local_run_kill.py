"""`pipeline run` killed with SIGKILL at random moments, again and again, then run to the end:
the local store must equal a clean run's, with no record lost and none written twice."""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

SPEC = """\
name: killtest
stages:
  - name: parse
    handler: handlers/h.py:parse
    trigger: {stream: {batch_size: 100, max_batching_window_s: 1}}
  - name: enrich
    handler: handlers/h.py:enrich
    trigger: {objects: {from: parse}}
"""
HANDLERS = """\
import time


def parse(records, context):
    time.sleep(0.03)  # some work per batch, so the run lasts long enough for kills to land mid-run
    for record in records:
        row = record.json()
        if row.get("poison"):
            raise ValueError("poison record")
        yield row


def enrich(rows, context):
    time.sleep(0.01)
    return [dict(row, doubled=row["n"] * 2) for row in rows]
"""
RECORDS = 5000


def make_project(folder: Path) -> tuple[Path, Path]:
    (folder / "handlers").mkdir(parents=True)
    (folder / "handlers" / "h.py").write_text(HANDLERS, encoding="utf-8")
    spec = folder / "pipeline.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    data = folder / "input.jsonl"
    with data.open("w", encoding="utf-8") as out:
        for n in range(RECORDS):
            out.write(json.dumps({"id": f"r{n:05d}", "n": n, "poison": n % 97 == 13}) + "\n")
    return spec, data


def snapshot(root: Path) -> dict[str, bytes]:
    """Every object in the store (journal, log and leftover temp files are not objects)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.jsonl"))
            if p.relative_to(root).parts[0] != "journal"}


def test_kill_9_at_random_points_loses_nothing_and_duplicates_nothing(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    spec, data = make_project(tmp_path / "project")
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    command = [pipeline_exe, "run", str(spec), "--input", str(data)]

    done = subprocess.run([*command, "--store", str(clean)], env=cli_env_vars, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    expected = snapshot(clean)

    rng = random.Random(20261122)
    kills = 0
    for _ in range(15):
        process = subprocess.Popen([*command, "--store", str(killed)], env=cli_env_vars, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.2, 0.7))
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            kills += 1
        _, stderr = process.communicate(timeout=30)
        assert process.returncode in (0, -signal.SIGKILL), stderr.decode()
    assert kills >= 8, "the runs finished before they could be killed; the test proves nothing"

    final = subprocess.run([*command, "--store", str(killed)], env=cli_env_vars, capture_output=True, text=True, timeout=60, check=False)
    assert final.returncode == 0, final.stderr
    assert snapshot(killed) == expected

    # Every input record is in exactly one place: an output row of each stage, or a dead letter.
    parsed = [json.loads(line) for key, body in expected.items() if key.startswith("parse/") for line in body.splitlines()]
    enriched = [json.loads(line) for key, body in expected.items() if key.startswith("enrich/") for line in body.splitlines()]
    dead = [json.loads(base64.b64decode(json.loads(line)["data_base64"]))
            for key, body in expected.items() if key.startswith("dead-letter/") for line in body.splitlines()]
    ids = [row["id"] for row in parsed]
    assert len(ids) == len(set(ids)) and [row["id"] for row in enriched] == ids
    assert all(row["doubled"] == row["n"] * 2 for row in enriched)
    assert sorted(ids + [row["id"] for row in dead]) == [f"r{n:05d}" for n in range(RECORDS)]
    assert {row["id"] for row in dead} == {f"r{n:05d}" for n in range(RECORDS) if n % 97 == 13}
