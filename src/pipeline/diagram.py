"""Architecture diagrams of a plan: one node per role (with its real resource names), edges for
data flow, triggers and failures, laid out by Graphviz's `dot`.

Two views, because one picture of ~80 resources is unreadable at 100 % zoom:
* the data path: stream, archive, buckets, triggers, functions, dead letters, with edge labels
  saying what the cloud really does (records per invocation as delivered, not as asked for);
* the identity view: each stage's identity, what it may read or write, and the function it runs.
Edges come from the spec and the orchestrator's role keys, so they are the same on every cloud;
only the resources inside each node differ. Within a node the main resource comes first and a
bucket's settings (encryption, lifecycle, policies) are collapsed unless `detail` is asked for.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from collections.abc import Mapping
from html import escape
from typing import Any

from pipeline.errors import PipelineError
from pipeline.plan import Plan, PlannedResource, short_type
from pipeline.spec.model import PipelineSpec, StageSpec

MAX_LINES_PER_NODE = 6
_KIND_STYLE = {
    "Stream": "#fde68a",
    "Archive": "#fef3c7",
    "Bucket": "#bfdbfe",
    "Artifact": "#dbeafe",
    "Function": "#bbf7d0",
    "StreamTrigger": "#e9d5ff",
    "ObjectTrigger": "#e9d5ff",
    "ScheduleTrigger": "#e9d5ff",
    "Identity": "#fecaca",
    "DeadLetter": "#fca5a5",
    "Observability": "#e5e7eb",
    "Platform": "#f3f4f6",
}
VIEWS = ("all", "data", "identity")
_DATA_KINDS = {"Stream", "Archive", "Bucket", "Artifact", "Function", "StreamTrigger", "ObjectTrigger", "ScheduleTrigger", "DeadLetter"}
_IDENTITY_KINDS = {"Identity", "Function", "Stream", "Bucket"}
_COLLAPSED_KINDS = {"Bucket"}  # a bucket's settings resources say little in a picture


def delivered(cloud: Mapping[str, Any]) -> dict[str, float]:
    """Records per invocation each stream stage really gets on this cloud, from a comparison's
    `clouds.<cloud>` JSON (`stages.<stage>.records_per_invocation`); empty when not known."""
    stages = cloud.get("stages") or {}
    return {name: float(info["records_per_invocation"]) for name, info in stages.items()
            if isinstance(info, Mapping) and info.get("records_per_invocation") is not None}


def _source(stage: StageSpec) -> str | None:
    """The stage or bucket whose objects a stage reads (objects triggers; schedule or HTTP stages over accumulated rows)."""
    return stage.trigger.source


def _batch_label(stage: str, batch_size: int, per_invocation: Mapping[str, float]) -> str:
    if stage in per_invocation:
        n = per_invocation[stage]
        return "1 record per invocation" if n == 1 else f"{n:,.0f} records per invocation"
    return f"batches of up to {batch_size}"


def edges(spec: PipelineSpec, per_invocation: Mapping[str, float] | None = None) -> list[tuple[str, str, str, str]]:
    """(from role, to role, label, style) for the pipeline's data flow and control."""
    per_invocation = per_invocation or {}
    result = []
    if spec.stream is not None and spec.stream.archive:
        result += [("stream", "raw-archive", "records", "solid"), ("raw-archive", "raw-bucket", "raw/", "solid")]
    for stage in spec.stages:
        name, trigger = stage.name, stage.trigger
        source = _source(stage)
        if trigger.stream:
            result.append(("stream", f"{name}-trigger", _batch_label(name, trigger.stream.batch_size, per_invocation), "solid"))
        elif trigger.objects and source:
            result.append((f"{source}-bucket", f"{name}-trigger", f"each new {source}/ object", "solid"))
        elif source:  # a schedule that reads what accumulated since its last run
            result.append((f"{source}-bucket", f"{name}-trigger", f"{source}/ objects since the last run", "dotted"))
        result += [
            (f"{name}-trigger", f"{name}-function", "invokes", "bold"),
            (f"{name}-function", f"{name}-bucket", f"{name}/", "solid"),
            (f"{name}-function", "dead-letter-bucket", "poison records", "dashed"),
            (f"{name}-trigger", f"{name}-dead-letter", "after retries", "dashed"),
            (f"{name}-identity", f"{name}-function", "runs as", "dotted"),
        ]
        if stage.model:
            result.append(("artifacts-bucket", f"{name}-function", "model", "dotted"))
    return result


def access_edges(spec: PipelineSpec) -> list[tuple[str, str, str, str]]:
    """(identity role, resource role, what it may do, style): the grants the orchestrator makes."""
    result = []
    for stage in spec.stages:
        identity, trigger = f"{stage.name}-identity", stage.trigger
        result += [(identity, f"{stage.name}-function", "used by", "bold"),
                   (identity, f"{stage.name}-bucket", f"write {stage.name}/", "solid"),
                   (identity, "dead-letter-bucket", f"write {stage.name}/", "dashed")]
        source = _source(stage)
        if trigger.stream:
            result.append((identity, "stream", "read", "solid"))
        elif source:
            result.append((identity, f"{source}-bucket", f"read {source}/", "solid"))
        if stage.model:
            result.append((identity, "artifacts-bucket", "read the model", "dotted"))
    return result


