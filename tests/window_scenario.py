"""One replay of out-of-order, duplicate, late, empty and concurrent runs over a window, against any store.

The same scenario runs on the local store (test_runtime_window.py) and on each cloud's store client against its
emulator (S3 on moto, GCS on fake-gcs-server, Blob on Azurite): the shipped runtime's window code with the real
conditional writes of each. Times come from the store (its last-modified times); cut-offs are set around them.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from pipeline.runtime.context import Context
from pipeline.runtime.invoke import Settings, StageRunner
from pipeline.runtime.logs import JsonLogger
from pipeline.runtime.store import WindowStore
from pipeline.runtime.window import LEASE, STATE, WindowConflictError, WindowOutcome, Windows, run_window

LATENESS_S = 3600.0


def settings(source: str, own: str, dead: str, stage: str = "win") -> Settings:
    return Settings(stage, "schedule", "h.py:f", own, f"{stage}/", dead, f"{stage}/", source, "src/", state_bucket=own,
                    state_prefix=f"_state/{stage}/", window_lateness_s=LATENESS_S, timeout_s=60)


class Clock:
    """The time the window code sees: the real time plus a shift a test moves (to let a lease expire)."""

    def __init__(self) -> None:
        import time

        self.shift = 0.0
        self._time = time.time

    def __call__(self) -> float:
        return self._time() + self.shift


def rows_of(store: WindowStore, bucket: str, key: str) -> list[Any]:
    return [json.loads(line) for line in store.get(bucket, key).splitlines() if line.strip()]


def replay(store: WindowStore, source: str, own: str, dead: str, keys_in: Callable[[str, str], list[str]]) -> None:
    """The scenario. `keys_in(bucket, prefix)` lists what a bucket holds (through the test's own client)."""
    config = settings(source, own, dead)
    calls: list[list[Any]] = []
    clock = Clock()
    clock.shift = 1000.0  # the runs' cut-offs lie up to ~5 min after the objects' times: never ahead of the window's clock
    nested: list[WindowOutcome] = []
    during: list[Callable[[], None]] = []  # what happens while the handler runs (another run of the same stage)

    def handler(rows: Iterable[Any], context: Context) -> Iterator[dict[str, Any]]:
        taken = list(rows)
        calls.append(taken)
        while during:
            during.pop(0)()
        for row in taken:
            if row.get("boom"):
                raise ConnectionError("the model server is down")  # fails the whole run: retried
            yield {"n": row["n"], "seen": True}

    def runner() -> StageRunner:
        return StageRunner(config, handler, store, Context("win", logger=JsonLogger(io.StringIO()), env={}))

    def windows() -> Windows:  # every run its own owner, as in another container
        return Windows(store, config, JsonLogger(io.StringIO()), clock=clock)

    def tick(cutoff: float, run: str) -> WindowOutcome:
        return run_window(runner(), store, cutoff, run, windows=windows())

    def put(name: str, rows: list[dict[str, Any]]) -> float:
        store.put(source, f"src/{name}", "".join(json.dumps(r) + "\n" for r in rows).encode())
        return dict(store.list(source, f"src/{name}"))[f"src/{name}"]

    def state() -> dict[str, Any]:
        found = store.read_versioned(own, f"_state/win/{STATE}")
        assert found is not None
        return json.loads(found[0])

    # 1. The first run reads what is there; its output is keyed by the window's start.
    t_a = put("a.jsonl", [{"n": 1}, {"n": 2}])
    c1 = t_a + 50
    first = tick(c1, "t1")
    assert first.status == "ran" and first.result is not None and first.result.output_key == "win/window/start.jsonl"
    assert rows_of(store, own, "win/window/start.jsonl") == [{"n": 1, "seen": True}, {"n": 2, "seen": True}]
    assert state()["until"] == c1 and state()["runs"] == 1 and "src/a.jsonl" in state()["recent"]

    # 2. An object dated before the cut-off that shows up only now (an S3 multipart upload is dated at its start).
    t_b = put("b.jsonl", [{"n": 3}])
    assert t_b <= c1, "the late object must be dated before the first run's cut-off for this test to mean anything"
    before = store.read_versioned(own, f"_state/win/{STATE}")

    # 3. The first tick redelivered, and a late retry of an older tick: nothing to do, nothing written, no handler call.
    calls.clear()
    assert tick(c1, "t1").status == "late" and tick(c1 - 10, "t0").status == "late"
    assert calls == [] and store.read_versioned(own, f"_state/win/{STATE}") == before
    assert keys_in(own, "win/") == ["win/window/start.jsonl"]

    # 4. The next run reads the late object, and only it; a failure first: retried from the same state, same key.
    put("c.jsonl", [{"n": 4, "boom": True}])
    c2 = c1 + 60
    with pytest.raises(Exception, match="the model server is down"):
        tick(c2, "t2")
    assert state()["until"] == c1  # the watermark did not move
    put("c.jsonl", [{"n": 4}])  # fixed upstream (a rewrite of the same key)
    second = tick(c2, "t2")
    assert second.status == "ran" and [r["n"] for r in calls[-1]] == [3, 4]
    key2 = second.result.output_key if second.result else None
    assert key2 is not None and key2.startswith("win/window/") and key2 != "win/window/start.jsonl"
    assert sorted(r["n"] for r in rows_of(store, own, key2)) == [3, 4]
    assert state()["until"] == c2 and state()["last_run"]["objects"] == 2

    # 5. Nothing new: no handler call, no output, no commit.
    calls.clear()
    unchanged = store.read_versioned(own, f"_state/win/{STATE}")
    assert tick(c2 + 60, "t3").status == "empty" and calls == []
    assert store.read_versioned(own, f"_state/win/{STATE}") == unchanged and len(keys_in(own, "win/")) == 2

    # 6. Concurrent runs: a second delivery while the first holds the lease leaves the window to it.
    put("d.jsonl", [{"n": 5}])
    during.append(lambda: nested.append(tick(c2 + 130, "t4-concurrent")))
    third = tick(c2 + 120, "t4")
    assert nested[-1].status == "busy" and nested[-1].retry_after_s is not None and nested[-1].answer()[0] == 409
    assert third.status == "ran" and [r["n"] for r in calls[0]] == [5]
    assert state()["until"] == c2 + 120

    # 7. A run whose lease ran out (a clock jump past its time to live): another takes over and commits; the first
    # one's commit is refused, so the watermark is the taker's and the rows are in one object, once.
    put("e.jsonl", [{"n": 6}])

    def take_over() -> None:
        clock.shift = 10_000.0
        nested.append(tick(c2 + 200, "t6"))

    during.append(take_over)
    with pytest.raises(WindowConflictError):
        tick(c2 + 190, "t5")
    assert nested[-1].status == "ran" and state()["until"] == c2 + 200 and state()["last_run"]["id"] == "t6"
    everything = [row["n"] for key in keys_in(own, "win/") for row in rows_of(store, own, key)]
    assert sorted(everything) == [1, 2, 3, 4, 5, 6]  # every row once, across every window's object
    lease = store.read_versioned(own, f"_state/win/{LEASE}")
    assert lease is not None and json.loads(lease[0])["expires"] == 0  # given back
    assert keys_in(dead, "win/") == []
