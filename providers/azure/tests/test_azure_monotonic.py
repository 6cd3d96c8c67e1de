"""Azure's monthly total never decreases when only the load grows (issue 20, "Done when")."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

import pytest
from pipeline_azure.backend import AzureBackend

from pipeline.spec.load import load_spec

RATES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000)  # records/s, log-spaced
SIZES = (100, 300, 1_000, 3_000, 10_000, 30_000)  # record bytes

STREAM = """
    name: grid
    stream: {archive: true}
    stages:
      - {name: clean, handler: "h.py:handle", trigger: {stream: {batch_size: 500, max_batching_window_s: 5}}}
      - {name: score, handler: "h.py:handle", trigger: {objects: {from: clean}}, memory_mb: 2048, timeout_s: 600}
      - {name: daily, handler: "h.py:handle", trigger: {schedule: "*/15 * * * *", from: score}, memory_mb: 4096, timeout_s: 900}
    workload:
      records_per_second: RATE
      record_bytes: BYTES
      stages: {daily: {ms_per_record: 0.001}}
"""

FILES_AND_REQUESTS = """
    name: grid
    uploads: {}
    stages:
      - {name: ingest, handler: "h.py:handle", trigger: {objects: {from: uploads}}, memory_mb: 2048, timeout_s: 900}
      - {name: lookup, handler: "h.py:handle", trigger: {http: {}}, timeout_s: 30}
      - {name: report, handler: "h.py:handle", trigger: {http: {from: ingest}}, timeout_s: 200, memory_mb: 4096}
    workload:
      record_bytes: 500
      uploads: {files_per_hour: FILES, records_per_file: 1000}
      http: {requests_per_second: RPS, rows_per_request: 10}
      stages: {report: {ms_per_invocation: 50, ms_per_record: 0.001}, lookup: {ms_per_invocation: 20, ms_per_record: 0.5}}
"""


def total(tmp_path: Path, body: str) -> float | None:
    """The month's total, or None where Azure refuses the spec (beyond Standard Event Hubs, a run longer than its timeout)."""
    (tmp_path / "h.py").write_text("def handle(records, context):\n    return records\n")
    (tmp_path / "pipeline.yaml").write_text(textwrap.dedent(body))
    loaded = load_spec(str(tmp_path / "pipeline.yaml"))
    backend = AzureBackend(loaded.spec, "dev", tmp_path)
    if backend.check():
        return None
    return backend.estimate_cost(free_tier=False).total


def assert_never_decreases(series: list[tuple[float, float | None]], what: str) -> None:
    priced = [(load, usd) for load, usd in series if usd is not None]
    for (low, cheaper), (high, dearer) in itertools.pairwise(priced):
        assert dearer >= cheaper - 1e-9, f"{what}: ${cheaper:,.2f} at {low:g} but ${dearer:,.2f} at {high:g}"


def test_stream_workload_grid(tmp_path: Path) -> None:
    grid = {(rate, size): total(tmp_path, STREAM.replace("RATE", str(rate)).replace("BYTES", str(size))) for rate in RATES for size in SIZES}
    assert sum(v is not None for v in grid.values()) > 60  # most of the grid fits Standard Event Hubs
    for size in SIZES:
        assert_never_decreases([(rate, grid[(rate, size)]) for rate in RATES], f"{size} B records")
    for rate in RATES:
        assert_never_decreases([(size, grid[(rate, size)]) for size in SIZES], f"{rate} records/s")


@pytest.mark.parametrize("requests", [0.01, 1, 5])
def test_uploads_grow(tmp_path: Path, requests: float) -> None:
    body = FILES_AND_REQUESTS.replace("RPS", str(requests))
    assert_never_decreases([(files, total(tmp_path, body.replace("FILES", str(files)))) for files in (1, 10, 100, 1_000, 10_000)],
                           f"files an hour at {requests} requests/s")


@pytest.mark.parametrize("files", [1, 1_000])
def test_requests_grow(tmp_path: Path, files: int) -> None:
    body = FILES_AND_REQUESTS.replace("FILES", str(files))
    assert_never_decreases([(rps, total(tmp_path, body.replace("RPS", str(rps)))) for rps in (0.01, 0.1, 0.5, 1, 2, 5, 10)],
                           f"requests/s at {files} files an hour")
