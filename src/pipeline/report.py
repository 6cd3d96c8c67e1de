"""Comparison views that are plain text: the role-by-role cells, Markdown, and the HTML report.

Formatting only: every number comes from `pipeline.compare.Comparison`.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from html import escape
from typing import Any

from pipeline.backend import backend_class
from pipeline.compare import CloudColumn, Comparison
from pipeline.plan import PlannedResource, short_type

CHART_GROUPS = {  # role kind -> chart group
    "Stream": "stream", "Archive": "archive", "Bucket": "storage", "Artifact": "storage", "Function": "functions",
    "StreamTrigger": "triggers", "ObjectTrigger": "triggers", "ScheduleTrigger": "triggers", "Identity": "identities",
    "DeadLetter": "dead letters", "Observability": "observability", "Platform": "platform",
}
CHART_COLORS = ["#f59e0b", "#fbbf24", "#3b82f6", "#10b981", "#8b5cf6", "#ef4444", "#f87171", "#6b7280", "#9ca3af"]


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
    cells: dict[str, list[str]]  # cloud -> lines
    cost: dict[str, float]  # cloud -> monthly USD for this role


def role_rows(comparison: Comparison, names: bool = True) -> list[RoleRow]:
    """One row per role; `names=False` gives the compact terminal form (types with counts)."""
    rows = []
    settings = {c.cloud: backend_class(c.cloud).key_settings for c in comparison.planned()}
    for key, kind in comparison.roles():
        cells, cost = {}, {}
        for column in comparison.planned():
            assert column.plan is not None
            lines: list[str] = []
            for resource in column.plan.by_role().get(key, []):
                detail = highlights(resource, settings[column.cloud])
                label = f"{short_type(resource.type)} {resource.physical_name}" if names else short_type(resource.type)
                lines.append(label + (f" ({detail})" if detail else ""))
            cells[column.cloud] = lines if names else [f"{n}x {line}" if n > 1 else line for line, n in Counter(lines).items()]
            cost[column.cloud] = column.cost.by_role().get(key, 0.0) if column.cost else 0.0
        rows.append(RoleRow(key, kind, cells, cost))
    return rows


def totals_rows(comparison: Comparison) -> list[tuple[str, dict[str, str]]]:
    """Label -> per-cloud text, for the totals and limits block every format shows."""
    def each(fn: Any) -> dict[str, str]:
        return {c.cloud: fn(c) for c in comparison.columns}

    def money(c: CloudColumn) -> str:
        return f"${c.cost.total:,.2f}" if c.cost else (c.cost_error and "unknown") or "n/a"

    def lim(attr: str, fmt: str = "{}") -> Any:
        return lambda c: fmt.format(getattr(c.limits, attr)) if c.limits else "n/a"

    return [
        ("Resources", each(lambda c: str(c.totals().get("resources", "-")))),
        ("Identities", each(lambda c: str(c.totals().get("identities", "-")))),
        ("Permission grants", each(lambda c: str(c.totals().get("permission_grants", "-")))),
        *([("Stream capacity", each(stream_capacity))] if comparison.spec.stream is not None else []),
        *((f"Capacity: {name}", each(lambda c, name=name: stage_capacity(c, name))) for name in stage_names(comparison)),
        ("Latency, slowest path", each(latency_text)),
        ("Sizing", each(lambda c: "; ".join(sizing_reasoning(c)) if c.plan else "-")),
        ("Monthly cost (730 h)", each(money)),
        ("Max record size", each(lim("max_record_bytes", "{:,} bytes"))),
        ("Max stage timeout", each(lim("max_stage_timeout_s", "{:,} s"))),
        ("Max stream retention", each(lim("max_retention_hours", "{:,} h"))),
        ("Delivery", each(lim("delivery"))),
        ("Ordering", each(lim("ordering"))),
        ("Poison records", each(lim("poison_records"))),
    ]


def stage_names(comparison: Comparison) -> list[str]:
    return [stage.name for stage in comparison.spec.stages]


def stream_capacity(column: CloudColumn) -> str:
    stream = column.stream
    if not stream:
        return "-"
    return (f"{column.totals()['stream_units']}: {stream['capacity_records_per_second']:,.0f} rec/s, "
            f"{stream['capacity_bytes_per_second'] / 1048576:,.1f} MiB/s")


def stage_capacity(column: CloudColumn, name: str) -> str:
    """"capacity vs demand" and how: e.g. "4,000 / 1,500 rec/s (12 x 500/inv)"."""
    stage = column.stages.get(name)
    if not stage:
        return "-"
    if not stage["demand_records_per_second"]:
        return f"{stage['concurrency']:,} concurrent (no rows)"
    return (f"{stage['capacity_records_per_second']:,.0f} / {stage['demand_records_per_second']:,.0f} rec/s "
            f"({stage['concurrency']:,} x {stage['records_per_invocation']:,.0f}/inv)")


def latency_text(column: CloudColumn) -> str:
    from pipeline.compare import _seconds

    latency = column.latency
    if latency is None:
        return "-"
    return f"~{_seconds(latency.typical_s)} (max {_seconds(latency.max_s)}): {' -> '.join(latency.path)}"


def sizing_reasoning(column: CloudColumn) -> list[str]:
    lines = list(column.stream.get("reasoning", [])) if column.stream else []
    for name, stage in column.stages.items():
        lines.extend(f"{name}: {line}" for line in stage.get("reasoning", []))
    return lines


def cost_lines_by_item(comparison: Comparison) -> dict[str, dict[str, float]]:
    """Billing line -> cloud -> monthly USD."""
    items: dict[str, dict[str, float]] = {}
    for column in comparison.columns:
        for line in column.cost.lines if column.cost else []:
            items.setdefault(line.item, {}).setdefault(column.cloud, 0.0)
            items[line.item][column.cloud] += line.monthly_usd
    return items


# ---- Markdown --------------------------------------------------------------------------


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def markdown(comparison: Comparison) -> str:
    clouds = comparison.columns
    head = "| | " + " | ".join(f"{c.title} ({c.location})" for c in clouds) + " |"
    rule = "|---|" + "---|" * len(clouds)
    out = [f"## {comparison.pipeline} ({comparison.stack}): AWS, GCP and Azure side by side", ""]
    out += [f"- {line}" for line in comparison.verdicts()] + ["", head, rule]
    for label, values in totals_rows(comparison):
        out.append(f"| **{label}** | " + " | ".join(_md(values[c.cloud]) for c in clouds) + " |")
    out += ["", "### By role", "", head, rule]
    for row in role_rows(comparison):
        cells = []
        for c in clouds:
            lines = row.cells.get(c.cloud, [])
            if row.cost.get(c.cloud):
                lines = [*lines, f"**${row.cost[c.cloud]:,.2f}/month**"]
            cells.append(_md("\n".join(lines)) or "-")
        out.append(f"| **{row.kind}** `{row.key}` | " + " | ".join(cells) + " |")
    out += ["", "### Monthly cost by billing line (USD, 730 h)", "", head, rule]
    for item, per_cloud in sorted(cost_lines_by_item(comparison).items()):
        out.append(f"| {_md(item)} | " + " | ".join(f"{per_cloud[c.cloud]:,.2f}" if c.cloud in per_cloud else "" for c in clouds) + " |")
    free = "with" if comparison.free_tier else "without"
    out += ["", f"_Offline estimate {free} free tiers, list prices from each backend's price sheet; 730 hours a month._", ""]
    return "\n".join(out)


# ---- HTML ------------------------------------------------------------------------------


def cost_chart_svg(comparison: Comparison, width: int = 760) -> str:
    """Stacked horizontal bars: monthly cost by role group, one bar per cloud (no JavaScript)."""
    priced = [c for c in comparison.columns if c.cost]
    groups = list(dict.fromkeys(CHART_GROUPS.values()))
    kinds = dict(comparison.roles())
    top = max((c.cost.total for c in priced if c.cost), default=0.0) or 1.0
    bar_h, left, label_w = 28, 90, 110
    scale = (width - left - label_w) / top
    height = 40 + len(priced) * (bar_h + 14) + 40
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="Monthly cost by role and cloud">',
             '<style>text{font:12px "DejaVu Sans",sans-serif}</style>']
    for i, column in enumerate(priced):
        assert column.cost is not None
        y = 30 + i * (bar_h + 14)
        parts.append(f'<text x="0" y="{y + 18}">{escape(column.title)}</text>')
        by_group: dict[str, float] = {}
        for role, usd in column.cost.by_role().items():
            group = CHART_GROUPS.get(kinds.get(role, ""), "other")
            by_group[group] = by_group.get(group, 0.0) + usd
        x = float(left)
        for g, group in enumerate([*groups, "other"]):
            usd = by_group.get(group, 0.0)
            if usd <= 0:
                continue
            w = usd * scale
            color = CHART_COLORS[g % len(CHART_COLORS)]
            parts.append(f'<rect x="{x:.1f}" y="{y}" width="{max(w, 1):.1f}" height="{bar_h}" fill="{color}">'
                         f'<title>{escape(column.title)} {escape(group)}: ${usd:,.2f}</title></rect>')
            x += w
        parts.append(f'<text x="{x + 6:.1f}" y="{y + 18}">${column.cost.total:,.2f}</text>')
    legend_y = 30 + len(priced) * (bar_h + 14) + 10
    for g, group in enumerate(groups[:-1]):
        lx = left + g * 92
        parts.append(f'<rect x="{lx}" y="{legend_y}" width="10" height="10" fill="{CHART_COLORS[g % len(CHART_COLORS)]}"/>'
                     f'<text x="{lx + 14}" y="{legend_y + 10}">{escape(group)}</text>')
    parts.append("</svg>")
    return "".join(parts)


_CSS = """
body{font-family:"DejaVu Sans",Arial,sans-serif;margin:24px;color:#111827;background:#fff}
h1{font-size:22px;margin:0 0 8px} h2{font-size:17px;margin:28px 0 8px}
table{border-collapse:collapse;width:100%;font-size:12px} th,td{border:1px solid #d1d5db;padding:6px 8px;vertical-align:top;text-align:left}
th{background:#f3f4f6} td.role{white-space:nowrap;font-weight:bold} .kind{color:#6b7280;font-weight:normal;display:block}
ul.verdict li{margin:4px 0} .cost{font-weight:bold;color:#065f46} .diagram{overflow-x:auto;border:1px solid #e5e7eb;margin:8px 0;padding:8px}
.diagram svg{max-width:100%;height:auto} .note{color:#6b7280;font-size:12px}
"""


def html(comparison: Comparison, diagrams: dict[str, str]) -> str:
    """One self-contained page: verdicts, totals, the role table, diagrams and the cost chart."""
    clouds = comparison.columns
    head = "<tr><th></th>" + "".join(f'<th class="cloud" data-cloud="{c.cloud}">{escape(c.title)} <span class="kind">{escape(c.location)}</span></th>'
                                     for c in clouds) + "</tr>"
    totals = "".join(f"<tr><td class='role'>{escape(label)}</td>" + "".join(f"<td>{escape(values[c.cloud])}</td>" for c in clouds) + "</tr>"
                     for label, values in totals_rows(comparison))
    rows = []
    for row in role_rows(comparison):
        cells = []
        for c in clouds:
            items = "<br>".join(escape(line) for line in row.cells.get(c.cloud, [])) or "-"
            if row.cost.get(c.cloud):
                items += f"<br><span class='cost'>${row.cost[c.cloud]:,.2f}/month</span>"
            cells.append(f"<td>{items}</td>")
        rows.append(f"<tr><td class='role'>{escape(row.key)}<span class='kind'>{escape(row.kind)}</span></td>{''.join(cells)}</tr>")
    items = "".join(f"<tr><td>{escape(item)}</td>" + "".join(f"<td>{per[c.cloud]:,.2f}</td>" if c.cloud in per else "<td></td>" for c in clouds) + "</tr>"
                    for item, per in sorted(cost_lines_by_item(comparison).items()))
    pictures = "".join(f"<h2>{escape(next(c.title for c in clouds if c.cloud == cloud))} architecture</h2><div class='diagram'>{svg}</div>"
                       for cloud, svg in diagrams.items())
    verdicts = "".join(f"<li>{escape(v)}</li>" for v in comparison.verdicts())
    free = "with" if comparison.free_tier else "without"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(comparison.pipeline)}: cloud comparison</title><style>{_CSS}</style></head>
<body>
<h1>{escape(comparison.pipeline)} ({escape(comparison.stack)}): {" vs ".join(escape(c.title) for c in clouds)}</h1>
<ul class="verdict">{verdicts}</ul>
<h2>Totals and limits</h2><table id="totals">{head}{totals}</table>
<h2>Monthly cost by role and cloud</h2><div id="cost-chart">{cost_chart_svg(comparison)}</div>
<h2>By role</h2><table id="roles">{head}{''.join(rows)}</table>
<h2>Monthly cost by billing line (USD)</h2><table id="billing">{head}{items}</table>
{pictures}
<p class="note">Offline plans and estimates {free} free tiers from list prices in each backend's price sheet (730 hours a month).
Account and project ids are placeholders.</p>
</body></html>
"""
