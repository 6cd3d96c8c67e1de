"""The neutral capacity and latency model: what reaches each stage, and what a cloud's three decisions imply."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.sizing import (
    HEADROOM,
    Sizing,
    StageDemand,
    StageSizing,
    capacity_problems,
    demand,
    invocation_ms,
    latency_paths,
    needed_concurrency,
    size_pipeline,
    stage_sizing,
)
from pipeline.spec.load import load_spec
from pipeline.spec.model import PipelineSpec, StageSpec

SPEC = """\
name: demo
stream: {{}}
uploads: {{}}
stages:
  - {{name: pre, handler: h.py:f, trigger: {{stream: {{batch_size: 500}}}}, timeout_s: {timeout}}}
  - {{name: score, handler: h.py:f, trigger: {{objects: {{from: pre}}}}}}
  - {{name: nightly, handler: h.py:f, trigger: {{schedule: "rate(1 hour)", from: score}}, memory_mb: {memory}}}
  - {{name: api, handler: h.py:f, trigger: {{http: {{}}}}}}
  - {{name: files, handler: h.py:f, trigger: {{objects: {{from: uploads}}}}}}
workload:
  records_per_second: 1000
  record_bytes: 500
  stages:
    pre: {{ms_per_record: 0.2, ms_per_invocation: 100, output_ratio: 0.5}}
    score: {{ms_per_record: 1, ms_per_invocation: 50}}
  http: {{requests_per_second: 4, rows_per_request: 25}}
  uploads: {{files_per_hour: 36, records_per_file: 1000}}
