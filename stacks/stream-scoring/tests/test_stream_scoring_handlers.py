"""The stream-scoring handlers on their own, with the runtime's record type: run with `pytest stacks/stream-scoring`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "handlers"))

from preprocess import preprocess  # noqa: E402
from score import score_batch, score_request  # noqa: E402

from pipeline.runtime.records import Record  # noqa: E402

CONTEXT = SimpleNamespace(model_path=str(HERE / "models" / "anomaly-model.json"), stage="test")


def record(value: object, key: str = "pump-001") -> Record:
    return Record(json.dumps(value).encode(), key=key, record_id="1")


def test_preprocess_normalises_units_and_drops_maintenance() -> None:
    rows = list(preprocess([
        record({"device_id": "pump-001", "ts": "2026-11-15T08:00:00Z", "temperature_f": 212, "vibration_mm_s": 2, "pressure_psi": 45}),
        record({"device_id": "pump-002", "ts": "2026-11-15T08:00:00Z", "status": "maintenance", "temperature_c": 1,
                "vibration_mm_s": 1, "pressure_kpa": 1}),
    ], CONTEXT))
    assert len(rows) == 1
    assert rows[0]["temperature_c"] == 100.0 and rows[0]["pressure_kpa"] == pytest.approx(310.264, abs=1e-3)
    assert rows[0]["ts"] == "2026-11-15T08:00:00+00:00"


def test_preprocess_raises_on_a_broken_reading_so_only_it_is_dead_lettered() -> None:
    with pytest.raises(ValueError, match="device_id"):
        list(preprocess([record({"ts": "2026-11-15T08:00:00Z", "temperature_c": 1, "vibration_mm_s": 1, "pressure_kpa": 1})], CONTEXT))


def test_scores_flag_the_outlier_and_summarise_per_device() -> None:
    normal = {"device_id": "a", "ts": "2026-11-15T08:00:00+00:00", "temperature_c": 41.5, "vibration_mm_s": 2.8, "pressure_kpa": 310.0}
    hot = {**normal, "device_id": "b", "temperature_c": 90.0}
    out = list(score_batch([normal, hot], CONTEXT))
    scores = {row["device_id"]: row for row in out if not row.get("summary")}
    assert not scores["a"]["anomalous"] and scores["b"]["anomalous"] and scores["b"]["cause"] == "temperature_c"
    assert [row["device_id"] for row in out if row.get("summary")] == ["a", "b"]


def test_http_scoring_takes_raw_readings() -> None:
    reading = {"device_id": "c", "ts": "2026-11-15T08:00:00Z", "temperature_c": 41, "vibration_mm_s": 9.5, "pressure_kpa": 300}
    (row,) = score_request([reading], CONTEXT)
    assert row["anomalous"] and row["cause"] == "vibration_mm_s"


def test_the_sample_with_errors_holds_readings_preprocess_refuses() -> None:
    """data/readings-with-errors.jsonl shows dead letters; data/readings.jsonl has none."""
    def refused(name: str) -> int:
        count = 0
        for line in (HERE / "data" / name).read_text(encoding="utf-8").splitlines():
            try:
                list(preprocess([Record(line.encode(), record_id="1")], CONTEXT))
            except ValueError:
                count += 1
        return count

    assert refused("readings-with-errors.jsonl") == 5 and refused("readings.jsonl") == 0
