"""Handler tests: each stage's handler on the sample data, as the pipeline would call it, with no cloud.

Run with `python -m pytest tests` from the project folder. The handlers are plain functions, so a
test builds their input (stream records, the rows of an object, nothing for a schedule) and a
context, and checks what they yield.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pipeline.runtime.context import Context
from pipeline.runtime.records import Record

PROJECT = Path(__file__).resolve().parents[1]
SAMPLE = PROJECT / "data" / "transactions.jsonl"
MODEL = PROJECT / "models" / "fraud-model.json"


def handler_module(name: str) -> ModuleType:
    """Import handlers/<name>.py by path (the handlers folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f"handlers_{name}", PROJECT / "handlers" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sample(n: int = 200) -> list[dict[str, Any]]:
    with SAMPLE.open(encoding="utf-8") as handle:
        return [json.loads(line) for _, line in zip(range(n), handle, strict=False)]


def as_records(transactions: list[dict[str, Any]]) -> list[Record]:
    return [Record(json.dumps(t).encode(), record_id=str(i), key=str(t.get("card_id"))) for i, t in enumerate(transactions)]


def is_complete(txn: dict[str, Any]) -> bool:
    return all(k in txn for k in handler_module("preprocess").REQUIRED) and float(txn["amount"]) >= 0


def test_preprocess_turns_complete_usd_transactions_into_features() -> None:
    preprocess = handler_module("preprocess").preprocess
    transactions = [t for t in sample() if is_complete(t)]
    rows = list(preprocess(as_records(transactions), Context("preprocess", env={})))
    usd = [t for t in transactions if str(t["currency"]).upper() == "USD"]
    assert len(rows) == len(usd) > 0
    assert {"txn_id", "amount_log", "is_foreign", "is_night", "card_present", "velocity_1h"} <= set(rows[0])


def test_preprocess_raises_on_an_incomplete_record_so_it_is_dead_lettered() -> None:
    preprocess = handler_module("preprocess").preprocess
    incomplete = {"txn_id": "t1", "card_id": "c1", "currency": "USD"}
    with pytest.raises(ValueError, match="missing"):
        list(preprocess(as_records([incomplete]), Context("preprocess", env={})))


def test_score_gives_every_row_a_probability() -> None:
    preprocess, score = handler_module("preprocess").preprocess, handler_module("score").score
    features = list(preprocess(as_records([t for t in sample() if is_complete(t)]), Context("preprocess", env={})))
    scores = list(score(features, Context("score", env={}, model_path=str(MODEL))))
    assert [s["txn_id"] for s in scores] == [f["txn_id"] for f in features]
    assert all(0.0 <= s["fraud_probability"] <= 1.0 and isinstance(s["flagged"], bool) for s in scores)


def test_calibrate_reports_the_model_version() -> None:
    calibrate = handler_module("calibrate").calibrate
    rows = list(calibrate([], Context("calibrate", env={}, model_path=str(MODEL))))
    model = json.loads(MODEL.read_text(encoding="utf-8"))
    assert len(rows) == 1 and rows[0]["model_version"] == model["version"]


def test_the_sample_with_errors_holds_records_preprocess_refuses() -> None:
    """data/transactions-with-errors.jsonl shows dead letters: each bad line raises alone, the others give features."""
    preprocess = handler_module("preprocess").preprocess
    refused = []
    lines = (PROJECT / "data" / "transactions-with-errors.jsonl").read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        try:
            list(preprocess([Record(line.encode(), record_id=str(number))], Context("preprocess", env={})))
        except ValueError:  # (json.JSONDecodeError is a ValueError)
            refused.append(number)
    assert refused == [3, 5, 6, 8]
