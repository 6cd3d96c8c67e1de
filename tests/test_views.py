"""The view model behind every comparison format, and the pieces of `diff`, on hand-made comparison JSON.

These run without planning, so they also pin down how the views use fields a comparison may
carry (per-stage capacity, latency, the workload, notes) before and after those appear.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pipeline.cli.output import json_errors_requested
from pipeline.diff import Threshold, diff, markdown
from pipeline.summary import latency_lines, sizing_reasoning, summarize


def comparison(**cloud_extra: Any) -> dict[str, Any]:
    """A two-cloud `compare --format json` object, small but complete."""
    def cloud(title: str, usd: float, capacity: float) -> dict[str, Any]:
        return {
            "title": title, "location": "here", "planned": True, "problems": [], "cost_error": "",
            "totals": {"resources": 10, "identities": 2, "permission_grants": 4, "monthly_usd": usd},
            "sizing": {"units": 1, "unit_name": "shard", "mode": "provisioned", "capacity_records_per_second": capacity, "reasoning": ["why"]},
            "limits": {"max_record_bytes": 1048576, "max_stage_timeout_s": 900, "max_retention_hours": 168,
                       "delivery": "at least once", "ordering": "per key", "poison_records": "dead-lettered"},
            "cost": {"lines": [{"role": "stream", "item": f"{title} stream", "quantity": 730, "unit": "hour", "unit_usd": usd / 730,
                                "monthly_usd": usd, "source": "https://example.com", "note": ""}], "assumptions": [f"{title} assumes"]},
            "cost_by_role": {"stream": usd},
            **cloud_extra.get(title, {}),
        }
    return {"schema_version": 1, "pipeline": "demo", "stack": "dev", "free_tier": False, "hours_per_month": 730,
            "clouds": {"aws": cloud("AWS", 10.0, 1000), "gcp": cloud("GCP", 30.0, 100)},
            "roles": [{"role": "stream", "kind": "Stream", "clouds": {
                "aws": [{"type": "aws:kinesis/stream:Stream", "name": "s-1", "logical": "demo-stream", "inputs_sha256": "a"}],
                "gcp": [{"type": "gcp:pubsub/topic:Topic", "name": "t-1", "logical": "demo-stream", "inputs_sha256": "b"}]}}],
            "verdicts": ["Cheapest: AWS at $10.00/month; GCP $30.00 (+$20.00, 200% more).", "GCP limit exceeded: 150 records/s exceed the sized capacity of 100 records/s"]}


def row(summary: Any, label: str) -> dict[str, tuple[str, str]]:
    found = next(r for r in summary.rows if r.label == label)
    return {cloud: (cell.text, cell.tone) for cloud, cell in found.cells.items()}


def test_summary_marks_the_cheapest_and_capacity_below_demand() -> None:
    summary = summarize(comparison(), records_per_second=150, record_bytes=700)
    assert row(summary, "Monthly cost") == {"aws": ("$10.00", "good"), "gcp": ("$30.00", "")}
    assert row(summary, "vs cheapest") == {"aws": ("cheapest", "good"), "gcp": ("+$20.00 (+200%)", "warn")}
    assert row(summary, "Stream rec/s") == {"aws": ("1,000 / 150", ""), "gcp": ("100 / 150", "bad")}
    assert summary.verdict[0].text == "Priced for 150 records/s of 700 B, 730 h/month, without free tiers."
    assert [f.tone for f in summary.verdict[1:]] == ["good", "bad"]
    assert summary.title == "demo (dev): AWS vs GCP"
    assert summary.notes["aws"].assumptions == ["AWS assumes"]


def test_summary_shows_stage_capacity_latency_workload_and_notes_when_the_comparison_has_them() -> None:
    stages = {"preprocess": {"capacity_records_per_second": 5000, "demand_records_per_second": 150, "records_per_invocation": 500},
              "score": {"capacity_records_per_second": 90, "demand_records_per_second": 150}}
    data = comparison(AWS={"stages": stages, "latency": {"end_to_end_s": 6.5, "end_to_end_max_s": 70, "path": ["stream", "preprocess"]},
                           "unpriced": ["KMS requests"], "verify": ["Firehose price"], "assumptions": ["a month is 730 h"]})
    data["workload"] = {"records_per_second": 2000, "record_bytes": 1024, "from_spec": False}
    summary = summarize(data)
    assert row(summary, "preprocess rec/s")["aws"] == ("5,000 / 150", "")
    assert row(summary, "score rec/s") == {"aws": ("90 / 150", "bad"), "gcp": ("-", "")}
    assert row(summary, "Latency (e2e)") == {"aws": ("6.5 s (≤70 s)", ""), "gcp": ("-", "")}
    assert row(summary, "Stream rec/s")["gcp"] == ("100 / 2,000", "bad")  # demand comes from the workload field
    assert [f.text for f in summary.verdict] == data["verdicts"]  # newer comparisons name the workload in the verdict itself
    assert "2,000 records/s of 1 KiB (the default: the spec sets no workload)" in summary.workload
    assert latency_lines(data["clouds"]["aws"]) == ["~6.5 s (max 70 s): stream -> preprocess"]
    notes = summary.notes["aws"]
    assert notes.unpriced == ["KMS requests"] and notes.verify == ["Firehose price"] and notes.assumptions == ["a month is 730 h", "AWS assumes"]


def test_comparisons_without_a_stream_have_no_stream_rows_and_v2_reasoning_is_read() -> None:
    data = comparison()
    for cloud in data["clouds"].values():
        del cloud["sizing"]
        cloud["stream"] = None
        cloud["stages"] = {"process": {"capacity_records_per_second": 50, "demand_records_per_second": 10, "reasoning": ["12 concurrent"]},
                           "report": {"capacity_records_per_second": 5, "demand_records_per_second": 0}}
    summary = summarize(data)
    assert [r.label for r in summary.section("capacity")] == ["process rec/s", "report rec/s"]
    assert row(summary, "report rec/s")["aws"] == ("no rows", "")
    assert sizing_reasoning(data["clouds"]["aws"]) == ["process: 12 concurrent"]


def test_a_cloud_that_cannot_plan_reads_as_such() -> None:
    data = comparison()
    data["clouds"]["gcp"].update(planned=False, problems=["timeout too long"], totals={}, cost=None, cost_by_role={})
    summary = summarize(data, records_per_second=1)
    assert row(summary, "Monthly cost")["gcp"] == row(summary, "Resources")["gcp"] == ("cannot plan", "bad")
    assert "vs cheapest" not in [r.label for r in summary.rows]


def test_a_cloud_without_prices_reads_as_unknown_cost() -> None:
    data = comparison()
    data["clouds"]["gcp"].update(cost=None, cost_by_role={}, cost_error="no price sheet for mars-1")
    data["clouds"]["gcp"]["totals"]["monthly_usd"] = None
    summary = summarize(data, records_per_second=1)
    assert row(summary, "Monthly cost") == {"aws": ("$10.00", ""), "gcp": ("unknown", "warn")}


@pytest.mark.parametrize(("text", "value", "percent"), [("10%", 10, True), ("5", 5, False), ("$12.50", 12.5, False), (" 0.5 % ", 0.5, True)])
def test_threshold_parses_usd_and_percent(text: str, value: float, percent: bool) -> None:
    assert Threshold.parse(text) == Threshold(value, percent)


@pytest.mark.parametrize("text", ["ten", "-5", "5$", "%", ""])
def test_threshold_rejects_what_is_not_an_amount(text: str) -> None:
    with pytest.raises(ValueError, match="not an amount"):
        Threshold.parse(text)


def test_threshold_counts_only_rises() -> None:
    assert Threshold(10, True).exceeded(11, 100) and not Threshold(10, True).exceeded(10, 100)
    assert not Threshold(0, True).exceeded(-50, 100) and Threshold(0, True).exceeded(1, 0)
    assert Threshold(5, False).exceeded(5.01, 1000) and not Threshold(5, False).exceeded(-100, 1000)


def test_diff_matches_resources_by_logical_name_and_prices_billing_lines() -> None:
    base = comparison()
    head = copy.deepcopy(base)
    aws_stream = head["roles"][0]["clouds"]["aws"][0]
    aws_stream.update(name="s-2", inputs_sha256="changed")  # renamed and changed: same logical resource
    head["roles"][0]["clouds"]["gcp"].append({"type": "gcp:pubsub/subscription:Subscription", "name": "sub", "logical": "demo-sub", "inputs_sha256": "c"})
    head["clouds"]["aws"]["cost"]["lines"][0]["monthly_usd"] = 11.5
    head["clouds"]["aws"]["totals"]["monthly_usd"] = 11.5
    result = diff(base, head, "before", "after")
    aws, gcp = result.clouds
    assert [(r.change, r.name) for r in aws.resources] == [("changed", "s-2")]
    assert [(r.change, r.type) for r in gcp.resources] == [("added", "gcp:pubsub/subscription:Subscription")]
    assert aws.delta == pytest.approx(1.5) and aws.change_text() == "+$1.50 (+15%)"
    assert [(x.item, x.delta) for x in aws.lines] == [("AWS stream", pytest.approx(1.5))]
    assert [c.cloud for c in result.over(Threshold(10, True))] == ["aws"] and not result.over(Threshold(2, False))
    data = result.to_dict(Threshold(1, False))
    assert data["fail_above"] == {"threshold": "$1.00", "exceeded": True, "clouds": ["aws"]}
    assert data["clouds"]["gcp"]["resources"] == {"added": 1, "removed": 0, "changed": 0}
    text = markdown(result, Threshold(10, True))
    assert "| AWS | $10.00 | $11.50 | **+$1.50 (+15%)** ⚠️ |" in text and "exceeds --fail-above 10% on AWS" in text


def test_diff_of_a_saved_file_without_digests_reports_no_false_changes() -> None:
    base = comparison()
    for cloud in base["roles"][0]["clouds"].values():
        for resource in cloud:
            del resource["inputs_sha256"], resource["logical"]
    head = comparison()
    for cloud in head["roles"][0]["clouds"].values():
        for resource in cloud:
            del resource["logical"]
    assert all(not c.resources for c in diff(base, head, "a", "b").clouds)


@pytest.mark.parametrize(("args", "wanted"), [
    (["plan", "--format", "json"], True), (["plan", "-f", "json"], True), (["plan", "--format=json"], True),
    (["deploy", "--json"], True), (["plan", "--format", "table"], False), (["run", "--", "--json"], False),
])
def test_json_is_recognised_on_a_raw_command_line(args: list[str], wanted: bool) -> None:
    assert json_errors_requested(args) is wanted
