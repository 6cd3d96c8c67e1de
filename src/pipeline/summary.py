"""What a comparison says, once, in a form every view can draw: the terminal, Markdown and HTML.

`summarize` reads the documented `compare --format json` shape (`Comparison.to_dict()`), so the
views show exactly what the JSON says, and newer fields (per-stage capacity, latency,
assumptions, the workload) appear as soon as the comparison carries them. No numbers are
computed here beyond arranging them; no formatting library is imported.

Each cell and finding carries a tone ("good", "bad", "warn" or "") that a view may turn into
colour; the text alone must still say everything (colour is off in logs, pipes and NO_COLOR).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

HOURS_PER_MONTH = 730

# Role kind -> the cost group a reader thinks in (terminal summary, Markdown, HTML chart).
COST_GROUPS = {
    "Stream": "stream", "Archive": "archive", "Bucket": "storage", "Artifact": "storage", "Function": "functions",
    "StreamTrigger": "triggers", "ObjectTrigger": "triggers", "ScheduleTrigger": "triggers", "Identity": "identities",
    "DeadLetter": "dead letters", "Observability": "observability", "Platform": "platform",
}
GROUP_ORDER = [*dict.fromkeys(COST_GROUPS.values()), "other"]
# Section titles every view shows above its rows; short, since the terminal puts them in the label column.
SECTION_TITLES = {"capacity": "Capacity: plan / need", "latency": "", "limits": "Limits (as planned)", "cost": "Monthly cost by role"}
TRIGGER_KINDS = {"stream": "stream", "objects": "objects", "schedule": "schedule", "http": "HTTP"}


@dataclass(frozen=True)
class Cell:
    text: str
    tone: str = ""  # "good" | "bad" | "warn" | ""


@dataclass
class Row:
    label: str
    cells: dict[str, Cell]  # cloud -> cell
    section: str  # "totals" | "capacity" | "latency" | "limits" | "cost"


@dataclass(frozen=True)
class Finding:
    text: str
    tone: str = ""


@dataclass
class Notes:
    """Footnotes of one cloud: what the estimate assumes, leaves out, or wants checked."""

    assumptions: list[str] = field(default_factory=list)
    unpriced: list[str] = field(default_factory=list)
    verify: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.assumptions or self.unpriced or self.verify)


@dataclass
class CloudHead:
    cloud: str
    title: str
    location: str
    planned: bool


@dataclass
class Summary:
    pipeline: str
    stack: str
    clouds: list[CloudHead]
    workload: str  # "150 records/s of 700 B (from the spec), 730 h/month"
    rows: list[Row]
    notes: dict[str, Notes]  # cloud -> notes
    verdict: list[Finding]
    free_tier: bool = False
    assumptions: list[str] = field(default_factory=list)  # what the comparison holds equal across clouds, and what it cannot

    @property
    def title(self) -> str:
        return f"{self.pipeline} ({self.stack}): {clouds_phrase([c.title for c in self.clouds])}"

    def section(self, name: str) -> list[Row]:
        return [r for r in self.rows if r.section == name]


def clouds_phrase(titles: list[str]) -> str:
    """'AWS', 'AWS vs GCP', 'AWS vs GCP vs Azure': the clouds a comparison names."""
    return " vs ".join(titles) if titles else "no cloud"


def amount(value: float) -> str:
    """A rate or size as people write it: 1,500, 150, 12.5, 0.3, 0.0042 (never "0" for a fraction)."""
    if value >= 1000:
        return f"{value:,.0f}"
    if value == 0:
        return "0"
    text = f"{value:.3g}"
    return text if "e" not in text else f"{value:.2e}"


def money(usd: float | None) -> str:
    if usd is None:
        return "-"
    return f"${usd:,.2f}" if abs(usd) < 100_000 else f"${usd:,.0f}"


def signed_money(usd: float) -> str:
    return ("+" if usd >= 0 else "-") + money(abs(usd))


def percent(delta: float, base: float) -> str:
    return f"{delta / base * 100:+,.0f}%" if base else "n/a"


def rate(value: float | None) -> str:
    """Records per second, compact: 150, 1,000, 12.5k, 200k."""
    if value is None:
        return "-"
    if value >= 10_000:
        return f"{value / 1000:,.0f}k"
    return f"{value:,.0f}" if value >= 10 else f"{value:,.1f}"


def size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            value = n / scale
            return f"{value:,.0f} {unit}" if value == int(value) or value >= 10 else f"{value:,.1f} {unit}"
    return f"{n:,.0f} B"


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 3600:
        return f"{value / 3600:,.1f} h"
    if value >= 120:
        return f"{value / 60:,.0f} min"
    return f"{value:,.1f} s" if value < 10 else f"{value:,.0f} s"


def workload_phrase(data: dict[str, Any], fallback_rps: float | None = None, fallback_bytes: int | None = None) -> str:
    workload = data.get("workload") or {}
    hours = data.get("hours_per_month", HOURS_PER_MONTH)
    tail = f", {hours} h/month, {'with' if data.get('free_tier') else 'without'} free tiers"
    if workload.get("text"):  # newer comparisons name every number and where it came from
        return str(workload["text"]) + tail
    rps = workload.get("records_per_second", fallback_rps)
    record_bytes = workload.get("record_bytes", fallback_bytes)
    where = ""
    if "from_spec" in workload:
        where = " (from the spec)" if workload["from_spec"] else " (the default: the spec sets no workload)"
    text = f"{rate(rps)} records/s of {size(record_bytes)}{where}" if rps is not None else "the spec's workload"
    return text + tail


def stream_sizing(cloud: dict[str, Any]) -> dict[str, Any] | None:
    """A cloud's stream sizing: `stream` (comparison JSON v2; null without a stream) or `sizing` (v1)."""
    return cloud.get("stream") if "stream" in cloud else cloud.get("sizing")


