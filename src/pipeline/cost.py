"""Cost estimation shared by every backend: price sheets, cost lines and the neutral workload.

Each backend ships its own price sheet (a JSON data file: region -> unit prices, each with the
source URL and the date it was retrieved) and its own formulas, because billing units differ
(shard-hours, throughput units, TiB of Pub/Sub throughput). What is the same everywhere lives
here: a month is 730 hours, and the workload a month carries is derived once from the spec.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.sizing import StageSizing
from pipeline.spec.model import PipelineSpec

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
    verify: bool = False  # the sheet could not confirm this figure on the provider's page: shown in every view


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
    prices = {name: Price(float(e["usd"]), e["unit"], e["source"], e["retrieved"], e.get("note", ""), bool(e.get("verify", False)))
              for name, e in entries.items()}
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
    verify: bool = False  # priced with a figure the sheet marks for verification


@dataclass
class CostEstimate:
    cloud: str
    region: str
    free_tier: bool
    lines: list[CostLine] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)
    unpriced: list[str] = field(default_factory=list)  # what the plan creates but the estimate leaves out, and why

    @property
    def total(self) -> float:
        return sum(line.monthly_usd for line in self.lines)

    def add(self, role: str, item: str, quantity: float, price: Price, *, free: float = 0.0, note: str = "") -> None:
        """A line billed per unit, after `free` units of free tier (when the estimate uses it)."""
        billable = max(0.0, quantity - free) if self.free_tier else quantity
        extra = f"{free:,.0f} {price.unit} free" if self.free_tier and free else ""
        self.lines.append(CostLine(role, item, quantity, price.unit, price.usd, billable * price.usd, price.source,
                                   "; ".join(x for x in (note, extra) if x), price.verify))

    @property
    def to_verify(self) -> list[str]:
        """Billing lines priced with a figure the price sheet marks for verification."""
        return [f"{line.role}: {line.item} at ${line.unit_usd:g}/{line.unit} ({line.source})" for line in self.lines if line.verify]

    def by_role(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for line in self.lines:
            totals[line.role] = totals.get(line.role, 0.0) + line.monthly_usd
        return totals

    def to_dict(self) -> dict[str, Any]:
        return {"cloud": self.cloud, "region": self.region, "free_tier": self.free_tier, "total_usd": round(self.total, 2),
                "lines": [asdict(line) for line in self.lines], "assumptions": self.assumptions, "unpriced": self.unpriced,
                "verify": self.to_verify}


# ---- the neutral workload a month carries ------------------------------------------------
# Invocations, records per invocation and output objects come from `pipeline.sizing` (one model for every
# cloud); these helpers only turn the stream's rates into monthly quantities.


def records_per_month(spec: PipelineSpec) -> float:
    """Records a month into the stream (none without a stream)."""
    return spec.workload.records_per_second * SECONDS_PER_MONTH if spec.stream is not None else 0.0


def bytes_per_month(spec: PipelineSpec) -> float:
    return records_per_month(spec) * spec.workload.record_bytes


def stored_gb_months(bytes_month: float, retention_days: int) -> float:
    """Steady-state storage for data that arrives evenly and expires after `retention_days`."""
    return bytes_month / GB * min(retention_days, 3650) / (HOURS_PER_MONTH / 24)


def ceil_units(size: float, unit: float) -> int:
    return max(1, math.ceil(size / unit))


def output_rows_per_month(stage: StageSizing) -> float:
    """Rows a stage writes to its bucket a month (none for an HTTP stage that does not persist)."""
    return stage.output_objects_per_month * stage.output_rows_per_object


def uploads_per_month(spec: PipelineSpec) -> tuple[float, float]:
    """(files, bytes) producers upload a month into the uploads bucket (zero without one)."""
    if spec.uploads is None:
        return 0.0, 0.0
    files = spec.workload.uploads.files_per_hour * HOURS_PER_MONTH
    return files, files * spec.workload.uploads.records_per_file * spec.workload.record_bytes
