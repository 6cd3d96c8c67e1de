"""The `pipeline` command: thin Typer commands over library calls.

Exit codes: 0 success, 1 a check or operation failed, 2 bad usage or a bad spec.
Heavy imports (pydantic, Pulumi, cloud SDKs) happen inside commands so `--help` is instant.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from pipeline import __version__
from pipeline.cli import lifecycle

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

app = typer.Typer(
    name="pipeline",
    help="Describe a streaming pipeline once; validate, plan and compare it for AWS, GCP and Azure.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
out = Console()
err = Console(stderr=True, soft_wrap=True)  # never hard-wrap file:line:col messages

SpecArg = Annotated[Path, typer.Argument(help="The pipeline spec (YAML).", show_default=True)]
StackOpt = Annotated[str | None, typer.Option("--stack", "-s", help="Merge stacks/NAME.yaml (next to the spec) over the spec.")]


class PlanFormat(StrEnum):
    table = "table"
    tree = "tree"
    json = "json"


def _fail(code: int, message: str) -> NoReturn:
    err.print(message, markup=False, highlight=False)
    raise typer.Exit(code)


@contextmanager
def _reported(what: str) -> Iterator[None]:
    """One mapping from library errors to messages and exit codes: a spec a cloud cannot express or
    an unknown cloud is bad input (2); any other explained failure is a failed operation (1)."""
    from pipeline.errors import PipelineError, SpecError, UnknownBackendError

    try:
        yield
    except SpecError as exc:
        _fail(EXIT_BAD_INPUT, f"error: {what}:\n{exc}")
    except UnknownBackendError as exc:
        _fail(EXIT_BAD_INPUT, f"error: {exc}")
    except PipelineError as exc:
        _fail(EXIT_FAILED, f"error: {exc}")


def _load(spec: Path, stack: str | None) -> Any:
    from pipeline.errors import SpecError
    from pipeline.spec.load import load_spec

    try:
        return load_spec(spec, stack)
    except SpecError as exc:
        count = len(exc.problems)
        _fail(EXIT_BAD_INPUT, f"error: the spec has {count} problem{'s' if count != 1 else ''}:\n{exc}")


def _version(value: bool) -> None:
    if value:
        out.print(f"pipeline {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")] = False,
) -> None:
    """Multi-cloud pipeline deployer."""


@app.command()
def validate(spec: SpecArg = Path("pipeline.yaml"), stack: StackOpt = None,
             cloud: Annotated[list[str] | None, typer.Option("--cloud", "-c", help="Also check what this cloud can express (repeatable).")] = None) -> None:
    """Check a spec (and, with --cloud, that a cloud can express it) without planning."""
    from pipeline.backend import backend_class
    from pipeline.errors import PipelineError
    from pipeline.spec.load import spec_problems

    loaded = _load(spec, stack)
    for name in cloud or []:
        try:
            backend = backend_class(name)(loaded.spec, loaded.stack, loaded.base_dir)
        except PipelineError as exc:
            _fail(EXIT_BAD_INPUT, f"error: {exc}")
        problems = backend.check()
        if problems:
            _fail(EXIT_BAD_INPUT, f"error: {backend.title} cannot express this spec:\n{spec_problems(loaded, problems)}")
    s = loaded.spec
    kinds = ", ".join(f"{st.name} ({st.trigger.kind})" for st in s.stages)
    out.print(f"[green]valid[/green]: {s.name} (stack {loaded.stack}): {len(s.stages)} stage(s): {kinds}")


@app.command()
def plan(
    spec: SpecArg = Path("pipeline.yaml"),
    stack: StackOpt = None,
    cloud: Annotated[str, typer.Option("--cloud", "-c", help="Target cloud: aws, gcp or azure.")] = "aws",
    format: Annotated[PlanFormat, typer.Option("--format", "-f", help="table, tree or json.")] = PlanFormat.table,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file instead of the terminal.")] = None,
) -> None:
    """Show exactly what would be created on a cloud: offline, no credentials, no Pulumi CLI."""
    from pipeline.cli import render
    from pipeline.planner import plan as make_plan

    loaded = _load(spec, stack)
    with _reported(f"the spec cannot be planned for {cloud}"):
        result = make_plan(loaded, cloud)
    if format is PlanFormat.json:
        text = result.to_json()
        if output:
            output.write_text(text + "\n", encoding="utf-8")
            err.print(f"wrote {output}")
        else:
            sys.stdout.write(text + "\n")
        return
    console = Console(file=output.open("w", encoding="utf-8"), width=200) if output else out
    console.print(render.plan_tree(result) if format is PlanFormat.tree else render.plan_table(result))
    console.print(render.plan_summary(result))


class CompareFormat(StrEnum):
    table = "table"
    json = "json"
    markdown = "markdown"
    html = "html"


def _write_or_print(text: str, output: Path | None) -> None:
    if output:
        output.write_text(text, encoding="utf-8")
        err.print(f"wrote {output}")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


@app.command()
def compare(
    spec: SpecArg = Path("pipeline.yaml"),
    stack: StackOpt = None,
    clouds: Annotated[str, typer.Option("--clouds", help="Comma-separated clouds to compare.")] = "aws,gcp,azure",
    format: Annotated[CompareFormat, typer.Option("--format", "-f", help="table, json, markdown or html.")] = CompareFormat.table,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file instead of the terminal.")] = None,
    free_tier: Annotated[bool, typer.Option("--free-tier/--no-free-tier", help="Subtract each cloud's monthly free tier.")] = False,
) -> None:
    """Plan, size and price the spec on several clouds and show them side by side, offline."""
    from pipeline.cli import render
    from pipeline.compare import compare as make_comparison

    loaded = _load(spec, stack)
    names = [c.strip() for c in clouds.split(",") if c.strip()]
    with _reported("no cloud can plan this spec"):
        result = make_comparison(loaded, names, free_tier)
        if format is CompareFormat.json:
            import json

            _write_or_print(json.dumps(result.to_dict(), indent=2, sort_keys=True), output)
        elif format is CompareFormat.markdown:
            from pipeline.report import markdown

            _write_or_print(markdown(result), output)
        elif format is CompareFormat.html:
            from pipeline import diagram
            from pipeline.report import html

            pictures = {c.cloud: diagram.svg(c.plan, loaded.spec) for c in result.planned() if c.plan}
            _write_or_print(html(result, pictures), output)
        else:
            console = Console(file=output.open("w", encoding="utf-8"), width=200) if output else out
            for part in render.comparison_tables(result):
                console.print(part)


@app.command()
def diagram(
    spec: SpecArg = Path("pipeline.yaml"),
    stack: StackOpt = None,
    cloud: Annotated[str, typer.Option("--cloud", "-c", help="Target cloud: aws, gcp or azure.")] = "aws",
    output: Annotated[Path, typer.Option("--output", "-o", help="file.svg, file.png or file.dot.")] = Path("pipeline.svg"),
) -> None:
    """Draw the planned architecture: nodes by role with real resource names, edges for data flow."""
    from pipeline import diagram as diagrams
    from pipeline.planner import plan as make_plan

    fmt = output.suffix.lstrip(".").lower()
    if fmt not in ("svg", "png", "dot"):
        _fail(EXIT_BAD_INPUT, f"error: --output must end in .svg, .png or .dot (got {output.name})")
    loaded = _load(spec, stack)
    with _reported(f"the spec cannot be planned for {cloud}"):
        source = diagrams.to_dot(make_plan(loaded, cloud), loaded.spec)
        output.write_bytes(source.encode() if fmt == "dot" else diagrams.render(source, fmt))
    err.print(f"wrote {output}")


@app.command()
def run(
    spec: SpecArg = Path("pipeline.yaml"),
    stack: StackOpt = None,
    input: Annotated[str, typer.Option("--input", "-i", help="JSON-lines records to stream in: a file, or - for stdin.")] = "-",
    tick: Annotated[float | None, typer.Option("--tick", min=0.1, help="Run schedule stages every this many seconds (they always run once at the end).")] = None,
    store: Annotated[Path | None, typer.Option("--store", help="Local object store (default: .pipeline/local/<name>/<stack>/ next to the spec).")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Start a new run instead of resuming (a new input or changed code starts one anyway).")] = False,
    fsync: Annotated[bool, typer.Option("--fsync/--no-fsync", help="fsync every object (survives power loss; kill -9 safety needs no fsync).")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not show handler logs and tracebacks on stderr (run.log keeps them).")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Run again whenever the spec, a handler or the input changes.")] = False,
) -> None:
    """Run the whole pipeline on this machine with the functions' runtime; resumable after a crash."""
    from pipeline.cli.local_run import RunOptions, run_command

    options = RunOptions(spec, stack, input, tick, store, fresh, fsync, quiet)
    code = run_command(options, watch, _load, out, err)
    if code:
        raise typer.Exit(code)