def sizing_reasoning(cloud: dict[str, Any]) -> list[str]:
    """Why each cloud is sized as it is: the stream's reasoning, then each stage's."""
    lines = list((stream_sizing(cloud) or {}).get("reasoning", []))
    for name, stage in (cloud.get("stages") or {}).items():
        lines += [f"{name}: {line}" for line in stage.get("reasoning", [])]
    return lines


def latency_lines(cloud: dict[str, Any]) -> list[str]:
    """Each data path's latency end to end, e.g. "~6.5 s (max 70 s): stream -> preprocess -> score"."""
    paths = cloud.get("latency_paths") or ([cloud["latency"]] if cloud.get("latency") else [])
    return [f"~{seconds(p['end_to_end_s'])} (max {seconds(p.get('end_to_end_max_s'))}): {' -> '.join(p.get('path', []))}" for p in paths]


def _stage_rows(data: dict[str, Any], clouds: list[str]) -> list[Row]:
    """'capacity / demand' per stage when the comparison carries per-stage data."""
    stages: list[str] = []
    for cloud in clouds:
        stages += [s for s in (data["clouds"][cloud].get("stages") or {}) if s not in stages]
    rows = []
    for stage in stages:
        cells = {}
        for cloud in clouds:
            info = (data["clouds"][cloud].get("stages") or {}).get(stage)
            if not info:
                cells[cloud] = Cell("-")
                continue
            capacity, demand = info.get("capacity_records_per_second"), info.get("demand_records_per_second")
            if not demand:
                cells[cloud] = Cell("no rows")  # a schedule that reads nothing
                continue
            short = capacity is not None and capacity < demand
            cells[cloud] = Cell(f"{rate(capacity)} / {rate(demand)}", "bad" if short else "")
        rows.append(Row(f"{stage} rec/s", cells, "capacity"))
    return rows


def _latency_cell(latency: dict[str, Any] | None) -> Cell:
    if not latency or latency.get("end_to_end_s") is None:
        return Cell("-")
    worst = latency.get("end_to_end_max_s")
    return Cell(seconds(latency["end_to_end_s"]) + (f" (≤{seconds(worst)})" if worst is not None else ""))


def _latency_rows(data: dict[str, Any], clouds: list[str]) -> list[Row]:
    """Typical (and worst) seconds end to end: one row per data path, named by the stage it ends at, so a slow
    schedule never hides a fast stream path (comparisons without `latency_paths` have one row, the slowest)."""
    paths: dict[str, dict[str, dict[str, Any]]] = {}  # last stage -> cloud -> path
    for cloud in clouds:
        column = data["clouds"][cloud]
        for latency in column.get("latency_paths") or ([column["latency"]] if column.get("latency") else []):
            paths.setdefault((latency.get("path") or ["?"])[-1], {})[cloud] = latency
    if len(paths) == 1:
        only = next(iter(paths.values()))
        return [Row("Latency (e2e)", {c: _latency_cell(only.get(c)) for c in clouds}, "latency")]
    return [Row(f"Latency → {end}", {c: _latency_cell(found.get(c)) for c in clouds}, "latency") for end, found in paths.items()]


