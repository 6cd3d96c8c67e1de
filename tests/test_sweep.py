"""`compare --sweep`: every point is a plain comparison, plans are reused only within a design, crossovers are
narrowed and true, a cloud that cannot carry the load reads as such, and the chart reads in Chromium."""

from __future__ import annotations

import html as html_module
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import sweep, sweep_axis, workload
from pipeline.compare import _planned, compare, compare_point
from pipeline.errors import PipelineError
from pipeline.spec.load import load_spec
from pipeline.summary import amount

ROOT = Path(__file__).parents[1]
STACKS = ROOT / "stacks"
EXAMPLE = STACKS / "transactions" / "pipeline.yaml"
CLOUDS = ["aws", "gcp", "azure"]
EXE = shutil.which("pipeline", path=str(Path(sys.executable).parent)) or "pipeline"
# Each bundled stack, an overlay, and the fields a sweep of it varies.
BUNDLED = {
    "transactions": ("dev", "records_per_second=10..20000", "record_bytes=100..100000"),
    "stream-scoring": ("prod", "records_per_second=1..100000", "http.requests_per_second=0.1..1000"),
    "upload-processing": ("dev", "uploads.files_per_hour=0.1..10000", "uploads.records_per_file=10..1000000"),
}


def cli(*args: str | Path, columns: int = 80) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": str(columns), "TERM": "dumb"}
    env.pop("FORCE_COLOR", None)
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, env=env, timeout=600, check=False)


# ---- the axis ---------------------------------------------------------------------------------------


def test_a_range_is_log_spaced_in_round_numbers_from_end_to_end() -> None:
    loaded = load_spec(EXAMPLE, "dev")
    axis = sweep_axis.parse_axis("workload.records_per_second=10..20000", loaded, points=12)
    assert axis.field == "records_per_second" and axis.scale == "log" and len(axis.values) == 12
    assert axis.values[0] == 10 and axis.values[-1] == 20_000
    step = (20_000 / 10) ** (1 / 11)
    for low, high in itertools.pairwise(axis.values):
        assert step * 0.9 < high / low < step * 1.1, axis.values
    assert all(float(f"{v:.2g}") == v for v in axis.values[1:-1]), axis.values  # two significant digits: a number a spec would state
    assert sweep_axis.parse_axis("record_bytes=100,700,5000", loaded).values == (100, 700, 5000)
    linear = sweep_axis.parse_axis("records_per_second=100..1000", loaded, points=10, linear=True).values
    assert linear == (100, 200, 300, 400, 500, 600, 700, 800, 900, 1000)


@pytest.mark.parametrize(("text", "said"), [
    ("nosuch=1..2", "'nosuch' is not a workload field a sweep can vary; this spec's: records_per_second, record_bytes"),
    ("uploads.files_per_hour=1..10", "this spec has no uploads bucket, so uploads.files_per_hour changes nothing"),
    ("records_per_second=0..10", "a log-spaced range starts above 0"),
    ("records_per_second=50..10", "the range must rise"),
    ("records_per_second=1..2000000", "workload.records_per_second = 2,000,000 is not valid: Input should be less than or equal to 1000000"),
    ("record_bytes=1.4,1.2", "give at least two values"),
    ("records_per_second=ten..20", "'ten' is not a number"),
    ("records_per_second", "write FIELD=LOW..HIGH or FIELD=V1,V2,..."),
])
def test_a_bad_sweep_says_what_would_be_valid(text: str, said: str) -> None:
    with pytest.raises(PipelineError, match=re.escape(said)):
        sweep_axis.parse_axis(text, load_spec(EXAMPLE, "dev"))


def test_a_bad_sweep_is_a_usage_error_on_the_command_line() -> None:
    result = cli("compare", EXAMPLE, "--sweep", "records_per_second=0..10", "--format", "json")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    error = json.loads(result.stdout)["error"]
    assert error["kind"] == "usage" and "a log-spaced range starts above 0" in error["message"]
    lonely = cli("compare", EXAMPLE, "--points", "5")
    assert lonely.returncode == 2 and "add --sweep FIELD=LOW..HIGH" in lonely.stderr


# ---- every point is a plain comparison -----------------------------------------------------------------


