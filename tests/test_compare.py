"""`pipeline compare` and `pipeline diagram`: role alignment, stable JSON, pictures, and the HTML report in Chromium."""

from __future__ import annotations

import html as html_module
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pipeline import diagram
from pipeline.compare import compare
from pipeline.planner import plan
from pipeline.spec.load import load_spec

ROOT = Path(__file__).parents[1]
EXAMPLE = ROOT / "stacks" / "transactions" / "pipeline.yaml"
CLOUDS = ["aws", "gcp", "azure"]
EXE = shutil.which("pipeline", path=str(Path(sys.executable).parent)) or "pipeline"


@pytest.fixture(scope="module")
def comparison():  # type: ignore[no-untyped-def]
    return compare(load_spec(EXAMPLE, "dev"), CLOUDS)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run([EXE, *args], capture_output=True, text=True, env=env, timeout=300, check=False)


def needs(tool: str) -> str:
    """A tool the test cannot do without: in CI its absence is a failure, elsewhere a skip."""
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is not installed; .ci/run must install it")
        pytest.skip(f"{tool} is not installed")
    return path


def test_every_cloud_has_the_same_roles(comparison) -> None:  # type: ignore[no-untyped-def]
    per_cloud = {c.cloud: {key for key, _ in c.plan.roles()} for c in comparison.columns}
    assert per_cloud["aws"] == per_cloud["gcp"] == per_cloud["azure"]
    for stage in ("preprocess", "score", "calibrate"):
        for suffix in ("function", "trigger", "identity", "dead-letter", "bucket"):
            assert f"{stage}-{suffix}" in per_cloud["aws"]
    roles = comparison.to_dict()["roles"]
    function_row = next(r for r in roles if r["role"] == "score-function")
    assert {t["type"] for t in function_row["clouds"]["aws"]} >= {"aws:lambda/function:Function"}
    assert {t["type"] for t in function_row["clouds"]["gcp"]} >= {"gcp:cloudfunctionsv2/function:Function"}
    assert {t["type"] for t in function_row["clouds"]["azure"]} >= {"azure-native:web:WebApp"}


def test_json_is_stable_and_documented(comparison) -> None:  # type: ignore[no-untyped-def]
    again = compare(load_spec(EXAMPLE, "dev"), CLOUDS)
    first = json.dumps(comparison.to_dict(), sort_keys=True)
    assert first == json.dumps(again.to_dict(), sort_keys=True)
    data = comparison.to_dict()
    assert data["schema_version"] == 2 and data["hours_per_month"] == 730
    assert data["workload"]["from_spec"] is True and data["workload"]["records_per_second"] == 150
    assert "one principal allowed one role or action set on one resource scope" in data["definitions"]["permission_grants"]
    assert set(data["clouds"]) == set(CLOUDS)
    for cloud in data["clouds"].values():
        assert {"title", "location", "planned", "problems", "totals", "stream", "stages", "latency", "limits", "cost", "cost_by_role",
                "cost_error", "assumptions", "unpriced", "verify"} <= set(cloud)
        assert cloud["totals"]["resources"] > 20
        assert set(cloud["stages"]) == {"preprocess", "score", "calibrate"}
        for stage in cloud["stages"].values():
            assert {"records_per_invocation", "invocations_per_month", "concurrency", "capacity_records_per_second",
                    "demand_records_per_second", "latency_s", "latency_max_s", "reasoning"} <= set(stage)
        assert cloud["latency"]["path"] == ["stream", "preprocess", "score"]


def test_totals_count_identities_and_grants(comparison) -> None:  # type: ignore[no-untyped-def]
    for column in comparison.columns:
        totals = column.totals()
        assert totals["identities"] >= 3, column.cloud  # at least one per stage
        assert totals["permission_grants"] >= 3, column.cloud


def test_sizing_in_compare_is_the_plans_sizing(comparison) -> None:  # type: ignore[no-untyped-def]
    for column in comparison.columns:
        assert column.plan.sizing == plan(load_spec(EXAMPLE, "dev"), column.cloud).sizing


def test_a_cloud_that_cannot_express_the_spec_is_reported_not_dropped(tmp_path: Path) -> None:
    (tmp_path / "h.py").write_text("def handle(rows, context):\n    return []\n")
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(textwrap.dedent("""
        name: weekly
        stages:
          - {name: first, handler: "h.py:handle", trigger: {stream: {}}}
          - {name: monthly, handler: "h.py:handle", trigger: {schedule: "0 1 1 * MON"}}
        clouds: {gcp: {project: weekly-demo-1}}
    """))
    result = compare(load_spec(spec), CLOUDS)
    aws = next(c for c in result.columns if c.cloud == "aws")
    assert not aws.ok and any("day-of-week" in p for p in aws.problems)
    assert any(line.startswith("AWS cannot run this spec") for line in result.verdicts())
    assert any(c.ok for c in result.columns)


