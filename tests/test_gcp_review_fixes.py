"""Deploy-breakers and data loss an expert review found in the GCP backend, each proven on a plan from Pulumi's mock
engine (the resources and inputs `pulumi up` would send)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from pipeline.plan import Plan, PlannedResource
from pipeline.planner import plan
from pipeline.spec.load import load_spec

HANDLER = "def handle(rows, context):\n    return rows\n"


def gcp_plan(tmp_path: Path, body: str) -> Plan:
    (tmp_path / "h.py").write_text(HANDLER)
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(textwrap.dedent(body) + "clouds: {gcp: {project: review-demo-1}}\n")
    return plan(load_spec(spec), "gcp")


def of_type(result: Plan, kind: str) -> list[PlannedResource]:
    return [r for r in result.cloud_resources if r.type == kind]


def bucket(result: Plan, role: str) -> dict[str, Any]:
    [found] = [r for r in of_type(result, "gcp:storage/bucket:Bucket") if r.role == role]
    return found.inputs


def deletes(inputs: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule["condition"] for rule in inputs["lifecycleRules"] if rule["action"]["type"] == "Delete"]


def test_a_window_stage_bucket_expires_its_outputs_not_its_watermark(tmp_path: Path) -> None:
    """`_state/<stage>/` (watermark, lease) must survive a source quieter than the retention: only `<stage>/` expires."""
    result = gcp_plan(tmp_path, """
        name: windows
        stream: {}
        stages:
          - {name: prep, handler: "h.py:handle", trigger: {stream: {}}}
          - {name: now, handler: "h.py:handle", trigger: {schedule: "rate(5 minutes)", from: prep}, memory_mb: 2048}
    """)
    [window] = deletes(bucket(result, "now-bucket"))
    assert window["matchesPrefixes"] == ["now/"] and window["age"] >= 1
    # a bucket with no state still expires everything it holds
    [plain] = deletes(bucket(result, "prep-bucket"))
    assert "matchesPrefixes" not in plain