@pytest.mark.parametrize("stack", sorted(BUNDLED))
def test_reusing_plans_within_a_design_changes_nothing_a_comparison_says(stack: str) -> None:
    """The same points planned afresh (what `compare` does) give the very same comparison, resources counted included."""
    overlay, *fields = BUNDLED[stack]
    loaded = load_spec(STACKS / stack / "pipeline.yaml", overlay)
    for text in fields:
        axis = sweep_axis.parse_axis(text, loaded, points=5)
        swept = sweep.run(loaded, CLOUDS, axis)
        assert swept.plans_made < len(swept.points) * len(CLOUDS), "a design's plan is made once"
        for point in swept.points:
            spec = loaded if point.spec else workload.with_value(loaded, axis.field, point.value)
            fresh = compare_point(spec, CLOUDS, False, _planned, None if point.spec else axis.field).to_dict()
            got = point.comparison.to_dict()
            assert got["clouds"] == fresh["clouds"], f"{stack} {axis.field}={point.value}"
            assert got["verdicts"] == fresh["verdicts"] and got["assumptions"] == fresh["assumptions"]
            assert [r["role"] for r in got["roles"]] == [r["role"] for r in fresh["roles"]]


def test_each_point_equals_compare_with_that_workload(tmp_path: Path) -> None:
    """Through the console script: the spec's own point is `compare --format json` itself; another point is a
    `compare` of the same spec stating that value (an overlay), every figure equal."""
    project = tmp_path / "transactions"
    shutil.copytree(EXAMPLE.parent, project, ignore=shutil.ignore_patterns(".pipeline", "__pycache__"))
    result = cli("compare", project / "pipeline.yaml", "--stack", "dev", "--sweep", "records_per_second=10..20000", "--points", "6",
                 "--format", "json", "--no-cache")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["kind"] == "sweep" and data["values"] == [10, 46, 210, 960, 4400, 20000]
    assert [p["value"] for p in data["points"]] == [10, 46, 150, 210, 960, 4400, 20000]  # the spec's own 150 among them
    own = next(p for p in data["points"] if p["spec"])
    plain = json.loads(cli("compare", project / "pipeline.yaml", "--stack", "dev", "--format", "json", "--no-cache").stdout)
    for key in ("roles", "definitions"):
        plain.pop(key)
    assert own["comparison"] == plain
    (project / "stacks" / "at46.yaml").write_text((project / "stacks" / "dev.yaml").read_text().replace("records_per_second: 150", "records_per_second: 46"))
    stated = json.loads(cli("compare", project / "pipeline.yaml", "--stack", "at46", "--format", "json", "--no-cache").stdout)
    point = next(p for p in data["points"] if p["value"] == 46)["comparison"]
    for cloud in CLOUDS:
        assert point["clouds"][cloud] == stated["clouds"][cloud], cloud
    # the verdicts differ only in where the rate came from
    assert [v.replace("records_per_second from --sweep; the rest from the spec", "from the spec") for v in point["verdicts"]] == stated["verdicts"]


# ---- crossovers, capacity, the terminal --------------------------------------------------------------


def test_the_crossover_is_narrowed_and_true() -> None:
    loaded = load_spec(EXAMPLE, "dev")
    swept = sweep.run(loaded, CLOUDS, sweep_axis.parse_axis("records_per_second=10..20000", loaded, points=12))
    [crossover] = swept.crossovers
    assert (crossover.before, crossover.after) == ("gcp", "aws")
    assert crossover.high / crossover.low <= sweep.BISECT_RATIO
    # a plain comparison on either side agrees
    below, above = (compare(workload.with_value(loaded, "records_per_second", v), CLOUDS) for v in (crossover.low, crossover.high))
    assert sweep.cheapest(below) == "gcp" and sweep.cheapest(above) == "aws"
    text = sweep.crossover_text(swept.axis, crossover, {"aws": "AWS", "gcp": "GCP", "azure": "Azure"})
    assert text.startswith(f"At ~{amount(crossover.high)} rec/s AWS becomes the cheapest (GCP below)"), text


def test_a_cloud_that_cannot_carry_the_load_reads_as_such_never_as_zero() -> None:
    result = cli("compare", EXAMPLE, "--stack", "prod", "--sweep", "records_per_second=1000..200000", "--points", "4", "--no-cache")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    top = next(line for line in lines if line.lstrip().startswith("200,000"))
    assert top.split()[-2:] == ["cannot", "carry"] or "cannot carry" in top, top
    assert "$0" not in result.stdout
    said = " ".join(result.stdout.split())
    assert "Azure cannot carry the load: workload.records_per_second: the workload needs" in said
    assert "an Event Hubs Standard namespace allows 40" in said
    data = json.loads(cli("compare", EXAMPLE, "--stack", "prod", "--sweep", "records_per_second=1000..200000", "--points", "4",
                          "--format", "json").stdout)
    last = data["points"][-1]
    assert last["carries"] == {"aws": True, "gcp": True, "azure": False}
    assert last["comparison"]["clouds"]["azure"]["totals"] == {} and last["comparison"]["clouds"]["azure"]["cost"] is None
    assert "throughput units" in last["design"]["azure"]["why"]


