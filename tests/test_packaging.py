"""Function packages: deterministic, complete for each cloud's host, vendored for the right platform, size-checked."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pipeline.backend import backend_class
from pipeline.errors import PipelineError
from pipeline.packaging import FIXED_TIME, Recipe, stage_package
from pipeline.roles import FunctionCode
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
            assert not any(n.startswith("pipeline/local/") for n in names)  # the local runner never ships
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


# ---- issue 19 item 14, issue 21 item 8 --------------------------------------------------------------------

def _script(*args: str | Path, env: dict[str, str] | None = None, columns: int = 200) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, timeout=900, check=False,
                          env={**os.environ, "COLUMNS": str(columns), "NO_COLOR": "1", "PIPELINE_SERVER": "0", **(env or {})})


@pytest.mark.parametrize("command", [["plan", "--cloud", "azure", "--format", "json", "--no-cache"], ["package", "--cloud", "gcp", "--no-deps"]],
                         ids=["plan", "package"])
def test_concurrent_runs_of_one_project_never_collide(project: Path, command: list[str]) -> None:
    """Issue 19, item 14: 3-4 concurrent runs failed on a fixed temporary package name under .pipeline/build/."""
    for _ in range(3):
        runs = [subprocess.Popen([EXE, command[0], str(project / "pipeline.yaml"), *command[1:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env={**os.environ, "PIPELINE_SERVER": "0", "COLUMNS": "200"}) for _ in range(4)]
        results = [(process.communicate(timeout=900), process.returncode) for process in runs]
        assert all(code == 0 for _, code in results), [err for (_, err), _ in results]
        assert len({out for (out, _), _ in results}) == 1
    assert not list((project / ".pipeline").rglob("*.tmp")), "temporary files were left behind"


def test_the_package_table_fits_80_columns_with_paths_relative_to_the_spec(project: Path) -> None:
    result = _script("package", project / "pipeline.yaml", "--cloud", "azure", "--no-deps", columns=80)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80, result.stdout
    assert str(project) not in result.stdout, "an absolute path"
    assert "in .pipeline/build/azure/default/ next to pipeline.yaml" in result.stdout
    for stage in ("preprocess", "score", "calibrate"):
        assert any(f"{stage}.zip" in line and stage in line.split("│")[1] for line in lines if "│" in line), stage


def test_packages_are_the_bytes_zipfile_writes() -> None:
    """The package writer reuses deflated members; its archives are what zipfile makes of the same entries."""
    import io

    from pipeline import zipper

    entries = {"b/2.py": b"x = 2\n" * 1000, "a.py": b"", "h\u00e9llo.txt": b"non-ASCII names", "big.bin": os.urandom(200_000)}
    expected = io.BytesIO()
    with zipfile.ZipFile(expected, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            archive.writestr(info, entries[name], compresslevel=9)
    assert zipper.zip_bytes(entries) == expected.getvalue()
    assert zipper.read_members(expected.getvalue()) == entries


SIX_PINNED = "six==1.16.0 --hash=sha256:8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254\n"
_COUNT_PIP = """
    def wrap(module):
        original = module._pip_install

        def _pip_install(*args, **kwargs):
            with open(os.environ["FAULT"], "a") as log:
                log.write("pip\\n")
            return original(*args, **kwargs)

        module._pip_install = _pip_install
"""


def _aws_packages(project: Path, env: dict[str, str], *extra: str) -> tuple[str, int]:
    """`package --cloud aws` (with dependencies); its JSON and how many times pip ran."""
    log = Path(env["FAULT"])
    before = log.read_text().count("pip") if log.exists() else 0
    result = _script("package", project / "pipeline.yaml", "--cloud", "aws", "--format", "json", *extra, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout, (log.read_text().count("pip") if log.exists() else 0) - before


@pytest.fixture
def counted(tmp_path: Path) -> dict[str, str]:
    from faults import injected

    return {**injected(tmp_path / "hook", "pipeline.packaging", _COUNT_PIP), "FAULT": str(tmp_path / "pip-runs"),
            "PIPELINE_CACHE_DIR": str(tmp_path / "cache")}


def test_hash_pinned_requirements_are_installed_once_and_reused(project: Path, counted: dict[str, str]) -> None:
    """Issue 21, item 8: every `package` ran pip and deflated the wheels again."""
    (project / "handlers" / "requirements.txt").write_text(SIX_PINNED)
    first, pip_runs = _aws_packages(project, counted)
    assert pip_runs == 1, "one pip run for every stage sharing the requirements"
    again, pip_runs = _aws_packages(project, counted)
    assert (again, pip_runs) == (first, 0)
    fresh, pip_runs = _aws_packages(project, counted, "--no-cache")
    assert (fresh, pip_runs) == (first, 1)
    assert all(package["files"] > 10 for package in json.loads(first)["packages"])  # six's files went in


def test_unpinned_requirements_are_resolved_by_pip_every_time(project: Path, counted: dict[str, str]) -> None:
    """A cache keyed on the text alone would miss a new release of an unpinned dependency."""
    (project / "handlers" / "requirements.txt").write_text("six>=1.16\n")
    first, pip_runs = _aws_packages(project, counted)
    again, pip_runs_again = _aws_packages(project, counted)
    assert (pip_runs, pip_runs_again) == (1, 1) and again == first
    trees = list((Path(counted["PIPELINE_CACHE_DIR"]) / "packages" / "trees").glob("*.zip"))
    assert len(trees) == 1 and stat.S_IMODE(trees[0].stat().st_mode) == 0o600


def test_package_cache_entries_of_another_user_or_damaged_are_never_used(project: Path, counted: dict[str, str]) -> None:
    from faults import OTHER_UID, need_root

    need_root()
    (project / "handlers" / "requirements.txt").write_text(SIX_PINNED)
    first, _ = _aws_packages(project, counted)
    cache = Path(counted["PIPELINE_CACHE_DIR"]) / "packages"
    (tree,) = (cache / "trees").glob("*.zip")
    header, _, body = tree.read_bytes().partition(b"\n")
    forged = body.replace(b"six", b"SIX")  # a planted tree (its checksum made to match)
    fields = json.loads(header)
    fields.update(sha256=__import__("hashlib").sha256(forged).hexdigest(), bytes=len(forged))
    tree.write_bytes(json.dumps(fields).encode() + b"\n" + forged)
    os.chown(tree, OTHER_UID, OTHER_UID)
    again, pip_runs = _aws_packages(project, counted)
    assert (again, pip_runs) == (first, 1), "another user's tree was used"
    for entry in cache.rglob("*"):
        if entry.is_file():
            entry.write_bytes(entry.read_bytes()[:-10])  # truncated: its checksum no longer matches
    damaged, pip_runs = _aws_packages(project, counted)
    assert (damaged, pip_runs) == (first, 1)
