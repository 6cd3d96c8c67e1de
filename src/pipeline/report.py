"""Comparison views that are plain text: Markdown (for a pull request) and the HTML report.

Formatting only: every number comes from `pipeline.compare.Comparison` (through its documented
JSON shape and `pipeline.summary`). Both views carry the same parts as the terminal: the verdict
with the workload priced, the summary table, then the long material the terminal leaves out:
billing lines paired role by role across clouds (quantity, unit price, source), resources per
role, limits in words, and every assumption.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from html import escape
from typing import Any

from pipeline.compare import Comparison
from pipeline.plan import PlannedResource, group_parts, part_label, short_type
from pipeline.summary import (
    COST_GROUPS,
    GROUP_ORDER,
    SECTION_TITLES,
    Summary,
    clouds_phrase,
    latency_lines,
    money,
    of_comparison,
    sizing_reasoning,
)

CHART_COLORS = {  # cost group -> colour (distinct, readable on white)
    "stream": "#d97706", "archive": "#facc15", "storage": "#2563eb", "functions": "#059669", "triggers": "#7c3aed",
    "identities": "#db2777", "dead letters": "#dc2626", "observability": "#6b7280", "platform": "#0891b2", "other": "#a3a3a3",
}


def _lookup(inputs: dict[str, Any], path: str) -> Any:
    value: Any = inputs
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def highlights(resource: PlannedResource, key_settings: dict[str, tuple[str, ...]]) -> str:
    """The settings a backend marks as worth comparing (capacity, memory, retries, ...)."""
    parts = []
    for path in key_settings.get(resource.type, ()):
        value = _lookup(resource.inputs, path)
        if value is not None:
            parts.append(f"{path.rsplit('.', 1)[-1]}={value if not isinstance(value, (dict, list)) else json.dumps(value)}")
    return ", ".join(parts)


@dataclass
class RoleRow:
    key: str
    kind: str
    cells: dict[str, list[str]]  # cloud -> lines, the role's main resource first
    cost: dict[str, float]  # cloud -> monthly USD for this role


def role_rows(comparison: Comparison, names: bool = True) -> list[RoleRow]:
    """One row per role; `names=False` gives the compact form (types with counts)."""
    rows = []
    for key, kind in comparison.roles():
        cells, cost = {}, {}
        for column in comparison.planned():
            assert column.plan is not None
            lines: list[str] = []
            resources = column.plan.role_resources(key, column.grant_types)
            for resource, parts in group_parts(resources, lambda r: r.physical_name, lambda r: r.name):  # a bucket's settings under it, named once
                detail = highlights(resource, column.key_settings)
                label = f"{short_type(resource.type)} {resource.physical_name}" if names else short_type(resource.type)
                with_parts = f" + {', '.join(part_label(resource.type, p.type) for p in parts)}" if parts else ""
                lines.append(label + (f" ({detail})" if detail else "") + with_parts)
            cells[column.cloud] = lines if names else [f"{n}x {line}" if n > 1 else line for line, n in Counter(lines).items()]
            cost[column.cloud] = column.cost.by_role().get(key, 0.0) if column.cost else 0.0
        rows.append(RoleRow(key, kind, cells, cost))
    return rows


@dataclass
class BillingRow:
    """One role's billing lines on every cloud: the comparable unit across clouds, since line names differ."""

    role: str
    kind: str
    lines: dict[str, list[dict[str, Any]]]  # cloud -> cost lines (item, quantity, unit, unit_usd, monthly_usd, source, note)


def billing_rows(data: dict[str, Any]) -> list[BillingRow]:
    """Billing lines grouped by role, roles in program order (from `compare --format json`)."""
    kinds = {r["role"]: r["kind"] for r in data.get("roles", [])}
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for cloud, column in data["clouds"].items():
        for line in (column.get("cost") or {}).get("lines", []):
            grouped.setdefault(line["role"], {}).setdefault(cloud, []).append(line)
    order = list(kinds) + sorted(set(grouped) - set(kinds))
    return [BillingRow(role, kinds.get(role, ""), grouped[role]) for role in order if role in grouped]


