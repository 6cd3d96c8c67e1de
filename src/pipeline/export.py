"""`pipeline export`: a standalone Pulumi project a user can run with plain `pulumi up`.

The escape hatch keeps the exact program: the orchestrator and the cloud backend are vendored
into `lib/` next to a copy of the spec and every file it references, so the project needs
only PyPI packages (Pulumi, the cloud's Pulumi SDK, pydantic, PyYAML) and not this tool.
"""

from __future__ import annotations

import importlib
import shutil
from importlib.metadata import entry_points, version
from pathlib import Path

from pipeline.backend import ENTRY_POINT_GROUP, backend_class
from pipeline.deploy.naming import stack_name
from pipeline.errors import PipelineError
from pipeline.spec.load import LoadedSpec, overlay_path, spec_problems
from pipeline.spec.paths import UnsafePathError, project_tree, refused, resolve_in_project

_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pipeline", ".mypy_cache", ".pytest_cache")

MAIN = '''"""Pulumi program exported by `pipeline export` ({cloud}, stack {stack}).

It runs the same orchestrator as `pipeline deploy`, vendored in lib/. Edit freely: it is yours now.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "lib"))

from pipeline.backend import backend_class  # noqa: E402
from pipeline.program import pipeline_program  # noqa: E402
from pipeline.spec.load import load_spec  # noqa: E402

CLOUD = "{cloud}"
STACK = {overlay!r}  # the overlay merged over spec/{spec_name}, or None


def program(backend=None):
    """Build the pipeline; the offline planner passes its own backend instance."""
    if backend is None:
        loaded = load_spec(HERE / "spec" / "{spec_name}", STACK)
        backend = backend_class(CLOUD)(loaded.spec, loaded.stack, loaded.base_dir)
    return pipeline_program(backend)


if __name__ == "__main__":
    program()
'''

README = """# {name}: exported Pulumi project ({cloud})

Exported by `pipeline export`. It is a plain Pulumi Python project:

    python -m venv venv && venv/bin/pip install -r requirements.txt
    pulumi login --local            # or your own backend
    pulumi stack init {stack_name}
    pulumi config set-all {config_args}
    pulumi up

`spec/` holds the pipeline spec and every file it references; `lib/` holds the orchestrator
(`pipeline`) and the {cloud} backend (`{backend_package}`) that `pipeline deploy` runs.
"""


def _referenced_files(loaded: LoadedSpec) -> list[Path]:
    """The spec, its overlay, and everything the stages reference (whole handler folders,
    since handlers may import their neighbours), re-checked to stay inside the project."""
    root = loaded.base_dir
    files = [loaded.path]
    if loaded.stack != "default":
        files.append(overlay_path(loaded.path, loaded.stack))
    for stage in loaded.spec.stages:
        handler_dir = (root / stage.handler_file).parent
        try:
            files.extend(handler_dir / name for name, _ in project_tree(root, handler_dir))
            for extra in (stage.requirements, stage.model):
                if extra:
                    resolve_in_project(root, extra, "file")
                    files.append(root / extra)
        except UnsafePathError as exc:
            raise refused(exc, handler_dir, f"export stage {stage.name}") from None
    return sorted(set(files))


def _vendor(package: str, target: Path) -> None:
    source = Path(importlib.import_module(package).__file__ or "").parent
    shutil.copytree(source, target / package, ignore=_IGNORE, dirs_exist_ok=True)


def _requirements(cloud: str) -> list[str]:
    found = next(ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == cloud)
    assert found.dist is not None
    cloud_sdks = [r for r in (found.dist.requires or []) if not r.startswith("pipeline-")]
    return [f"pulumi=={version('pulumi')}", f"pydantic=={version('pydantic')}", f"PyYAML=={version('PyYAML')}", *cloud_sdks]


def export(loaded: LoadedSpec, cloud: str, output: Path) -> list[Path]:
    """Write the project; refuses a non-empty folder so nothing of the user's is overwritten."""
    cls = backend_class(cloud)
    backend = cls(loaded.spec, loaded.stack, loaded.base_dir)
    problems = backend.check()
    if problems:
        raise spec_problems(loaded, problems, prefix=f"{cls.title}: ")
    if output.exists() and any(output.iterdir()):
        raise PipelineError(f"{output} is not empty; export into a new or empty folder")
    output.mkdir(parents=True, exist_ok=True)

    for path in _referenced_files(loaded):
        target = output / "spec" / path.relative_to(loaded.base_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    backend_package = cls.__module__.split(".")[0]
    for package in ("pipeline", backend_package):
        _vendor(package, output / "lib")

    name = loaded.spec.name
    stack = stack_name(loaded, cloud)
    overlay = loaded.stack if loaded.stack != "default" else None
    config = backend.stack_config()
    (output / "__main__.py").write_text(MAIN.format(cloud=cloud, stack=stack, overlay=overlay, spec_name=loaded.path.name))
    (output / "Pulumi.yaml").write_text(
        f"name: {name}\nruntime:\n  name: python\n  options:\n    toolchain: pip\n    virtualenv: venv\n"
        f"description: {loaded.spec.description or name} (exported by pipeline export for {cloud})\n"
    )
    (output / f"Pulumi.{stack}.yaml").write_text("config:\n" + "".join(f"  {key}: {value!r}\n" for key, value in sorted(config.items())))
    (output / "requirements.txt").write_text("\n".join(_requirements(cloud)) + "\n")
    config_args = " ".join(f"--plaintext {key}={value}" for key, value in sorted(config.items())) or "(none)"
    (output / "README.md").write_text(README.format(name=name, cloud=cloud, stack_name=stack, config_args=config_args, backend_package=backend_package))
    return sorted(p for p in output.rglob("*") if p.is_file())