def _max_run_rows(columns: dict[str, dict[str, Any]], names: list[str], each: Any) -> None:
    """The platform's longest run for each trigger kind the spec uses, as planned: kinds with the same limit on
    every cloud share a row, so one short limit (an HTTP answer, a push deadline) is never shown as every stage's."""
    by_kind: dict[str, dict[str, int]] = {}
    for cloud in names:
        for kind, limit in ((columns[cloud].get("limits") or {}).get("max_stage_timeout_s_by_trigger") or {}).items():
            by_kind.setdefault(kind, {})[cloud] = limit
    if not by_kind:  # comparisons made before limits per trigger kind: the smallest, as it was shown then
        each("Max stage run", "limits", lambda c: Cell(seconds(columns[c]["limits"]["max_stage_timeout_s"]) if columns[c].get("limits") else "-"))
        return
    groups: dict[tuple[int | None, ...], list[str]] = {}
    for kind in [k for k in TRIGGER_KINDS if k in by_kind] + [k for k in by_kind if k not in TRIGGER_KINDS]:
        groups.setdefault(tuple(by_kind[kind].get(c) for c in names), []).append(kind)
    for limits, kinds in groups.items():
        label = "Max stage run" if len(groups) == 1 else "Max run, " + "/".join(TRIGGER_KINDS.get(k, k) for k in kinds)
        values = dict(zip(names, limits, strict=True))
        each(label, "limits", lambda c, values=values: Cell(seconds(values[c]) if values[c] is not None else "-"))


def _cost_rows(data: dict[str, Any], clouds: list[str]) -> list[Row]:
    kinds = {r["role"]: r["kind"] for r in data.get("roles", [])}
    per_group: dict[str, dict[str, float]] = {}
    for cloud in clouds:
        for role, usd in (data["clouds"][cloud].get("cost_by_role") or {}).items():
            group = COST_GROUPS.get(kinds.get(role, ""), "other")
            per_group.setdefault(group, {}).setdefault(cloud, 0.0)
            per_group[group][cloud] += usd
    rows = []
    for group in GROUP_ORDER:
        values = per_group.get(group)
        if not values or not any(round(v, 2) for v in values.values()):
            continue
        cells = {c: Cell(money(values[c]) if c in values else "-") for c in clouds}
        rows.append(Row(group.capitalize(), cells, "cost"))
    return rows


def _notes(cloud: dict[str, Any]) -> Notes:
    def unique(*lists: Any) -> list[str]:
        return list(dict.fromkeys(str(x) for items in lists for x in (items or [])))

    cost = cloud.get("cost") or {}
    return Notes(unique(cloud.get("assumptions"), cost.get("assumptions")), unique(cloud.get("unpriced")), unique(cloud.get("verify")))


def _monthly(cloud: dict[str, Any]) -> float:
    """The unrounded monthly total (so deltas agree with the verdict to the cent)."""
    lines = (cloud.get("cost") or {}).get("lines")
    return sum(line["monthly_usd"] for line in lines) if lines else float(cloud["totals"]["monthly_usd"])


def _tone(line: str) -> str:
    """Colour for a verdict line (the text says it all; this only helps the eye)."""
    if line.startswith(("Cheapest", "Only")):
        return "good"
    if "cannot run" in line or "exceed" in line:
        return "bad"
    if "unknown" in line or "is slower" in line or "slower delivery" in line or "unverified price" in line:
        return "warn"
    if line.startswith(("Cheapest", "Only")) or " costs $" in line or ": $" in line.split(";")[0]:
        return "good"
    return ""


