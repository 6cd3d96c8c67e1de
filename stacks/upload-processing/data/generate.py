"""Regenerate the sample partner files (deterministic): `python data/generate.py` writes

- data/claims-2026-11-01.jsonl.gz and data/claims-2026-11-02.jsonl: valid claims (a partner resent a
  few, which the handler drops as duplicates): every one of them is processed;
- data/claims-with-errors.jsonl: a file with bad lines too (an unsupported currency, a missing field,
  a line that is not JSON): each bad line alone is dead-lettered and the run exits 1, to show what a
  dead letter is.
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
CATEGORIES = ["auto", "home", "health", "travel", "liability"]


def claims(day: str, count: int, seed: int, errors: bool) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for i in range(count):
        claim = {"claim_id": f"{day}-{i:05d}", "policy_id": f"P{rng.randrange(10**6):06d}", "partner": rng.choice(["acme", "globex", "initech"]),
                 "amount": round(min(rng.lognormvariate(7, 1.2), 200_000.0), 2), "currency": rng.choice(["USD", "USD", "EUR", "GBP", "CAD"]),
                 "incident_date": f"2026-10-{rng.randrange(1, 31):02d}", "category": rng.choice(CATEGORIES),
                 "photos": rng.random() < 0.6, "prior_claims": rng.choice([0, 0, 0, 1, 2, 3])}
        if errors and i % 7 == 5:
            claim["currency"] = "XYZ"  # dead-lettered: unsupported currency
        if errors and i % 11 == 7:
            del claim["policy_id"]  # dead-lettered: missing field
        lines.append(json.dumps(claim))
        if i % 211 == 11:
            lines.append(json.dumps(claim))  # a partner resent a claim: dropped as a duplicate
    if errors:
        lines.insert(len(lines) // 2, "not json at all")  # dead-lettered by the runtime: not JSON
    return lines


(HERE / "claims-2026-11-01.jsonl.gz").write_bytes(gzip.compress(("\n".join(claims("2026-11-01", 1500, 1, False)) + "\n").encode(), mtime=0))
(HERE / "claims-2026-11-02.jsonl").write_text("\n".join(claims("2026-11-02", 500, 2, False)) + "\n", encoding="utf-8")
(HERE / "claims-with-errors.jsonl").write_text("\n".join(claims("2026-11-03", 30, 3, True)) + "\n", encoding="utf-8")
