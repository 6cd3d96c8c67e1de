"""Turn one raw sensor reading into the model's features: shared by the stream stage and the HTTP stage.

A reading is JSON from a device gateway: `device_id`, `ts` (ISO 8601), temperature in Celsius or
Fahrenheit (`temperature_c` / `temperature_f`), `vibration_mm_s` and `pressure_kpa` (or `pressure_psi`).
Anything that cannot be a reading raises ValueError, so the runtime dead-letters that reading alone.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

PSI_TO_KPA = 6.894757


def features(reading: dict[str, Any]) -> dict[str, Any]:
    """Normalised units and a UTC timestamp; raises ValueError for a reading that is not one."""
    if not isinstance(reading, dict):
        raise ValueError(f"a reading is a JSON object, not {type(reading).__name__}")
    device = reading.get("device_id")
    if not device:
        raise ValueError("reading has no device_id")
    when = datetime.fromisoformat(str(reading["ts"]).replace("Z", "+00:00"))
    if when.tzinfo is None:
        raise ValueError(f"timestamp {reading['ts']!r} has no time zone")
    if "temperature_c" in reading:
        celsius = float(reading["temperature_c"])
    elif "temperature_f" in reading:
        celsius = (float(reading["temperature_f"]) - 32) * 5 / 9
    else:
        raise ValueError("reading has no temperature")
    if "pressure_kpa" in reading:
        kpa = float(reading["pressure_kpa"])
    else:
        kpa = float(reading["pressure_psi"]) * PSI_TO_KPA
    vibration = float(reading["vibration_mm_s"])
    if vibration < 0 or kpa <= 0:
        raise ValueError(f"impossible values: vibration {vibration}, pressure {kpa} kPa")
    return {
        "device_id": str(device),
        "ts": when.astimezone(timezone.utc).isoformat(),
        "temperature_c": round(celsius, 3),
        "vibration_mm_s": round(vibration, 3),
        "pressure_kpa": round(kpa, 3),
    }
