"""`pipeline export`: the standalone project runs the same program and yields the same plan."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
EXAMPLE = ROOT / "stacks" / "transactions" / "pipeline.yaml"
EXE = shutil.which("pipeline", path=str(Path(sys.executable).parent)) or "pipeline"

# Runs inside the exported project with only its lib/ on the path: the vendored planner plans
# the exported program, exactly as a reviewer would check it before `pulumi up`.
ROUND_TRIP = """
import json, runpy, sys
sys.path.insert(0, "lib")
import pipeline
assert pipeline.__file__.startswith(sys.argv[1]), pipeline.__file__
from pipeline.planner import plan
from pipeline.spec.load import load_spec
main = runpy.run_path("__main__.py")
loaded = load_spec("spec/pipeline.yaml", main["STACK"])
print(plan(loaded, main["CLOUD"], program=main["program"]).to_json())
"""


def normalize(plan_json: str, *roots: Path) -> dict:  # type: ignore[type-arg]
    text = plan_json
    for root in roots:
        text = text.replace(str(root), "<spec>")
    return json.loads(text)


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_exported_project_plans_exactly_like_pipeline_plan(cloud: str, tmp_path: Path) -> None:
    out = tmp_path / "project"
    env = {**os.environ, "NO_COLOR": "1"}
    exported = subprocess.run([EXE, "export", str(EXAMPLE), "--stack", "dev", "--cloud", cloud, "--output", str(out)],
                              capture_output=True, text=True, env=env, timeout=300, check=False)
    assert exported.returncode == 0, exported.stderr
    for name in ("Pulumi.yaml", "__main__.py", "requirements.txt", f"Pulumi.dev-{cloud}.yaml", "README.md",
                 "spec/pipeline.yaml", "spec/stacks/dev.yaml", "spec/handlers/score.py", "spec/models/fraud-model.json",
                 "lib/pipeline/program.py", f"lib/pipeline_{cloud}/backend.py"):
        assert (out / name).is_file(), name
    requirements = (out / "requirements.txt").read_text()
    assert "pulumi==" in requirements and {"aws": "pulumi-aws", "gcp": "pulumi-gcp", "azure": "pulumi-azure-native"}[cloud] in requirements
    assert "pipeline-deployer" not in requirements  # standalone: the library is vendored

    original = subprocess.run([EXE, "plan", str(EXAMPLE), "--stack", "dev", "--cloud", cloud, "--format", "json"],
                              capture_output=True, text=True, env=env, timeout=300, check=True).stdout
    clean_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    replay = subprocess.run([sys.executable, "-c", ROUND_TRIP, str(out / "lib")], cwd=out, capture_output=True, text=True,
                            env=clean_env, timeout=300, check=False)
    assert replay.returncode == 0, replay.stderr
    assert normalize(replay.stdout, out / "spec") == normalize(original, EXAMPLE.parent)


def test_export_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    result = subprocess.run([EXE, "export", str(EXAMPLE), "--output", str(tmp_path)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2 and "not empty" in result.stderr
    assert (tmp_path / "keep.txt").read_text() == "mine"
