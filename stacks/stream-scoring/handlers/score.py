"""Score feature rows for anomalies with a z-score model: on a schedule, and on demand over HTTPS.

`score_batch` runs every 15 minutes over the feature rows `preprocess` wrote since the last
successful run; besides a score per row it yields one summary row per device. `score_request`
serves the HTTP stage: callers POST raw readings and get a score for each back.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any

from features import features


@lru_cache(maxsize=4)
def _load_model(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _score(row: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    """The largest absolute z-score over the model's features, and which feature it was."""
    worst, cause = 0.0, ""
    for name, stats in model["features"].items():
        z = abs((float(row[name]) - stats["mean"]) / stats["std"])
        if z > worst:
            worst, cause = z, name
    return {
        "device_id": row["device_id"],
        "ts": row["ts"],
        "anomaly_score": round(worst, 4),
        "anomalous": worst >= model["threshold"],
        "cause": cause if worst >= model["threshold"] else None,
        "model_version": model["version"],
    }


def score_batch(rows: Iterable[dict[str, Any]], context: Any) -> Iterator[dict[str, Any]]:
    """A score per feature row, then one summary row per device seen in this run."""
    model = _load_model(context.model_path)
    devices: dict[str, dict[str, Any]] = {}
    for row in rows:
        scored = _score(row, model)
        yield scored
        summary = devices.setdefault(row["device_id"], {"readings": 0, "anomalies": 0, "max_score": 0.0})
        summary["readings"] += 1
        summary["anomalies"] += int(scored["anomalous"])
        summary["max_score"] = max(summary["max_score"], scored["anomaly_score"])
    for device, summary in sorted(devices.items()):
        yield {"summary": True, "device_id": device, **summary, "model_version": model["version"]}


def score_request(rows: Iterable[dict[str, Any]], context: Any) -> Iterator[dict[str, Any]]:
    """HTTP: raw readings in, one score each out (a reading that is not valid is reported as failed)."""
    model = _load_model(context.model_path)
    for reading in rows:
        scored = _score(features(reading), model)
        if not math.isfinite(scored["anomaly_score"]):
            raise ValueError("reading produced a non-finite score")
        yield scored
