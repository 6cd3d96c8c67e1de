"""Score feature rows with a logistic-regression fraud model.

Runs on each new object the preprocess stage writes. The model is a small JSON artifact
(weights, intercept, merchant risk table) loaded once per container.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=4)
def _load_model(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _probability(row: dict[str, Any], model: dict[str, Any]) -> float:
    features = dict(row)
    features["merchant_risk"] = model["merchant_risk"].get(str(row["merchant_category"]), 0.2)
    z = model["intercept"] + sum(w * float(features.get(name, 0.0)) for name, w in model["weights"].items())
    return 1.0 / (1.0 + math.exp(-z))


def score(rows: Iterable[dict[str, Any]], context: Any) -> Iterator[dict[str, Any]]:
    """Yield a score row for every feature row."""
    model = _load_model(context.model_path)
    for row in rows:
        p = _probability(row, model)
        yield {
            "txn_id": row["txn_id"],
            "card_id": row["card_id"],
            "timestamp": row["timestamp"],
            "amount": row["amount"],
            "fraud_probability": round(p, 6),
            "flagged": p >= model["threshold"],
            "model_version": model["version"],
        }