def test_diagram_edges_follow_the_data_flow(comparison) -> None:  # type: ignore[no-untyped-def]
    spec = load_spec(EXAMPLE, "dev").spec
    aws = next(c for c in comparison.columns if c.cloud == "aws").plan
    dot = diagram.to_dot(aws, spec)
    for edge in ('"stream" -> "preprocess-trigger"', '"preprocess-trigger" -> "preprocess-function"',
                 '"preprocess-function" -> "preprocess-bucket"', '"preprocess-bucket" -> "score-trigger"',
                 '"score-trigger" -> "score-function"', '"calibrate-trigger" -> "calibrate-function"',
                 '"stream" -> "raw-archive"', '"raw-archive" -> "raw-bucket"', '"score-trigger" -> "score-dead-letter"'):
        assert edge in dot
    stream_name = aws.one("aws:kinesis/stream:Stream").physical_name
    assert stream_name in dot


def test_diagram_command_writes_svg_and_png(tmp_path: Path) -> None:
    needs("dot")
    svg_file, png_file = tmp_path / "a.svg", tmp_path / "a.png"
    result = cli("diagram", str(EXAMPLE), "--stack", "dev", "--cloud", "gcp", "--output", str(svg_file))
    assert result.returncode == 0, result.stderr
    root = ET.fromstring(svg_file.read_text())
    assert root.tag.endswith("svg")
    text = svg_file.read_text()
    assert "Function: score&#45;function" in text and "pubsub.Topic" in text
    assert cli("diagram", str(EXAMPLE), "--cloud", "azure", "--output", str(png_file)).returncode == 0
    assert png_file.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = cli("diagram", str(EXAMPLE), "--output", str(tmp_path / "a.gif"))
    assert bad.returncode == 2 and ".svg, .png or .dot" in bad.stderr


