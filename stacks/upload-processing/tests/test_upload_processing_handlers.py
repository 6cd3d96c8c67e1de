"""The claims handler on its own: run with `pytest stacks/upload-processing`."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "handlers"))

from process import process  # noqa: E402

CONTEXT = SimpleNamespace(model_path=None, stage="process")
CLAIM = {"claim_id": "c1", "policy_id": "p1", "partner": "acme", "amount": 100, "currency": "EUR",
         "incident_date": "2026-10-03", "category": "Auto", "photos": True}


def test_a_claim_is_normalised_to_usd() -> None:
    (row,) = process([CLAIM], CONTEXT)
    assert row["amount_usd"] == 108.0 and row["category"] == "auto" and row["original_currency"] == "EUR" and row["has_photos"]


def test_duplicates_in_a_file_are_dropped() -> None:
    assert len(list(process([CLAIM, CLAIM], CONTEXT))) == 1


@pytest.mark.parametrize(("change", "message"), [({"currency": "XYZ"}, "currency"), ({"amount": -5}, "outside"),
                                                 ({"category": "pets"}, "category"), ({"incident_date": "soon"}, "isoformat")])
def test_an_invalid_claim_raises_so_it_alone_is_dead_lettered(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        list(process([{**CLAIM, **change}], CONTEXT))


def _refused(lines: list[str]) -> int:
    count = 0
    for line in lines:
        try:
            list(process([json.loads(line)], CONTEXT))
        except ValueError:  # (a line that is not JSON too: the runtime dead-letters it before the handler)
            count += 1
    return count


def test_the_sample_files_are_clean_and_the_one_with_errors_is_not() -> None:
    data = HERE / "data"
    assert _refused(gzip.decompress((data / "claims-2026-11-01.jsonl.gz").read_bytes()).decode().splitlines()) == 0
    assert _refused((data / "claims-2026-11-02.jsonl").read_text(encoding="utf-8").splitlines()) == 0
    assert _refused((data / "claims-with-errors.jsonl").read_text(encoding="utf-8").splitlines()) == 8