@app.command()
def package(
    spec: SpecArg = Path("pipeline.yaml"),
    stack: StackOpt = None,
    cloud: Annotated[str, typer.Option("--cloud", "-c", help="Target cloud: aws, gcp or azure.")] = "aws",
    deps: Annotated[bool, typer.Option("--deps/--no-deps", help="Install requirements into packages that ship them (needs PyPI).")] = True,
) -> None:
    """Build every stage's function package (deterministic zip) and report its size, as deploy would."""
    from rich.table import Table

    from pipeline.backend import FunctionCode, backend_class

    loaded = _load(spec, stack)
    table = Table(title=f"{loaded.spec.name} ({loaded.stack}) packages for {cloud}")
    for column in ("Stage", "Files", "Zipped", "Unpacked", "SHA-256", "Path"):
        table.add_column(column, overflow="fold")
    with _reported(f"the spec cannot be packaged for {cloud}"):
        backend = backend_class(cloud)(loaded.spec, loaded.stack, loaded.base_dir)
        backend.vendor_dependencies = deps
        for stage in loaded.spec.stages:
            built = backend.package(stage, FunctionCode.for_stage(loaded.base_dir, stage))
            table.add_row(stage.name, str(built.files), f"{built.size / 1e6:,.2f} MB", f"{built.unpacked / 1e6:,.2f} MB", built.sha256[:12], str(built.path))
    out.print(table)


