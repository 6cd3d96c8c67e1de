"""`pipeline init`: a new project from a template, ready for `validate`, `run` and `compare`.

The templates are the bundled example stacks (`stacks/<name>/` in the source tree, or
`pipeline/templates/<name>/` when packaged): each is a complete, tested project (spec, stack
overlays, handlers, a model, sample data and a handler test), so what `init` writes is exactly
what the project's own tests run. Only the pipeline's name changes (to match the new folder).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pipeline

SKIP = {".pipeline", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".venv", ".git"}
SKIP_SUFFIXES = {".pyc", ".svg", ".png", ".html"}
GITIGNORE = "# pipeline's local state, builds and local runs\n.pipeline/\n__pycache__/\n.pytest_cache/\n"
_NAME_LINE = re.compile(r"^name:\s*\S+.*$", re.MULTILINE)


class InitError(ValueError):
    """Bad usage of `init` (exit 2): a non-empty folder, an unknown template, an unusable name."""


def templates() -> dict[str, Path]:
    """Template name -> folder. Packaged templates win over a source checkout's `stacks/`."""
    package = Path(pipeline.__file__).parent
    for root in (package / "templates", package.parents[1] / "stacks"):
        if root.is_dir():
            found = {p.name: p for p in sorted(root.iterdir()) if (p / "pipeline.yaml").is_file()}
            if found:
                return found
    return {}


def describe(template: Path) -> str:
    """What a template is: its spec's `description`, else its first comment line."""
    text = (template / "pipeline.yaml").read_text(encoding="utf-8")
    found = re.search(r"^description:\s*(.+?)\s*$", text, re.MULTILINE)
    if found:
        return found.group(1).strip("'\"")
    comment = next((line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#") and line.strip("# ")), "")
    return comment or template.name


def project_name(folder: Path) -> str:
    """A valid pipeline name from a folder name: lowercase letters, digits, single hyphens, 3-20 chars."""
    raw = re.sub(r"[^a-z0-9]+", "-", folder.resolve().name.lower()).strip("-")
    raw = re.sub(r"^[^a-z]+", "", raw)[:20].strip("-")
    return raw if len(raw) >= 3 else "my-pipeline"


def check_name(name: str) -> str:
    if not (3 <= len(name) <= 20) or not re.fullmatch(r"[a-z]([a-z0-9-]*[a-z0-9])?", name) or "--" in name:
        raise InitError(f"{name!r} is not a valid pipeline name: use 3-20 lowercase letters, digits and single hyphens, "
                        "starting with a letter and ending with a letter or digit")
    return name


def _copy(source: Path, target: Path) -> list[Path]:
    written = []
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if SKIP.intersection(relative.parts) or path.suffix in SKIP_SUFFIXES or not path.is_file():
            continue
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)
        written.append(destination)
    return written


def init_project(target: Path, template: str = "transactions", name: str | None = None) -> list[Path]:
    """Copy `template` into `target` (new or empty), name the pipeline, and return the files written."""
    found = templates()
    if template not in found:
        known = ", ".join(found) or "none are installed"
        raise InitError(f"no template named {template!r} (templates: {known})")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InitError(f"{target} is not empty; choose a new or empty folder")
    pipeline_name = check_name(name) if name else project_name(target)
    target.mkdir(parents=True, exist_ok=True)
    written = _copy(found[template], target)
    spec = target / "pipeline.yaml"
    text = spec.read_text(encoding="utf-8")
    text = _NAME_LINE.sub(f"name: {pipeline_name}", text, count=1)
    text = text.replace(f"stacks/{template}/", "")  # the template's "Try it" commands, from the new project's folder
    spec.write_text(text, encoding="utf-8")
    ignore = target / ".gitignore"
    if not ignore.exists():
        ignore.write_text(GITIGNORE, encoding="utf-8")
        written.append(ignore)
    return written


def _run_hint(spec: Path) -> str | None:
    """The template's own `pipeline run ...` example (from its spec's comments), else one built from its sample data."""
    for line in spec.read_text(encoding="utf-8").splitlines():
        found = re.search(r"(pipeline run .+)$", line) if line.startswith("#") else None
        if found:
            return found.group(1).replace(" pipeline.yaml", "", 1).strip()
    return None


def next_steps(written: list[Path], target: Path) -> str:
    """What `init` prints: what it made and the commands of the everyday loop."""
    data = next((p.relative_to(target).as_posix() for p in written if p.parent.name == "data" and p.suffix == ".jsonl"), None)
    handlers = sum(1 for p in written if p.parent.name == "handlers" and p.suffix == ".py")
    tests = [p.relative_to(target).as_posix() for p in written if p.name.startswith("test_") and p.suffix == ".py"]
    run = _run_hint(target / "pipeline.yaml") or (f"pipeline run --input {data}" if data else None)
    enter = None if target.resolve() == Path.cwd().resolve() else f"  cd {target}"
    lines = [f"created {target}: pipeline.yaml, {handlers} handlers{', sample data' if data else ''}{', a handler test' if tests else ''} "
             f"({len(written)} files)", "", "next:", enter,
             "  pipeline validate                  # check the spec",
             f"  {run}" if run else None,
             "  python -m pytest tests             # the handler test" if tests else None,
             "  pipeline compare --stack dev       # cost, capacity and limits on AWS, GCP and Azure"]
    return "\n".join(line for line in lines if line is not None)