def unit_price(usd: float) -> str:
    """Enough decimals for three significant digits: $0.015, $0.0000002, $40.00."""
    if usd >= 1 or usd == 0:
        return f"${usd:,.2f}"
    decimals = max(2, -math.floor(math.log10(usd)) + 2)
    text = f"{usd:.{decimals}f}".rstrip("0")
    return "$" + (text + "0" if text.endswith(".") or len(text.split(".")[1]) < 2 else text)


def quantity_text(line: dict[str, Any]) -> str:
    q = line["quantity"]
    amount = f"{q:,.0f}" if q >= 100 else f"{q:,.2f}" if q >= 0.01 else f"{q:.2g}"
    return f"{amount} {line['unit']} × {unit_price(line['unit_usd'])}"


def limit_words(data: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
    """Delivery, ordering and poison-record handling in words, per cloud."""
    rows = []
    for label, key in (("Delivery", "delivery"), ("Ordering", "ordering"), ("Poison records", "poison_records")):
        rows.append((label, {c: str((col.get("limits") or {}).get(key, "n/a")) for c, col in data["clouds"].items()}))
    return rows


# ---- Markdown --------------------------------------------------------------------------


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def _markdown_notes(summary: Summary, data: dict[str, Any]) -> list[str]:
    out = ["**Every cloud**", "", *[f"- {_md(x)}" for x in summary.assumptions], ""] if summary.assumptions else []
    for head in summary.clouds:
        notes = summary.notes[head.cloud]
        reasoning, latency = sizing_reasoning(data["clouds"][head.cloud]), latency_lines(data["clouds"][head.cloud])
        if not (notes or reasoning or latency):
            continue
        out += [f"**{head.title}**", ""]
        out += [f"- Not priced: {_md(x)}" for x in notes.unpriced] + [f"- Verify: {_md(x)}" for x in notes.verify]
        out += [f"- Latency: {_md(x)}" for x in latency] + [f"- Sizing: {_md(x)}" for x in reasoning]
        out += [f"- {_md(x)}" for x in notes.assumptions] + [""]
    return out


def markdown(comparison: Comparison) -> str:
    """For a pull request: the verdict and summary first, the long material folded in <details>."""
    data = comparison.to_dict()
    summary = of_comparison(comparison)
    clouds = summary.clouds
    head = "| | " + " | ".join(f"{c.title} ({c.location})" for c in clouds) + " |"
    rule = "|---|" + "---:|" * len(clouds)
    out = [f"## {summary.pipeline} ({summary.stack}): {clouds_phrase([c.title for c in clouds])}", ""]
    out += [f"- {'**' + f.text + '**' if f.tone in ('good', 'bad') else f.text}" for f in summary.verdict] + ["", head, rule]
    section = ""
    for row in summary.rows:
        if row.section != section and row.section in ("capacity", "limits", "cost"):
            title = SECTION_TITLES[row.section]
            out.append(f"| _{title}_ |" + " |" * len(clouds))
        section = row.section
        out.append(f"| {row.label} | " + " | ".join(_md(row.cells[c.cloud].text) for c in clouds) + " |")
    left = "|---|" + "---|" * len(clouds)
    out += ["", "<details><summary>Billing lines by role (quantity × unit price = USD/month)</summary>", "", head, left]
    for billing in billing_rows(data):
        cells = []
        for c in clouds:
            lines = billing.lines.get(c.cloud, [])
            cells.append("<br>".join(f"{_md(line['item'])}: {_md(quantity_text(line))} = **{money(line['monthly_usd'])}**" for line in lines) or "-")
        out.append(f"| `{billing.role}` | " + " | ".join(cells) + " |")
    out += ["", "</details>", "", "<details><summary>Resources by role</summary>", "", head, left]
    for role in role_rows(comparison):
        cells = [_md("\n".join(role.cells.get(c.cloud, []))) or "-" for c in clouds]
        out.append(f"| **{role.kind}** `{role.key}` | " + " | ".join(cells) + " |")
    out += ["", "</details>", "", "<details><summary>Limits in words</summary>", "", head, left]
    for label, values in limit_words(data):
        out.append(f"| {label} | " + " | ".join(_md(values[c.cloud]) for c in clouds) + " |")
    out += ["", "</details>", "", "<details><summary>Assumptions, sizing and what is not priced</summary>", ""]
    out += _markdown_notes(summary, data) + ["</details>", ""]
    out += ["<details><summary>What the rows mean</summary>", ""]
    out += [f"- **{key.replace('_', ' ')}**: {text}" for key, text in data["definitions"].items()] + ["", "</details>", ""]
    free = "with" if comparison.free_tier else "without"
    out += [f"_Offline estimate {free} free tiers from list prices in each backend's price sheet; {data['hours_per_month']} hours a month._", ""]
    return "\n".join(out)


# ---- HTML ------------------------------------------------------------------------------


def _group_costs(data: dict[str, Any], cloud: str) -> dict[str, float]:
    kinds = {r["role"]: r["kind"] for r in data.get("roles", [])}
    groups: dict[str, float] = {}
    for role, usd in (data["clouds"][cloud].get("cost_by_role") or {}).items():
        group = COST_GROUPS.get(kinds.get(role, ""), "other")
        groups[group] = groups.get(group, 0.0) + usd
    return {g: groups[g] for g in GROUP_ORDER if groups.get(g, 0.0) > 0}


def cost_chart_svg(comparison: Comparison, width: int = 860) -> str:
    """Two honest pictures of monthly cost (no JavaScript): each cloud's total on one scale, then
    each cloud's mix as 100 % bars, so a cheap cloud's breakdown stays readable next to an
    expensive one. The legend lists every group any bar shows."""
    data = comparison.to_dict()
    priced = [(c, data["clouds"][c]) for c in data["clouds"] if (data["clouds"][c].get("totals") or {}).get("monthly_usd") is not None]
    mixes = {c: _group_costs(data, c) for c, _ in priced}
    used = [g for g in GROUP_ORDER if any(g in mix for mix in mixes.values())]
    top = max((col["totals"]["monthly_usd"] for _, col in priced), default=0.0) or 1.0
    left, bar_h, gap, label_w = 110, 24, 12, 120
    span = width - left - label_w
    # The style is scoped to this chart: a <style> inside inline SVG applies to the whole page (and would re-size diagram text).
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="cost-chart" width="{width}" height="HEIGHT" role="img" aria-label="Monthly cost by cloud and by role">',
             '<style>.cost-chart text{font:13px "DejaVu Sans",Arial,sans-serif;fill:#111827} .cost-chart .h{font-weight:bold}</style>']
    y = 18
    parts.append(f'<text class="h" x="0" y="{y}">Total per month (one scale)</text>')
    y += 10
    for _, column in priced:
        total = column["totals"]["monthly_usd"]
        w = max(total / top * span, 2)
        parts.append(f'<text x="0" y="{y + 17}">{escape(column["title"])}</text>'
                     f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="#374151"><title>{escape(column["title"])}: {money(total)}</title></rect>'
                     f'<text x="{left + w + 6:.1f}" y="{y + 17}">{money(total)}</text>')
        y += bar_h + gap
    y += 16
    parts.append(f'<text class="h" x="0" y="{y}">Where the money goes (share of each cloud\'s total)</text>')
    y += 10
    for cloud, column in priced:
        total = sum(mixes[cloud].values()) or 1.0
        x = float(left)
        parts.append(f'<text x="0" y="{y + 17}">{escape(column["title"])}</text>')
        for group, usd in mixes[cloud].items():
            w = usd / total * span
            parts.append(f'<rect class="segment" data-group="{escape(group)}" x="{x:.1f}" y="{y}" width="{max(w, 0.5):.1f}" height="{bar_h}" '
                         f'fill="{CHART_COLORS[group]}"><title>{escape(column["title"])} {escape(group)}: {money(usd)} ({usd / total:.0%})</title></rect>')
            if w >= 44:
                parts.append(f'<text x="{x + 4:.1f}" y="{y + 17}" style="fill:#fff;font-size:12px">{usd / total:.0%}</text>')
            x += w
        y += bar_h + gap
    y += 8
    for i, group in enumerate(used):
        lx, ly = left + (i % 5) * 150, y + (i // 5) * 20
        parts.append(f'<g class="legend-item"><rect x="{lx}" y="{ly}" width="12" height="12" fill="{CHART_COLORS[group]}"/>'
                     f'<text x="{lx + 17}" y="{ly + 11}">{escape(group)}</text></g>')
    height = y + ((len(used) + 4) // 5) * 20 + 8
    parts.append("</svg>")
    return "".join(parts).replace("HEIGHT", str(height), 1)


_CSS = """
body{font-family:"DejaVu Sans",Arial,sans-serif;margin:24px;color:#111827;background:#fff;font-size:14px}
h1{font-size:22px;margin:0 0 8px} h2{font-size:18px;margin:32px 0 8px} h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;font-size:13px;margin:6px 0} th,td{border:1px solid #d1d5db;padding:5px 8px;vertical-align:top;text-align:left}
table.wide{width:100%;table-layout:fixed} table.wide td{overflow-wrap:anywhere} table.wide th:first-child{width:170px}
th{background:#f3f4f6} td.num{text-align:right;white-space:nowrap} td.role{white-space:nowrap;font-weight:bold}
.kind{color:#6b7280;font-weight:normal;display:block} .good{color:#047857;font-weight:bold} .bad{color:#b91c1c;font-weight:bold} .warn{color:#b45309}
ul.verdict li{margin:4px 0} .cost{font-weight:bold;color:#065f46} .section td{background:#f9fafb;font-style:italic;color:#374151}
.diagram{overflow:auto;border:1px solid #e5e7eb;margin:8px 0 20px;padding:8px;max-height:90vh}
.diagram svg{max-width:none;height:auto} .note{color:#4b5563;font-size:13px} .line{display:block;margin:2px 0}
.line small{color:#6b7280} nav a{margin-right:12px} .chart{overflow:auto;margin:8px 0}
"""


def _cell_html(text: str, tone: str) -> str:
    return f'<span class="{tone}">{escape(text)}</span>' if tone else escape(text)


def _sweep_section(swept: dict[str, Any] | None) -> str:
    """Where the clouds cross: the cost-vs-load chart of a sweep and its findings in words."""
    if not swept:
        return ""
    from pipeline.sweep_chart import chart_svg
    from pipeline.sweep_view import summarize_sweep

    view = summarize_sweep(swept)
    items = "".join(f"<li>{_cell_html(f.text, f.tone)}</li>" for f in view.findings)
    return (f"<h2 id='sweep'>Where the clouds cross</h2><div id='sweep-chart' class='chart'>{chart_svg(swept)}</div>"
            f"<ul id='sweep-findings' class='verdict'>{items}</ul><p class='note'>{escape(view.subtitle)}. {escape(view.note)}</p>")


def html(comparison: Comparison, diagrams: dict[str, dict[str, str]], swept: dict[str, Any] | None = None) -> str:
    """One self-contained page: verdict, summary, cost chart, where the clouds cross (the cost-vs-load chart of
    `swept`, a `compare --sweep` JSON object), billing lines by role, resources by role, limits in words,
    assumptions, and per cloud the data-path and identity diagrams at their natural size (scroll, never shrink)."""
    data = comparison.to_dict()
    summary = of_comparison(comparison)
    clouds = summary.clouds
    titles = {c.cloud: c.title for c in clouds}
    head = "<tr><th></th>" + "".join(f'<th class="cloud" data-cloud="{c.cloud}">{escape(c.title)} <span class="kind">{escape(c.location)}</span></th>'
                                     for c in clouds) + "</tr>"
    rows, section = [], ""
    for row in summary.rows:
        if row.section != section and row.section in ("capacity", "limits", "cost"):
            title = SECTION_TITLES[row.section]
            rows.append(f"<tr class='section'><td colspan='{len(clouds) + 1}'>{title}</td></tr>")
        section = row.section
        rows.append(f"<tr><td class='role'>{escape(row.label)}</td>"
                    + "".join(f"<td class='num'>{_cell_html(row.cells[c.cloud].text, row.cells[c.cloud].tone)}</td>" for c in clouds) + "</tr>")
    billing = []
    for item in billing_rows(data):
        cells = []
        for c in clouds:
            lines = item.lines.get(c.cloud, [])
            body = "".join(f"<span class='line'>{escape(line['item'])}: {escape(quantity_text(line))} = <b>{money(line['monthly_usd'])}</b>"
                           f" <small><a href='{escape(line['source'])}'>source</a>{(' · ' + escape(line['note'])) if line.get('note') else ''}</small></span>"
                           for line in lines)
            cells.append(f"<td>{body or '-'}</td>")
        billing.append(f"<tr><td class='role'>{escape(item.role)}<span class='kind'>{escape(item.kind)}</span></td>{''.join(cells)}</tr>")
    roles = []
    for role in role_rows(comparison):
        cells = []
        for c in clouds:
            items = "<br>".join(escape(line) for line in role.cells.get(c.cloud, [])) or "-"
            if role.cost.get(c.cloud):
                items += f"<br><span class='cost'>{money(role.cost[c.cloud])}/month</span>"
            cells.append(f"<td>{items}</td>")
        roles.append(f"<tr><td class='role'>{escape(role.key)}<span class='kind'>{escape(role.kind)}</span></td>{''.join(cells)}</tr>")
    words = "".join(f"<tr><td class='role'>{escape(label)}</td>" + "".join(f"<td>{escape(values[c.cloud])}</td>" for c in clouds) + "</tr>"
                    for label, values in limit_words(data))
    notes = []
    for c in clouds:
        n = summary.notes[c.cloud]
        reasoning, latency = sizing_reasoning(data["clouds"][c.cloud]), latency_lines(data["clouds"][c.cloud])
        entries = ([f"<li class='warn'>Not priced: {escape(x)}</li>" for x in n.unpriced] + [f"<li class='warn'>Verify: {escape(x)}</li>" for x in n.verify]
                   + [f"<li>Latency: {escape(x)}</li>" for x in latency] + [f"<li>Sizing: {escape(x)}</li>" for x in reasoning]
                   + [f"<li>{escape(x)}</li>" for x in n.assumptions])
        if entries:
            notes.append(f"<h3>{escape(c.title)}</h3><ul>{''.join(entries)}</ul>")
    pictures = []
    for cloud, views in diagrams.items():
        pictures.append(f"<section class='cloud-diagrams' id='diagram-{cloud}'><h2>{escape(titles.get(cloud, cloud))} architecture</h2>")
        for view, svg in views.items():
            caption = {"data": "Data path", "identity": "Identities and access"}.get(view, view)
            pictures.append(f"<h3>{caption}</h3><div class='diagram' data-view='{escape(view)}'>{svg}</div>")
        pictures.append("</section>")
    verdict = "".join(f"<li>{_cell_html(f.text, f.tone)}</li>" for f in summary.verdict)
    nav = " ".join(f"<a href='#diagram-{c}'>{escape(titles.get(c, c))} diagrams</a>" for c in diagrams)
    free = "with" if comparison.free_tier else "without"
    sweep_link = "<a href='#sweep'>Where the clouds cross</a> " if swept else ""
    shared = (f"<div id='shared-assumptions'><h3>Every cloud</h3><ul>{''.join(f'<li>{escape(x)}</li>' for x in summary.assumptions)}</ul></div>"
              if summary.assumptions else "")
    definitions = "".join(f"<dt>{escape(key.replace('_', ' '))}</dt><dd>{escape(text)}</dd>" for key, text in data["definitions"].items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(summary.title)}</title><style>{_CSS}</style></head>
<body>
<h1>{escape(summary.title)}</h1>
<ul class="verdict">{verdict}</ul>
<nav><a href="#summary">Summary</a> <a href="#cost">Cost</a> {sweep_link}<a href="#billing">Billing lines</a> <a href="#roles">Resources</a>
<a href="#assumptions">Assumptions</a> {nav}</nav>
<h2 id="summary">Summary</h2><table id="totals">{head}{''.join(rows)}</table>
<h2 id="cost">Monthly cost by role and cloud</h2><div id="cost-chart">{cost_chart_svg(comparison)}</div>
{_sweep_section(swept)}
<h2 id="billing">Billing lines by role (quantity × unit price = USD/month)</h2><table id="billing-lines" class="wide">{head}{''.join(billing)}</table>
<h2 id="roles">Resources by role</h2><table id="roles-table" class="wide">{head}{''.join(roles)}</table>
<h2 id="limits">Limits in words</h2><table id="limit-words" class="wide">{head}{words}</table>
<h2 id="assumptions">Assumptions, sizing and what is not priced</h2>{shared}<div id="notes">{''.join(notes) or '<p>None listed.</p>'}</div>
<h2 id="definitions">What the rows mean</h2><dl id="definitions-list">{definitions}</dl>
{''.join(pictures)}
<p class="note">Offline plans and estimates {free} free tiers from list prices in each backend's price sheet ({data['hours_per_month']} hours a month).
Account and project ids are placeholders.</p>
</body></html>
"""
