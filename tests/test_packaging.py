"""Function packages: deterministic, complete for each cloud's host, vendored for the right platform, size-checked."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pipeline.backend import FunctionCode, backend_class
from pipeline.errors import PipelineError
from pipeline.packaging import FIXED_TIME, Recipe, stage_package
from pipeline.spec.load import load_spec

ROOT = Path(__file__).parents[1]
EXAMPLE_DIR = ROOT / "stacks" / "transactions"
EXE = shutil.which("pipeline", path=str(Path(sys.executable).parent)) or "pipeline"


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A copy of the example, so builds and edits never touch the repository."""
    target = tmp_path / "example"
    shutil.copytree(EXAMPLE_DIR, target, ignore=shutil.ignore_patterns(".pipeline", "__pycache__"))
    return target


def code_for(root: Path, stage_name: str) -> tuple[object, FunctionCode]:
    loaded = load_spec(root / "pipeline.yaml")
    stage = loaded.spec.stage(stage_name)
    return stage, FunctionCode.for_stage(root, stage)


def build(root: Path, cloud: str, stage_name: str = "score"):  # type: ignore[no-untyped-def]
    loaded = load_spec(root / "pipeline.yaml")
    backend = backend_class(cloud)(loaded.spec, loaded.stack, loaded.base_dir)
    stage, code = code_for(root, stage_name)
    return backend.package(stage, code)  # type: ignore[arg-type]


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_same_inputs_give_a_byte_identical_archive(project: Path, cloud: str) -> None:
    first = build(project, cloud)
    first_bytes = first.path.read_bytes()
    os.utime(project / "handlers" / "score.py", (1, 1))  # timestamps of the sources do not matter
    second = build(project, cloud)
    assert second.path.read_bytes() == first_bytes and second.sha256 == first.sha256
    with zipfile.ZipFile(first.path) as archive:
        infos = archive.infolist()
        assert [i.filename for i in infos] == sorted(i.filename for i in infos)
        assert {i.date_time for i in infos} == {FIXED_TIME}
        assert {(i.external_attr >> 16) & 0o777 for i in infos} == {0o644}
    (project / "handlers" / "score.py").write_text((project / "handlers" / "score.py").read_text() + "\n# changed\n")
    assert build(project, cloud).sha256 != first.sha256


def test_packages_hold_the_handler_folder_the_shim_and_the_cloud_layout(project: Path) -> None:
    expected = {
        "aws": {"pipeline_aws/runtime.py"},
        "gcp": {"main.py", "pipeline_gcp/runtime.py", "requirements.txt"},
        "azure": {"function_app.py", "host.json", "pipeline_azure/runtime.py", "requirements.txt"},
    }
    for cloud, extra in expected.items():
        with zipfile.ZipFile(build(project, cloud).path) as archive:
            names = set(archive.namelist())
            assert {"handlers/score.py", "handlers/preprocess.py", "pipeline/__init__.py", "pipeline/runtime/invoke.py"} | extra <= names, cloud
            assert "pipeline/runtime/local.py" not in names  # the local runner never ships
            assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
            assert "models/fraud-model.json" not in names  # the model is an artifact object, not code
    with zipfile.ZipFile(build(project, "gcp").path) as archive:
        assert "functions-framework" in archive.read("requirements.txt").decode()
    with zipfile.ZipFile(build(project, "azure").path) as archive:
        assert "azure-functions" in archive.read("requirements.txt").decode()


def test_a_package_over_the_limit_is_a_clear_error(project: Path) -> None:
    _, code = code_for(project, "score")
    tiny = Recipe("aws", ("pipeline.runtime",), limit_bytes=1000)
    with pytest.raises(PipelineError, match=r"package for stage 'score' is .* MB zipped, over the .* MB limit"):
        stage_package("score", code, tiny, project / "out.zip", vendor_dependencies=False)


def test_requirements_are_vendored_as_wheels_for_the_clouds_platform(project: Path) -> None:
    """Uses pip against PyPI (reachable here); six is a tiny pure-Python wheel."""
    (project / "handlers" / "requirements.txt").write_text("six==1.16.0\n")
    _, code = code_for(project, "score")
    recipe = Recipe("aws", ("pipeline.runtime",), vendor_platform="manylinux2014_aarch64", vendor_python="3.12")
    built = stage_package("score", code, recipe, project / "vendored.zip", vendor_dependencies=True)
    with zipfile.ZipFile(built.path) as archive:
        names = set(archive.namelist())
    assert "six.py" in names and any(n.startswith("six-1.16.0.dist-info/") for n in names)
    azure = Recipe("azure", ("pipeline.runtime",), vendor_platform="manylinux2014_x86_64", vendor_prefix=".python_packages/lib/site-packages/")
    with zipfile.ZipFile(stage_package("score", code, azure, project / "az.zip", vendor_dependencies=True).path) as archive:
        assert ".python_packages/lib/site-packages/six.py" in archive.namelist()


def test_plans_reference_the_built_package(project: Path) -> None:
    from pipeline.planner import plan

    aws = plan(load_spec(project / "pipeline.yaml"), "aws")
    fn = aws.one("aws:lambda/function:Function", "score-function")
    assert fn.inputs["handler"] == aws.one("aws:lambda/function:Function", "preprocess-function").inputs["handler"] == "pipeline_aws.runtime.handler"
    assert fn.inputs["code"]["archive"] == str(project / ".pipeline" / "build" / "aws" / "default" / "score.zip")


def test_package_command_reports_sizes(project: Path) -> None:
    result = subprocess.run([EXE, "package", str(project / "pipeline.yaml"), "--cloud", "gcp", "--no-deps"],
                            capture_output=True, text=True, env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    for stage in ("preprocess", "score", "calibrate"):
        assert stage in result.stdout
    assert " MB" in result.stdout
