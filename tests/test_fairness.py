"""The comparison prices the same work the same way: when the spec batches, no cloud pays per record.

For workloads from 1 to 50,000 records/s, a stream stage with `batch_size: 500` must be invoked in
batches on every cloud, and what follows invocations (output objects, downstream invocations, log
volume) must follow the batches, not the records.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.backend import backend_class
from pipeline.cost import CostEstimate
from pipeline.sizing import SECONDS_PER_MONTH
from pipeline.spec.load import load_spec

CLOUDS = ("aws", "gcp", "azure")
SPEC = """\
name: fair
stream: {{partitions: auto}}
stages:
  - {{name: pre, handler: h.py:f, trigger: {{stream: {{batch_size: 500, max_batching_window_s: 5}}}}, timeout_s: 300}}
  - {{name: score, handler: h.py:f, trigger: {{objects: {{from: pre}}}}, timeout_s: 300}}
workload:
  records_per_second: {rate}
  record_bytes: 200
  stages:
    pre: {{ms_per_record: 0.1, ms_per_invocation: 50}}
    score: {{ms_per_record: 0.2, ms_per_invocation: 80}}
clouds: {{gcp: {{project: fair-demo-1}}}}
"""
LOG_ITEMS = ("log", "Log")
WRITE_ITEMS = ("PUT", "Class A", "write")


def backend(tmp_path: Path, cloud: str, rate: float):  # type: ignore[no-untyped-def]
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "h.py").write_text("def f(rows, context):\n    return []\n")
    (tmp_path / "pipeline.yaml").write_text(SPEC.format(rate=rate))
    loaded = load_spec(tmp_path / "pipeline.yaml")
    return backend_class(cloud)(loaded.spec, loaded.stack, loaded.base_dir)


def quantity(estimate: CostEstimate, words: tuple[str, ...], roles: tuple[str, ...] | None = None) -> float:
    return sum(line.quantity for line in estimate.lines if any(w in line.item for w in words) and (roles is None or line.role in roles))


@pytest.mark.parametrize("cloud", CLOUDS)
@pytest.mark.parametrize("rate", [1, 150, 1500, 50_000])
def test_stream_stages_are_invoked_per_batch_not_per_record(tmp_path: Path, cloud: str, rate: float) -> None:
    sizing = backend(tmp_path, cloud, rate).sizing()
    pre, score = sizing.stages["pre"], sizing.stages["score"]
    records = rate * SECONDS_PER_MONTH
    if rate >= 150:  # enough records to fill batches within a few seconds: at least 100 per invocation
        assert pre.records_per_invocation >= 100, f"{cloud}: {pre.records_per_invocation:.1f} records per invocation at {rate}/s"
    assert pre.invocations_per_month <= records
    # the next stage runs once per object the stream stage writes, with that object's rows
    assert score.invocations_per_month == pytest.approx(pre.output_objects_per_month)
    assert score.records_per_invocation == pytest.approx(pre.records_per_invocation)


@pytest.mark.parametrize("cloud", CLOUDS)
def test_writes_and_logs_follow_invocations(tmp_path: Path, cloud: str) -> None:
    low, high = (backend(tmp_path / str(rate), cloud, rate) for rate in (1500, 50_000))
    est_low, est_high = low.estimate_cost(False), high.estimate_cost(False)
    invocations = [sum(s.invocations_per_month for s in b.sizing().stages.values()) for b in (low, high)]
    logs = [quantity(e, LOG_ITEMS) for e in (est_low, est_high)]
    assert logs[0] > 0, f"{cloud} prices no logs"
    # batches of up to 500: both stages together run at most once per 100 records, and logs follow invocations
    assert invocations[1] <= 2 * 50_000 * SECONDS_PER_MONTH / 100, f"{cloud}: {invocations[1]:,.0f} invocations a month"
    assert logs[1] / logs[0] <= max(1.0, invocations[1] / invocations[0]) * 1.5 + 1e-9
    stage_writes = [quantity(e, WRITE_ITEMS, ("pre-bucket", "score-bucket")) for e in (est_low, est_high)]
    assert stage_writes[1] <= 50_000 * SECONDS_PER_MONTH / 100, f"{cloud}: {stage_writes[1]:,.0f} output writes a month"


@pytest.mark.parametrize("cloud", CLOUDS)
def test_logs_are_priced_under_observability(tmp_path: Path, cloud: str) -> None:
    estimate = backend(tmp_path, cloud, 150).estimate_cost(False)
    roles = {line.role for line in estimate.lines if any(w in line.item for w in LOG_ITEMS) and "Capture" not in line.item}
    assert roles == {"observability"}, f"{cloud} prices logs under {sorted(roles)}"
