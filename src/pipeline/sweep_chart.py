"""The cost-vs-load chart of `compare --sweep`: one line per cloud on log axes, crossovers marked (SVG, no JavaScript).

Read at a glance: each cloud's line is labelled at its end (no legend to look up), the spec's own workload
is a vertical line, each crossover a dashed line with the load it happens at and the cloud that becomes
the cheapest, and a point where a cloud cannot carry the load is a cross in that cloud's colour along the
top edge (never a point at $0). Costs span orders of magnitude across a sweep, so both axes are
logarithmic (the load axis is linear for an evenly spaced sweep). Drawn from the sweep's JSON only.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

from pipeline.summary import amount
from pipeline.sweep_view import compact_money

CLOUD_STYLE = {  # colour and marker per cloud, told apart without colour too
    "aws": ("#c2410c", "circle"), "gcp": ("#1d4ed8", "square"), "azure": ("#7e22ce", "diamond"),
}
OTHER_STYLE = ("#374151", "circle")
WIDTH, HEIGHT = 900, 480
LEFT, RIGHT, TOP, BOTTOM = 80, 130, 64, 84  # room for the y ticks, the lines' labels, crossover labels, the x ticks and the key
LABEL_GAP = 15  # the smallest vertical distance between two lines' end labels


class Scale:
    """Data -> pixels along one axis, logarithmic or linear."""

    def __init__(self, low: float, high: float, start: float, end: float, log: bool):
        self.log = log and low > 0
        self.low, self.high, self.start, self.end = low, high, start, end

    def _t(self, value: float) -> float:
        if self.log:
            return (math.log10(value) - math.log10(self.low)) / ((math.log10(self.high) - math.log10(self.low)) or 1)
        return (value - self.low) / ((self.high - self.low) or 1)

    def __call__(self, value: float) -> float:
        return self.start + (self.end - self.start) * self._t(value)

    def ticks(self) -> list[float]:
        """1-2-5 steps of each decade on a log axis (only decades when they are enough); round steps on a linear one."""
        if not self.log:
            step = 10 ** math.floor(math.log10((self.high - self.low) or 1))
            for factor in (1, 2, 5, 10):
                if (self.high - self.low) / (step * factor) <= 8:
                    step *= factor
                    break
            first = math.ceil(self.low / step) * step
            return [first + i * step for i in range(int((self.high - first) / step) + 1)]
        decades = [10.0 ** k for k in range(math.floor(math.log10(self.low)), math.ceil(math.log10(self.high)) + 1)]
        found = [d for d in decades if self.low <= d * (1 + 1e-9) and d <= self.high * (1 + 1e-9)]
        if len(found) >= 3:
            return found
        return [d * m for d in decades for m in (1, 2, 5) if self.low <= d * m * (1 + 1e-9) and d * m <= self.high * (1 + 1e-9)]


def _bounds(values: list[float], log: bool) -> tuple[float, float]:
    """Data bounds widened to round numbers (1-2-5 steps on a log axis) so the lines never touch the frame."""
    low, high = min(values), max(values)
    if not log:
        pad = (high - low) * 0.05 or abs(high) * 0.1 or 1.0
        return max(0.0, low - pad), high + pad
    steps = [d * m for d in (10.0 ** k for k in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 2)) for m in (1, 2, 5)]
    below = max((s for s in steps if s <= low), default=low)
    above = min((s for s in steps if s >= high), default=high)
    return below, above if above > below else below * 10


def _marker(kind: str, x: float, y: float, colour: str, title: str, hollow: bool) -> str:
    """A point; hollow where the cloud is priced for slower delivery than the spec asks."""
    tip = f"<title>{escape(title)}</title>"
    paint = f'fill="#fff" stroke="{colour}" stroke-width="2"' if hollow else f'fill="{colour}"'
    css = "point slower" if hollow else "point"
    if kind == "square":
        return f'<rect class="{css}" x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" {paint}>{tip}</rect>'
    if kind == "diamond":
        return f'<path class="{css}" d="M{x:.1f} {y - 5.5:.1f}L{x + 5.5:.1f} {y:.1f}L{x:.1f} {y + 5.5:.1f}L{x - 5.5:.1f} {y:.1f}Z" {paint}>{tip}</path>'
    return f'<circle class="{css}" cx="{x:.1f}" cy="{y:.1f}" r="4.5" {paint}>{tip}</circle>'


def _money_tick(usd: float) -> str:
    """$0.5, $20, $500, $2k, $50k, $1M: short enough for the margin at any scale."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if usd >= scale:
            return f"${usd / scale:,.3g}{suffix}"
    return f"${usd:,.0f}" if usd >= 1 else f"${usd:.2g}"


