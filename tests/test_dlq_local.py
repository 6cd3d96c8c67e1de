"""`pipeline dlq list | show | replay` and `pipeline status` on the local store, end to end through the console script:
a run with bad records, the handler fixed, a replay, nothing dead-lettered left and no output written twice."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
from dlq_project import FIXED, NAME, TOKEN, answer, cli, make_project
from local_project import files, jsonl, run, store_of


def _ids(store: Path, stage: str) -> Counter[int]:
    """How many times each id appears in a stage's outputs (the window's state objects are not outputs)."""
    return Counter(row["id"] for path in sorted((store / stage / stage).rglob("*.jsonl")) for row in jsonl(path))


@pytest.fixture
def broken_run(tmp_path: Path, cli_env_vars: dict[str, str], pipeline_exe: str) -> Path:
    spec = make_project(tmp_path)
    result = run(cli_env_vars, pipeline_exe, spec, "--input", tmp_path / "input.jsonl", "--quiet")
    assert result.returncode == 1, result.stderr  # dead letters
    return spec


def test_list_show_replay_leave_nothing_dead_and_nothing_twice(broken_run: Path, cli_env_vars: dict[str, str], pipeline_exe: str) -> None:
    spec, folder = broken_run, broken_run.parent
    store = store_of(spec, NAME)
    env, exe = cli_env_vars, pipeline_exe

    listed = answer(cli(env, exe, folder, "dlq", "list", "--local", "--format", "json"))
    groups = {(g["stage"], g["error"]["type"]): g for g in listed["groups"]}
    assert listed["total"] == 12
    assert groups[("parse", "ValueError")]["count"] == 2  # ids 3 and 15: one cause, whatever the ids in the messages
    assert groups[("enrich", "KeyError")]["count"] == 1 and groups[("enrich", "KeyError")]["reason"] == "handler raised"
    assert groups[("enrich", "ConnectionError")]["count"] == 9  # the second input failed as a whole: each of its rows
    assert groups[("enrich", "ConnectionError")]["reason"] == "retries exhausted"
    assert groups[("parse", "ValueError")]["kept"].endswith("/dead-letter/parse/")
    assert TOKEN not in json.dumps(listed)

    text = cli(env, exe, folder, "dlq", "list", "--local")
    assert text.returncode == 0 and "12 dead letters in 3 groups" in text.stdout
    assert cli(env, exe, folder, "dlq", "list", "--local", "--fail-if-any").returncode == 1

    shown = cli(env, exe, folder, "dlq", "show", "--local", "--format", "jsonl")
    letters = [json.loads(line) for line in shown.stdout.splitlines()]
    assert len(letters) == 12 and shown.returncode == 0
    bad = [letter for letter in letters if letter["stage"] == "parse"]
    assert {letter["record"]["id"] for letter in bad} == {3, 15}
    assert all(letter["record"]["password"] == "***" for letter in bad)  # a secret-looking field of the record
    assert all(letter["attempts"] == 1 and letter["error"]["traceback"] for letter in bad)
    assert TOKEN not in shown.stdout and "hunter2-pw" not in shown.stdout and "***" in bad[0]["error"]["message"]
    table = cli(env, exe, folder, "dlq", "show", "--local", "--stage", "enrich", "--limit", "1")
    assert "KeyError: 'unlucky'" in table.stdout and "1 dead letter shown; more follow" in table.stdout

    before = files(store)
    asked = cli(env, exe, folder, "dlq", "replay", "--local")
    assert asked.returncode == 2 and "--yes" in asked.stderr  # no terminal to confirm on
    dry = answer(cli(env, exe, folder, "dlq", "replay", "--local", "--dry-run", "--format", "json"))
    assert dry["ok"] and {r["status"] for r in dry["results"]} == {"would replay"} and len(dry["results"]) == 4  # dead-letter objects
    assert files(store) == before  # a dry run changes nothing

    (folder / "handlers" / "h.py").write_text(FIXED, encoding="utf-8")
    replayed = cli(env, exe, folder, "dlq", "replay", "--local", "--yes", "--format", "json")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    result = json.loads(replayed.stdout)
    assert result["ok"] and all(r["status"] == "replayed" for r in result["results"] if r["records"])
    assert answer(cli(env, exe, folder, "dlq", "list", "--local", "--format", "json"))["total"] == 0
    assert not list((store / "dead-letter").rglob("*.jsonl"))

    everyone = Counter(range(20))
    assert _ids(store, "parse") == everyone  # the replayed records once, beside the rows of the first run
    assert _ids(store, "enrich") == everyone  # on the replayed parse output, its own poison row, its failed input at its own key
    assert (store / "enrich" / "enrich" / "local" / "000000000011-000000000020.jsonl").is_file()  # the whole input, where it belonged
    assert _ids(store, "total") == everyone  # the window read the replay's output on its run after the replay
    assert any("/replay=parse/" in str(p) for p in (store / "parse" / "parse").rglob("*.jsonl"))

    again = cli(env, exe, folder, "dlq", "replay", "--local", "--yes")
    assert again.returncode == 0 and "no dead letters to replay" in again.stdout


def test_a_replay_that_still_fails_keeps_the_dead_letter_once_and_counts_the_attempt(broken_run: Path, cli_env_vars: dict[str, str],
                                                                                      pipeline_exe: str) -> None:
    folder, store = broken_run.parent, store_of(broken_run, NAME)
    failed = cli(cli_env_vars, pipeline_exe, broken_run.parent, "dlq", "replay", "--local", "--yes", "--stage", "parse", "--format", "json")
    assert failed.returncode == 1
    assert {r["status"] for r in json.loads(failed.stdout)["results"]} == {"still failing"}
    letters = [json.loads(line) for line in cli(cli_env_vars, pipeline_exe, folder, "dlq", "show", "--local", "--stage", "parse",
                                                 "--format", "jsonl").stdout.splitlines()]
    assert sorted(letter["record"]["id"] for letter in letters) == [3, 15]  # moved, not copied
    assert all(letter["attempts"] == 2 and letter["batch"].startswith("replay=parse/") for letter in letters)
    assert all(letter["input"]["sequence"] in ("4", "16") for letter in letters)  # still naming the input line they came from
    (folder / "handlers" / "h.py").write_text(FIXED, encoding="utf-8")
    fixed = cli(cli_env_vars, pipeline_exe, folder, "dlq", "replay", "--local", "--yes")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert _ids(store, "parse") == Counter(range(20)) and _ids(store, "enrich") == Counter(range(20))


def test_replay_waits_for_a_running_pipeline(broken_run: Path, cli_env_vars: dict[str, str], pipeline_exe: str) -> None:
    lock = store_of(broken_run, NAME) / "_run" / "lock"
    handle = os.open(lock, os.O_WRONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)  # what a running `pipeline run` or `serve` holds
        result = cli(cli_env_vars, pipeline_exe, broken_run.parent, "dlq", "replay", "--local", "--yes")
    finally:
        os.close(handle)
    assert result.returncode == 1 and "`pipeline run` or `pipeline serve` is using" in result.stderr
    assert answer(cli(cli_env_vars, pipeline_exe, broken_run.parent, "dlq", "list", "--local", "--format", "json"))["total"] == 12


def test_ctrl_c_during_a_replay_loses_nothing(broken_run: Path, cli_env_vars: dict[str, str], pipeline_exe: str) -> None:
    folder, store = broken_run.parent, store_of(broken_run, NAME)
    (folder / "handlers" / "h.py").write_text(FIXED, encoding="utf-8")
    (folder / "block").touch()  # the fixed handler waits on record 15 (its own dead-letter object, replayed second)
    process = subprocess.Popen([pipeline_exe, "dlq", "replay", "--local", "--yes", "--stage", "parse"], cwd=folder, env=cli_env_vars,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        while not (folder / "reached").exists():
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stdout + stderr
    assert "run the same command again" in stderr
    left = [json.loads(line) for line in cli(cli_env_vars, pipeline_exe, folder, "dlq", "show", "--local", "--stage", "parse",
                                              "--format", "jsonl").stdout.splitlines()]
    assert [letter["record"]["id"] for letter in left] == [15]  # the first object was replayed and removed, the second is untouched
    (folder / "block").unlink()
    resumed = cli(cli_env_vars, pipeline_exe, folder, "dlq", "replay", "--local", "--yes")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert _ids(store, "parse") == Counter(range(20)) and _ids(store, "enrich") == Counter(range(20))


def test_status_shows_the_window_and_dead_letters(broken_run: Path, cli_env_vars: dict[str, str], pipeline_exe: str) -> None:
    folder = broken_run.parent
    status = answer(cli(cli_env_vars, pipeline_exe, folder, "status", "--local", "--format", "json"))
    stages = {entry["stage"]: entry for entry in status["stages"]}
    window = stages["total"]["window"]
    assert window["source"] == "parse" and window["runs"] == 1 and window["watermark"]
    assert window["last_run"]["rows"] == 18 and window["waiting"]["objects"] == 0
    assert stages["parse"]["dead_letters"]["records"] == 2 and stages["parse"]["dead_letters"]["inputs"] == 2
    assert stages["enrich"]["dead_letters"] == {**stages["enrich"]["dead_letters"], "records": 10, "inputs": 2}
    text = cli(cli_env_vars, pipeline_exe, folder, "status", "--local")
    assert text.returncode == 0 and "parse" in text.stdout and "2 records" in text.stdout
    assert cli(cli_env_vars, pipeline_exe, folder, "status", "--local", "--fail-if-any").returncode == 1


def test_usage_errors_are_clear(tmp_path: Path, cli_env_vars: dict[str, str], pipeline_exe: str) -> None:
    spec = make_project(tmp_path)
    neither = cli(cli_env_vars, pipeline_exe, tmp_path, "dlq", "list")
    assert neither.returncode == 2 and "--local" in neither.stderr and "--cloud" in neither.stderr
    stage = cli(cli_env_vars, pipeline_exe, tmp_path, "dlq", "list", "--local", "--stage", "nope")
    assert stage.returncode == 2 and "its stages: parse, enrich, total" in stage.stderr
    since = cli(cli_env_vars, pipeline_exe, tmp_path, "dlq", "list", "--local", "--since", "5 parsecs", "--format", "json")
    assert since.returncode == 2 and json.loads(since.stdout)["error"]["kind"] == "usage" and "30m" in since.stderr
    empty = cli(cli_env_vars, pipeline_exe, tmp_path, "dlq", "list", "--local")
    assert empty.returncode == 0 and "no local store" in empty.stderr and "0 dead letters" in empty.stdout
    outputs = tmp_path / "outputs.json"
    outputs.write_text(textwrap.dedent('{"buckets": {"parse": "b"}}'), encoding="utf-8")
    wrong = cli(cli_env_vars, pipeline_exe, tmp_path, "dlq", "list", str(spec), "--cloud", "aws", "--outputs", str(outputs))
    assert wrong.returncode == 2 and "no dead-letter bucket" in wrong.stderr and "Traceback" not in wrong.stderr
    missing = cli(cli_env_vars, pipeline_exe, tmp_path, "dlq", "list", "--cloud", "aws", "--outputs", "nope.json")
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_a_window_whose_retries_ran_out_is_read_again_by_its_next_run(tmp_path: Path, cli_env_vars: dict[str, str], pipeline_exe: str) -> None:
    spec = make_project(tmp_path)
    (tmp_path / "down").touch()  # total's service is down: its window run fails, and with retries 0 its rows are dead-lettered
    assert run(cli_env_vars, pipeline_exe, spec, "--input", tmp_path / "input.jsonl", "--quiet").returncode == 1
    store = store_of(spec, NAME)
    listed = answer(cli(cli_env_vars, pipeline_exe, tmp_path, "dlq", "list", "--local", "--stage", "total", "--format", "json"))
    [group] = listed["groups"]
    assert group["reason"] == "retries exhausted" and group["count"] == 18 and group["error"]["type"] == "ConnectionError"
    status = answer(cli(cli_env_vars, pipeline_exe, tmp_path, "status", "--local", "--stage", "total", "--format", "json"))
    assert status["stages"][0]["window"]["watermark"] is None and status["stages"][0]["window"]["waiting"]["objects"] == 2

    still = answer(cli(cli_env_vars, pipeline_exe, tmp_path, "dlq", "replay", "--local", "--stage", "total", "--yes", "--format", "json"))
    assert not still["ok"] and [r["status"] for r in still["results"]] == ["waiting", "still failing", "still failing"]
    (tmp_path / "down").unlink()  # back up: the window's next run (the replay's) reads every row again, once
    fixed = answer(cli(cli_env_vars, pipeline_exe, tmp_path, "dlq", "replay", "--local", "--stage", "total", "--yes", "--format", "json"))
    assert fixed["ok"] and [r["status"] for r in fixed["results"]] == ["waiting", "replayed", "resolved"]
    assert _ids(store, "total") == Counter(i for i in range(20) if i not in (3, 15))
    assert answer(cli(cli_env_vars, pipeline_exe, tmp_path, "dlq", "list", "--local", "--stage", "total", "--format", "json"))["total"] == 0
