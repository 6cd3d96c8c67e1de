"""The verdict tells the truth: what was priced and what was not, slower designs, orders an unverified price
decides, where the workload's numbers came from, and what the comparison cannot hold equal.

Comparisons are real (the bundled example, every backend, the mock engine); plans are shared between tests
through one `PlanReuse`, the same plan source `compare --sweep` uses (tests/test_sweep.py proves it changes
nothing a comparison says).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import workload
from pipeline.compare import Comparison, compare_point
from pipeline.cost import CostEstimate, Price
from pipeline.spec.load import load_spec
from pipeline.sweep import PlanReuse

ROOT = Path(__file__).parents[1]
EXAMPLE = ROOT / "stacks" / "transactions" / "pipeline.yaml"
SCORING = ROOT / "stacks" / "stream-scoring" / "pipeline.yaml"
CLOUDS = ["aws", "gcp", "azure"]
PLANS = PlanReuse()
EXE = shutil.which("pipeline", path=str(Path(sys.executable).parent)) or "pipeline"


def at(rate: float, stack: str = "dev", spec: Path = EXAMPLE) -> Comparison:
    loaded = workload.with_value(load_spec(spec, stack), "records_per_second", rate)
    return compare_point(loaded, CLOUDS, False, PLANS, None)


def test_a_fractional_rate_reads_as_itself() -> None:
    headline = at(0.3).verdicts()[0]
    assert headline.startswith("Cheapest for 0.3 records/s of 700 B"), headline
    assert "for 0 records/s" not in headline


def test_a_cloud_that_cannot_carry_the_load_is_named_as_not_priced() -> None:
    verdicts = at(50_000).verdicts()
    assert "Azure not priced (cannot run this spec, below)" in verdicts[0], verdicts[0]
    reason = next(v for v in verdicts if v.startswith("Azure cannot run this spec, so it is not priced"))
    assert "workload.records_per_second: the workload needs 63 throughput units" in reason and "Azure: the" not in reason


def test_a_design_slower_than_the_spec_is_named_with_the_window_it_misses() -> None:
    comparison = at(10)
    # every cloud's design honours the spec's 5 s window at 10 rec/s (GCP closes its batch files by the window)
    assert not [v for v in comparison.verdicts() if "slower delivery" in v]
    gcp = next(c for c in comparison.columns if c.cloud == "gcp")
    gcp.stages["preprocess"] = {**gcp.stages["preprocess"], "latency_s": 32.0, "latency_max_s": 70.0}  # a design that does not
    slower = [v for v in comparison.verdicts() if "priced for slower delivery" in v]
    assert slower == ["GCP is priced for slower delivery: preprocess waits ~32 s (up to 70 s) for a batch at this load; the spec "
                      "asks ≤5 s (max_batching_window_s). A design as fast is not priced."], slower


def test_an_order_that_rests_on_prices_marked_to_verify_says_so() -> None:
    close = at(44)  # AWS and GCP within cents of each other here; GCP bills ~$8 at prices marked to verify
    line = next(v for v in close.verdicts() if v.startswith("An unverified price decides the order"))
    gcp = next(c for c in close.columns if c.cloud == "gcp")
    assert gcp.verify_usd > 1 and f"${gcp.verify_usd:,.2f} GCP bills at prices marked to verify" in line
    assert not [v for v in at(1500, "prod").verdicts() if "unverified" in v]  # AWS leads by hundreds of dollars there


def test_the_unverified_rule_compares_the_gap_with_the_unverified_share() -> None:
    comparison = at(1500, "prod")
    aws, gcp = (next(c for c in comparison.columns if c.cloud == name) for name in ("aws", "gcp"))
    assert aws.cost is not None and gcp.cost is not None
    gap = gcp.cost.total - aws.cost.total
    # the same comparison with one more line, priced at a figure marked to verify and larger than the gap, on the cheaper cloud
    extra = CostEstimate(aws.cost.cloud, aws.cost.region, False, list(aws.cost.lines), list(aws.cost.assumptions))
    extra.add("stream", "a doubtful line", 1, Price(gap * 0.6, "month", "https://example.com", "2026-01-01", verify=True))
    aws.cost = extra
    assert any(v.startswith("An unverified price decides the order: AWS is $") for v in comparison.verdicts())


def test_the_workload_says_which_numbers_are_defaults(tmp_path: Path) -> None:
    swept = workload.with_value(load_spec(EXAMPLE, "dev"), "records_per_second", 150)
    headline = compare_point(swept, CLOUDS, False, PLANS, "records_per_second").verdicts()[0]
    assert "(records_per_second from --sweep; the rest from the spec; defaults: score.output_ratio 1)" in headline, headline
    plain = compare_point(load_spec(EXAMPLE, "dev"), CLOUDS, False, PLANS, None).verdicts()[0]
    assert "(from the spec; defaults: score.output_ratio 1)" in plain, plain
    (tmp_path / "h.py").write_text("def f(rows, context):\n    return []\n")
    base = "name: partial\nstages: [{name: pre, handler: h.py:f, trigger: {stream: {}}}]\nclouds: {gcp: {project: partial-demo}}\n"
    (tmp_path / "pipeline.yaml").write_text(base + "workload: {records_per_second: 20, stages: {pre: {ms_per_record: 0.5}}}\n")
    partial = compare_point(load_spec(tmp_path / "pipeline.yaml"), ["aws"], False, PLANS, None).workload_text()
    assert partial == "20 records/s of 1,024 B (from the spec; defaults: record_bytes 1,024, pre.ms_per_invocation 100, pre.output_ratio 1)"
    (tmp_path / "pipeline.yaml").write_text(base)
    none = compare_point(load_spec(tmp_path / "pipeline.yaml"), ["aws"], False, PLANS, None).workload_text()
    assert none.endswith("(the default workload: the spec states none, set `workload:` for yours)"), none


def test_the_assumptions_state_the_cpu_behind_each_stage_and_each_clouds_data_protection() -> None:
    lines = at(1500, "prod").assumptions()
    cpu = next(line for line in lines if "vCPU" in line)
    # 1,024 MB: Lambda ~0.58 vCPU, gen2 0.583, Flex runs its 2,048 MB instance (1 vCPU)
    assert "score at 1,024 MB: AWS 0.58 vCPU, GCP 0.58 vCPU, Azure 1 vCPU (2,048 MB instance)" in cpu, cpu
    kept = next(line for line in lines if "recoverable" in line)
    assert re.search(r"AWS: .*7 days.*GCP: .*7 days.*Azure: .*7 days", kept), kept


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "80", "TERM": "dumb"}
    env.pop("FORCE_COLOR", None)
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, env=env, timeout=300, check=False)


def test_summary_rows_are_true_for_the_plan_they_describe() -> None:
    result = run("compare", SCORING, "--stack", "dev", "--no-cache")
    assert result.returncode == 0, result.stderr
    rows = {line[:26].strip(): line[26:].split() for line in result.stdout.splitlines() if line.startswith("  ")}
    # one limit per trigger kind: GCP's 9 minutes bind stream stages, its schedules may run 30, its HTTP stages an hour
    assert rows["Max run, stream"][2:4] == ["9", "min"] and rows["Max run, schedule"][2:4] == ["30", "min"], rows
    assert rows["Max run, HTTP"][4:6] == ["4", "min"]  # Azure answers HTTP within 230 s
    # a path per destination: the 15-minute schedule no longer hides how fast the stream is processed
    assert {"Latency → preprocess", "Latency → score-batch", "Latency → score-api"} <= set(rows), rows
    assert float(rows["Latency → preprocess"][0]) < 60 and rows["Latency → score-batch"][1] == "min"
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    verdict = result.stdout[result.stdout.rindex("Verdict"):]
    assert "defaults: score-batch.output_ratio 1, score-api.output_ratio 1" in " ".join(verdict.split())


@pytest.mark.parametrize(("spec", "ends"), [(EXAMPLE, {"score"}), (SCORING, {"preprocess", "score-batch", "score-api"})],
                         ids=["transactions", "stream-scoring"])
def test_a_stage_read_only_by_a_schedule_ends_a_latency_path(spec: Path, ends: set[str]) -> None:
    comparison = compare_point(load_spec(spec, "dev"), ["aws"], False, PLANS, None)
    assert {latency.path[-1] for latency in comparison.columns[0].latency_paths} == ends
