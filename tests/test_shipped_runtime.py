"""What ships in a function package is exactly what the deployed function imports (issue 23): the neutral runtime
(`pipeline.runtime`) and the cloud's entry module, never the local runner (`pipeline.local`), the CLI or the planner.

Each package is built as `pipeline plan`/`deploy` builds it, unpacked, and read two ways: statically (every import
statement of every shipped module, also inside functions, from the host's entry file on) and by importing the cloud's
entry module in a fresh interpreter whose only `pipeline` is the unpacked one.
"""

from __future__ import annotations

import ast
import json
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pipeline.backend import backend_class
from pipeline.local.layout import RUN_DIR
from pipeline.roles import FunctionCode
from pipeline.spec.load import load_spec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import import_cycles  # noqa: E402  (the import-graph reader the cycle test uses)

TREES = [ROOT / "src", *(ROOT / "providers" / cloud / "src" for cloud in ("aws", "gcp", "azure"))]
SHIM_ROOTS = ("pipeline", "pipeline_aws", "pipeline_gcp", "pipeline_azure")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("shipped") / "example"
    shutil.copytree(ROOT / "stacks" / "transactions", target, ignore=shutil.ignore_patterns(".pipeline", "__pycache__", RUN_DIR))
    return target


def _stage_package(project: Path, cloud: str) -> Path:
    loaded = load_spec(project / "pipeline.yaml")
    backend = backend_class(cloud)(loaded.spec, loaded.stack, loaded.base_dir)
    stage = loaded.spec.stage("score")
    return backend.package(stage, FunctionCode.for_stage(project, stage)).path


def _archiver_package(project: Path, cloud: str) -> Path:
    if cloud == "aws":
        from pipeline_aws import archiver_resources as aws_archiver

        return aws_archiver.package(project, "dev").path
    from pipeline_azure import archiver_resources as azure_archiver

    return azure_archiver.package(project, "dev", vendor_dependencies=False).path


# (how to build it, the host's entry module inside it, the module a fresh interpreter imports as the host would)
PACKAGES = {
    "aws-stage": (lambda p: _stage_package(p, "aws"), "pipeline_aws.runtime", "pipeline_aws.runtime"),
    "gcp-stage": (lambda p: _stage_package(p, "gcp"), "main", "main"),
    "azure-stage": (lambda p: _stage_package(p, "azure"), "function_app", "pipeline_azure.runtime"),
    "aws-archiver": (lambda p: _archiver_package(p, "aws"), "pipeline_aws.archive", "pipeline_aws.archive"),
    "azure-archiver": (lambda p: _archiver_package(p, "azure"), "function_app", "pipeline_azure.archive"),
}


def _unpacked(zip_path: Path, into: Path) -> dict[str, Path]:
    """The package's shim: its Python modules under the tool's packages, and the host's entry files at the root."""
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(into)
    found = import_cycles.modules([into])
    return {name: path for name, path in found.items() if name.split(".")[0] in SHIM_ROOTS or name in ("main", "function_app")}


def _imported_names(path: Path, module: str) -> set[str]:
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0] if "." in module else ""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names.update(import_cycles._imported(node, package))
    return names


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_a_package_ships_exactly_what_its_function_imports(project: Path, tmp_path: Path, package: str) -> None:
    build, entry, _ = PACKAGES[package]
    shipped = _unpacked(build(project), tmp_path / "unpacked")
    known = import_cycles.modules(TREES)  # every module of the tool and its backends
    missing = {}
    for module, path in shipped.items():
        for name in _imported_names(path, module):
            if name in known and name not in shipped:
                missing.setdefault(module, set()).add(name)
    assert not missing, f"shipped modules import modules the package does not hold: {missing}"
    graph = import_cycles.graph(shipped)
    reached, todo = set(), [entry]
    while todo:
        module = todo.pop()
        if module in reached:
            continue
        reached.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:depth]) for depth in range(1, len(parts)) if ".".join(parts[:depth]) in shipped]
        todo += sorted(graph[module])
    unused = sorted(set(shipped) - reached)
    assert not unused, f"{package} ships modules its function never imports: {unused}"
    assert not any(name.startswith(("pipeline.local", "pipeline.cli")) for name in shipped)


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_the_entry_module_imports_with_only_the_shipped_files(project: Path, tmp_path: Path, package: str) -> None:
    build, _, host_import = PACKAGES[package]
    unpacked = tmp_path / "unpacked"
    shipped = _unpacked(build(project), unpacked)
    # -I -S: no user site, no .pth files (the editable installs that point at this checkout), no PYTHONPATH; then the
    # unpacked package first and the environment's third-party packages (boto3, azure-functions, ...) after it.
    probe = (
        "import importlib, json, sys\n"
        f"sys.path[:0] = [{str(unpacked)!r}, *{site.getsitepackages()!r}]\n"
        f"importlib.import_module({host_import!r})\n"
        f"modules = [name for name in {sorted(n for n in shipped if n not in ('main', 'function_app'))!r}]\n"
        "for name in modules:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps({name: sys.modules[name].__file__ for name in modules}))\n"
    )
    result = subprocess.run([sys.executable, "-I", "-S", "-c", probe], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    files = json.loads(result.stdout)
    assert files and all(Path(file).is_relative_to(unpacked) for file in files.values()), files
