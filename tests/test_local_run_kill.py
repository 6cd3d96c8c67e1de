"""`pipeline run` stopped at random moments (SIGKILL, Ctrl-C, SIGTERM), again and again, or
stopped by a full disk, then run to the end: the local store must equal a clean run's, with no
record lost and none written twice."""

from __future__ import annotations

import base64
import gzip
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

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
            if p.relative_to(root).parts[0] != "_run"}


def run(command: list[str], env: dict[str, str], store: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*command, "--store", str(store)], env=env, capture_output=True, text=True, timeout=120, check=False)


def check_complete(expected: dict[str, bytes]) -> None:
    """Every input record is in exactly one place: an output row of each stage, or a dead letter."""
    parsed = [json.loads(line) for key, body in expected.items() if key.startswith("parse/") for line in body.splitlines()]
    enriched = [json.loads(line) for key, body in expected.items() if key.startswith("enrich/") for line in body.splitlines()]
    dead = [json.loads(base64.b64decode(json.loads(line)["data_base64"]))
            for key, body in expected.items() if key.startswith("dead-letter/") for line in body.splitlines()]
    ids = [row["id"] for row in parsed]
    assert len(ids) == len(set(ids)) and [row["id"] for row in enriched] == ids
    assert all(row["doubled"] == row["n"] * 2 for row in enriched)
    assert sorted(ids + [row["id"] for row in dead]) == [f"r{n:05d}" for n in range(RECORDS)]
    assert {row["id"] for row in dead} == {f"r{n:05d}" for n in range(RECORDS) if n % 97 == 13}


# Poison records are dead-lettered by design, so a run that reached its end exits 1; a stopped one exits
# with the signal (killed) or 128 + the signal (interrupted and cleaned up).
ENDINGS = {signal.SIGKILL: -signal.SIGKILL, signal.SIGINT: 130, signal.SIGTERM: 143}


@pytest.mark.parametrize(("stop", "rounds"), [(signal.SIGKILL, 15), (signal.SIGINT, 8), (signal.SIGTERM, 8)], ids=["kill-9", "sigint", "sigterm"])
def test_stopped_at_random_points_loses_nothing_and_duplicates_nothing(stop: signal.Signals, rounds: int, tmp_path: Path, pipeline_exe: str,
                                                                     cli_env_vars: dict[str, str]) -> None:
    spec, data = make_project(tmp_path / "project")
    clean, stopped = tmp_path / "clean", tmp_path / "stopped"
    command = [pipeline_exe, "run", str(spec), "--input", str(data), "--quiet"]

    done = run(command, cli_env_vars, clean)
    assert done.returncode == 1 and "dead letters: 52" in done.stdout, done.stderr
    expected = snapshot(clean)
    check_complete(expected)

    stop_again_and_again(command, cli_env_vars, stopped, stop, rounds, random.Random(20261122 + stop))
    final = run(command, cli_env_vars, stopped)
    assert final.returncode == 1, final.stderr
    assert snapshot(stopped) == expected


