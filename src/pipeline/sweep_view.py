"""What `compare --sweep` says, once, for every view: a row per point, the crossovers and design changes in words.

Like `pipeline.summary` for one comparison, this reads only the documented `compare --sweep --format json`
object (`pipeline.sweep.Sweep.to_dict()`), so the terminal, Markdown and a cached answer show exactly what
the JSON holds; each cell and finding carries a tone a view may colour, and its text says everything.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from pipeline.summary import Cell, CloudHead, Finding, amount

MARK_SPEC = "▸"  # marks the spec's own workload among the points
MARK_SLOWER = "†"  # a cloud whose design delivers slower than the spec's batching window at that point


@dataclass
class SweepRow:
    value: float
    label: str  # "▸ 150"
    spec: bool
    cells: dict[str, Cell]  # cloud -> cost and stream units, or why it does not carry the load
    cheapest: Cell


@dataclass
class SweepSummary:
    title: str
    subtitle: str
    axis_label: str  # the value column's header, e.g. "rec/s"
    clouds: list[CloudHead]
    rows: list[SweepRow]
    findings: list[Finding]
    note: str


def compact_money(usd: float) -> str:
    """$43.82, $1,726: cents only where they matter at a glance."""
    return f"${usd:,.2f}" if usd < 1000 else f"${usd:,.0f}"


def units_text(stream: dict[str, Any] | None) -> str:
    """"1 shard", "25 shards", "3 TU": a stream's provisioned units (nothing for a serverless stream)."""
    if not stream or not stream.get("units"):
        return ""
    count, unit = stream["units"], {"throughput unit": "TU", "processing unit": "PU"}.get(stream["unit_name"], stream["unit_name"])
    return f"{count} {unit}{'s' if count != 1 and unit == stream['unit_name'] else ''}"


def _cell(point: dict[str, Any], cloud: str) -> Cell:
    column = point["comparison"]["clouds"][cloud]
    if not column["planned"]:
        return Cell("cannot carry", "bad")
    if (column.get("totals") or {}).get("monthly_usd") is None:
        return Cell("cost unknown", "warn")
    if not point["carries"][cloud]:
        return Cell("over a limit", "bad")
    usd = _usd(point, cloud)
    slower = MARK_SLOWER if (point.get("slower_than_spec") or {}).get(cloud) else ""
    text = " ".join(x for x in (compact_money(usd) + slower, units_text(column.get("stream"))) if x)
    return Cell(text, "good" if point["cheapest"] == cloud else "")


def _falls(data: dict[str, Any], titles: dict[str, str]) -> list[tuple[float, Finding]]:
    """Where a cloud's total falls although the load grows (a design switch priced as cheaper than the last one):
    the curve a team would extrapolate from is not the one it will pay."""
    found = []
    for cloud, title in titles.items():
        carried = [(p["value"], _usd(p, cloud)) for p in data["points"] if p["carries"][cloud]]
        for (low, before), (high, after) in itertools.pairwise(carried):
            if after < before - 0.005:
                found.append((high, Finding(f"{title}'s total falls as the load grows: {amount(low)} -> {amount(high)} {data['unit']}, "
                                            f"{compact_money(before)} -> {compact_money(after)}.", "warn")))
    return found


def _usd(point: dict[str, Any], cloud: str) -> float:
    return float(sum(line["monthly_usd"] for line in point["comparison"]["clouds"][cloud]["cost"]["lines"]))


def summarize_sweep(data: dict[str, Any]) -> SweepSummary:
    """The view model of a `compare --sweep --format json` object."""
    names = list(data["clouds"])
    titles = {c: data["clouds"][c]["title"] for c in names}
    heads = [CloudHead(c, titles[c], data["clouds"][c]["location"], True) for c in names]
    unit = data["unit"]
    rows = []
    for point in data["points"]:
        label = f"{MARK_SPEC} {amount(point['value'])}" if point.get("spec") else amount(point["value"])
        best = point.get("cheapest")
        rows.append(SweepRow(point["value"], label, bool(point.get("spec")), {c: _cell(point, c) for c in names},
                             Cell(titles[best], "good") if best else Cell("none", "bad")))
    found: list[tuple[float, Finding]] = [(c["at"], Finding(c["text"], "good" if c["to"] else "bad")) for c in data["crossovers"]]
    said = " ".join(text for c in data["crossovers"] for text in c["changes"])
    for change in data["changes"]:
        title = data["clouds"][change["cloud"]]["title"]
        if change["kind"] == "stream" or change["text"].removeprefix(title + " ") in said:
            continue  # stream units are in the table; changes at a crossover are in its sentence
        tone = "bad" if change["kind"] == "capacity" and "cannot" in change["text"] else ""
        found.append((change["at"], Finding(f"From ~{amount(change['at'])} {unit}: {change['text']}.", tone)))
    found += _falls(data, titles)
    findings = [finding for _, finding in sorted(found, key=lambda item: item[0])]
    bests = {p.get("cheapest") for p in data["points"]}
    able = bests - {None}
    if len(names) == 1:
        findings.insert(0, Finding(f"Only {titles[names[0]]} is compared: its cost along the range, and what changes in its design.", ""))
    elif not able:
        findings.insert(0, Finding("No cloud carries the load at any point of this range.", "bad"))
    elif len(able) == 1:
        best = titles[next(iter(able))]
        where = "at every point" if None not in bests else "wherever a cloud carries the load"
        findings.insert(0, Finding(f"{best} is the cheapest {where}: the clouds do not cross in this range.", "good"))
    values = data["values"]
    spaced = {"log": "log-spaced", "linear": "evenly spaced", "list": "as listed"}.get(data["scale"], data["scale"])
    spec_point = any(p.get("spec") for p in data["points"])
    subtitle = (f"{amount(values[0])} to {amount(values[-1])} {unit}, {len(values)} points, {spaced}"
                + (f"; {MARK_SPEC} the spec's own {amount(data['spec_value'])}" if spec_point else ""))
    note = ("Each row is what `pipeline compare` prints for that workload; --format json has every point, "
            "--format html draws the chart.")
    if any(any((p.get("slower_than_spec") or {}).values()) for p in data["points"]):
        note = f"{MARK_SLOWER} priced for slower delivery than the spec's batching window (that point's verdict says how slow). " + note
    title = f"{data['pipeline']} ({data['stack']}): monthly cost as {data['field']} grows"
    return SweepSummary(title, subtitle, unit, heads, rows, findings, note)


def markdown_sweep(data: dict[str, Any]) -> str:
    """For a pull request: the findings, then a table of the points."""
    summary = summarize_sweep(data)
    out = [f"## {summary.title}", "", f"_{summary.subtitle}_", ""]
    out += [f"- {'**' + f.text + '**' if f.tone in ('good', 'bad') else f.text}" for f in summary.findings] + [""]
    out.append(f"| {summary.axis_label} | " + " | ".join(f"{c.title} ({c.location})" for c in summary.clouds) + " | cheapest |")
    out.append("|---:|" + "---:|" * len(summary.clouds) + "---|")
    for row in summary.rows:
        label = f"**{row.label}**" if row.spec else row.label
        out.append(f"| {label} | " + " | ".join(row.cells[c.cloud].text for c in summary.clouds) + f" | {row.cheapest.text} |")
    out += ["", f"_{summary.note}_", ""]
    return "\n".join(out)