@pytest.mark.parametrize("stack", sorted(BUNDLED))
def test_compare_sweep_on_every_bundled_stack_fits_80_columns(stack: str) -> None:
    overlay, text, _ = BUNDLED[stack]
    result = cli("compare", STACKS / stack / "pipeline.yaml", "--stack", overlay, "--sweep", text)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.rstrip("\n").splitlines()
    assert max(len(line) for line in lines) <= 80, result.stdout
    assert len([line for line in lines if re.match(r"^\s*▸?\s*[0-9][0-9,.]*\s+(\$|cannot)", line)]) >= 12, result.stdout
    assert any(line.lstrip().startswith("▸") for line in lines), "the spec's own workload is marked"
    assert "Where the clouds cross" in result.stdout and "Traceback" not in result.stderr
    findings = " ".join(result.stdout[result.stdout.index("Where the clouds cross"):].split())
    assert "becomes the cheapest" in findings or "the clouds do not cross in this range" in findings


def test_the_example_shows_where_aws_overtakes_gcp() -> None:
    result = cli("compare", EXAMPLE, "--stack", "dev", "--sweep", "records_per_second=10..20000", "--points", "20")
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stdout.split())
    assert re.search(r"At ~2\d(\.\d)? rec/s AWS becomes the cheapest \(GCP below\): no design changes there, the costs cross", said), said
    assert re.search(r"prices marked to verify \(\$[0-9.]+ of GCP's bill\) can move it", said), said
    assert "falls as the load grows" not in said and "†" not in said  # every cloud's total grows; every design honours the window


def test_a_design_change_is_named_where_it_happens() -> None:
    result = cli("compare", EXAMPLE, "--stack", "dev", "--sweep", "records_per_second=0.05..2", "--points", "6")
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stdout.split())
    # AWS archives a trickle with Firehose and switches to its archiver function as soon as that is cheaper
    assert re.search(r"From ~[01]\.\d+ rec/s: AWS bills raw-archive: Firehose ingestion -> Lambda duration", said), said


def test_a_twenty_point_sweep_plans_each_design_once() -> None:
    loaded = load_spec(EXAMPLE, "dev")
    swept = sweep.run(loaded, CLOUDS, sweep_axis.parse_axis("records_per_second=10..20000", loaded, points=20))
    assert len(swept.points) == 21
    # one design per cloud over this range (their units are inputs, not resources)
    assert swept.plans_made == 3, swept.plans_made
    swept = sweep.run(loaded, CLOUDS, sweep_axis.parse_axis("records_per_second=0.05..20000", loaded, points=20))
    assert swept.plans_made == 4, swept.plans_made  # AWS: Firehose for a trickle, then the archiver function


# ---- the chart ----------------------------------------------------------------------------------------

MEASURE = r"""<script>
(function () {
  const svg = document.querySelector('#sweep-chart svg');
  const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  const r = {width: svg.getBoundingClientRect().width, page: document.documentElement.clientWidth};
  r.lines = [...svg.querySelectorAll('polyline.cloud-line')].map(l => ({cloud: l.dataset.cloud,
    xs: [...l.points].map(p => p.x), ys: [...l.points].map(p => p.y)}));
  r.xticks = [...svg.querySelectorAll('.x-tick')].map(t => [parseFloat(t.dataset.value), parseFloat(t.getAttribute('x'))]);
  r.crossovers = [...svg.querySelectorAll('.crossover')].map(g => [parseFloat(g.dataset.at), parseFloat(g.querySelector('line').getAttribute('x1'))]);
  r.labels = [...svg.querySelectorAll('.line-label')].map(t => ({cloud: t.dataset.cloud, box: box(t)}));
  r.cannot = [...svg.querySelectorAll('.cannot')].map(t => t.dataset.cloud);
  r.texts = [...svg.querySelectorAll('text')].map(box);
  r.svg = box(svg);
  const out = document.createElement('pre'); out.id = 'measured'; out.textContent = JSON.stringify(r); document.body.appendChild(out);
})();
</script>"""


