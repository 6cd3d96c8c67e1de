"""`compare --sweep`: the comparison across a range of one workload field, and where the cheapest cloud changes.

A verdict at one workload is fragile: teams choose a cloud for next year's load. A sweep plans the spec
at each point of a range (`records_per_second=10..20000`, log-spaced by default) and keeps, per point,
exactly the comparison a plain `compare` of a spec stating that value makes: each point is built by
`pipeline.compare.compare_point`, the very columns `compare` builds (preflight, sizing, latency, limits,
cost, then the plan). Sizing and pricing are milliseconds; the plan (the Pulumi program under the mock
engine) is what costs, so a cloud is re-planned only when its design changes: a design is the stream's
kind, each stage's sized knobs (which ones, not their values) and the services the estimate bills, which
is everything the plan's resources are made of. Only the resource list itself (names and input digests
in `roles`) is not kept per point; counts, identities and grants are those of that design's plan.

Between two points where the cheapest cloud differs, the crossover is narrowed down by bisection (a
few milliseconds a step), and what changed there is named: a cloud that stops carrying the load, a
stream that gains units, a service the estimate starts or stops billing, or none (the costs cross).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline import verdict
from pipeline import workload as workloads
from pipeline.compare import Comparison, compare_point
from pipeline.comparison import CloudColumn
from pipeline.errors import PipelineError
from pipeline.faces import Catalogue
from pipeline.plan import Plan
from pipeline.planner import plan as make_plan
from pipeline.spec.load import LoadedSpec
from pipeline.summary import amount
from pipeline.sweep_axis import Axis

SCHEMA_VERSION = 1
BISECT_STEPS = 14  # each halves the interval (log scale): a 10x gap narrows to about 0.02 %
BISECT_RATIO = 1.005  # stop once the bracket is within half a percent


# ---- plans, made once per design -------------------------------------------------------------------


def design_key(backend: Catalogue, column: CloudColumn) -> str:
    """What a cloud's resources are made of at this workload: the stream's kind, which knobs each stage sizes,
    and the services the estimate bills (role and billing item). Their values (shards, instances) are inputs
    of the same resources, so a plan of the same design has the same resources, identities and grants."""
    sizing = backend.sizing()
    stream = sizing.stream
    return json.dumps({
        "stream": [stream.unit_name, stream.mode] if stream else None,
        "stages": {name: sorted(stage.settings) for name, stage in sizing.stages.items()},
        "billing": sorted({(line.role, line.item) for line in column.cost.lines}) if column.cost else None,
    }, sort_keys=True)


@dataclass
class PlanReuse:
    """A `pipeline.compare.PlanSource` that plans each design once and hands every point of that design its
    plan with the point's own sizing (which is what the comparison reads from a plan besides its resources)."""

    plans: dict[tuple[str, str], Plan] = field(default_factory=dict)
    made: int = 0

    def __call__(self, loaded: LoadedSpec, backend: Catalogue, column: CloudColumn) -> Plan:
        key = (backend.name, design_key(backend, column))
        found = self.plans.get(key)
        if found is None:
            found = self.plans[key] = make_plan(loaded, backend.name)
            self.made += 1
        return Plan(found.cloud, found.pipeline, found.stack, found.location, backend.sizing().to_dict(), found.resources,
                    found.outputs, found.root)


# ---- running a sweep -------------------------------------------------------------------------------


def carries(comparison: Comparison, column: CloudColumn) -> bool:
    """Whether a cloud carries this point's load: planned, priced, and within every limit."""
    return column.ok and column.cost is not None and not comparison.limit_problems(column)


def cheapest(comparison: Comparison) -> str | None:
    """The cheapest cloud of those that carry the load (None when none does)."""
    able = [c for c in comparison.columns if carries(comparison, c)]
    return min(able, key=lambda c: c.cost.total if c.cost else math.inf).cloud if able else None


def _units(stream: dict[str, Any] | None) -> str:
    if not stream or not stream.get("units"):
        return ""
    units, name = stream["units"], stream["unit_name"]
    return f"{units} {name}{'s' if units != 1 else ''}"