def _node_rows(resources: list[PlannedResource], kind: str, detail: bool, grants: frozenset[str]) -> str:
    """A node's rows: each resource's type in bold over its physical name; a bucket's settings and
    every grant collapsed into one counted line unless `detail`."""
    if detail:
        shown, folded = resources, []
    else:
        plain = [r for r in resources if r.type not in grants]
        shown = plain[:1] if kind in _COLLAPSED_KINDS else plain[:MAX_LINES_PER_NODE]
        folded = [r for r in resources if r not in shown]
    rows = "".join(f'<tr><td align="left" balign="left"><b>{escape(short_type(r.type))}</b><br/>'
                   f'<font point-size="10" color="#374151">{escape(r.physical_name[:64])}</font></td></tr>' for r in shown)
    if folded:
        counts = Counter("setting" if kind in _COLLAPSED_KINDS and r.type not in grants else short_type(r.type) for r in folded)
        text = ", ".join(f"{n} {what}{'s' if n > 1 and what == 'setting' else ''}" if what == "setting" else f"{n}x {what}" for what, n in counts.items())
        rows += f'<tr><td align="left"><i>+ {escape(text)}</i></td></tr>'
    return rows


def to_dot(plan: Plan, spec: PipelineSpec, *, view: str = "all", detail: bool = False, delivered: Mapping[str, float] | None = None) -> str:
    """Graphviz source: HTML-like labels list each role's resources by type and physical name.

    `view`: "data", "identity" or "all"; `delivered`: records per invocation per stream stage (see
    `delivered`)."""
    from pipeline.backend import backend_class

    if view not in VIEWS:
        raise ValueError(f"view must be one of {', '.join(VIEWS)}")
    kinds = _DATA_KINDS | {"Identity"} if view == "all" else _DATA_KINDS if view == "data" else _IDENTITY_KINDS
    what = {"all": "", "data": ": data path", "identity": ": identities and access"}[view]
    lines = [
        "digraph pipeline {",
        '  graph [rankdir=LR, fontname="DejaVu Sans", fontsize=14, nodesep=0.3, ranksep=0.6,'
        f' label="{escape(plan.pipeline)} ({escape(plan.stack)}) on {plan.cloud.upper()} {escape(plan.location)}{what}", labelloc=t];',
        '  node [shape=plaintext, fontname="DejaVu Sans", fontsize=11];',
        '  edge [fontname="DejaVu Sans", fontsize=10, color="#4b5563"];',
    ]
    by_role = plan.by_role()
    drawn = set()
    for key, kind in plan.roles():
        if kind not in kinds or key not in by_role:
            continue
        if view == "identity" and kind == "Bucket" and key in ("raw-bucket",):
            continue  # no stage identity touches the raw archive
        grants = backend_class(plan.cloud).grant_types
        rows = _node_rows(plan.role_resources(key, grants), kind, detail, grants)
        color = _KIND_STYLE.get(kind, "#ffffff")
        label = (f'<table border="0" cellborder="0" cellspacing="0" cellpadding="3" bgcolor="{color}">'
                 f'<tr><td align="left"><font point-size="12"><b>{escape(kind)}: {escape(key)}</b></font></td></tr>{rows}</table>')
        lines.append(f'  "{key}" [label=<{label}>];')
        drawn.add(key)
    if view == "identity":
        links = access_edges(spec)
    else:
        links = [e for e in edges(spec, delivered) if view == "all" or not e[0].endswith("-identity")]
        links += [(key, "artifacts-bucket", "stored in", "dotted") for key, kind in plan.roles() if kind == "Artifact"]
    for source, target, text, style in links:
        if source in drawn and target in drawn:
            color = ', color="#b91c1c", fontcolor="#b91c1c"' if style == "dashed" else ""
            lines.append(f'  "{source}" -> "{target}" [label="{escape(text)}", style={style}{color}];')
    lines.append("}")
    return "\n".join(lines)


def render(dot_source: str, fmt: str) -> bytes:
    """Lay out with Graphviz; a clear error when it is not installed."""
    exe = shutil.which("dot")
    if exe is None:
        raise PipelineError("Graphviz is not installed: install it (Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz)")
    result = subprocess.run([exe, f"-T{fmt}"], input=dot_source.encode(), capture_output=True, timeout=60, check=False)
    if result.returncode != 0:
        raise PipelineError(f"Graphviz failed: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout


def svg(plan: Plan, spec: PipelineSpec, **options: Any) -> str:
    """An SVG for inlining in HTML (no XML prolog or DOCTYPE)."""
    text = render(to_dot(plan, spec, **options), "svg").decode("utf-8")
    return text[text.index("<svg"):]


def report_views(plan: Plan, spec: PipelineSpec, per_invocation: Mapping[str, float] | None = None) -> dict[str, str]:
    """The pictures the HTML report shows for one cloud: {"data": svg, "identity": svg}."""
    return {view: svg(plan, spec, view=view, delivered=per_invocation) for view in ("data", "identity")}
