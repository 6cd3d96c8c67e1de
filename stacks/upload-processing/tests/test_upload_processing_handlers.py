"""The claims handler on its own: run with `pytest stacks/upload-processing`."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "handlers"))

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