def design(comparison: Comparison, column: CloudColumn) -> dict[str, Any]:
    """What a reader sees change along a sweep: whether the cloud carries the load (and if not, why), its stream
    units and mode, and the services it is billed for."""
    if not carries(comparison, column):
        reasons = column.reasons() or comparison.limit_problems(column) or [column.cost_error or "not priced"]
        return {"carries": False, "why": reasons[0]}
    stream = column.stream
    services = sorted({(line.role, line.item) for line in (column.cost.lines if column.cost else [])})
    return {"carries": True, "stream": {"units": stream["units"], "unit_name": stream["unit_name"], "mode": stream["mode"]} if stream else None,
            "services": [list(service) for service in services]}


def describe_change(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, words after the cloud's name) for what changed in one cloud's design between two points: kind
    "capacity" (it stops or starts carrying the load), "stream" (units or mode) or "services" (what it bills)."""
    if before.get("carries") and not after.get("carries"):
        return [("capacity", f"cannot carry the load: {_short(after['why'])}")]
    if after.get("carries") and not before.get("carries"):
        return [("capacity", "carries the load")]
    if not after.get("carries"):
        return []
    lines = []
    old, new = before.get("stream") or {}, after.get("stream") or {}
    if old.get("mode") != new.get("mode"):
        lines.append(("stream", f"stream: {old.get('mode')} -> {new.get('mode')}"))
    if old.get("units") != new.get("units") and new.get("units"):
        word = "adds" if (new.get("units") or 0) > (old.get("units") or 0) else "drops"
        lines.append(("stream", f"{word} stream capacity: {_units(old) or old.get('mode')} -> {_units(new)}"))
    services = _services_change(before["services"], after["services"])
    if services:
        lines.append(("services", f"bills {services}"))
    return lines


def joined(titles: list[str]) -> str:
    """"AWS", "AWS and GCP", "AWS, GCP and Azure"."""
    return titles[0] if len(titles) == 1 else f"{', '.join(titles[:-1])} and {titles[-1]}"


def _services_change(before: list[list[str]], after: list[list[str]]) -> str:
    """"raw-archive: Firehose ingestion -> Lambda duration, Lambda requests": per role, the billing items that
    went and came (details in parentheses left out); log lines that follow such a change are not repeated."""
    old, new = {tuple(s) for s in before}, {tuple(s) for s in after}
    roles: dict[str, tuple[list[str], list[str]]] = {}
    for (role, item), side in [*((s, 0) for s in sorted(old - new)), *((s, 1) for s in sorted(new - old))]:
        names = roles.setdefault(role, ([], []))[side]
        name = item.split(" (")[0]
        if name not in names:
            names.append(name)
    if len(roles) > 1:
        roles.pop("observability", None)
    return "; ".join(f"{role}: {', '.join(gone) or 'nothing'} -> {', '.join(came) or 'nothing'}" for role, (gone, came) in roles.items())


def _short(problem: str, most: int = 160) -> str:
    return problem if len(problem) <= most else problem[: most - 1] + "…"


@dataclass
class Point:
    value: float
    comparison: Comparison
    spec: bool = False  # the spec's own workload, added to the axis' values: exactly what a plain `compare` prints

    @property
    def cheapest(self) -> str | None:
        return cheapest(self.comparison)


@dataclass
class Crossover:
    """Where the cheapest cloud changes: the bracket it was narrowed to, and what changed there."""

    low: float  # the last value where `before` is cheapest
    high: float  # the first value where `after` is cheapest
    before: str | None
    after: str | None
    changes: list[str]
    costs: dict[str, float | None]  # every cloud's monthly USD at `high` (None: it does not carry the load)
    unverified: dict[str, float] = field(default_factory=dict)  # every cloud's USD billed at prices marked to verify, at `high`


@dataclass
class Change:
    """A design change of one cloud between two sweep points: `text` says what changed from one point (`start`)
    to the next (`end`); [low, high] brackets where it (the first of several such) happens."""

    cloud: str
    kind: str  # "capacity", "stream" or "services" (see describe_change)
    text: str
    start: float
    end: float
    low: float
    high: float


@dataclass
class Sweep:
    loaded: LoadedSpec
    axis: Axis
    clouds: list[str]
    free_tier: bool
    points: list[Point]
    crossovers: list[Crossover]
    changes: list[Change]
    plans_made: int

    @property
    def spec_value(self) -> float:
        return workloads.value(self.loaded.spec, self.axis.field)

    def to_dict(self) -> dict[str, Any]:
        """The documented `compare --sweep --format json` shape: every point's comparison (as `compare --format json`
        prints it for that workload, without the per-resource `roles` list), the crossovers and design changes."""
        first = self.points[0].comparison
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "sweep",
            "pipeline": first.pipeline,
            "stack": first.stack,
            "free_tier": self.free_tier,
            "field": self.axis.field,
            "unit": self.axis.unit,
            "scale": self.axis.scale,
            "values": list(self.axis.values),
            "spec_value": self.spec_value,
            "clouds": {c.cloud: {"title": c.title, "location": c.location} for c in first.columns},
            "points": [_point_dict(point) for point in self.points],
            "crossovers": [{"between": [c.low, c.high], "at": c.high, "from": c.before, "to": c.after, "changes": c.changes,
                            "monthly_usd": c.costs, "verify_usd": c.unverified, "text": crossover_text(self.axis, c, _titles(first))}
                           for c in self.crossovers],
            "changes": [{"cloud": c.cloud, "kind": c.kind, "text": c.text, "from": c.start, "to": c.end, "at": c.high,
                         "first_between": [c.low, c.high]} for c in self.changes],
            "plans_made": self.plans_made,
        }


def _titles(comparison: Comparison) -> dict[str, str]:
    return {c.cloud: c.title for c in comparison.columns}


def _point_dict(point: Point) -> dict[str, Any]:
    data = point.comparison.to_dict()
    data.pop("roles", None)
    data.pop("definitions", None)
    comparison = point.comparison
    slower = verdict.slower_than_the_spec(comparison)
    return {"value": point.value, "spec": point.spec, "cheapest": point.cheapest,
            "carries": {c.cloud: carries(comparison, c) for c in comparison.columns},
            "slower_than_spec": {c.cloud: c.cloud in slower for c in comparison.columns},
            "design": {c.cloud: design(comparison, c) for c in comparison.columns},
            "comparison": data}


def crossover_text(axis: Axis, crossover: Crossover, titles: dict[str, str]) -> str:
    """"At ~95 records/s AWS becomes the cheapest (GCP below): the costs cross at $44.10 and $44.30"."""
    at = f"~{amount(crossover.high)} {axis.unit}"
    after = titles.get(crossover.after or "", "no cloud")
    before = titles.get(crossover.before or "", "no cloud")
    head = f"At {at} {after} becomes the cheapest ({before} below)" if crossover.after else f"From {at} no cloud carries the load ({before} below)"
    doubtful = [f"${usd:,.2f} of {titles[c]}'s bill" for c, usd in crossover.unverified.items()
                if usd > 0 and c in (crossover.before, crossover.after)]
    unsure = f"; prices marked to verify ({', '.join(doubtful)}) can move it" if doubtful else ""
    if crossover.changes:
        return f"{head}: {'; '.join(crossover.changes)}{unsure}."
    costs = ", ".join(f"{titles[c]} ${usd:,.2f}" for c, usd in crossover.costs.items() if usd is not None and c in (crossover.before, crossover.after))
    return f"{head}: no design changes there, the costs cross ({costs}){unsure}."


class _Points:
    """Comparisons at any value of the axis, each made once (bisection revisits values), plans made once per design."""

    def __init__(self, loaded: LoadedSpec, clouds: list[str], axis: Axis, free_tier: bool):
        self.loaded, self.clouds, self.axis, self.free_tier = loaded, clouds, axis, free_tier
        self.plans = PlanReuse()
        self.own = workloads.value(loaded.spec, axis.field)
        # the spec as it is: exactly the comparison a plain `compare` makes
        self.made: dict[float, Comparison] = {self.own: compare_point(loaded, clouds, free_tier, self.plans, None)}

    def at(self, value: float) -> Comparison:
        value = float(round(value)) if self.axis.whole else value
        if value not in self.made:
            spec = workloads.with_value(self.loaded, self.axis.field, value)
            self.made[value] = compare_point(spec, self.clouds, self.free_tier, self.plans, self.axis.field)
        return self.made[value]

    def design(self, value: float, index: int) -> dict[str, Any]:
        comparison = self.at(value)
        return design(comparison, comparison.columns[index])

    def crossover(self, left: Point, right: Point) -> Crossover:
        """Where between two points the cheapest cloud changes, and what changed there."""
        def same(value: float) -> bool:
            return cheapest(self.at(value)) == left.cheapest

        low, high = _bisect(left.value, right.value, self.axis.whole, same)
        after = self.at(high)
        costs = {c.cloud: (c.cost.total if c.cost and carries(after, c) else None) for c in after.columns}
        return Crossover(low, high, cheapest(self.at(low)), cheapest(after), _changes(self.at(low), after), costs,
                         {c.cloud: c.verify_usd for c in after.columns})

    def changes(self, left: Point, right: Point, index: int) -> list[Change]:
        """One cloud's design changes between two points, each kind located on its own: where it starts or stops
        carrying the load (in the words of that boundary), where its stream first gains or loses units (and how
        many it has at the next point), where the services it is billed for change."""
        before, after = self.design(left.value, index), self.design(right.value, index)
        found: list[Change] = []
        column = left.comparison.columns[index]
        for kind in ("capacity", "stream", "services"):
            if _aspect(before, kind) == _aspect(after, kind):
                continue

            def same(value: float, kind: str = kind) -> bool:
                return bool(_aspect(self.design(value, index), kind) == _aspect(before, kind))

            low, high = _bisect(left.value, right.value, self.axis.whole, same)
            target = after if kind == "stream" else self.design(high, index)
            found += [Change(column.cloud, kind, f"{column.title} {words}", left.value, right.value, low, high)
                      for line_kind, words in describe_change(before, target) if line_kind == kind]
        return found


def _aspect(found: dict[str, Any], kind: str) -> Any:
    """The part of a design one kind of change is about."""
    if kind == "capacity":
        return found.get("carries")
    return found.get(kind)


def run(loaded: LoadedSpec, clouds: list[str], axis: Axis, free_tier: bool = False) -> Sweep:
    """Plan, size and price the spec at every value of `axis` (and at the spec's own value when it lies in the
    range), then narrow down each crossover and design change."""
    if not clouds:
        raise PipelineError("name at least one cloud to compare")
    made = _Points(loaded, clouds, axis, free_tier)
    own = made.own if axis.values[0] <= made.own <= axis.values[-1] else None
    points = [Point(value, made.at(value), spec=value == own) for value in sorted({*axis.values, *([own] if own is not None else [])})]
    crossovers, changes = [], []
    for left, right in itertools.pairwise(points):
        if left.cheapest != right.cheapest:
            crossovers.append(made.crossover(left, right))
        for index in range(len(clouds)):
            changes += made.changes(left, right, index)
    return Sweep(loaded, axis, clouds, free_tier, points, crossovers, changes, made.plans.made)


def _changes(low: Comparison, high: Comparison) -> list[str]:
    """What changed between two comparisons, clouds with the same change named together."""
    said: dict[str, list[str]] = {}
    for before, after in zip(low.columns, high.columns, strict=True):
        for _, words in describe_change(design(low, before), design(high, after)):
            said.setdefault(words, []).append(after.title)
    return [f"{joined(titles)} {words}" for words, titles in said.items()]


def _bisect(low: float, high: float, whole: bool, same: Callable[[float], bool]) -> tuple[float, float]:
    """Narrow [low, high] to the step where `same` (true at low, false at high) turns false, on a log scale
    (linear for whole numbers close together)."""
    for _ in range(BISECT_STEPS):
        if (whole and high - low <= 1) or (not whole and high / low <= BISECT_RATIO):
            break
        middle = math.sqrt(low * high) if low > 0 else (low + high) / 2
        if whole:
            middle = float(round(middle))
            if middle in (low, high):
                middle = float(round((low + high) / 2))
                if middle in (low, high):
                    break
        if same(middle):
            low = middle
        else:
            high = middle
    return low, high