def test_compare_command_formats(tmp_path: Path) -> None:
    result = cli("compare", str(EXAMPLE), "--stack", "dev", "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data["clouds"]) == set(CLOUDS)
    markdown = cli("compare", str(EXAMPLE), "--stack", "dev", "--clouds", "aws,gcp", "--format", "markdown")
    assert markdown.returncode == 0
    assert "| | AWS (us-east-1) | GCP (us-central1) |" in markdown.stdout
    table = cli("compare", str(EXAMPLE), "--clouds", "aws", "--detail")  # the old spelling of --cloud still works
    assert table.returncode == 0 and "By role" in table.stdout
    unknown = cli("compare", str(EXAMPLE), "--clouds", "aws,nosuch")
    assert unknown.returncode == 2 and "no backend named 'nosuch'" in unknown.stderr


# Injected into a copy of the report: measures what a reader sees and leaves it in the DOM for --dump-dom.
MEASURE = r"""<script>
(function () {
  const r = {};
  r.legend = [...document.querySelectorAll('#cost-chart .legend-item text')].map(t => t.textContent);
  r.segments = [...new Set([...document.querySelectorAll('#cost-chart rect.segment')].map(x => x.dataset.group))];
  r.bars = [...document.querySelectorAll('#cost-chart rect.segment')].map(x => x.getBoundingClientRect().width);
  r.diagrams = [...document.querySelectorAll('.diagram svg')].map(svg => {
    const texts = [...svg.querySelectorAll('text')];
    const px = texts.map(t => parseFloat(getComputedStyle(t).fontSize) * t.getScreenCTM().a).sort((a, b) => a - b);
    // Graphviz placed every label for its own font size; page CSS that changes it makes labels overflow their boxes.
    const restyled = texts.filter(t => t.hasAttribute('font-size') && parseFloat(getComputedStyle(t).fontSize) !== parseFloat(t.getAttribute('font-size')));
    return {cloud: svg.closest('section').id, view: svg.parentElement.dataset.view, shown: svg.getBoundingClientRect().width,
            natural: svg.width.baseVal.value, texts: px.length, smallest_px: px[0], restyled: restyled.length};
  });
  r.billing = [...document.querySelectorAll('#billing-lines tr')].slice(1).map(tr => ({
    role: tr.querySelector('td').firstChild.textContent,
    lines: [...tr.querySelectorAll('td')].slice(1).map(td => td.querySelectorAll('.line').length),
    sources: tr.querySelectorAll('.line a[href^="https://"]').length,
    priced: [...tr.querySelectorAll('.line')].every(l => / × \$[0-9]/.test(l.textContent) && /= \$[0-9]/.test(l.textContent))}));
  r.assumptions = [...document.querySelectorAll('#notes h3')].map(h => [h.textContent, h.nextElementSibling.querySelectorAll('li').length]);
  const out = document.createElement('pre'); out.id = 'measured'; out.textContent = JSON.stringify(r); document.body.appendChild(out);
})();
</script>"""


def test_html_report_is_readable_in_headless_chromium(tmp_path: Path) -> None:
    chromium = needs("chromium")
    needs("dot")
    from PIL import Image

    report = tmp_path / "report.html"
    result = cli("compare", str(EXAMPLE), "--stack", "dev", "--format", "html", "--output", str(report))
    assert result.returncode == 0, result.stderr
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1800"]
    measured_page = tmp_path / "measured.html"
    measured_page.write_text(report.read_text(encoding="utf-8").replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    dom = subprocess.run([chromium, *flags, "--dump-dom", measured_page.as_uri()], capture_output=True, text=True, timeout=120, check=True).stdout
    for title in ("AWS", "GCP", "Azure"):
        assert f'data-cloud="{title.lower()}">{title}' in dom
    found = re.search(r'<pre id="measured">(.*?)</pre>', dom, re.S)
    assert found, "the measuring script did not run"
    seen = json.loads(html_module.unescape(found.group(1)))

    # The cost chart's legend names every group a bar shows, and every bar segment can be seen.
    assert seen["segments"] and set(seen["segments"]) <= set(seen["legend"]), seen
    assert {"stream", "storage", "functions"} <= set(seen["legend"])
    assert min(seen["bars"]) >= 0.5

    # Each cloud's data path and identity view, at natural size (never shrunk), text at least 12 px.
    assert {(d["cloud"], d["view"]) for d in seen["diagrams"]} == {(f"diagram-{c}", v) for c in CLOUDS for v in ("data", "identity")}
    for picture in seen["diagrams"]:
        assert picture["texts"] > 10, picture
        assert abs(picture["shown"] - picture["natural"]) < 1, f"{picture} is scaled"
        assert picture["smallest_px"] >= 12, f"{picture} has text smaller than 12 px at 100 %"
        assert picture["restyled"] == 0, f"{picture}: page CSS changes the diagram's font sizes"

    # Billing lines pair the clouds role by role, each with quantity x unit price = cost and a source.
    stream = next(row for row in seen["billing"] if row["role"] == "stream")
    assert all(n >= 1 for n in stream["lines"]) and stream["sources"] == sum(stream["lines"])
    assert all(row["priced"] for row in seen["billing"])

    # An assumptions section per cloud.
    assert {title for title, count in seen["assumptions"] if count >= 3} == {"AWS", "GCP", "Azure"}

    shot = tmp_path / "shot.png"
    subprocess.run([chromium, *flags, f"--screenshot={shot}", report.as_uri()], capture_output=True, timeout=120, check=True)
    image = Image.open(shot).convert("L")
    low, high = image.getextrema()
    assert high - low > 100, "the screenshot is blank"
    histogram = image.histogram()
    assert sum(1 for count in histogram if count) > 20, "the screenshot has almost no content"


def test_window_reads_are_billed_to_buckets_the_plan_has(tmp_path: Path) -> None:
    """A run over accumulated outputs lists and reads its source's bucket and keeps its state in its own: every cloud
    bills those lines to those buckets, so the summary adds them up as storage (no cloud shows them as "other")."""
    (tmp_path / "h.py").write_text("def handle(rows, context):\n    return []\n")
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(textwrap.dedent("""
        name: windows
        stream: {}
        stages:
          - {name: prep, handler: "h.py:handle", trigger: {stream: {}}}
          - {name: now, handler: "h.py:handle", trigger: {http: {from: prep}}}
        workload: {stages: {now: {requests_per_second: 0.5}}}
        clouds: {gcp: {project: windows-demo-1}}
    """))
    result = compare(load_spec(spec), CLOUDS)
    data = result.to_dict()
    roles = {r["role"] for r in data["roles"]}
    for cloud in CLOUDS:
        lines = data["clouds"][cloud]["cost"]["lines"]
        billed = {line["role"] for line in lines}
        assert billed <= roles, (cloud, billed - roles)
        listing = [line for line in lines if "list" in line["item"].lower() and "now" in (line["item"] + line.get("note", ""))]
        assert listing and all(line["role"] == "prep-bucket" for line in listing), (cloud, listing)
    # called twice a minute over a week of prep's objects, the listing is the bill, and the verdict says what lowers it
    [finding] = [line for line in result.verdicts() if "lists everything prep keeps" in line]
    assert "workload.stages.now.requests_per_second" in finding and "storage.intermediate_days" in finding
    spec.write_text(spec.read_text().replace("requests_per_second: 0.5}}}", "requests_per_second: 0.002}}}\nstorage: {intermediate_days: 1}"))
    assert not [line for line in compare(load_spec(spec), CLOUDS).verdicts() if "lists everything" in line]