@app.command()
def export(
    spec: SpecArg = Path("pipeline.yaml"),
    stack: StackOpt = None,
    cloud: Annotated[str, typer.Option("--cloud", "-c", help="Target cloud: aws, gcp or azure.")] = "aws",
    output: Annotated[Path, typer.Option("--output", "-o", help="A new or empty folder for the Pulumi project.")] = Path("exported"),
) -> None:
    """Write a standalone Pulumi project (program, spec, vendored library) for plain `pulumi up`."""
    from pipeline.export import export as write_project

    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        _fail(EXIT_BAD_INPUT, f"error: {output} is not empty; export into a new or empty folder")
    loaded = _load(spec, stack)
    with _reported(f"the spec cannot be exported for {cloud}"):
        files = write_project(loaded, cloud, output)
    out.print(f"wrote {len(files)} files to {output}; run it with: cd {output} && pulumi up (see its README.md)")


@app.command()
def schema() -> None:
    """Print the spec's JSON Schema (point your editor's YAML plugin at it)."""
    import json

    from pipeline.spec.model import PipelineSpec

    sys.stdout.write(json.dumps(PipelineSpec.model_json_schema(by_alias=True), indent=2) + "\n")


@app.command()
def backends() -> None:
    """List the installed cloud backends."""
    from pipeline.backend import backend_names

    for name in backend_names():
        out.print(name)


lifecycle.register(app)  # preview, deploy, outputs, refresh, destroy, cancel


def main() -> None:
    """Console-script entry: never let a traceback reach the user."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # last resort: a bug, reported in one line with a pointer
        err.print(f"internal error: {type(exc).__name__}: {exc}\nplease report this with the command you ran", markup=False)
        sys.exit(EXIT_FAILED)
