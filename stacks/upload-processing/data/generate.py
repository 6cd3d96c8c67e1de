"""Regenerate the sample partner files (deterministic):
`python data/generate.py` writes data/claims-2026-11-01.jsonl.gz and data/claims-2026-11-02.jsonl.
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
CATEGORIES = ["auto", "home", "health", "travel", "liability"]


def claims(day: str, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for i in range(count):
        claim = {"claim_id": f"{day}-{i:05d}", "policy_id": f"P{rng.randrange(10**6):06d}", "partner": rng.choice(["acme", "globex", "initech"]),
                 "amount": round(rng.lognormvariate(7, 1.2), 2), "currency": rng.choice(["USD", "USD", "EUR", "GBP", "CAD"]),
                 "incident_date": f"2026-10-{rng.randrange(1, 31):02d}", "category": rng.choice(CATEGORIES),
                 "photos": rng.random() < 0.6, "prior_claims": rng.choice([0, 0, 0, 1, 2, 3])}
        if i % 97 == 5:
            claim["currency"] = "XYZ"  # dead-lettered: unsupported currency
        if i % 151 == 7:
            del claim["policy_id"]  # dead-lettered: missing field
        lines.append(json.dumps(claim))
        if i % 211 == 11:
            lines.append(json.dumps(claim))  # a partner resent a claim: dropped as a duplicate
    lines.insert(300, "not json at all")  # dead-lettered by the runtime: not JSON
    return lines


(HERE / "claims-2026-11-01.jsonl.gz").write_bytes(gzip.compress(("\n".join(claims("2026-11-01", 1500, 1)) + "\n").encode(), mtime=0))
(HERE / "claims-2026-11-02.jsonl").write_text("\n".join(claims("2026-11-02", 500, 2)) + "\n", encoding="utf-8")
