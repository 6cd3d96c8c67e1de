"""Regenerate the sample readings (deterministic): `python data/generate.py` writes

- data/readings.jsonl: 2,000 readings from 40 devices over an hour, in both unit systems, with a few
  anomalies and a few devices in maintenance (dropped by preprocess): every one of them is processed;
- data/readings-with-errors.jsonl: 40 readings of the same kind, some of them broken (a line a flaky
  gateway cut off, a reading without its device): preprocess raises on each, so those alone are
  dead-lettered and the run exits 1, to show what a dead letter is.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent


def readings(count: int, seed: int, broken: bool) -> list[str]:
    rng = random.Random(seed)
    start = datetime(2026, 11, 15, 8, 0, tzinfo=timezone.utc)
    lines = []
    for i in range(count):
        device = f"pump-{rng.randrange(40):03d}"
        when = start + timedelta(seconds=i * 1.8)
        reading: dict[str, object] = {"device_id": device, "ts": when.isoformat().replace("+00:00", "Z"),
                                      "vibration_mm_s": round(rng.gauss(2.8, 0.9 if i % 97 else 6.0), 3)}
        celsius = rng.gauss(41.5, 6.2 if i % 131 else 30.0)
        if i % 3:
            reading["temperature_c"] = round(celsius, 2)
        else:
            reading["temperature_f"] = round(celsius * 9 / 5 + 32, 2)
        kpa = rng.gauss(310.0, 22.0)
        if i % 5:
            reading["pressure_kpa"] = round(kpa, 1)
        else:
            reading["pressure_psi"] = round(kpa / 6.894757, 2)
        reading["vibration_mm_s"] = abs(float(reading["vibration_mm_s"]))  # type: ignore[arg-type]
        if i % 250 == 17:
            reading["status"] = "maintenance"
        if broken and i % 13 == 5:
            lines.append('{"device_id": "pump-999", "ts": ')  # a truncated line from a flaky gateway
            continue
        if broken and i % 17 == 9:
            del reading["device_id"]
        lines.append(json.dumps(reading))
    return lines


(HERE / "readings.jsonl").write_text("\n".join(readings(2000, 20261115, broken=False)) + "\n", encoding="utf-8")
(HERE / "readings-with-errors.jsonl").write_text("\n".join(readings(40, 20261116, broken=True)) + "\n", encoding="utf-8")
