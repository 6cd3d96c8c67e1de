"""Windows over accumulated outputs (`pipeline.runtime.window`) on the local store: the shared replay of
out-of-order, duplicate, late, empty and concurrent runs, then what only the local store shows easily
(exact modification times, processes racing for a conditional write) and the state format."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest
from window_scenario import LATENESS_S, Clock, replay, settings

from pipeline.runtime import keys
from pipeline.runtime.context import Context
from pipeline.runtime.invoke import StageRunner
from pipeline.runtime.logs import JsonLogger
from pipeline.runtime.store import LocalStore, PreconditionFailed
from pipeline.runtime.window import STATE, Plan, State, StateError, Windows, parse_state, run_window, window_status


def test_the_replay_on_the_local_store(tmp_path: Path) -> None:
    store = LocalStore(tmp_path, durable=False)
    replay(store, "src-bucket", "own", "dead", lambda bucket, prefix: list(store.keys(bucket, prefix)))


def _race(root: str, start: Any, results: Any) -> None:
    store = LocalStore(root, durable=False)
    start.wait()
    try:
        store.put_if("b", "_state/x/lease.json", str(os.getpid()).encode(), None)
        results.put("won")
    except PreconditionFailed:
        results.put("lost")


def test_local_conditional_writes_let_one_of_many_processes_win(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    start, results = context.Event(), context.Queue()
    workers = [context.Process(target=_race, args=(str(tmp_path), start, results)) for _ in range(8)]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(60)
    outcomes = sorted(results.get(timeout=10) for _ in workers)
    assert outcomes == ["lost"] * 7 + ["won"]
    store = LocalStore(tmp_path, durable=False)
    data, token = store.read_versioned("b", "_state/x/lease.json") or (b"", "")
    assert store.put_if("b", "_state/x/lease.json", b"next", token) != token
    with pytest.raises(PreconditionFailed):
        store.put_if("b", "_state/x/lease.json", b"stale", token)  # the version read before is gone
    assert store.get("b", "_state/x/lease.json") == b"next" and data


def write(store: LocalStore, key: str, rows: list[dict[str, Any]], when: float, bucket: str = "src-bucket") -> None:
    store.put(bucket, key, "".join(json.dumps(r) + "\n" for r in rows).encode())
    os.utime(store.path(bucket, key), (when, when))


def stage(store: LocalStore, calls: list[list[Any]], **overrides: Any) -> StageRunner:
    def handler(rows: Any, context: Context) -> Any:
        taken = list(rows)
        calls.append(taken)
        return [{"n": r["n"]} for r in taken]

    config = settings("src-bucket", "own", "dead")._replace(**overrides)
    return StageRunner(config, handler, store, Context("win", logger=JsonLogger(io.StringIO()), env={}))


T0 = 1_793_599_200.0  # 2026-11-02T06:00:00Z


def test_late_objects_within_the_lateness_are_read_once_and_older_ones_are_done(tmp_path: Path) -> None:
    store = LocalStore(tmp_path, durable=False)
    calls: list[list[Any]] = []
    runner = stage(store, calls)
    write(store, "src/old.jsonl", [{"n": 0}], T0 - 10 * LATENESS_S)
    write(store, "src/a.jsonl", [{"n": 1}], T0 - 5)
    assert run_window(runner, store, T0, "t1").status == "ran" and [r["n"] for r in calls[-1]] == [0, 1]  # the first run reads all
    write(store, "src/late.jsonl", [{"n": 2}], T0 - LATENESS_S / 2)  # appears late, dated within the lateness
    write(store, "src/too-late.jsonl", [{"n": 3}], T0 - 2 * LATENESS_S)  # dated before it: by contract it cannot appear now
    outcome = run_window(runner, store, T0 + 600, "t2")
    assert [r["n"] for r in calls[-1]] == [2] and outcome.window["since"] == "2026-11-02T06:00:00Z"
    assert outcome.result is not None and outcome.result.output_key == "win/window/20261102T060000Z.jsonl"
    mark = json.loads(store.get("own", f"_state/win/{STATE}"))
    assert mark["version"] == 2 and mark["until"] == T0 + 600
    # `recent` keeps exactly the keys the watermark alone does not rule out: those modified after until - lateness
    assert mark["recent"] == {"src/a.jsonl": T0 - 5, "src/late.jsonl": T0 - LATENESS_S / 2}
    calls.clear()
    assert run_window(runner, store, T0 + LATENESS_S + 600, "t3").status == "empty" and calls == []
    assert json.loads(store.get("own", f"_state/win/{STATE}"))["recent"] == {"src/a.jsonl": T0 - 5, "src/late.jsonl": T0 - LATENESS_S / 2}


def test_a_backlog_is_read_in_runs_that_fit_the_byte_cap(tmp_path: Path) -> None:
    store = LocalStore(tmp_path, durable=False)
    calls: list[list[Any]] = []
    runner = stage(store, calls, window_max_bytes=30)  # each object is 10-11 bytes: three per run at most
    for n in range(8):
        write(store, f"src/{n}.jsonl", [{"n": n}], T0 - 100 + n)
    write(store, "src/tie.jsonl", [{"n": 99}], T0 - 100 + 5)  # same time as 5: read with it, never split from it
    seen: list[int] = []
    for i in range(5):
        outcome = run_window(runner, store, T0, f"t{i}")
        if outcome.status != "ran":
            assert outcome.status == "late"  # the last capped run reached the cut-off: the same cut-off again is done
            break
        seen += [r["n"] for r in calls[-1]]
        assert len(calls[-1]) <= 3
    assert sorted(seen) == [0, 1, 2, 3, 4, 5, 6, 7, 99] and len(seen) == 9
    outputs = list(store.keys("own", "win/window/"))
    assert len(outputs) == len(set(outputs)) >= 3  # every run a key of its own: the watermark moved each time


def test_a_version_1_watermark_is_a_floor_and_is_upgraded(tmp_path: Path) -> None:
    store = LocalStore(tmp_path, durable=False)
    calls: list[list[Any]] = []
    runner = stage(store, calls)
    store.put("own", f"_state/win/{STATE}", json.dumps({"until": T0 - 60, "objects": 3}).encode())
    write(store, "src/read-before.jsonl", [{"n": 1}], T0 - 120)  # the old runtime read it
    write(store, "src/new.jsonl", [{"n": 2}], T0 - 30)
    assert run_window(runner, store, T0, "t1").status == "ran" and [r["n"] for r in calls[-1]] == [2]
    mark = json.loads(store.get("own", f"_state/win/{STATE}"))
    assert mark["version"] == 2 and mark["floor"] == T0 - 60 and keys.window_batch(None) == "window/start"
    assert parse_state(State(T0, {}, None, 1).to_bytes(), "x").floor is None


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"version": 7, "until": 1}', b'{"until": "yesterday"}',
                                  b'{"version": 2, "until": 1, "recent": {"k": NaN}}'])
def test_a_state_that_cannot_be_read_is_refused_by_name(tmp_path: Path, body: bytes) -> None:
    store = LocalStore(tmp_path, durable=False)
    store.put("own", f"_state/win/{STATE}", body)
    write(store, "src/a.jsonl", [{"n": 1}], T0 - 5)
    with pytest.raises(StateError, match=r"own/_state/win/watermark.json is not a window state"):
        run_window(stage(store, []), store, T0, "t1")
    lease = json.loads(store.get("own", "_state/win/lease.json"))
    assert lease["expires"] == 0  # the lease was given back


def test_status_reports_the_watermark_the_lease_and_what_waits(tmp_path: Path) -> None:
    store = LocalStore(tmp_path, durable=False)
    config = settings("src-bucket", "own", "dead")
    assert window_status(store, config)["until"] is None and window_status(store, config)["waiting"]["objects"] == 0
    write(store, "src/a.jsonl", [{"n": 1}], T0 - 5)
    run_window(stage(store, []), store, T0, "t1")
    write(store, "src/b.jsonl", [{"n": 2}, {"n": 3}], T0 + 5)
    clock = Clock()
    windows = Windows(store, config, JsonLogger(io.StringIO()), clock=clock)
    begun = windows.begin(T0 + 10, "t2")
    report = window_status(store, config)
    assert report["until"] == "2026-11-02T06:00:00Z" and report["runs"] == 1 and report["last_run"]["id"] == "t1"
    assert report["lease"]["held"] and report["lease"]["run"] == "t2" and report["waiting"]["objects"] == 1
    assert isinstance(begun, Plan)
    windows.release(begun)
    assert window_status(store, config)["lease"] == {"held": False}


def test_a_cut_off_in_the_future_is_read_as_now(tmp_path: Path) -> None:
    """A forged or drifted event cannot push the watermark past the clock (which would hide every later object)."""
    store = LocalStore(tmp_path, durable=False)
    calls: list[list[Any]] = []
    runner = stage(store, calls)
    clock = Clock()
    now = clock()
    write(store, "src/a.jsonl", [{"n": 1}], now - 60)
    log = io.StringIO()
    windows = Windows(store, runner.settings, JsonLogger(log), clock=clock)
    assert run_window(runner, store, now + 10 * 365 * 86400, "forged", windows=windows).status == "ran"
    until = json.loads(store.get("own", f"_state/win/{STATE}"))["until"]
    assert now <= until <= clock() and "cut-off is in the future" in log.getvalue()
    write(store, "src/b.jsonl", [{"n": 2}], clock() + 1)  # written after that run: the next run reads it
    clock.shift = 120
    assert run_window(runner, store, clock(), "next", windows=windows).status == "ran" and [r["n"] for r in calls[-1]] == [2]
