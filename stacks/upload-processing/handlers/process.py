"""Validate and normalise the claims in one uploaded partner file.

Runs once per file that lands under `uploads/` (JSON lines, optionally gzip-compressed: the runtime
decompresses). A line that is not a valid claim raises, so that claim alone is dead-lettered with
its error while the rest of the file is processed. Duplicate claim ids within a file are dropped.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from datetime import date
from typing import Any

REQUIRED = ("claim_id", "policy_id", "partner", "amount", "currency", "incident_date", "category")
CATEGORIES = {"auto", "home", "health", "travel", "liability"}
RATES_TO_USD = {"USD": 1.0, "EUR": 1.08, "GBP": 1.27, "CAD": 0.73}


def _claim(row: dict[str, Any], limit: float) -> dict[str, Any]:
    missing = [k for k in REQUIRED if k not in row]
    if missing:
        raise ValueError(f"claim is missing {', '.join(missing)}")
    currency = str(row["currency"]).upper()
    if currency not in RATES_TO_USD:
        raise ValueError(f"unsupported currency {currency!r}")
    amount_usd = round(float(row["amount"]) * RATES_TO_USD[currency], 2)
    if not 0 < amount_usd <= limit:
        raise ValueError(f"amount {amount_usd} USD is outside (0, {limit:,.0f}]")
    category = str(row["category"]).lower()
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}")
    incident = date.fromisoformat(str(row["incident_date"]))
    return {
        "claim_id": str(row["claim_id"]),
        "policy_id": str(row["policy_id"]),
        "partner": str(row["partner"]),
        "category": category,
        "incident_date": incident.isoformat(),
        "amount_usd": amount_usd,
        "original_currency": currency,
        "has_photos": bool(row.get("photos")),
        "needs_review": amount_usd > limit / 10 or bool(row.get("prior_claims", 0) > 2),
    }


def process(rows: Iterable[dict[str, Any]], context: Any) -> Iterator[dict[str, Any]]:
    """Yield one normalised claim per valid, first-seen claim in the file."""
    limit = float(os.environ.get("MAX_CLAIM_USD", "250000"))
    seen: set[str] = set()
    for row in rows:
        if not isinstance(row, dict):
            raise ValueError(f"a claim is a JSON object, not {type(row).__name__}")
        claim = _claim(row, limit)
        if claim["claim_id"] in seen:
            continue
        seen.add(claim["claim_id"])
        yield claim
