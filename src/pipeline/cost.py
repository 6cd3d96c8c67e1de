"""Cost estimation shared by every backend: price sheets, cost lines and the neutral workload.

Each backend ships its own price sheet (a JSON data file: region -> unit prices, each with the
source URL and the date it was retrieved) and its own formulas, because billing units differ
(shard-hours, throughput units, TiB of Pub/Sub throughput). What is the same everywhere lives
here: a month is 730 hours, and the workload a month carries is derived once from the spec.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.spec.model import PipelineSpec, StageSpec

HOURS_PER_MONTH = 730  # the convention all three clouds' calculators use
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
GB = 1024**3  # billing "GB" is GiB on all three clouds' storage and compute pages
TB = 1024**4


@dataclass(frozen=True)
class Price:
    """One unit price from a price sheet, with where it came from."""

    usd: float
    unit: str
    source: str
    retrieved: str
    note: str = ""


@dataclass(frozen=True)
class PriceSheet:
    cloud: str
    region: str
    prices: dict[str, Price]

    def __getitem__(self, item: str) -> Price:
        try:
            return self.prices[item]
        except KeyError:
            raise PipelineError(f"the {self.cloud} price sheet for {self.region} has no price {item!r}") from None


def load_price_sheet(path: Path, cloud: str, region: str) -> PriceSheet:
    """Read `region` from a backend's price file; a region without prices is a clear error, never zero."""
    data = json.loads(path.read_text(encoding="utf-8"))
    regions: dict[str, Any] = data["regions"]
    if region not in regions:
        known = ", ".join(sorted(regions))
        raise PipelineError(f"no {cloud} price sheet for region {region!r} (price sheets exist for: {known}); "
                            f"costs cannot be estimated there: pick one of those regions or add prices to {path.name}")
    entries = {**data.get("global", {}), **regions[region]}
    prices = {name: Price(float(e["usd"]), e["unit"], e["source"], e["retrieved"], e.get("note", "")) for name, e in entries.items()}
    return PriceSheet(cloud, region, prices)


@dataclass(frozen=True)
class CostLine:
    """One billing line of one role, for a month."""

    role: str  # the plan's role key, e.g. "stream", "preprocess-function"
    item: str  # the billing line, e.g. "Kinesis shard-hours"
    quantity: float
    unit: str
    unit_usd: float
    monthly_usd: float
    source: str = ""
    note: str = ""


@dataclass
class CostEstimate:
    cloud: str
    region: str
    free_tier: bool
    lines: list[CostLine] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(line.monthly_usd for line in self.lines)

    def add(self, role: str, item: str, quantity: float, price: Price, *, free: float = 0.0, note: str = "") -> None:
        """A line billed per unit, after `free` units of free tier (when the estimate uses it)."""
        billable = max(0.0, quantity - free) if self.free_tier else quantity
        extra = f"{free:,.0f} {price.unit} free" if self.free_tier and free else ""
        self.lines.append(CostLine(role, item, quantity, price.unit, price.usd, billable * price.usd, price.source,
                                   "; ".join(x for x in (note, extra) if x)))

    def by_role(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for line in self.lines:
            totals[line.role] = totals.get(line.role, 0.0) + line.monthly_usd
        return totals

    def to_dict(self) -> dict[str, Any]:
        return {"cloud": self.cloud, "region": self.region, "free_tier": self.free_tier, "total_usd": round(self.total, 2),
                "lines": [asdict(line) for line in self.lines], "assumptions": self.assumptions}


# ---- the neutral workload a month carries ------------------------------------------------


def records_per_month(spec: PipelineSpec) -> float:
    return spec.workload.records_per_second * SECONDS_PER_MONTH


def bytes_per_month(spec: PipelineSpec) -> float:
    return records_per_month(spec) * spec.workload.record_bytes


def stored_gb_months(bytes_month: float, retention_days: int) -> float:
    """Steady-state storage for data that arrives evenly and expires after `retention_days`."""
    return bytes_month / GB * min(retention_days, 3650) / (HOURS_PER_MONTH / 24)


def runs_per_month(stage: StageSpec) -> float:
    return stage.trigger.parsed_schedule.runs_per_month()


def ceil_units(size: float, unit: float) -> int:
    return max(1, math.ceil(size / unit))


def rows_per_month(spec: PipelineSpec, stage: StageSpec) -> float:
    """Rows a stage emits a month: one per input record (stream), per source row (objects), one per run (schedule)."""
    trigger = stage.trigger
    if trigger.stream:
        return records_per_month(spec)
    if trigger.objects:
        return rows_per_month(spec, spec.stage(trigger.objects.from_stage))
    return runs_per_month(stage)


def invocations_per_month(spec: PipelineSpec, stream_invocations: Callable[[StageSpec], float]) -> dict[str, float]:
    """Invocations of every stage. Only stream batching is cloud-specific (`stream_invocations`); each
    invocation writes one output object, so an object stage runs once per object its source writes."""
    result: dict[str, float] = {}
    for stage in spec.stages:
        trigger = stage.trigger
        if trigger.stream:
            result[stage.name] = stream_invocations(stage)
        elif trigger.objects:
            result[stage.name] = result[trigger.objects.from_stage]
        else:
            result[stage.name] = runs_per_month(stage)
    return result
