"""Regenerate the sample readings: `python data/generate.py > data/readings.jsonl` (deterministic).

2,000 readings from 40 devices over an hour, in both unit systems, with a few anomalies, a few
devices in maintenance (dropped by preprocess) and a few broken lines (dead-lettered).
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

rng = random.Random(20261115)
start = datetime(2026, 11, 15, 8, 0, tzinfo=timezone.utc)
for i in range(2000):
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
    if i % 400 == 123:
        print('{"device_id": "pump-999", "ts": ')  # a truncated line from a flaky gateway
        continue
    if i % 500 == 321:
        del reading["device_id"]
    print(json.dumps(reading))
