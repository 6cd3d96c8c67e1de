"""Synthetic card-transaction records for the archiver benchmarks (AWS and Azure share them, so both
archive the same bytes)."""

from __future__ import annotations

import json
import random
from typing import Any

# Free text in records mixes a vocabulary with numbers: compresses like real JSON, about 3-4:1.
WORDS = ["purchase", "online", "store", "refund", "card", "present", "terminal", "grocery", "fuel", "travel", "hotel", "airline",
         "subscription", "recurring", "merchant", "category", "approved", "declined", "review", "chip", "contactless", "pin"]


def record(size: int, rng: random.Random) -> bytes:
    """A JSON object of about `size` bytes with the field mix of a card transaction."""
    base: dict[str, Any] = {"txn_id": f"t-{rng.randrange(10**12):012d}", "card": f"{rng.randrange(10**16):016d}",
                            "amount": round(rng.uniform(1, 900), 2), "currency": "USD", "merchant": f"m-{rng.randrange(50_000)}",
                            "country": rng.choice(["US", "GB", "DE", "FR", "JP"]), "ts": 1_760_000_000 + rng.randrange(10**6)}
    text = json.dumps(base)
    pad = max(0, size - len(text) - 12)
    words: list[str] = []
    length = 0
    while length < pad:
        words.append(rng.choice(WORDS) if rng.random() < 0.7 else f"{rng.randrange(10**6):06d}")
        length += len(words[-1]) + 1
    base["note"] = " ".join(words)[:pad]
    return json.dumps(base).encode()