"""


def load(tmp_path: Path, timeout: int = 60, memory: int = 4096) -> PipelineSpec:
    (tmp_path / "h.py").write_text("def f(rows, context):\n    return []\n")
    path = tmp_path / "pipeline.yaml"
    path.write_text(SPEC.format(timeout=timeout, memory=memory))
    return load_spec(path).spec


def batches_of(n: int, concurrency: int = 10):  # type: ignore[no-untyped-def]
    """A toy cloud: stream batches of n, `concurrency` at a time, 2 s trigger wait."""
    def size(stage: StageSpec, need: StageDemand, stream: object) -> StageSizing:
        return stage_sizing(SPECS[0], stage, need, records_per_invocation=n, concurrency=concurrency, latency_s=2, latency_max_s=5)
    return size


SPECS: list[PipelineSpec] = []


def plan(spec: PipelineSpec, n: int = 500, concurrency: int = 10) -> Sizing:
    SPECS[:] = [spec]
    return size_pipeline(spec, None, batches_of(n, concurrency))


def test_demand_follows_the_spec_not_the_cloud(tmp_path: Path) -> None:
    spec = load(tmp_path)
    sizing = plan(spec)
    pre, score, nightly, api, files = (sizing.stages[n] for n in ("pre", "score", "nightly", "api", "files"))
    assert pre.demand_records_per_second == 1000 and pre.invocations_per_second == pytest.approx(2)  # 1000 / 500
    assert pre.invocation_ms == pytest.approx(100 + 500 * 0.2)
    # every invocation writes one object of n x output_ratio rows, and the next stage runs once per object
    assert score.invocations_per_second == pytest.approx(2) and score.records_per_invocation == pytest.approx(250)
    assert score.demand_records_per_second == pytest.approx(500)
    assert nightly.invocations_per_second == pytest.approx(1 / 3600) and nightly.records_per_invocation == pytest.approx(500 * 3600)
    assert api.invocations_per_second == 4 and api.records_per_invocation == 25 and api.output_objects_per_second == 0  # no persist
    assert files.invocations_per_second == pytest.approx(0.01) and files.records_per_invocation == 1000


def test_bigger_batches_mean_fewer_invocations_for_the_same_work(tmp_path: Path) -> None:
    spec = load(tmp_path)
    small, big = plan(spec, n=1).stages["pre"], plan(spec, n=500).stages["pre"]
    assert small.invocations_per_month == pytest.approx(500 * big.invocations_per_month)
    # the per-record work is the same; only the per-invocation overhead is paid more often
    per_record_ms = 0.2 * small.records_per_month
    assert small.busy_seconds_per_month * 1000 == pytest.approx(per_record_ms + 100 * small.invocations_per_month)
    assert big.busy_seconds_per_month * 1000 == pytest.approx(per_record_ms + 100 * big.invocations_per_month)


def test_needed_concurrency_carries_the_demand_with_headroom() -> None:
    # 1,000 rec/s in batches of 500 taking 200 ms: 0.4 concurrent, x 1.25 -> 1
    assert needed_concurrency(1000, 500, 200) == 1
    assert needed_concurrency(1000, 1, 80) == 100  # 1000 x 1.25 x 0.08
    assert needed_concurrency(0, 1, 80) == 1
    assert HEADROOM == 1.25


def test_capacity_below_demand_is_a_located_problem(tmp_path: Path) -> None:
    spec = load(tmp_path, timeout=60)
    assert not [p for p in capacity_problems(spec, plan(spec, n=500, concurrency=10), "Toy") if "can sustain" in p[1]]
    # batches of 2 taking 100.4 ms, one at a time: ~20 rec/s against 1,000
    slow = capacity_problems(spec, plan(spec, n=2, concurrency=1), "Toy")
    assert any(p[0] == ("workload", "records_per_second") and "can sustain 20 rec/s" in p[1] for p in slow)


def test_an_invocation_longer_than_the_timeout_is_refused(tmp_path: Path) -> None:
    spec = load(tmp_path, timeout=1)
    problems = capacity_problems(spec, plan(spec, n=10_000, concurrency=100), "Toy")  # 100 + 2,000 ms > 1 s
    assert any(p[0] == ("stages", 0, "timeout_s") and "longer than timeout_s 1" in p[1] for p in problems)


def test_a_schedule_over_accumulated_rows_must_fit_in_memory(tmp_path: Path) -> None:
    spec = load(tmp_path, memory=128)  # 500 rows/s x 3600 s x 500 B x 5 = 4.5 GB parsed
    problems = capacity_problems(spec, plan(spec), "Toy")
    assert any(p[0] == ("stages", 2, "memory_mb") and "accumulated rows" in p[1] for p in problems)


def test_latency_paths_sum_waits_and_invocations(tmp_path: Path) -> None:
    spec = load(tmp_path)
    sizing = plan(spec)
    paths = {tuple(p.path): p for p in latency_paths(spec, sizing)}
    # score is read only by a schedule: its own path ends there, and the schedule's goes on from it
    assert set(paths) == {("stream", "pre", "score"), ("stream", "pre", "score", "nightly"), ("HTTP request", "api"), ("uploads", "files")}
    assert paths[("stream", "pre", "score")].typical_s < paths[("stream", "pre", "score", "nightly")].typical_s
    chain = paths[("stream", "pre", "score", "nightly")]
    expected = sum(2 + sizing.stages[n].invocation_ms / 1000 for n in ("pre", "score", "nightly"))
    assert chain.typical_s == pytest.approx(expected) and chain.max_s > chain.typical_s


def test_invocation_time_is_overhead_plus_per_record_work(tmp_path: Path) -> None:
    spec = load(tmp_path)
    assert invocation_ms(spec, spec.stage("pre"), 10) == pytest.approx(102)
    assert invocation_ms(spec, spec.stage("api"), 10) == pytest.approx(100 + 10 * 1.0)  # documented defaults
    assert demand(spec, spec.stage("pre"), {}).events_per_second is None


def test_erlang_b_matches_published_tables() -> None:
    from pipeline.sizing import erlang_b, servers_for_blocking

    # Erlang B tables: 10 servers offered 5 erlangs block 1.84 %; 1 server offered 1 erlang blocks 50 %
    assert abs(erlang_b(10, 5.0) - 0.018385) < 1e-5
    assert erlang_b(1, 1.0) == 0.5 and erlang_b(3, 0.0) == 0.0
    assert servers_for_blocking(5.0) == 11 and erlang_b(11, 5.0) <= 0.01 < erlang_b(10, 5.0)


def test_an_object_stage_must_hold_one_object_of_its_source(tmp_path: Path) -> None:
    """A 2 GB upload planned into 4 GB fails every attempt: refused at plan time, located, with the sizes that fit."""
    (tmp_path / "h.py").write_text("def f(rows, context):\n    return []\n")
    path = tmp_path / "pipeline.yaml"
    path.write_text(SPEC.format(timeout=60, memory=4096).replace("records_per_file: 1000", "records_per_file: 4000000"))
    spec = load_spec(path).spec  # files of 4,000,000 rows x 500 B = ~1.9 GB; `files` has 512 MB
    problems = [p for p in capacity_problems(spec, plan(spec), "Toy") if p[0] == ("stages", 4, "memory_mb")]
    assert len(problems) == 1, problems
    _, message, hint = problems[0]
    assert "one object of uploads is ~1,907 MB (4,000,000 rows of 500 B, from uploads.records_per_file)" in message
    assert "more than memory_mb 512 holds: the largest object that fits is ~63 MB (132,153 rows)" in message
    assert hint == "no stage's memory holds it (memory_mb is at most 10,240): write objects of at most 2,643,057 rows (at memory_mb 10,240)"
    path.write_text(SPEC.format(timeout=60, memory=4096).replace("records_per_file: 1000", "records_per_file: 400000"))
    smaller = load_spec(path).spec  # ~191 MB files
    [(_, _, hint)] = [p for p in capacity_problems(smaller, plan(smaller), "Toy") if p[0] == ("stages", 4, "memory_mb")]
    assert hint == "raise memory_mb to 1,550, or write objects of at most 132,153 rows"
    fine = load(tmp_path)  # 1,000 rows x 500 B = 0.5 MB: fits
    assert not [p for p in capacity_problems(fine, plan(fine), "Toy") if p[0][1] in (1, 4) and p[0][-1] == "memory_mb"]
    # The outputs of a stage are objects too: `score` reads pre's objects of 250 rows, far below 4 GB.
    assert not [p for p in capacity_problems(spec, plan(spec), "Toy") if p[0] == ("stages", 1, "memory_mb")]


def test_plan_refuses_an_object_stage_that_cannot_hold_its_files(write_spec: Any, run_cli: Any) -> None:
    """Through the console script: the plan fails before anything is deployed, naming the file, line and field."""
    spec = write_spec("""\
        name: demo
        uploads: {}
        stages:
          - name: files
            handler: handlers/h.py:handle
            trigger: {objects: {from: uploads}}
            memory_mb: 1024
        workload:
          record_bytes: 1000
          uploads: {files_per_hour: 1, records_per_file: 500000}
        """)
    result = run_cli("plan", spec, "--cloud", "aws")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "pipeline.yaml:7:" in result.stderr and "stages[0].memory_mb" in result.stderr, result.stderr
    assert "one object of uploads is ~477 MB" in result.stderr and "raise memory_mb to 3,875" in result.stderr, result.stderr
