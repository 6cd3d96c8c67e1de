"""`pipeline diff` says what changed: each changed input old -> new (secrets masked as in the JSON plan),
two stacks paired by role and logical name with stack-named differences set aside, and `--exit-code` for CI.
Through the console script, at 80 columns where it is about layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli_ux import EXAMPLE, copy_example, no_traceback, run, terminal_env


@pytest.fixture
def bigger_score(tmp_path: Path) -> tuple[Path, Path]:
    """The example twice: the baseline, and a change that gives `score` 2048 MB in the dev stack."""
    base = copy_example(tmp_path / "base")
    head = copy_example(tmp_path / "head")
    overlay = head.parent / "stacks" / "dev.yaml"
    overlay.write_text(overlay.read_text().replace("    memory_mb: 512", "    memory_mb: 2048"))
    return base, head


def test_diff_names_the_inputs_that_changed(bigger_score: tuple[Path, Path]) -> None:
    base, head = bigger_score
    text = run("diff", head, "--stack", "dev", "--against", base, "--cloud", "aws", env=terminal_env(80))
    assert text.returncode == 0, text.stderr
    assert max(len(line) for line in text.stdout.splitlines()) <= 80
    assert "~ lambda.Function txn-scoring-dev-score" in text.stdout and "memorySize: 512 → 2048" in text.stdout
    data = json.loads(run("diff", head, "--stack", "dev", "--against", base, "--cloud", "aws", "--format", "json").stdout)
    assert data["changes_present"] is True
    function = next(r for r in data["clouds"]["aws"]["resource_changes"] if r["type"] == "aws:lambda/function:Function")
    assert {"path": "memorySize", "old": 512, "new": 2048} in function["inputs"] and function["change"] == "changed"
    markdown = run("diff", head, "--stack", "dev", "--against", base, "--cloud", "aws", "--format", "markdown").stdout
    assert "memorySize: `512` → `2048`" in markdown
    no_traceback(text)


def test_two_stacks_pair_their_resources_and_set_stack_names_aside() -> None:
    result = run("diff", EXAMPLE, "--stack", "prod", "--against-stack", "dev", "--cloud", "aws", "--format", "json")
    aws = json.loads(result.stdout)["clouds"]["aws"]
    assert aws["resources"]["added"] == aws["resources"]["removed"] == 0
    assert aws["resources"]["changed"] <= 12, [(r["role"], r["type"], r["inputs"]) for r in aws["resource_changes"]]  # was 89 of 99
    assert aws["differ_only_by_stack_names"] >= 70
    stream = next(r for r in aws["resource_changes"] if r["type"] == "aws:kinesis/stream:Stream")
    assert {"path": "retentionPeriod", "old": 24, "new": 168} in stream["inputs"]
    for change in aws["resource_changes"]:  # nothing shown is only a name that embeds the stack
        for item in change["inputs"]:
            assert not (isinstance(item["old"], str) and item["old"].replace("dev", "prod") == item["new"]), item
    text = run("diff", EXAMPLE, "--stack", "prod", "--against-stack", "dev", "--cloud", "aws", env=terminal_env(80))
    assert "more differ only in names that embed the stack" in text.stdout and "retentionPeriod: 24 → 168" in text.stdout
    assert "      ~ LifecycleConfiguration" in text.stdout  # a bucket's part, under its bucket


def test_secrets_stay_masked_in_a_diff(tmp_path: Path) -> None:
    base = copy_example(tmp_path / "base")
    head = copy_example(tmp_path / "head")
    base.write_text(base.read_text() + "alerts:\n  webhook: https://hooks.example.com/services/T000/OLDSECRET\n")
    head.write_text(head.read_text().replace("memory_mb: 1024", "memory_mb: 2048")
                    + "alerts:\n  webhook: https://hooks.example.com/services/T000/NEWSECRET\n")
    for fmt in ("json", "table", "markdown"):
        result = run("diff", head, "--against", base, "--cloud", "aws", "--format", fmt)
        assert result.returncode == 0, result.stderr
        assert "SECRET" not in result.stdout.replace("[secret]", ""), fmt
    plan = run("plan", head, "--cloud", "aws", "--format", "json").stdout
    assert "NEWSECRET" not in plan and "[secret]" in plan  # the same masking as the JSON plan


def test_exit_code_says_whether_anything_changed(bigger_score: tuple[Path, Path], tmp_path: Path) -> None:
    base, head = bigger_score
    same = run("diff", base, "--stack", "dev", "--against", base, "--cloud", "aws", "--exit-code")
    assert same.returncode == 0, same.stderr
    changed = run("diff", head, "--stack", "dev", "--against", base, "--cloud", "aws", "--exit-code", "--format", "json")
    assert changed.returncode == 3, changed.stderr
    assert json.loads(changed.stdout)["changes_present"] is True
    without = run("diff", head, "--stack", "dev", "--against", base, "--cloud", "aws")
    assert without.returncode == 0  # the option asks for it
    above = run("diff", head, "--stack", "dev", "--against", base, "--cloud", "aws", "--exit-code", "--fail-above", "0")
    assert above.returncode == 1  # a failed check outranks "changes present"
    bad = run("diff", head, "--exit-code")
    assert bad.returncode == 2
    assert "--exit-code" in run("diff", "--help").stdout and "exit 3" in run("diff", "--help").stdout


def test_a_baseline_saved_without_inputs_still_says_changed(bigger_score: tuple[Path, Path], tmp_path: Path) -> None:
    base, head = bigger_score
    saved = tmp_path / "old.json"
    assert run("compare", base, "--stack", "dev", "--cloud", "aws", "--format", "json", "-o", saved).returncode == 0
    data = json.loads(saved.read_text())
    for role in data["roles"]:
        for resource in role["clouds"]["aws"]:
            resource.pop("inputs")
    saved.write_text(json.dumps(data))
    result = run("diff", head, "--stack", "dev", "--against", saved, "--cloud", "aws", env=terminal_env(80))
    assert result.returncode == 0, result.stderr
    assert "~ lambda.Function txn-scoring-dev-score" in result.stdout and "save it again" in result.stdout