def stop_again_and_again(command: list[str], env: dict[str, str], stopped: Path, stop: signal.Signals, rounds: int, rng: random.Random) -> None:
    """Start the command on the `stopped` store and stop it at a random moment once it is under way, `rounds` times."""
    stops = 0
    for _ in range(rounds):
        journal = stopped / "_run" / "journal.jsonl"
        size = journal.stat().st_size if journal.exists() else -1
        process = subprocess.Popen([*command, "--store", str(stopped)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while process.poll() is None and (journal.stat().st_size if journal.exists() else -1) <= size and time.monotonic() < deadline:
            time.sleep(0.02)  # until the run is under way: stopping it while Python starts up tests nothing of ours
        time.sleep(rng.uniform(0.0, 0.6))
        if process.poll() is None:
            os.kill(process.pid, stop)
            stops += 1
        _, stderr = process.communicate(timeout=60)
        assert process.returncode in (1, ENDINGS[stop]), stderr.decode()
        if stop != signal.SIGKILL and process.returncode == ENDINGS[stop]:
            assert "interrupted" in stderr.decode() and "run the same command again" in stderr.decode().lower(), stderr.decode()
            assert "Traceback" not in stderr.decode() and "internal error" not in stderr.decode()
    assert stops >= rounds // 2, "the runs finished before they could be stopped; the test proves nothing"


UPLOAD_SPEC = """\
name: uploadkill
uploads: {}
stages:
  - name: clean
    handler: handlers/h.py:clean
    trigger: {objects: {from: uploads}}
  - name: summary
    handler: handlers/h.py:summary
    trigger: {schedule: "rate(1 hour)", from: clean}
"""
UPLOAD_HANDLERS = """\
import time


def clean(rows, context):
    time.sleep(0.05)
    for row in rows:
        if row.get("poison"):
            raise ValueError("poison row")
        yield row


def summary(rows, context):
    time.sleep(0.3)  # the end-of-run schedule takes long enough to be stopped in the middle too
    for row in rows:
        yield {"id": row["id"], "summarised": True}
"""
FILES, ROWS_PER_FILE = 60, 40


def upload_project(folder: Path) -> tuple[Path, list[Path]]:
    """A pipeline fed by uploads only: every other file gzip-compressed, some poison rows."""
    (folder / "handlers").mkdir(parents=True)
    (folder / "handlers" / "h.py").write_text(UPLOAD_HANDLERS, encoding="utf-8")
    spec = folder / "pipeline.yaml"
    spec.write_text(UPLOAD_SPEC, encoding="utf-8")
    files = []
    for f in range(FILES):
        body = "".join(json.dumps({"id": f"f{f:02d}-{n:03d}", "poison": (f * ROWS_PER_FILE + n) % 53 == 7}) + "\n" for n in range(ROWS_PER_FILE))
        path = folder / "data" / (f"part-{f:02d}.jsonl.gz" if f % 2 else f"part-{f:02d}.jsonl")
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(gzip.compress(body.encode(), mtime=0) if f % 2 else body.encode())
        files.append(path)
    return spec, files


def test_an_upload_run_killed_again_and_again_resumes_to_the_same_store(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    spec, files = upload_project(tmp_path / "project")
    command = [pipeline_exe, "run", str(spec), *[arg for path in files for arg in ("--upload", str(path))], "--quiet"]
    done = run(command, cli_env_vars, tmp_path / "clean")
    assert done.returncode == 1 and f"uploads: {FILES} files ({FILES} processed by this run)" in done.stdout, done.stdout + done.stderr
    expected = snapshot(tmp_path / "clean")
    everything = {f"f{f:02d}-{n:03d}" for f in range(FILES) for n in range(ROWS_PER_FILE)}
    cleaned = [json.loads(line)["id"] for key, body in expected.items() if key.startswith("clean/") for line in body.splitlines()]
    dead = [json.loads(gzip.decompress(raw) if raw.startswith(b"\x1f\x8b") else raw)["id"]
            for key, body in expected.items() if key.startswith("dead-letter/")
            for raw in [base64.b64decode(json.loads(line)["data_base64"]) for line in body.splitlines()]]
    assert len(cleaned) == len(set(cleaned)) and sorted(cleaned + dead) == sorted(everything) and dead
    summarised = [json.loads(line)["id"] for key, body in expected.items() if key.startswith("summary/") for line in body.splitlines()]
    assert summarised == cleaned  # the end-of-run schedule read every cleaned object once, in the order written

    stopped = tmp_path / "stopped"
    stop_again_and_again(command, cli_env_vars, stopped, signal.SIGKILL, 10, random.Random(20261130))
    final = run(command, cli_env_vars, stopped)
    assert final.returncode == 1, final.stderr
    assert snapshot(stopped) == expected


def test_disk_full_says_so_and_the_same_command_resumes(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    """A real full disk: a tiny tmpfs as the store (needs root to mount; CI runs as root)."""
    spec, data = make_project(tmp_path / "project")
    command = [pipeline_exe, "run", str(spec), "--input", str(data), "--no-fsync", "--quiet"]
    clean = run(command, cli_env_vars, tmp_path / "clean")
    assert clean.returncode == 1, clean.stderr
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True, check=False).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        full = run(command, cli_env_vars, mount / "store")
        assert full.returncode == 1, full.stdout
        assert "no space left on the device" in full.stderr and "run the same command again" in full.stderr, full.stderr
        assert str(mount / "store") in full.stderr and "internal error" not in full.stderr and "Traceback" not in full.stderr

        subprocess.run(["mount", "-o", "remount,size=16m", str(mount)], check=True)
        resumed = run(command, cli_env_vars, mount / "store")
        assert resumed.returncode == 1 and "dead letters: 52" in resumed.stdout, resumed.stderr
        assert "batches already done" in resumed.stdout or "interrupted batches redone" in resumed.stdout, resumed.stdout
        assert snapshot(mount / "store") == snapshot(tmp_path / "clean")
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
