"""`pipeline init`: a new project from a template, ready for `validate`, `run` and `compare`.

The templates are the bundled example stacks (`stacks/<name>/` in the source tree, or
`pipeline/templates/<name>/` when packaged): each is a complete, tested project (spec, stack
overlays, handlers, a model, sample data and a handler test), so what `init` writes is exactly
what the project's own tests run. Only the pipeline's name changes (to match the new folder).
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pipeline

SKIP = {".pipeline", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".venv", ".git"}
SKIP_SUFFIXES = {".pyc", ".svg", ".png", ".html"}
GITIGNORE = "# pipeline's local state, builds and local runs\n.pipeline/\n__pycache__/\n.pytest_cache/\n"
FALLBACK_NAME = "my-pipeline"  # when the folder's name cannot be made a pipeline's
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
    return raw if len(raw) >= 3 else FALLBACK_NAME


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


class Created(list[Path]):
    """The files `init_project` wrote (a list of paths, as callers iterate it), and how it named the pipeline."""

    def __init__(self, files: list[Path], template: str, template_name: str, name: str, from_folder: bool) -> None:
        super().__init__(files)
        self.template, self.template_name, self.name, self.from_folder = template, template_name, name, from_folder


def init_project(target: Path, template: str = "transactions", name: str | None = None) -> Created:
    """Copy `template` into `target` (new or empty), name the pipeline, and return the files written.
    A folder that cannot be made or written is an InitError too, and leaves nothing half-made behind."""
    found = templates()
    if template not in found:
        known = ", ".join(found) or "none are installed"
        raise InitError(f"no template named {template!r} (templates: {known})")
    if target.exists() and not target.is_dir():
        raise InitError(f"{target} is a file, not a folder; choose a new or empty folder")
    if target.is_dir() and any(target.iterdir()):
        raise InitError(f"{target} is not empty; choose a new or empty folder")
    pipeline_name = check_name(name) if name else project_name(target)
    existed = target.is_dir()
    try:
        target.mkdir(parents=True, exist_ok=True)
        written = _copy(found[template], target)
        spec = target / "pipeline.yaml"
        text = spec.read_text(encoding="utf-8")
        old = _NAME_LINE.search(text)
        text = _NAME_LINE.sub(f"name: {pipeline_name}", text, count=1)
        text = text.replace(f"stacks/{template}/", "")  # the template's "Try it" commands, from the new project's folder
        spec.write_text(text, encoding="utf-8")
        ignore = target / ".gitignore"
        if not ignore.exists():
            ignore.write_text(GITIGNORE, encoding="utf-8")
            written.append(ignore)
    except OSError as exc:
        _undo(target, existed)
        where = exc.filename or target
        raise InitError(f"cannot create {where}: {exc.strerror or exc}; choose a folder you can write to") from None
    template_name = old.group(0).split(":", 1)[1].strip() if old else template
    return Created(written, template, template_name, pipeline_name, from_folder=name is None and pipeline_name != FALLBACK_NAME)


def _undo(target: Path, existed: bool) -> None:
    """What a failed `init` made goes again (the folder itself too, unless it was there, empty, before)."""
    if not target.is_dir():
        return
    if not existed:
        shutil.rmtree(target, ignore_errors=True)
        return
    for child in target.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _run_hint(spec: Path) -> str | None:
    """The template's own `pipeline run ...` example (from its spec's comments), else one built from its sample data."""
    for line in spec.read_text(encoding="utf-8").splitlines():
        found = re.search(r"(pipeline run .+)$", line) if line.startswith("#") else None
        if found:
            return found.group(1).replace(" pipeline.yaml", "", 1).strip()
    return None


WITH_ERRORS = "-with-errors"  # sample data holding records a handler refuses, to show dead letters: `data/<name>-with-errors.jsonl`


def next_steps(written: list[Path], target: Path) -> str:
    """What `init` prints: what it made, what it named the pipeline, and the commands of the everyday loop:
    the first run on clean sample data (it succeeds), then one on records a handler refuses (dead letters)."""
    data = sorted(p.relative_to(target).as_posix() for p in written if p.parent.name == "data" and p.suffix in (".jsonl", ".gz"))
    clean = next((p for p in data if WITH_ERRORS not in p and p.endswith(".jsonl")), None)
    errors = next((p for p in data if WITH_ERRORS in p), None)
    handlers = sum(1 for p in written if p.parent.name == "handlers" and p.suffix == ".py")
    tests = [p.relative_to(target).as_posix() for p in written if p.name.startswith("test_") and p.suffix == ".py"]
    run = _run_hint(target / "pipeline.yaml") or (f"pipeline run --input {clean}" if clean else None)
    option = "--upload" if run and "--upload" in run else "--input"
    enter = None if target.resolve() == Path.cwd().resolve() else f"  cd {shlex.quote(str(target))}"
    made = f"created {target}" + (f" from the {written.template} template" if isinstance(written, Created) else "")
    parts = ["pipeline.yaml", f"{handlers} handler{'s' if handlers != 1 else ''}", "sample data" if data else None, "a handler test" if tests else None]
    lines: list[str | None] = [f"{made} ({len(written)} files):", "  " + ", ".join(part for part in parts if part)]
    if isinstance(written, Created) and written.name != written.template_name:
        lines.append(f"pipeline name: {written.name}" + (", after the folder" if written.from_folder else "") + " (--name NAME sets another)")
        lines.append(f"  the template calls it {written.template_name}; cloud resources are named after it")
    lines += ["", "next:", enter,
              "  pipeline validate                  # check the spec",
              _commented(run, "the whole pipeline, locally") if run else None,
              "  # then bad records: each is dead-lettered with its error, the run exits 1" if errors else None,
              f"  pipeline run {option} {errors}" if errors else None,
              "  python -m pytest tests             # the handler test" if tests else None,
              "  pipeline compare --stack dev       # cost, capacity, limits: AWS, GCP, Azure"]
    return "\n".join(line for line in lines if line is not None)


def _commented(command: str, comment: str, column: int = 37, width: int = 80) -> str:
    """`  command   # comment`, the comment at `column` like the other lines, or left out where it would pass `width`."""
    line = f"  {command}"
    shown = f"{line:<{column - 1}}# {comment}" if len(line) < column - 1 else f"{line}  # {comment}"
    return shown if len(shown) <= width else line
