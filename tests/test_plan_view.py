"""`plan` at 80 columns and the HTML "Resources by role": every resource once, its parts (a bucket's policy,
lifecycle, encryption) under it, nothing broken mid-word, through the console script and headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_cli_ux import EXAMPLE, no_traceback, run, terminal_env

from pipeline.plan import short_type


@pytest.mark.parametrize("cloud", ["aws", "azure"])
def test_plan_fits_80_columns_and_names_each_bucket_once(cloud: str) -> None:
    result = run("plan", EXAMPLE, "--stack", "dev", "--cloud", cloud, env=terminal_env(80))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    plan = json.loads(run("plan", EXAMPLE, "--stack", "dev", "--cloud", cloud, "--format", "json").stdout)
    resources = [r for r in plan["resources"] if r["custom"] and not r["type"].startswith("pulumi:providers:")]
    words = set(result.stdout.split())
    names = {r["physical_name"] for r in resources}
    for resource in resources:  # a part is listed under its resource; every other one by its whole type and name
        if sum(1 for r in resources if r["physical_name"] == resource["physical_name"] and r["role"] == resource["role"]) == 1:
            assert short_type(resource["type"]) in words and resource["physical_name"] in words, resource["name"]
    if cloud == "aws":
        assert len(lines) < 300, len(lines)  # 588 before, as one table
        buckets = [r["physical_name"] for r in resources if r["type"] == "aws:s3/bucket:Bucket"]
        assert len(buckets) == 6
        for bucket in buckets:
            assert sum(line.split()[:3] == ["+", "s3.Bucket", bucket] for line in lines) == 1
        assert not any(line.split()[1].startswith(("s3.BucketPolicy", "s3.BucketLifecycle")) for line in lines if line.startswith("  + "))
        assert "+ LifecycleConfiguration, OwnershipControls, Policy, PublicAccessBlock," in result.stdout
    assert len(names) > 10
    no_traceback(result)


def test_plan_tree_puts_parts_under_their_resource() -> None:
    result = run("plan", EXAMPLE, "--stack", "dev", "--cloud", "aws", "--format", "tree", env=terminal_env(100))
    assert result.returncode == 0, result.stderr
    bucket_at = next(i for i, line in enumerate(result.stdout.splitlines()) if "s3.Bucket  txn-scoring-dev-raw-" in line)
    following = result.stdout.splitlines()[bucket_at + 1: bucket_at + 6]
    assert any(line.rstrip().endswith("Policy") for line in following), following
    assert result.stdout.count("txn-scoring-dev-raw-") == 1


def test_html_resources_by_role_names_each_bucket_once_in_chromium(tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    report = tmp_path / "report.html"
    result = run("compare", EXAMPLE, "--stack", "dev", "--cloud", "aws", "--format", "html", "--output", report)
    assert result.returncode == 0, result.stderr
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"]
    script = """<script>document.body.insertAdjacentHTML('beforeend', '<pre id="seen">' +
      JSON.stringify([...document.querySelectorAll('#roles-table tr')].map(tr => tr.innerText)) + '</pre>');</script>"""
    page = tmp_path / "seen.html"
    page.write_text(report.read_text(encoding="utf-8").replace("</body>", script + "</body>"), encoding="utf-8")
    dom = subprocess.run([chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=True).stdout
    found = re.findall(r'<pre id="seen">(\[.*?)</pre>', dom, re.S)  # the element the script added, not its source
    assert found, "the page script did not run"
    import html

    rows = json.loads(html.unescape(found[-1]))
    raw = next(row for row in rows if row.startswith("raw-bucket"))
    assert len(re.findall(r"txn-scoring-dev-raw-[0-9a-f]+", raw)) == 1, raw
    assert "s3.Bucket" in raw and "Policy" in raw and "LifecycleConfiguration" in raw
    assert "s3.BucketPolicy" not in raw  # a part under its bucket, not a row of its own
