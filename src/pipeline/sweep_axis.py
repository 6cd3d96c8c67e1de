"""The values a `compare --sweep` plans: one workload field, log-spaced (or evenly, or as listed), in round numbers.

Each value is checked by the spec's own model (`pipeline.workload.with_value`), so a range that leaves the
field's bounds fails before anything is planned, naming the field and what would be valid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipeline import workload as workloads
from pipeline.errors import PipelineError
from pipeline.spec.load import LoadedSpec

DEFAULT_POINTS = 12
MAX_POINTS = 60


@dataclass(frozen=True)
class Axis:
    """One workload field and the values a sweep plans it at."""

    field: str  # a key of pipeline.workload.SWEEPABLE, e.g. "records_per_second"
    values: tuple[float, ...]
    scale: str  # "log", "linear" or "list"

    @property
    def whole(self) -> bool:
        return workloads.SWEEPABLE[self.field][1]

    @property
    def unit(self) -> str:
        return workloads.SHORT_UNITS[self.field]


def parse_axis(text: str, loaded: LoadedSpec, points: int = DEFAULT_POINTS, linear: bool = False) -> Axis:
    """`FIELD=LOW..HIGH` (log-spaced, or evenly with `linear`) or `FIELD=V1,V2,...`; `FIELD` may start with
    `workload.`. Every value is checked by the spec's own model, so a bad range fails before anything is planned."""
    name, sep, rest = text.partition("=")
    field_name = name.strip().removeprefix("workload.")
    usable = workloads.sweepable_fields(loaded.spec)
    if not sep or not rest.strip():
        raise PipelineError(f"--sweep {text!r}: write FIELD=LOW..HIGH or FIELD=V1,V2,... (fields this spec uses: {', '.join(usable)})")
    if field_name not in workloads.SWEEPABLE:
        raise PipelineError(f"--sweep: {field_name!r} is not a workload field a sweep can vary; this spec's: {', '.join(usable)}")
    if field_name not in usable:
        raise PipelineError(f"--sweep: this spec has no {_source_of(field_name)}, so {field_name} changes nothing; "
                            f"this spec's sweepable fields: {', '.join(usable)}")
    if not 2 <= points <= MAX_POINTS:
        raise PipelineError(f"--points {points}: a sweep has 2 to {MAX_POINTS} points")
    whole = workloads.SWEEPABLE[field_name][1]
    rest = rest.strip()
    if ".." in rest:
        low, high = (_number(part, text) for part in rest.split("..", 1))
        if not low < high:
            raise PipelineError(f"--sweep {text!r}: the range must rise (LOW < HIGH)")
        if not linear and low <= 0:
            raise PipelineError(f"--sweep {text!r}: a log-spaced range starts above 0; give --linear or a list of values")
        values = _spaced(low, high, points, linear, whole)
        scale = "linear" if linear else "log"
    else:
        values = sorted({round(v) if whole else v for v in (_number(part, text) for part in rest.split(","))})
        if len(values) < 2:
            raise PipelineError(f"--sweep {text!r}: give at least two values, or a range LOW..HIGH")
        scale = "list"
    for value in values:  # the same validation a spec stating the value gets (bounds, whole numbers)
        workloads.with_value(loaded, field_name, value)
    return Axis(field_name, tuple(values), scale)


def default_axis(loaded: LoadedSpec, points: int = DEFAULT_POINTS) -> Axis:
    """The sweep an HTML report draws without `--sweep`: the spec's main rate (records into the stream, else
    uploaded files, else HTTP requests) from a tenth to a hundred times its value, log-spaced."""
    usable = workloads.sweepable_fields(loaded.spec)
    field_name = next(f for f in ("records_per_second", "uploads.files_per_hour", "http.requests_per_second", *usable) if f in usable)
    own = workloads.value(loaded.spec, field_name)
    low, high = (own / 10, own * 100) if own > 0 else (1.0, 1000.0)
    for _ in range(8):  # within the model's bounds: shrink the top until it validates
        try:
            workloads.with_value(loaded, field_name, high)
            break
        except PipelineError:
            high = max(low * 2, high / 2)
    return parse_axis(f"{field_name}={_significant(low, 2)}..{_significant(high, 2)}", loaded, points)


def _source_of(path: str) -> str:
    return {"uploads": "uploads bucket", "http": "HTTP stage"}.get(path.split(".")[0], "stream")


def _number(text: str, whole: str) -> float:
    try:
        value = float(text.strip().replace("_", ""))
    except ValueError:
        raise PipelineError(f"--sweep {whole!r}: {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise PipelineError(f"--sweep {whole!r}: {text.strip()!r} is not a finite number")
    return value


def _spaced(low: float, high: float, points: int, linear: bool, whole: bool) -> list[float]:
    """`points` values from `low` to `high` (both kept exactly), rounded to the fewest significant digits that
    keep them apart, so each point is a number a person would write in a spec."""
    raw = [low + (high - low) * i / (points - 1) if linear else low * (high / low) ** (i / (points - 1)) for i in range(points)]
    for digits in range(2, 8):
        rounded = [low, *(_significant(v, digits) for v in raw[1:-1]), high]
        if whole:
            rounded = [float(max(1, round(v))) for v in rounded]
        if len(set(rounded)) == len(rounded) and rounded == sorted(rounded):
            return rounded
    return sorted(set(float(round(v)) if whole else v for v in raw))


def _significant(value: float, digits: int) -> float:
    if value == 0:
        return 0.0
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))
