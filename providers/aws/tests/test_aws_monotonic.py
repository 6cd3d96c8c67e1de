"""Issue 20: the AWS bill never falls when only the load grows.

A design choice that keeps a managed service "while its extra cost is small" makes the bill step down where the
choice flips (the old Firehose rule: 30 -> 40 records/s of 700 B went from $49.87 to $44.87). The grid below walks
every bundled stack's load up, one workload field at a time, over the ranges a user may ask the comparison about
(records_per_second 1..20,000 log-spaced x record_bytes 100..30,000; uploads files_per_hour; HTTP requests_per_second),
and each step must cost at least as much as the one before."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import pytest
from pipeline_aws.backend import AwsBackend

from pipeline.spec.load import load_spec
from pipeline.spec.model import PipelineSpec

STACKS = Path(__file__).parents[3] / "stacks"
RATES = [10 ** (i * math.log10(20_000) / 29) for i in range(30)]  # 1 .. 20,000 records/s
SIZES = [100, 300, 700, 1_500, 4_000, 5_000, 9_500, 30_000]


def spec_with(stack: str, **workload: Any) -> PipelineSpec:
    base = load_spec(STACKS / stack / "pipeline.yaml", "dev").spec
    data = base.model_dump(by_alias=True)
    for key, value in workload.items():
        data["workload"][key] = {**data["workload"][key], **value} if isinstance(value, dict) else value
    return PipelineSpec.model_validate(data)


def total(spec: PipelineSpec) -> float:
    return AwsBackend(spec, "dev", STACKS).estimate_cost(free_tier=False).total


def assert_never_falls(points: list[tuple[float, float]]) -> None:
    falls = [(before, after) for before, after in itertools.pairwise(points) if after[1] < before[1] - 1e-9]
    assert not falls, f"the bill falls as the load grows: {falls[:3]}"


@pytest.mark.parametrize("stack", ["transactions", "stream-scoring"])
@pytest.mark.parametrize("record_bytes", SIZES)
def test_the_bill_never_falls_as_records_per_second_grow(stack: str, record_bytes: int) -> None:
    assert_never_falls([(rate, total(spec_with(stack, records_per_second=rate, record_bytes=record_bytes))) for rate in RATES])


def test_the_issues_firehose_step_is_gone() -> None:
    """30 -> 40 records/s of 700 B on the example: the old plan kept Firehose at 30 (rounding under $10) and switched to the
    archiver at 40, so the bill fell by $5."""
    low, high = (total(spec_with("transactions", records_per_second=rate, record_bytes=700)) for rate in (30, 40))
    assert high >= low


@pytest.mark.parametrize("record_bytes", [300, 900, 5_000])
def test_the_bill_never_falls_as_uploads_grow(record_bytes: int) -> None:
    files = [0.1 * 2 ** i for i in range(16)]  # 0.1 .. 3,277 files an hour
    assert_never_falls([(f, total(spec_with("upload-processing", record_bytes=record_bytes, uploads={"files_per_hour": f})))
                        for f in files])


@pytest.mark.parametrize("stack", ["stream-scoring"])
def test_the_bill_never_falls_as_http_requests_grow(stack: str) -> None:
    rates = [0.01 * 2 ** i for i in range(16)]  # 0.01 .. 328 requests/s
    assert_never_falls([(r, total(spec_with(stack, http={"requests_per_second": r}))) for r in rates])


def test_the_bill_never_falls_as_requests_to_a_windowed_http_stage_grow(tmp_path: Path) -> None:
    """An HTTP stage over accumulated outputs: more requests, more runs, each listing the whole source prefix."""
    (tmp_path / "h.py").write_text("def handle(rows, context):\n    return []\n")
    (tmp_path / "pipeline.yaml").write_text(
        "name: windowed\nstages:\n  - {name: ingest, handler: h.py:handle, trigger: {stream: {}}}\n"
        "  - {name: api, handler: h.py:handle, timeout_s: 900, trigger: {http: {from: ingest}}}\n")
    base = load_spec(tmp_path / "pipeline.yaml").spec
    points = []
    for rate in [0.001 * 2 ** i for i in range(14)]:  # 0.001 .. 8 requests/s
        data = base.model_dump(by_alias=True)
        data["workload"]["http"]["requests_per_second"] = rate
        points.append((rate, AwsBackend(PipelineSpec.model_validate(data), "dev", tmp_path).estimate_cost(free_tier=False).total))
    assert_never_falls(points)
