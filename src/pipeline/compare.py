"""Plan several clouds in one process and line them up role by role.

Every backend runs the same orchestrator, so role keys ("stream", "score-function", ...) are
the same on every cloud: that is what lets one row of the comparison hold a Kinesis stream,
a Pub/Sub topic and an Event Hubs namespace side by side. Costs and limits come from each
backend; the verdict (cheapest cloud, limits the spec exceeds) is computed here, once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.backend import Backend, Limits, backend_class
from pipeline.cost import CostEstimate
from pipeline.errors import PipelineError, SpecError
from pipeline.plan import Plan
from pipeline.planner import plan as make_plan
from pipeline.spec.load import LoadedSpec, spec_problems

COMPARISON_SCHEMA_VERSION = 1


@dataclass
class CloudColumn:
    """Everything known about one cloud for this spec. `problems` non-empty means it cannot be planned."""

    cloud: str
    title: str
    location: str
    plan: Plan | None = None
    problems: list[str] = field(default_factory=list)
    cost: CostEstimate | None = None
    cost_error: str = ""
    limits: Limits | None = None
    limits_error: str = ""
    identity_types: frozenset[str] = frozenset()
    grant_types: frozenset[str] = frozenset()

    @property
    def ok(self) -> bool:
        return self.plan is not None

    def count(self, types: frozenset[str]) -> int:
        return sum(1 for r in self.plan.cloud_resources if r.type in types) if self.plan else 0

    def totals(self) -> dict[str, Any]:
        if self.plan is None:
            return {}
        sizing = self.plan.sizing
        return {
            "resources": len(self.plan.cloud_resources),
            "identities": self.count(self.identity_types),
            "permission_grants": self.count(self.grant_types),
            "monthly_usd": round(self.cost.total, 2) if self.cost else None,
            "capacity_records_per_second": sizing.get("capacity_records_per_second"),
            "capacity_bytes_per_second": sizing.get("capacity_bytes_per_second"),
            "stream_units": f"{sizing.get('units')} {sizing.get('unit_name')} ({sizing.get('mode')})",
        }


@dataclass
class Comparison:
    pipeline: str
    stack: str
    free_tier: bool
    columns: list[CloudColumn]
    record_bytes: int
    records_per_second: float

    def roles(self) -> list[tuple[str, str]]:
        """Role keys in program order, across all planned clouds."""
        seen: dict[str, str] = {}
        for column in self.columns:
            if column.plan:
                for key, kind in column.plan.roles():
                    seen.setdefault(key, kind)
        return list(seen.items())

    def planned(self) -> list[CloudColumn]:
        return [c for c in self.columns if c.ok]

    def verdicts(self) -> list[str]:
        """One line per finding: the cheapest cloud and by how much, and any limit the spec exceeds."""
        lines = []
        priced = sorted((c for c in self.planned() if c.cost), key=lambda c: c.cost.total if c.cost else 0.0)
        if priced:
            best = priced[0]
            assert best.cost is not None
            if len(priced) > 1:
                others = ", ".join(f"{c.title} ${c.cost.total:,.2f} (+${c.cost.total - best.cost.total:,.2f}, "
                                   f"{_percent(c.cost.total, best.cost.total)})" for c in priced[1:] if c.cost)
                lines.append(f"Cheapest: {best.title} at ${best.cost.total:,.2f}/month; {others}.")
            elif len(self.columns) == 1:  # one cloud asked for: an answer, not a failure
                lines.append(f"{best.title}: ${best.cost.total:,.2f}/month.")
            else:
                lines.append(f"Only {best.title} could be priced: ${best.cost.total:,.2f}/month.")
        for column in self.columns:
            if column.problems:
                lines.append(f"{column.title} cannot run this spec: " + "; ".join(column.problems))
            if column.cost_error:
                lines.append(f"{column.title} cost unknown: {column.cost_error}")
            if column.limits_error:
                lines.append(f"{column.title} limits unknown: {column.limits_error}")
            lines.extend(f"{column.title} limit exceeded: {problem}" for problem in self.limit_problems(column))
        return lines

    def limit_problems(self, column: CloudColumn) -> list[str]:
        limits, plan = column.limits, column.plan
        if limits is None or plan is None:
            return []
        problems = []
        if self.record_bytes > limits.max_record_bytes:
            problems.append(f"records of {self.record_bytes:,} bytes exceed the {limits.max_record_bytes:,}-byte maximum event size")
        capacity = plan.sizing.get("capacity_records_per_second") or 0
        if capacity and self.records_per_second > capacity:
            problems.append(f"{self.records_per_second:,.0f} records/s exceed the sized capacity of {capacity:,.0f} records/s")
        return problems

    def to_dict(self) -> dict[str, Any]:
        """The stable, documented JSON shape (see README, 'compare --format json')."""
        return {
            "schema_version": COMPARISON_SCHEMA_VERSION,
            "pipeline": self.pipeline,
            "stack": self.stack,
            "free_tier": self.free_tier,
            "hours_per_month": 730,
            "clouds": {
                c.cloud: {
                    "title": c.title,
                    "location": c.location,
                    "planned": c.ok,
                    "problems": c.problems,
                    "totals": c.totals(),
                    "sizing": c.plan.sizing if c.plan else None,
                    "limits": asdict(c.limits) if c.limits else None,
                    "cost": c.cost.to_dict() if c.cost else None,
                    "cost_by_role": {k: round(v, 4) for k, v in c.cost.by_role().items()} if c.cost else {},
                    "cost_error": c.cost_error,
                }
                for c in self.columns
            },
            "roles": [
                {
                    "role": key,
                    "kind": kind,
                    "clouds": {
                        c.cloud: [{"type": r.type, "name": r.physical_name, "logical": r.name, "inputs_sha256": c.plan.inputs_sha256(r)}  # for `pipeline diff`
                                  for r in c.plan.by_role().get(key, [])]
                        for c in self.planned()
                        if c.plan
                    },
                }
                for key, kind in self.roles()
            ],
            "verdicts": self.verdicts(),
        }


def _percent(value: float, base: float) -> str:
    return f"{(value - base) / base * 100:,.0f}% more" if base > 0 else "n/a"


def _column(loaded: LoadedSpec, name: str, free_tier: bool) -> CloudColumn:
    cls = backend_class(name)
    backend: Backend = cls(loaded.spec, loaded.stack, loaded.base_dir)
    column = CloudColumn(name, cls.title, backend.location(), identity_types=cls.identity_types, grant_types=cls.grant_types)
    try:
        column.plan = make_plan(loaded, name)
    except SpecError as exc:
        column.problems = [f"{p.path}: {p.message}" if p.path else p.message for p in exc.problems]
        return column
    try:
        column.limits = backend.limits()
    except NotImplementedError as exc:
        column.limits_error = str(exc)
    try:
        column.cost = backend.estimate_cost(free_tier)
    except (PipelineError, NotImplementedError) as exc:
        column.cost_error = str(exc)
    return column


def compare(loaded: LoadedSpec, clouds: list[str], free_tier: bool = False) -> Comparison:
    """Plan, size, price and check the spec on each cloud, one after another in this process."""
    if not clouds:
        raise PipelineError("name at least one cloud to compare")
    spec = loaded.spec
    columns = [_column(loaded, name, free_tier) for name in clouds]
    if not any(c.ok for c in columns):
        problems = [(("clouds",), f"{c.title}: {p}") for c in columns for p in c.problems]
        raise spec_problems(loaded, problems)
    return Comparison(spec.name, loaded.stack, free_tier, columns, spec.workload.record_bytes, spec.workload.records_per_second)
