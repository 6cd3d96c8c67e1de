"""Architecture diagrams of a plan: one node per role (with its real resource names), edges for
data flow, triggers and failures, laid out by Graphviz's `dot`.

The edges come from the spec and the orchestrator's role keys, so they are the same on every
cloud; only the resources inside each node differ.
"""

from __future__ import annotations

import shutil
import subprocess
from html import escape

from pipeline.errors import PipelineError
from pipeline.plan import Plan, short_type
from pipeline.spec.model import PipelineSpec

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


def edges(spec: PipelineSpec) -> list[tuple[str, str, str, str]]:
    """(from role, to role, label, style) for the pipeline's data flow and control."""
    result = []
    if spec.stream is not None and spec.stream.archive:
        result += [("stream", "raw-archive", "records", "solid"), ("raw-archive", "raw-bucket", "raw/", "solid")]
    for stage in spec.stages:
        name, trigger = stage.name, stage.trigger
        if trigger.stream:
            result.append(("stream", f"{name}-trigger", f"batches of {trigger.stream.batch_size}", "solid"))
        elif trigger.objects:
            source = trigger.objects.from_stage
            result.append((f"{source}-bucket", f"{name}-trigger", f"new {source}/ objects", "solid"))
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


def to_dot(plan: Plan, spec: PipelineSpec) -> str:
    """Graphviz source: HTML-like labels list each role's resources by type and physical name."""
    lines = [
        "digraph pipeline {",
        '  graph [rankdir=LR, fontname="DejaVu Sans", fontsize=11, nodesep=0.25, ranksep=0.5,'
        f' label="{escape(plan.pipeline)} ({escape(plan.stack)}) on {plan.cloud.upper()} {escape(plan.location)}", labelloc=t];',
        '  node [shape=plaintext, fontname="DejaVu Sans", fontsize=9];',
        '  edge [fontname="DejaVu Sans", fontsize=8, color="#4b5563"];',
    ]
    by_role = plan.by_role()
    drawn = set()
    for key, kind in plan.roles():
        if kind in ("Platform", "Observability") or key not in by_role:
            continue
        resources = by_role[key]
        rows = "".join(
            f'<tr><td align="left"><b>{escape(short_type(r.type))}</b> {escape(r.physical_name[:60])}</td></tr>'
            for r in resources[:MAX_LINES_PER_NODE]
        )
        if len(resources) > MAX_LINES_PER_NODE:
            rows += f'<tr><td align="left"><i>+{len(resources) - MAX_LINES_PER_NODE} more</i></td></tr>'
        color = _KIND_STYLE.get(kind, "#ffffff")
        label = (f'<table border="1" cellborder="0" cellspacing="0" cellpadding="3" bgcolor="{color}">'
                 f'<tr><td align="left"><font point-size="10"><b>{escape(kind)}: {escape(key)}</b></font></td></tr>{rows}</table>')
        lines.append(f'  "{key}" [label=<{label}>];')
        drawn.add(key)
    links = edges(spec) + [(key, "artifacts-bucket", "stored in", "dotted") for key, kind in plan.roles() if kind == "Artifact"]
    for source, target, text, style in links:
        if source in drawn and target in drawn:
            lines.append(f'  "{source}" -> "{target}" [label="{escape(text)}", style={style}];')
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


def svg(plan: Plan, spec: PipelineSpec) -> str:
    text = render(to_dot(plan, spec), "svg").decode("utf-8")
    return text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE so it can be inlined in HTML
