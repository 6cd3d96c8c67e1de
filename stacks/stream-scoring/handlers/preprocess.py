"""Clean raw sensor readings from the stream into feature rows.

Runs on stream batches. A reading that is not JSON or not a valid reading raises inside the loop,
so it alone is dead-lettered with its error while the rest of the batch carries on. Readings from
devices in maintenance mode (`status: "maintenance"`) are dropped on purpose.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from features import features


def preprocess(records: Iterable[Any], context: Any) -> Iterator[dict[str, Any]]:
    """Yield one feature row per valid reading in the batch."""
    for record in records:
        reading = record.json()
        if isinstance(reading, dict) and reading.get("status") == "maintenance":
            continue
        row = features(reading)
        row["partition_key"] = record.key
        yield row