def chart_svg(data: dict[str, Any]) -> str:
    """The chart for a `compare --sweep --format json` object."""
    clouds = list(data["clouds"])
    titles = {c: data["clouds"][c]["title"] for c in clouds}
    unit, points = data["unit"], data["points"]
    series: dict[str, list[tuple[float, float | None, str]]] = {c: [] for c in clouds}  # (x, usd or None, why not)
    slower = {(p["value"], c) for p in points for c, flag in (p.get("slower_than_spec") or {}).items() if flag}
    for point in points:
        for cloud in clouds:
            column = point["comparison"]["clouds"][cloud]
            if point["carries"][cloud]:
                series[cloud].append((point["value"], sum(line["monthly_usd"] for line in column["cost"]["lines"]), ""))
            else:
                why = point["design"][cloud].get("why", "")
                series[cloud].append((point["value"], None, why))
    costs = [usd for line in series.values() for _, usd, _ in line if usd is not None and usd > 0]
    xs = [p["value"] for p in points]
    log_x = data["scale"] != "linear" and min(xs) > 0
    x_low, x_high = _bounds(xs, log_x) if not log_x else (min(xs), max(xs))
    x = Scale(x_low, x_high, LEFT, WIDTH - RIGHT, log_x)
    y_low, y_high = _bounds(costs or [1.0, 10.0], True)
    y = Scale(y_low, y_high, HEIGHT - BOTTOM, TOP, True)
    plot_bottom, plot_top = HEIGHT - BOTTOM, TOP
    field = escape(data["field"])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="sweep-chart" width="{WIDTH}" height="{HEIGHT}" role="img" '
             f'aria-label="Monthly cost per cloud as {field} grows, log scales, crossovers marked">',
             '<style>.sweep-chart text{font:13px "DejaVu Sans",Arial,sans-serif;fill:#111827} .sweep-chart .small{font-size:12px;fill:#374151}'
             ' .sweep-chart .h{font-weight:bold;font-size:14px}</style>',
             f'<text class="h" x="{LEFT}" y="20">Monthly cost per cloud as {field} grows ({escape(data["pipeline"])}, {escape(data["stack"])})</text>']
    # grid and ticks
    for tick in y.ticks():
        ty = y(tick)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="#e5e7eb"/>'
                     f'<text class="small y-tick" x="{LEFT - 8}" y="{ty + 4:.1f}" text-anchor="end">{_money_tick(tick)}</text>')
    for tick in x.ticks():
        tx = x(tick)
        parts.append(f'<line class="grid" x1="{tx:.1f}" x2="{tx:.1f}" y1="{plot_top}" y2="{plot_bottom}" stroke="#e5e7eb"/>'
                     f'<text class="small x-tick" data-value="{tick:g}" x="{tx:.1f}" y="{plot_bottom + 18}" text-anchor="middle">{amount(tick)}</text>')
    parts.append(f'<rect x="{LEFT}" y="{plot_top}" width="{WIDTH - RIGHT - LEFT}" height="{plot_bottom - plot_top}" fill="none" stroke="#9ca3af"/>')
    scale_words = "log scale" if log_x else "linear scale"
    parts.append(f'<text class="small" x="{(LEFT + WIDTH - RIGHT) / 2:.0f}" y="{plot_bottom + 40}" text-anchor="middle">'
                 f'{field} ({escape(unit)}, {scale_words})</text>'
                 f'<text class="small" transform="translate(16 {(plot_top + plot_bottom) / 2:.0f}) rotate(-90)" text-anchor="middle">'
                 'monthly cost, USD (log scale)</text>')
    # the spec's own workload
    own = data.get("spec_value")
    if own is not None and min(xs) <= own <= max(xs):
        ox = x(own)
        parts.append(f'<line class="spec-line" x1="{ox:.1f}" x2="{ox:.1f}" y1="{plot_top}" y2="{plot_bottom}" stroke="#111827" stroke-width="1.5"/>'
                     f'<text class="small spec-label" x="{ox + 4:.1f}" y="{plot_bottom - 6}">the spec: {amount(own)}</text>')
    # crossovers
    for index, crossover in enumerate(data["crossovers"]):
        cx = x(crossover["at"])
        after = f"{titles[crossover['to']]} cheapest" if crossover["to"] else "no cloud carries the load"
        label_y = TOP - 8.0 - (index % 2) * 15  # alternate rows so neighbours do not collide
        parts.append(f'<g class="crossover" data-at="{crossover["at"]:g}"><line x1="{cx:.1f}" x2="{cx:.1f}" y1="{label_y + 3}" y2="{plot_bottom}" '
                     f'stroke="#111827" stroke-dasharray="5 4"/><text class="small" x="{cx:.1f}" y="{label_y:.1f}" text-anchor="middle">'
                     f'~{amount(crossover["at"])} {escape(unit)}: {escape(after)}</text><title>{escape(crossover["text"])}</title></g>')
    # one line per cloud, broken where it cannot carry the load
    ends: list[tuple[float, str, str]] = []
    for number, cloud in enumerate(clouds):
        colour, marker = CLOUD_STYLE.get(cloud, OTHER_STYLE)
        runs: list[list[tuple[float, float]]] = [[]]
        for value, usd, why in series[cloud]:
            if usd is None or usd <= 0:
                if runs[-1]:
                    runs.append([])
                mx, my = x(value), plot_top + 9 + number * 11
                parts.append(f'<text class="cannot" data-cloud="{cloud}" x="{mx:.1f}" y="{my + 4:.1f}" text-anchor="middle" '
                             f'style="fill:{colour};font-weight:bold">×<title>{escape(titles[cloud])} cannot carry {amount(value)} {escape(unit)}: '
                             f'{escape(why)}</title></text>')
                continue
            runs[-1].append((value, usd))
        for run in (r for r in runs if r):
            coords = " ".join(f"{x(v):.1f},{y(u):.1f}" for v, u in run)
            parts.append(f'<polyline class="cloud-line" data-cloud="{cloud}" points="{coords}" fill="none" stroke="{colour}" stroke-width="2.5"/>')
            parts += [_marker(marker, x(v), y(u), colour, f"{titles[cloud]} at {amount(v)} {unit}: {compact_money(u)}/month"
                              + (" (priced for slower delivery than the spec asks)" if (v, cloud) in slower else ""), (v, cloud) in slower)
                      for v, u in run]
        carried = [(v, u) for v, u, _ in series[cloud] if u is not None and u > 0]
        if carried:
            ends.append((y(carried[-1][1]), cloud, colour))
    # each line's name at its right end, nudged apart
    placed: list[float] = []
    for end_y, cloud, colour in sorted(ends):
        label_y = max([end_y, *(p + LABEL_GAP for p in placed)])
        placed.append(label_y)
        parts.append(f'<text class="line-label" data-cloud="{cloud}" x="{WIDTH - RIGHT + 8}" y="{label_y + 4:.1f}" '
                     f'style="fill:{colour};font-weight:bold">{escape(titles[cloud])}</text>')
    keys = [text for shown, text in ((bool(slower), "hollow point: priced for slower delivery than the spec's batching window"),
                                     (any(usd is None for line in series.values() for _, usd, _ in line), "×: cannot carry the load")) if shown]
    if keys:
        parts.append(f'<text class="small key" x="{LEFT}" y="{HEIGHT - 8}">{escape("   ·   ".join(keys))}</text>')
    parts.append("</svg>")
    return "".join(parts)

