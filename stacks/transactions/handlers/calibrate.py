"""Daily model health report: the scheduled stage.

Emits one row describing the deployed model, so a dashboard can show which model version
scored which day and alert when the artifact is older than its review period.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timezone
from typing import Any

REVIEW_DAYS = 90


def calibrate(rows: Iterable[dict[str, Any]], context: Any) -> Iterator[dict[str, Any]]:
    """Yield a single health row for the model artifact."""
    with open(context.model_path, encoding="utf-8") as handle:
        model = json.load(handle)
    today = datetime.now(timezone.utc).date()
    age = (today - date.fromisoformat(model["version"])).days
    yield {
        "checked_at": datetime.now(timezone.utc).isoformat(),
        "model": model["name"],
        "model_version": model["version"],
        "model_age_days": age,
        "needs_review": age > REVIEW_DAYS,
        "features": sorted(model["weights"]),
    }