def summarize(data: dict[str, Any], *, records_per_second: float | None = None, record_bytes: int | None = None) -> Summary:
    """The summary of a `compare --format json` object (`records_per_second`/`record_bytes` name the
    workload for comparisons that predate the `workload` field)."""
    names = list(data["clouds"])
    heads = [CloudHead(c, data["clouds"][c]["title"], data["clouds"][c]["location"], data["clouds"][c]["planned"]) for c in names]
    columns = {c: data["clouds"][c] for c in names}
    totals = {c: columns[c].get("totals") or {} for c in names}
    priced = {c: _monthly(columns[c]) for c in names if totals[c].get("monthly_usd") is not None}
    cheapest = min(priced.values()) if priced else None
    rows: list[Row] = []

    def each(label: str, section: str, fn: Any) -> None:
        rows.append(Row(label, {c: fn(c) if columns[c]["planned"] else Cell("cannot plan", "bad") for c in names}, section))

    def cost_cell(c: str) -> Cell:
        if c not in priced:
            return Cell("unknown", "warn")
        return Cell(money(priced[c]), "good" if len(priced) > 1 and priced[c] == cheapest else "")

    def delta_cell(c: str) -> Cell:
        if c not in priced or cheapest is None:
            return Cell("-")
        if priced[c] == cheapest:
            return Cell("cheapest", "good")
        return Cell(f"{signed_money(priced[c] - cheapest)} ({percent(priced[c] - cheapest, cheapest)})", "warn")

    each("Monthly cost", "totals", cost_cell)
    if len(priced) > 1:
        each("vs cheapest", "totals", delta_cell)
    each("Resources", "totals", lambda c: Cell(str(totals[c].get("resources", "-"))))
    each("Identities/grants", "totals", lambda c: Cell(f"{totals[c].get('identities', '-')} / {totals[c].get('permission_grants', '-')}"))

    def units(c: str) -> Cell:
        sizing = stream_sizing(columns[c]) or {}
        count, unit, mode = sizing.get("units") or 0, sizing.get("unit_name", "unit"), sizing.get("mode", "")
        if not count:
            return Cell(mode or "-")
        short = {"throughput unit": "TU", "processing unit": "PU"}.get(unit, unit)
        return Cell(f"{count} {short}{'s' if count != 1 and short == unit else ''} {mode[:4] + '.' if len(mode) > 9 else mode}".strip())

    demand = (data.get("workload") or {}).get("records_per_second", records_per_second)

    def stream_capacity(c: str) -> Cell:
        capacity = (stream_sizing(columns[c]) or {}).get("capacity_records_per_second")
        short = capacity is not None and demand is not None and capacity < demand
        return Cell(f"{rate(capacity)} / {rate(demand)}", "bad" if short else "")

    has_stream = any(stream_sizing(columns[c]) for c in names)
    if has_stream:  # specs without a stream (uploads, HTTP) have no stream rows
        each("Stream", "capacity", units)
        each("Stream rec/s", "capacity", stream_capacity)
    rows += _stage_rows(data, names)
    rows += _latency_rows(data, names)

    def limit(key: str, fmt: Any) -> Any:
        return lambda c: Cell(fmt(columns[c]["limits"][key]) if columns[c].get("limits") else "-")

    if has_stream:  # a stream's limits mean nothing to a pipeline fed by uploads alone
        each("Max record", "limits", limit("max_record_bytes", size))
    _max_run_rows(columns, names, each)
    if has_stream:
        each("Max retention", "limits", limit("max_retention_hours", lambda h: f"{h / 24:,.0f} days" if h >= 48 else f"{h} h"))
    if any((columns[c].get("limits") or {}).get("http_max_request_bytes") for c in names):
        each("Max request", "limits", limit("http_max_request_bytes", lambda b: size(b) if b else "-"))
    rows += _cost_rows(data, names)

    # Newer comparisons name the workload in the verdict itself ("Cheapest for 150 records/s of ..."); older ones do not.
    verdict = [] if "workload" in data else [Finding(f"Priced for {workload_phrase(data, records_per_second, record_bytes)}.")]
    verdict += [Finding(line, _tone(line)) for line in data.get("verdicts", [])]
    return Summary(data["pipeline"], data["stack"], heads, workload_phrase(data, records_per_second, record_bytes), rows,
                   {c: _notes(columns[c]) for c in names}, verdict, bool(data.get("free_tier")), list(data.get("assumptions") or []))


def of_comparison(comparison: Any) -> Summary:
    """`summarize` for a live `pipeline.compare.Comparison`."""
    return summarize(comparison.to_dict(), records_per_second=getattr(comparison, "records_per_second", None),
                     record_bytes=getattr(comparison, "record_bytes", None))
