"""Clean and enrich raw card transactions into model features.

Runs on stream batches. Each record is one JSON transaction from the card processor.
A record that cannot be parsed raises, so that one record is dead-lettered with its error
while the rest of the batch carries on.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from typing import Any

REQUIRED = ("txn_id", "card_id", "amount", "currency", "merchant_category", "country", "timestamp")


def _features(txn: dict[str, Any], home_country: str) -> dict[str, Any]:
    amount = float(txn["amount"])
    if amount < 0:
        raise ValueError(f"negative amount {amount}")
    when = datetime.fromisoformat(str(txn["timestamp"]).replace("Z", "+00:00")).astimezone(timezone.utc)
    return {
        "txn_id": str(txn["txn_id"]),
        "card_id": str(txn["card_id"]),
        "timestamp": when.isoformat(),
        "amount": round(amount, 2),
        "currency": str(txn["currency"]).upper(),
        "merchant_category": str(txn["merchant_category"]),
        "amount_log": round(math.log1p(amount), 6),
        "is_foreign": int(str(txn["country"]).upper() != home_country),
        "is_night": int(when.hour < 6 or when.hour >= 23),
        "card_present": int(bool(txn.get("card_present", False))),
        "velocity_1h": int(txn.get("txns_last_hour", 0)),
    }


def preprocess(records: Iterable[Any], context: Any) -> Iterator[dict[str, Any]]:
    """Yield one feature row per valid transaction in the batch."""
    home = os.environ.get("HOME_COUNTRY", "US")
    currency = os.environ.get("CURRENCY", "USD")
    for record in records:
        txn = record.json()
        missing = [k for k in REQUIRED if k not in txn]
        if missing:
            raise ValueError(f"transaction is missing {', '.join(missing)}")
        if str(txn["currency"]).upper() != currency:
            continue  # other currencies are scored by another pipeline
        yield _features(txn, home)