def test_the_cost_vs_load_chart_reads_at_a_glance_in_chromium(tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None or shutil.which("dot") is None:
        if os.environ.get("CI"):
            pytest.fail("chromium and graphviz must be installed in CI")
        pytest.skip("needs chromium and graphviz")
    report = tmp_path / "report.html"
    result = cli("compare", EXAMPLE, "--stack", "prod", "--sweep", "records_per_second=1..200000", "--points", "14",
                 "--format", "html", "--output", report)
    assert result.returncode == 0, result.stderr
    data = json.loads(cli("compare", EXAMPLE, "--stack", "prod", "--sweep", "records_per_second=1..200000", "--points", "14", "--format", "json").stdout)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1800"]
    page = tmp_path / "measured.html"
    page.write_text(report.read_text(encoding="utf-8").replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    dom = subprocess.run([chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=True).stdout
    found = re.search(r'<pre id="measured">(.*?)</pre>', dom, re.S)
    assert found, "the measuring script did not run"
    seen = json.loads(html_module.unescape(found.group(1)))

    assert seen["width"] <= seen["page"], "the chart fits the page"
    # one line per cloud (Azure's stops where it cannot carry the load, marked with crosses instead of points at $0)
    assert sorted({line["cloud"] for line in seen["lines"]}) == sorted(CLOUDS)
    assert seen["cannot"] and set(seen["cannot"]) == {"azure"}
    for line in seen["lines"]:
        assert line["xs"] == sorted(line["xs"]), "points left to right"
    # a log axis: each decade takes the same width
    ticks = sorted(seen["xticks"])
    decades = [x for value, x in ticks if math.log10(value).is_integer()]
    gaps = [b - a for a, b in itertools.pairwise(decades)]
    assert len(gaps) >= 3 and max(gaps) - min(gaps) < 1, ticks
    # each crossover is drawn where it happens (log position between the ticks) and named by the JSON
    assert len(seen["crossovers"]) == len(data["crossovers"]) >= 1
    (first_value, first_x), (last_value, last_x) = ticks[0], ticks[-1]
    for at, x in seen["crossovers"]:
        expected = first_x + (last_x - first_x) * (math.log10(at) - math.log10(first_value)) / (math.log10(last_value) - math.log10(first_value))
        assert abs(x - expected) < 1.5, (at, x, expected)
    # every line is labelled at its end, labels apart from each other and inside the picture
    labels = [label["box"] for label in seen["labels"]]
    assert len(labels) == 3
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            assert a[3] <= b[1] or b[3] <= a[1] or a[2] <= b[0] or b[2] <= a[0], "line labels overlap"
    left, top, right, bottom = seen["svg"]
    assert all(left - 1 <= t[0] and t[2] <= right + 1 and top - 1 <= t[1] and t[3] <= bottom + 1 for t in seen["texts"]), "text outside the chart"


def test_a_sweep_is_answered_from_the_plan_cache_without_planning(tmp_path: Path) -> None:
    """The table, JSON and Markdown come from the sweep's JSON: an unchanged spec is answered byte for byte,
    without importing pydantic, Pulumi or a cloud SDK."""
    probe = ("import json, sys\nfrom pipeline.cli.app import main\ncode = 0\ntry:\n    main(ARGS)\nexcept SystemExit as exc:\n    code = exc.code\n"
             "heavy = sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in ('pydantic', 'pulumi', 'pulumi_aws', 'pulumi_gcp', "
             "'pulumi_azure_native')})\nprint('\\n@@' + json.dumps({'code': code, 'heavy': heavy}))\n")
    args = ["compare", str(EXAMPLE), "--stack", "dev", "--sweep", "records_per_second=10..1000", "--points", "4"]
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "80", "PIPELINE_CACHE_DIR": str(tmp_path), "PIPELINE_SERVER": "0"}
    env.pop("PIPELINE_NO_CACHE", None)
    runs = []
    for _ in range(2):
        result = subprocess.run([sys.executable, "-c", probe.replace("ARGS", repr(args))], capture_output=True, text=True, env=env, timeout=600, check=False)
        out, _, report = result.stdout.rpartition("\n@@")
        assert report, result.stderr
        runs.append((out, json.loads(report)))
    (first, miss), (second, hit) = runs
    assert miss["code"] == hit["code"] == 0 and "pulumi" in miss["heavy"]
    assert hit["heavy"] == [], f"a cache hit imported {hit['heavy']}"
    assert second == first and "Where the clouds cross" in second
