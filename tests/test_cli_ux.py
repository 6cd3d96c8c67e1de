"""The everyday CLI through the installed `pipeline` console script: the one-screen compare summary,
colour and NO_COLOR, help, JSON errors, portable JSON plans, `diff` for CI and `init` for new projects.

Plans take a few seconds each on a shared machine, so tests that plan use one cloud where the
behaviour does not depend on the cloud.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

EXAMPLE_DIR = Path(__file__).resolve().parents[1] / "stacks" / "transactions"
EXAMPLE = EXAMPLE_DIR / "pipeline.yaml"
COLOUR = re.compile(r"\x1b\[(?:\d+;)*(?:3[0-7]|9[0-7]|38;[25];[\d;]+)m")  # a foreground colour, not bold or dim
BAD_SPEC = """\
name: Demo
stages:
  - name: first
    handler: handlers/h.py:handle
    trigger:
      stream: {}
    memmory_mb: 256
    timeout_s: 901
"""


def pipeline_script() -> str:
    found = shutil.which("pipeline", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("the 'pipeline' console script is not installed next to this Python")
    return found


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "PYTEST_ADDOPTS")}
    env.update({"NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb", "PYTHONIOENCODING": "utf-8"})
    return env


def run(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([pipeline_script(), *map(str, args)], cwd=cwd, env=env or cli_env(), capture_output=True, text=True,
                          timeout=timeout, check=False)


def terminal_env(columns: int = 80, colour: bool = False) -> dict[str, str]:
    """A fixed-width terminal: COLUMNS for the width; FORCE_COLOR makes Rich colour a pipe like a TTY."""
    env = cli_env()
    env["COLUMNS"] = str(columns)
    env.pop("NO_COLOR", None)
    if colour:
        env["FORCE_COLOR"] = "1"
        env["TERM"] = "xterm-256color"
    return env


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    for stream in (result.stdout, result.stderr):
        assert "Traceback" not in stream and "internal error" not in stream, stream


@pytest.fixture
def bad_spec(write_spec: Callable[..., Path]) -> Path:
    return write_spec(BAD_SPEC)


def copy_example(target: Path) -> Path:
    shutil.copytree(EXAMPLE_DIR, target, ignore=shutil.ignore_patterns(".pipeline", "__pycache__"))
    return target / "pipeline.yaml"


# ---- compare: the answer on one screen ----------------------------------------------------


def test_compare_summary_fits_80x40_and_ends_with_the_verdict() -> None:
    result = run("compare", EXAMPLE, "--stack", "dev", env=terminal_env(80))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.rstrip("\n").splitlines()
    assert len(lines) <= 40, result.stdout
    assert max(len(line) for line in lines) <= 80, result.stdout
    text = result.stdout
    for label in ("Monthly cost", "vs cheapest", "Capacity", "Stream rec/s", "Limits", "Max record", "Monthly cost by role", "Functions"):
        assert label in text, label
    verdict_at = max(i for i, line in enumerate(lines) if line.strip() == "Verdict")
    tail = "\n".join(lines[verdict_at:])
    assert len(lines) - verdict_at <= 8, "the verdict must be the last thing on screen"
    assert "150 records/s of 700 B" in tail and "Cheapest" in tail  # the verdict names the workload it priced
    assert "By role" not in text and "bisect" not in text  # role detail and prose stay behind --detail
    no_traceback(result)


def test_compare_detail_has_roles_and_prose_and_still_ends_with_the_verdict() -> None:
    result = run("compare", EXAMPLE, "--stack", "dev", "--cloud", "aws", "--detail", env=terminal_env(80))
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "By role" in text and "kinesis.Stream" in text and "Poison records" in text and "Sizing" in text
    assert text.index("By role") < text.rindex("Verdict")
    verdict = text.rstrip().splitlines()[text.rstrip().splitlines().index("Verdict") + 1:]
    assert verdict and verdict[0].startswith("• ") and all(line.startswith(("• ", "  ")) for line in verdict)  # nothing after it


def test_compare_of_one_cloud_is_an_answer_not_a_failure() -> None:
    result = run("compare", EXAMPLE, "--cloud", "aws", env=terminal_env(80))
    assert result.returncode == 0, result.stderr
    verdict = result.stdout[result.stdout.rindex("Verdict"):]
    assert "AWS" in verdict and "/month" in verdict and "Only" not in verdict and "could be priced" not in verdict
    markdown = run("compare", EXAMPLE, "--cloud", "aws", "--format", "markdown")
    assert markdown.stdout.startswith("## txn-scoring (default): AWS\n"), markdown.stdout[:200]


def test_compare_colours_the_cheapest_cloud_and_honours_no_color() -> None:
    coloured = run("compare", EXAMPLE, "--stack", "dev", "--cloud", "aws,azure", env=terminal_env(100, colour=True))
    assert coloured.returncode == 0, coloured.stderr
    assert "\x1b[1;32mAWS" in coloured.stdout, "the cheapest cloud's header is bold green"
    assert COLOUR.search(coloured.stdout)
    plain = run("compare", EXAMPLE, "--stack", "dev", "--cloud", "aws,azure", "--no-color", env=terminal_env(100, colour=True))
    assert plain.returncode == 0, plain.stderr
    assert not COLOUR.search(plain.stdout) and not COLOUR.search(plain.stderr)
    assert "cheapest" in plain.stdout


@pytest.mark.parametrize("how", ["NO_COLOR", "--no-color before", "--no-color after"])
def test_no_color_everywhere(how: str) -> None:
    env = terminal_env(100, colour=True)
    args: list[str | Path] = ["validate", EXAMPLE]
    if how == "NO_COLOR":
        env["NO_COLOR"] = "1"
    elif how == "--no-color before":
        args = ["--no-color", *args]
    else:
        args = [*args, "--no-color"]
    result = run(*args, env=env)
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout and not COLOUR.search(result.stdout)
    coloured = run("validate", EXAMPLE, env=terminal_env(100, colour=True))
    assert COLOUR.search(coloured.stdout), "the control run must be coloured, or this test proves nothing"


def test_errors_are_red_in_a_terminal(bad_spec: Path) -> None:
    result = run("validate", bad_spec, env=terminal_env(100, colour=True))
    assert result.returncode == 2
    assert "\x1b[1;31merror\x1b[0m" in result.stderr


# ---- help ---------------------------------------------------------------------------------


COMMANDS = ["init", "validate", "plan", "compare", "diff", "diagram", "run", "package", "export", "schema", "backends",
            "preview", "deploy", "outputs", "refresh", "destroy", "cancel"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_an_example_and_readable_metavars(command: str) -> None:
    result = run(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Examples:" in result.stdout and f"pipeline {command}" in result.stdout.split("Examples:", 1)[1]
    assert not re.search(r"<(str|path|list\[|int|float)", result.stdout), result.stdout


def test_root_help_offers_completion_and_no_color() -> None:
    result = run("--help")
    assert "--install-completion" in result.stdout and "--no-color" in result.stdout
    script = run("--show-completion", "bash")
    assert script.returncode == 0 and "_pipeline_completion" in script.stdout


def test_several_clouds_are_named_the_same_way_everywhere() -> None:
    repeated = run("validate", EXAMPLE, "--cloud", "aws", "--cloud", "gcp")
    listed = run("validate", EXAMPLE, "--cloud", "aws,gcp")
    assert repeated.returncode == listed.returncode == 0, repeated.stderr + listed.stderr
    assert repeated.stdout == listed.stdout and "aws, gcp can express it" in listed.stdout
    one_only = run("plan", EXAMPLE, "--cloud", "aws,gcp")
    assert one_only.returncode == 2 and "one cloud at a time" in one_only.stderr and "pipeline compare" in one_only.stderr


# ---- machine-readable everything ----------------------------------------------------------


JSON_COMMANDS = [
    ("validate", "--format", "json"), ("plan", "--format", "json"), ("compare", "--format", "json"),
    ("diff", "--against-stack", "dev", "--format", "json"), ("package", "--format", "json"),
    ("preview", "--cloud", "aws", "--json"), ("deploy", "--cloud", "aws", "--yes", "--json"), ("outputs", "--cloud", "aws", "--json"),
    ("refresh", "--cloud", "aws", "--json"), ("destroy", "--cloud", "aws", "--yes", "--json"),
]


@pytest.mark.parametrize("command", JSON_COMMANDS, ids=[c[0] for c in JSON_COMMANDS])
def test_a_bad_spec_is_a_json_error_on_stdout(command: tuple[str, ...], bad_spec: Path) -> None:
    result = run(command[0], bad_spec, *command[1:])
    assert result.returncode == 2, result.stdout + result.stderr
    error = json.loads(result.stdout)["error"]
    assert error["kind"] == "spec" and error["exit_code"] == 2 and error["message"] == "the spec has 3 problems"
    by_path = {p["path"]: p for p in error["problems"]}
    assert set(by_path) == {"name", "stages[0].timeout_s", "stages[0].memmory_mb"}
    unknown = by_path["stages[0].memmory_mb"]
    assert (unknown["file"], unknown["line"], unknown["column"]) == (str(bad_spec), 7, 5)
    assert "did you mean 'memory_mb'" in unknown["message"] and "memory_mb" in unknown["hint"]
    assert f"{bad_spec}:7:5" in result.stderr  # people still get the readable message
    no_traceback(result)


def test_usage_errors_are_json_when_json_was_asked_for() -> None:
    result = run("plan", EXAMPLE, "--format", "json", "--no-such-option")
    assert result.returncode == 2
    error = json.loads(result.stdout)["error"]
    assert error["kind"] == "usage" and "--no-such-option" in error["message"]
    unknown_cloud = run("compare", EXAMPLE, "--cloud", "nimbus", "--format", "json")
    assert unknown_cloud.returncode == 2 and "no backend named 'nimbus'" in json.loads(unknown_cloud.stdout)["error"]["message"]


def test_validate_json_lists_every_problem_and_says_valid(bad_spec: Path) -> None:
    bad = run("validate", bad_spec, "--format", "json")
    data = json.loads(bad.stdout)
    assert bad.returncode == 2 and data["valid"] is False and len(data["error"]["problems"]) == 3
    good = run("validate", EXAMPLE, "--stack", "dev", "--cloud", "aws,azure", "--format", "json")
    assert good.returncode == 0, good.stderr
    ok = json.loads(good.stdout)
    assert ok["valid"] is True and ok["clouds_checked"] == ["aws", "azure"] and [s["trigger"] for s in ok["stages"]] == ["stream", "objects", "schedule"]


def test_validate_json_lists_what_each_cloud_cannot_express(write_spec: Callable[..., Path]) -> None:
    spec = write_spec("""\
        name: weekly
        stages:
          - {name: first, handler: "handlers/h.py:handle", trigger: {stream: {}}, timeout_s: 600}
          - {name: monthly, handler: "handlers/h.py:handle", trigger: {schedule: "0 1 1 * MON"}}
    """)
    result = run("validate", spec, "--cloud", "aws,gcp", "--format", "json")
    assert result.returncode == 2
    problems = json.loads(result.stdout)["error"]["problems"]
    assert any(p["message"].startswith("AWS: ") for p in problems) and any(p["message"].startswith("GCP: ") for p in problems)
    assert all(p["file"] == str(spec) and p["line"] for p in problems)


def test_plan_json_is_byte_identical_from_two_checkouts(tmp_path: Path) -> None:
    first = copy_example(tmp_path / "a" / "txn")
    second = copy_example(tmp_path / "somewhere" / "else" / "entirely")
    one = run("plan", first, "--stack", "dev", "--cloud", "aws", "--format", "json")
    two = run("plan", second, "--stack", "dev", "--cloud", "aws", "--format", "json", cwd=tmp_path)
    assert one.returncode == two.returncode == 0, one.stderr + two.stderr
    assert one.stdout == two.stdout
    assert str(tmp_path) not in one.stdout and "/work/" not in one.stdout
    function = next(r for r in json.loads(one.stdout)["resources"] if r["type"] == "aws:lambda/function:Function" and r["role"] == "score-function")
    assert function["inputs"]["code"]["archive"] == ".pipeline/build/aws/dev/score.zip"
    assert re.fullmatch(r"[0-9a-f]{64}", function["inputs"]["code"]["sha256"])


# ---- diff ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_compare(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("base") / "base.json"
    result = run("compare", EXAMPLE, "--stack", "dev", "--cloud", "aws", "--format", "json", "--output", target)
    assert result.returncode == 0, result.stderr
    return target


def test_diff_against_a_saved_compare_with_no_change_passes(saved_compare: Path) -> None:
    result = run("diff", EXAMPLE, "--stack", "dev", "--against", saved_compare, "--fail-above", "0", env=terminal_env(100))
    assert result.returncode == 0, result.stderr
    assert "no change" in result.stdout and "+$0.00 (+0%)" in result.stdout and "within --fail-above $0.00" in result.stdout


def test_diff_against_a_saved_compare_fails_above_usd(saved_compare: Path, tmp_path: Path) -> None:
    spec = copy_example(tmp_path / "change")
    overlay = spec.parent / "stacks" / "dev.yaml"
    overlay.write_text(overlay.read_text().replace("records_per_second: 150", "records_per_second: 1500"))
    result = run("diff", spec, "--stack", "dev", "--against", saved_compare, "--fail-above", "5", "--format", "json")
    assert result.returncode == 1, result.stderr
    data = json.loads(result.stdout)
    aws = data["clouds"]["aws"]
    assert aws["delta_monthly_usd"] > 5 and data["fail_above"] == {"threshold": "$5.00", "exceeded": True, "clouds": ["aws"]}
    assert any(line["item"] == "Kinesis shard-hours" and line["delta_usd"] > 0 for line in aws["cost_lines"])
    assert {"change": "changed", "role": "stream", "kind": "Stream", "type": "aws:kinesis/stream:Stream"}.items() <= aws["resource_changes"][0].items()
    assert "monthly cost rises by more than --fail-above $5.00: AWS +$" in result.stderr


def test_diff_between_two_stacks_fails_above_percent_with_a_pr_comment() -> None:
    result = run("diff", EXAMPLE, "--stack", "prod", "--against-stack", "dev", "--cloud", "aws", "--fail-above", "10%", "--format", "markdown")
    assert result.returncode == 1, result.stderr
    text = result.stdout
    assert text.startswith("## Monthly cost and resources: AWS")
    assert "| AWS | $" in text and "⚠️" in text and "exceeds --fail-above 10%" in text
    assert "<details><summary>AWS:" in text and "Kinesis" in text
    assert "--fail-above 10%" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (("--against-stack", "dev", "--fail-above", "ten"), "'ten' is not an amount"),
    ((), "say what to diff against"),
])
def test_diff_usage_errors_exit_2_before_planning(args: tuple[str, ...], message: str) -> None:
    result = run("diff", EXAMPLE, *args)
    assert result.returncode == 2 and message in result.stderr
    no_traceback(result)


def test_diff_refuses_a_json_file_that_is_not_a_comparison(tmp_path: Path) -> None:
    other = tmp_path / "plan.json"
    other.write_text('{"schema_version": 1, "resources": []}')
    result = run("diff", EXAMPLE, "--against", other, "--format", "json")
    assert result.returncode == 2
    assert "not a saved comparison" in json.loads(result.stdout)["error"]["message"]


# ---- init ---------------------------------------------------------------------------------


def test_init_validate_run_and_the_generated_handler_test(tmp_path: Path) -> None:
    project = tmp_path / "Fraud_Scoring"
    created = run("init", project)
    assert created.returncode == 0, created.stderr
    assert "pipeline validate" in created.stdout and "pipeline run --input data/transactions.jsonl" in created.stdout
    for name in ("pipeline.yaml", "stacks/dev.yaml", "handlers/preprocess.py", "models/fraud-model.json", "data/transactions.jsonl",
                 "tests/test_handlers.py", ".gitignore"):
        assert (project / name).is_file(), name
    assert "name: fraud-scoring\n" in (project / "pipeline.yaml").read_text()

    validated = run("validate", cwd=project)
    assert validated.returncode == 0 and "fraud-scoring" in validated.stdout, validated.stderr
    ran = run("run", "--input", "data/transactions.jsonl", cwd=project)
    assert ran.returncode == 0 and "dead letters: 0" in ran.stdout and "Traceback" not in ran.stderr, ran.stderr  # the first run succeeds
    # The second step: a sample of malformed transactions, dead-lettered, so the run says so and exits 1.
    bad = run("run", "--input", "data/transactions-with-errors.jsonl", cwd=project)
    assert bad.returncode == 1 and "dead letters" in bad.stderr and "Traceback (most recent call last)" in bad.stderr, bad.stderr
    assert (project / ".pipeline" / "local").is_dir()
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    tested = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=project, env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "5 passed" in tested.stdout

    again = run("init", project)
    assert again.returncode == 2 and "not empty" in again.stderr


def test_init_lists_templates_and_rejects_unknown_ones(tmp_path: Path) -> None:
    listed = run("init", "--list")
    assert listed.returncode == 0 and "transactions: Card transactions -> features -> fraud scores\n" in listed.stdout
    unknown = run("init", tmp_path / "x", "--template", "nope")
    assert unknown.returncode == 2 and "no template named 'nope' (templates: " in unknown.stderr and "transactions" in unknown.stderr
    bad_name = run("init", tmp_path / "y", "--name", "Bad_Name")
    assert bad_name.returncode == 2 and "not a valid pipeline name" in bad_name.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
