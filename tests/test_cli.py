"""The real `pipeline` console script, run in a subprocess: exit codes, output, no tracebacks.

Exit codes: 0 ok, 1 a failed check, 2 bad usage or a bad spec. Plans take ~1.5 s each, so
only a handful of tests plan.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Namespace packages (google.cloud, azure) may be pre-created by .pth files at start-up; only real SDK modules count.
CLOUD_SDKS = ("pulumi_aws", "pulumi_gcp", "pulumi_azure_native", "boto3", "botocore", "google.cloud.storage", "azure.storage", "azure.identity")


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    for stream in (result.stdout, result.stderr):
        assert "Traceback" not in stream, stream
        assert "internal error" not in stream, stream


# --- basics -------------------------------------------------------------------------------


def test_version(run_cli) -> None:
    from pipeline import __version__

    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"pipeline {__version__}"


def test_help_lists_commands(run_cli) -> None:
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    for command in ("validate", "plan", "schema", "backends"):
        assert command in result.stdout
    no_traceback(result)


def test_no_arguments_shows_help(run_cli) -> None:
    result = run_cli()
    assert result.returncode in (0, 2)  # click exits 2 for no_args_is_help on newer versions
    assert "Usage" in result.stdout + result.stderr
    no_traceback(result)


def test_help_imports_no_cloud_sdk(cli_env_vars: dict[str, str]) -> None:
    code = textwrap.dedent("""
        import sys
        sys.argv = ["pipeline", "--help"]
        from pipeline.cli.app import main
        try:
            main()
        except SystemExit:
            pass
        print("LOADED:", sorted(m for m in sys.modules if m.startswith(PREFIXES)))
        print("PYDANTIC:", "pydantic" in sys.modules)
    """).replace("PREFIXES", repr(CLOUD_SDKS))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env_vars, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines() if line.startswith(("LOADED:", "PYDANTIC:")))
    assert lines["LOADED"] == "[]", f"--help imported cloud SDKs: {lines['LOADED']}"
    assert lines["PYDANTIC"] == "False", "--help should not import pydantic either (heavy imports live inside commands)"


def test_unknown_option_exits_2(run_cli) -> None:
    result = run_cli("--no-such-option")
    assert result.returncode == 2
    assert "No such option" in result.stderr
    no_traceback(result)


def test_unknown_command_exits_2(run_cli) -> None:
    result = run_cli("deploi")
    assert result.returncode == 2
    assert "deploi" in result.stderr
    no_traceback(result)


def test_bad_format_value_message(run_cli, example_spec: Path) -> None:
    result = run_cli("plan", example_spec, "--format", "xml")
    assert result.returncode == 2
    assert "'xml'" in result.stderr and "table" in result.stderr and "json" in result.stderr


# --- validate -------------------------------------------------------------------------------


def test_validate_example(run_cli, example_spec: Path) -> None:
    result = run_cli("validate", example_spec)
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout and "txn-scoring" in result.stdout
    assert "preprocess (stream), score (objects), calibrate (schedule)" in result.stdout
    no_traceback(result)


def test_validate_example_with_stack_and_cloud(run_cli, example_spec: Path) -> None:
    result = run_cli("validate", example_spec, "--stack", "dev", "--cloud", "aws")
    assert result.returncode == 0, result.stderr
    assert "stack dev" in result.stdout


def test_validate_default_spec_in_cwd(run_cli, write_spec, minimal_spec: str) -> None:
    spec = write_spec(minimal_spec)
    result = run_cli("validate", cwd=spec.parent)
    assert result.returncode == 0, result.stderr
    assert "demo" in result.stdout


def test_validate_bad_spec_points_at_file_and_line(run_cli, write_spec, minimal_spec: str) -> None:
    spec = write_spec(minimal_spec + "    memmory_mb: 256\n")
    result = run_cli("validate", spec)
    assert result.returncode == 2, result.stdout
    assert f"{spec}:7:5: stages[0].memmory_mb: unknown key 'memmory_mb'; did you mean 'memory_mb'?" in result.stderr
    assert "1 problem" in result.stderr
    assert result.stdout == ""
    no_traceback(result)


def test_validate_reports_every_problem(run_cli, write_spec, minimal_spec: str) -> None:
    spec = write_spec(minimal_spec.replace("name: demo", "name: Demo") + "    timeout_s: 901\n")
    result = run_cli("validate", spec)
    assert result.returncode == 2
    assert "2 problems" in result.stderr
    assert f"{spec}:1:7: name:" in result.stderr
    assert f"{spec}:7:16: stages[0].timeout_s:" in result.stderr
    no_traceback(result)


@pytest.mark.parametrize("raw", [b"\x00\x01\x02garbage\xff", b"name: [[[[", b"", "name: caf\xe9".encode("latin-1"),
                                 b"a: &a [1]\nb: !!python/object/apply:os.system ['true']\n"])
def test_validate_hostile_input_exits_2_cleanly(run_cli, write_spec, raw: bytes) -> None:
    spec = write_spec(raw=raw)
    result = run_cli("validate", spec)
    assert result.returncode == 2
    assert str(spec) in result.stderr
    no_traceback(result)


def test_validate_overlay_error_points_at_overlay(run_cli, write_spec, minimal_spec: str) -> None:
    spec = write_spec(minimal_spec, files={"stacks/dev.yaml": "# dev\nworkload:\n  records_per_secnd: 10\n"})
    result = run_cli("validate", spec, "--stack", "dev")
    assert result.returncode == 2
    assert f"{spec.parent / 'stacks' / 'dev.yaml'}:3:3: workload.records_per_secnd:" in result.stderr
    assert "did you mean 'records_per_second'" in result.stderr
    no_traceback(result)


def test_validate_unknown_stack_lists_stacks(run_cli, example_spec: Path) -> None:
    result = run_cli("validate", example_spec, "--stack", "nosuch")
    assert result.returncode == 2
    assert "no overlay for stack 'nosuch'" in result.stderr and "available stacks: dev, prod" in result.stderr
    no_traceback(result)


def test_validate_unknown_cloud_exits_2(run_cli, example_spec: Path) -> None:
    result = run_cli("validate", example_spec, "--cloud", "nosuch")
    assert result.returncode == 2
    assert "no backend named 'nosuch'" in result.stderr
    no_traceback(result)


@pytest.mark.parametrize("command", ["validate", "plan"])
def test_missing_spec_file_exits_2(run_cli, tmp_path: Path, command: str) -> None:
    missing = tmp_path / "nope.yaml"
    result = run_cli(command, missing)
    assert result.returncode == 2
    assert f"{missing}: no such file" in result.stderr
    no_traceback(result)


def test_directory_as_spec_exits_2(run_cli, tmp_path: Path) -> None:
    result = run_cli("validate", tmp_path)
    assert result.returncode == 2
    assert "directory" in result.stderr
    no_traceback(result)


def test_errors_are_not_wrapped_when_piped(write_spec, minimal_spec: str, cli_env_vars: dict[str, str], pipeline_exe: str) -> None:
    spec = write_spec(minimal_spec.replace("handlers/h.py:handle", "handlers/a-rather-long-handler-file-name.py:handle"))
    env = dict(cli_env_vars)
    env.pop("COLUMNS", None)
    result = subprocess.run([pipeline_exe, "validate", str(spec)], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 2
    problem_lines = [line for line in result.stderr.splitlines() if line.startswith(str(spec))]
    assert len(problem_lines) == 1 and problem_lines[0].endswith(")"), result.stderr


# --- plan ----------------------------------------------------------------------------------


def test_plan_aws_dev_table(run_cli, example_spec: Path) -> None:
    result = run_cli("plan", example_spec, "--cloud", "aws", "--stack", "dev")
    assert result.returncode == 0, result.stderr
    assert "kinesis.Stream" in result.stdout
    assert "lambda.Function" in result.stdout
    assert "txn-scoring" in result.stdout
    no_traceback(result)


def test_plan_json(run_cli, example_spec: Path) -> None:
    result = run_cli("plan", example_spec, "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["cloud"] == "aws"
    assert data["pipeline"] == "txn-scoring"
    assert isinstance(data["resources"], list) and data["resources"]
    types = {r["type"] for r in data["resources"]}
    assert any("kinesis" in t for t in types) and any("lambda" in t for t in types)


def test_plan_output_writes_file(run_cli, example_spec: Path, tmp_path: Path) -> None:
    target = tmp_path / "plan.txt"
    result = run_cli("plan", example_spec, "--stack", "prod", "--output", target)
    assert result.returncode == 0, result.stderr
    text = target.read_text(encoding="utf-8")
    assert "kinesis.Stream" in text and "lambda.Function" in text
    assert "kinesis.Stream" not in result.stdout
    no_traceback(result)


def test_plan_unknown_cloud_exits_2(run_cli, example_spec: Path) -> None:
    result = run_cli("plan", example_spec, "--cloud", "nosuch")
    assert result.returncode == 2
    assert "no backend named 'nosuch'" in result.stderr
    assert "installed:" in result.stderr and "aws" in result.stderr
    no_traceback(result)


def test_plan_bad_spec_exits_2_before_planning(run_cli, write_spec, minimal_spec: str) -> None:
    spec = write_spec(minimal_spec.replace("stream: {}", "schedule: rate(5 minute)"))
    result = run_cli("plan", spec)
    assert result.returncode == 2
    assert f"{spec}:6:17: stages[0].trigger.schedule: write rate(5 minutes) with a plural unit" in result.stderr
    no_traceback(result)


# --- schema and backends -------------------------------------------------------------------


def test_schema_is_json(run_cli) -> None:
    result = run_cli("schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert "stages" in schema["properties"]
    assert "from" in schema["$defs"]["ObjectsTrigger"]["properties"]
    assert schema["additionalProperties"] is False


def test_backends_lists_aws(run_cli) -> None:
    result = run_cli("backends")
    assert result.returncode == 0, result.stderr
    names = result.stdout.split()
    assert "aws" in names
    assert names == sorted(names) or len(names) == len(set(names))


def test_console_script_is_the_venv_one(pipeline_exe: str) -> None:
    script = Path(pipeline_exe)
    assert script.parent == Path(sys.executable).parent
    assert os.access(script, os.X_OK)
