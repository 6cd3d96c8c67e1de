"""`validate` runs the sizing checks `plan` and `compare` run: a spec no cloud can carry fails validation,
every problem in one round, each at the line of the field to change with its hint, and `compare` and `plan`
report the very same problems at the same lines. Through the installed console script."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from test_cli_ux import cli_env, no_traceback, pipeline_script, run

EXAMPLE_DIR = Path(__file__).resolve().parents[1] / "stacks" / "transactions"
HOURLY = """\
  - name: hourly
    handler: handlers/score.py:score
    trigger:
      schedule: "rate(1 hour)"
      from: score

"""


def hourly_project(target: Path) -> Path:
    """The transactions template with an hourly scoring stage over `score` outputs (the issue's example)."""
    shutil.copytree(EXAMPLE_DIR, target, ignore=shutil.ignore_patterns(".pipeline", "__pycache__"))
    spec = target / "pipeline.yaml"
    text = spec.read_text()
    spec.write_text(text.replace("  - name: calibrate\n", HOURLY + "  - name: calibrate\n", 1))
    return spec


def line_of(spec: Path, text: str) -> int:
    return next(i for i, line in enumerate(spec.read_text().splitlines(), 1) if text in line)


def test_validate_refuses_what_no_cloud_can_carry_every_problem_located(tmp_path: Path) -> None:
    spec = hourly_project(tmp_path / "txn")
    result = run("validate", spec, "--stack", "prod", "--format", "json")
    assert result.returncode == 2, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["valid"] is False
    problems = data["error"]["problems"]
    stage_line = line_of(spec, "- name: hourly")
    by_path = {(p["path"], p["message"].split(":", 1)[0]): p for p in problems}
    timeout = by_path[("stages[2].timeout_s", "AWS, GCP, Azure")]  # shared by the three clouds: said once
    memory = by_path[("stages[2].memory_mb", "AWS, GCP, Azure")]
    for problem in (timeout, memory):
        assert (problem["file"], problem["line"]) == (str(spec), stage_line), problem  # not set: where to add it
        assert "is not set (its default applies): add it under stages[2] (stage 'hourly')" in problem["hint"]
    assert "raise timeout_s" in timeout["hint"] and "raise memory_mb" in memory["hint"]
    assert {p["message"].split(":", 1)[0] for p in problems if p["path"] == "stages[2]"} == {"AWS", "GCP", "Azure"}
    for problem in problems:  # the cloud is named once, in front, not again inside the message
        _, _, message = problem["message"].partition(": ")
        assert not any(f"on {title}" in message for title in ("AWS", "GCP", "Azure")), problem
        assert problem["line"] and problem["column"] and problem["hint"]
    no_traceback(result)


def test_compare_and_plan_report_the_same_problems_at_the_same_lines(tmp_path: Path) -> None:
    spec = hourly_project(tmp_path / "txn")
    validated = run("validate", spec, "--stack", "prod", "--format", "json")
    compared = run("compare", spec, "--stack", "prod", "--format", "json", "--no-cache")
    assert compared.returncode == 2, compared.stderr
    assert json.loads(compared.stdout)["error"]["problems"] == json.loads(validated.stdout)["error"]["problems"]
    text = run("compare", spec, "--stack", "prod", "--no-cache")
    assert "clouds:" not in text.stderr and f"pipeline.yaml:{line_of(spec, '- name: hourly')}:" in text.stderr
    planned = run("plan", spec, "--stack", "prod", "--cloud", "gcp", "--format", "json", "--no-cache")
    gcp = [p for p in json.loads(validated.stdout)["error"]["problems"] if "GCP" in p["message"].split(":", 1)[0]]
    assert [(p["path"], p["line"], p["hint"]) for p in json.loads(planned.stdout)["error"]["problems"]] == \
           [(p["path"], p["line"], p["hint"]) for p in gcp]


def test_validate_of_a_field_that_is_set_points_at_its_line(tmp_path: Path) -> None:
    spec = hourly_project(tmp_path / "txn")
    spec.write_text(spec.read_text().replace('      from: score\n', '      from: score\n    timeout_s: 30\n', 1))
    result = run("validate", spec, "--stack", "prod", "--cloud", "aws", "--format", "json")
    timeout = next(p for p in json.loads(result.stdout)["error"]["problems"] if p["path"] == "stages[2].timeout_s")
    assert timeout["line"] == line_of(spec, "timeout_s: 30") and "is not set" not in timeout["hint"]
    assert timeout["message"].startswith("AWS: ")


def test_validate_passes_the_templates_and_names_what_it_checked() -> None:
    result = run("validate", EXAMPLE_DIR / "pipeline.yaml", "--stack", "prod")
    assert result.returncode == 0, result.stderr
    assert "aws, gcp, azure can express it and carry its workload" in result.stdout


def test_validate_runs_no_pulumi_program(tmp_path: Path) -> None:
    """Sizing is pure Python: validate never runs the Pulumi program (the planner and the orchestrator stay unloaded)."""
    env = cli_env()
    env["PYTHONPROFILEIMPORTTIME"] = "1"
    result = subprocess.run([pipeline_script(), "validate", str(EXAMPLE_DIR / "pipeline.yaml"), "--stack", "prod"],
                            capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "pipeline.sizing" in imported
    assert not imported & {"pipeline.planner", "pipeline.program"}, sorted(imported & {"pipeline.planner", "pipeline.program"})


def test_validate_refuses_two_stages_azure_would_give_one_account(tmp_path: Path) -> None:
    """Review S1: two stages whose hashed Azure names agree (here the host-storage account of s23933 and s1daca in
    pipeline txn-scoring) passed validation and failed to deploy, or shared one object queue. Located at the stage to rename."""
    (tmp_path / "h.py").write_text("def handle(records, context):\n    return records\n")
    spec = tmp_path / "pipeline.yaml"
    spec.write_text("name: txn-scoring\nuploads: {}\nstages:\n"
                    "  - {name: s1daca, handler: \"h.py:handle\", trigger: {objects: {from: uploads}}}\n"
                    "  - {name: s23933, handler: \"h.py:handle\", trigger: {objects: {from: s1daca}}}\n"
                    "workload:\n  uploads: {files_per_hour: 2, records_per_file: 100}\n"
                    "clouds:\n  azure: {location: eastus}\n")
    result = run("validate", spec, "--format", "json")
    assert result.returncode == 2, result.stdout + result.stderr
    (problem,) = json.loads(result.stdout)["error"]["problems"]
    assert (problem["path"], problem["file"], problem["line"]) == ("stages[1].name", str(spec), 5), problem
    assert problem["message"].startswith("Azure: the storage account of stage 's23933' would be named 'txnscorh")
    assert "rename stage 's23933'" in problem["hint"]
    no_traceback(result)
    spec.write_text(spec.read_text().replace("s23933", "agg9"))
    ok = run("validate", spec)
    assert ok.returncode == 0 and "valid" in ok.stdout, ok.stdout + ok.stderr
