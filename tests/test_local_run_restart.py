"""Starting a new run and resuming one, killed at the worst moments (issue 19, items 15 and 17): a run
killed while it empties the store for a new run must not leave the last run's objects for the new one
to take as its own, and the temporary files of killed runs must not stay in the store for ever."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_local_run_kill import RECORDS, make_project, run, snapshot, stop_again_and_again

PADDING = 20_000  # objects added to the old run's outputs, so that emptying the store takes a while


def _left(folder: Path) -> int:
    try:
        return len(os.listdir(folder))
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize("how", ["fresh", "changed-input"])
def test_a_new_run_killed_while_it_empties_the_store_leaves_nothing_of_the_last_run(how: str, tmp_path: Path, pipeline_exe: str,
                                                                                      cli_env_vars: dict[str, str]) -> None:
    spec, data = make_project(tmp_path / "project")
    other = tmp_path / "project" / "other.jsonl"  # the new run's input: other records from line 1 on
    other.write_text("".join(json.dumps({"id": f"x{n:05d}", "n": n, "poison": False}) + "\n" for n in range(300)), encoding="utf-8")
    store = tmp_path / "store"
    old = run([pipeline_exe, "run", str(spec), "--input", str(data), "--quiet"], cli_env_vars, store)
    assert old.returncode == 1, old.stderr
    leftovers = store / "parse" / "parse" / "old"  # the last run's outputs, plenty of them
    leftovers.mkdir()
    for n in range(PADDING):
        (leftovers / f"{n:06d}.jsonl").write_text('{"id": "old"}\n', encoding="utf-8")

    command = [pipeline_exe, "run", str(spec), "--input", str(data if how == "fresh" else other), "--quiet"]
    command += ["--fresh"] if how == "fresh" else []
    process = subprocess.Popen([*command, "--store", str(store)], env=cli_env_vars, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while process.poll() is None and _left(leftovers) == PADDING:
        time.sleep(0.001)  # until the new run is emptying the store
    assert process.poll() is None, "the new run ended before it could be killed: the test proves nothing"
    process.kill()  # kill -9 while the store is being emptied
    process.wait()
    assert leftovers.is_dir() and any(leftovers.iterdir()), "the store was emptied before the kill: the test proves nothing"

    final = run(command[:-1] if how == "fresh" else command, cli_env_vars, store)  # the same command again (without --fresh: resume)
    clean = run(command, cli_env_vars, tmp_path / "clean")
    assert final.returncode == clean.returncode, final.stderr
    assert not leftovers.exists()
    assert snapshot(store) == snapshot(tmp_path / "clean")  # the new run's objects, and nothing of the last run's


def _temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.tmp") if p.is_file()]


def test_temporary_files_of_killed_runs_are_removed_by_the_next_run(tmp_path: Path, pipeline_exe: str, cli_env_vars: dict[str, str]) -> None:
    spec, data = make_project(tmp_path / "project")
    store = tmp_path / "store"
    command = [pipeline_exe, "run", str(spec), "--input", str(data), "--quiet"]
    rng = random.Random(20261207)
    for _ in range(40):  # kill -9 until some temporary files were left behind
        stop_again_and_again(command, cli_env_vars, store, signal.SIGKILL, 2, rng)
        if _temporaries(store):
            break
    left = _temporaries(store)
    assert left, "no kill left a temporary file: the test proves nothing"
    final = run(command, cli_env_vars, store)
    assert final.returncode == 1 and "dead letters: 52" in final.stdout, final.stderr
    assert _temporaries(store) == [], _temporaries(store)
    assert sum(1 for line in (store / "_run" / "journal.jsonl").read_text().splitlines() if '"c":"parse","st":"done"' in line) == RECORDS // 100
    assert os.listdir(store / "_run")  # (the runner's own files stay)
