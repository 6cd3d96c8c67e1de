"""The console script in a shell: a closed pipe ends quietly with 0 (`compare | head -1` under pipefail),
Ctrl-C says "interrupted" (130) and leaves no worker behind, and completion offers the values people type
most and the script of the shell named."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_cli_ux import EXAMPLE, EXAMPLE_DIR, cli_env, pipeline_script, run


@pytest.mark.parametrize("args", [("compare", "--stack", "dev"), ("compare", "--stack", "dev", "--no-cache"),
                                  ("plan", "--cloud", "aws", "--no-cache"), ("compare", "--format", "json")],
                         ids=["compare-cached", "compare", "plan-table", "compare-json"])
def test_a_closed_pipe_ends_quietly_with_0(args: tuple[str, ...]) -> None:
    run(*args[:1], EXAMPLE, *args[1:])  # warm the plan cache for the cached case
    command = " ".join([pipeline_script(), args[0], str(EXAMPLE), *args[1:]])
    result = subprocess.run(["bash", "-o", "pipefail", "-c", f"{command} | head -1"], env=cli_env(), capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1 and result.stderr == ""


def _interrupt(args: list[str]) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Ctrl-C as a terminal sends it (to the whole process group) while the command works; retried sooner should
    the command finish first on a fast machine."""
    for delay in (2.0, 1.0, 0.5, 0.2):
        process = subprocess.Popen([pipeline_script(), *args], env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)
        time.sleep(delay)
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=300)
        left = subprocess.run(["pgrep", "-g", str(process.pid)], capture_output=True, text=True, check=False).stdout.split()
        if process.returncode != 0:
            return subprocess.CompletedProcess(args, process.returncode, out, err), left
    pytest.fail("the command always finished before Ctrl-C")


@pytest.mark.parametrize("jobs", ["1", "3"])
def test_ctrl_c_on_compare_says_interrupted(jobs: str) -> None:
    result, left = _interrupt(["compare", str(EXAMPLE), "--no-cache", "--jobs", jobs])
    assert result.returncode == 130, result.stderr
    assert result.stderr.strip().endswith("interrupted") and "Traceback" not in result.stderr, result.stderr
    assert left == [], f"workers left running: {left}"
    for pid in left:  # never leave them to the machine, even when the assertion above fails
        os.kill(int(pid), signal.SIGKILL)


def test_ctrl_c_with_json_writes_the_json_error() -> None:
    import json

    result, _ = _interrupt(["compare", str(EXAMPLE), "--no-cache", "--format", "json"])
    assert result.returncode == 130
    assert json.loads(result.stdout)["error"]["kind"] == "interrupted"


@pytest.mark.parametrize(("shell", "marker"), [("bash", "complete -o default -F _pipeline_completion pipeline"), ("zsh", "#compdef pipeline"),
                                               ("fish", "complete --command pipeline"), ("powershell", "Register-ArgumentCompleter")])
def test_show_completion_prints_the_named_shells_script(shell: str, marker: str) -> None:
    for args in (("--show-completion", shell), (f"--show-completion={shell}",)):
        result = run(*args)
        assert result.returncode == 0, result.stderr
        assert marker in result.stdout, result.stdout[:300]


def test_show_completion_of_an_unknown_shell_is_bad_usage() -> None:
    result = run("--show-completion", "tcsh")
    assert result.returncode == 2 and "bash, zsh, fish, powershell" in result.stderr and "Traceback" not in result.stderr


def complete(words: str, cwd: Path = EXAMPLE_DIR) -> list[str]:
    """What bash would offer after `words` (the cursor at the end)."""
    env = {**cli_env(), "_PIPELINE_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1))}
    result = subprocess.run([pipeline_script()], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return result.stdout.split()


def test_completion_offers_clouds_stacks_stages_and_templates(tmp_path: Path) -> None:
    assert complete("pipeline plan --cloud ") == ["aws", "azure", "gcp"]
    assert complete("pipeline compare --cloud aws,") == ["aws,azure", "aws,gcp"]
    assert complete("pipeline deploy --cloud g") == ["gcp"]
    assert complete("pipeline compare --stack ") == ["dev", "prod"]
    assert complete("pipeline diff --against-stack p") == ["prod"]
    other = EXAMPLE_DIR.parent / "upload-processing" / "pipeline.yaml"
    assert complete(f"pipeline validate {other} --stack ", cwd=tmp_path) == ["dev", "prod"]  # the spec named, not the folder's
    assert complete("pipeline invoke ") == ["preprocess", "score", "calibrate"]
    assert complete("pipeline invoke s") == ["score"]
    assert complete("pipeline invoke ", cwd=tmp_path) == []  # no spec here: nothing, and no traceback
    (tmp_path / "pipeline.yaml").write_text("stages: [{name: a\n")  # broken YAML
    assert complete("pipeline invoke ", cwd=tmp_path) == []
    assert "stream-scoring" in complete("pipeline init x --template ")


@pytest.mark.parametrize("delay", [0.08, 0.15, 0.3])
def test_ctrl_c_while_the_cli_loads_says_interrupted(delay: float) -> None:
    """Ctrl-C while Python imports the CLI or builds its commands: no traceback, 130, and the JSON error when JSON was
    asked. (A Ctrl-C before Python reaches the tool's code at all, on a slow machine, is Python's own: tried later.)"""
    import json

    while True:
        process = subprocess.Popen([pipeline_script(), "compare", str(EXAMPLE), "--no-cache", "--format", "json"], env=cli_env(),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        time.sleep(delay)
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=300)
        if "Traceback" in err and not re.search(r'File "[^"]*/pipeline/[^"]*\.py", line', err) and delay < 5:
            delay *= 2  # interrupted in Python's start-up, before a line of the tool's own code ran
            continue
        break
    assert process.returncode == 130 and "Traceback" not in err and err.strip().endswith("interrupted"), (process.returncode, err[-2000:])
    assert json.loads(out)["error"]["kind"] == "interrupted"


def test_the_early_interrupted_json_is_the_documented_error_object() -> None:
    import json

    from pipeline.cli.argv import INTERRUPTED_JSON
    from pipeline.cli.output import error_object

    assert json.dumps(error_object("interrupted", "interrupted", 130), indent=2) + "\n" == INTERRUPTED_JSON
