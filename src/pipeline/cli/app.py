"""The `pipeline` command: thin Typer commands over library calls.

Exit codes: 0 success, 1 a check or operation failed, 2 bad usage or a bad spec, 130 interrupted.
A command asked for JSON (`--format json`, `--json`) writes a JSON object on stdout even when it
fails (see `pipeline.cli.output`). Heavy imports (pydantic, Pulumi, cloud SDKs) happen inside
commands so `--help` is instant.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pipeline import __version__
from pipeline.cli import compare_commands, completion, help_text, lifecycle, operations, server_commands
from pipeline.cli.common import (
    CacheOpt,
    CloudOpt,
    FsyncOpt,
    OutputOpt,
    QuietOpt,
    SpecArg,
    StackOpt,
    StoreOpt,
    console_for,
    load,
    one_cloud,
    parse_clouds,
    reported,
    restored,
    write_or_print,
)
from pipeline.cli.exiting import exit_now, report_interrupt
from pipeline.cli.output import EXIT_BAD_INPUT, EXIT_FAILED, err, fail, out, spec_failure, want_json_errors, working, wrote

if TYPE_CHECKING:
    pass

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "app", "err", "main", "out"]

app = typer.Typer(
    name="pipeline",
    help="Describe a streaming pipeline once; validate, plan, compare, run and deploy it on AWS, GCP and Azure.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)



def _version(value: bool) -> None:
    if value:
        out.print(f"pipeline {__version__}")
        raise typer.Exit(0)


def _no_colour(value: bool) -> None:
    if value:
        from pipeline.cli.output import disable_colour

        disable_colour()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")] = False,
    no_color: Annotated[bool, typer.Option("--no-color", callback=_no_colour, is_eager=True,
                                           help="No colour (also: NO_COLOR=1; off anyway when not a terminal). Accepted after any command too.")] = False,
) -> None:
    """Multi-cloud pipeline deployer."""


# ---- validate ----------------------------------------------------------------------------


class TextFormat(StrEnum):
    text = "text"
    json = "json"


@app.command()
def validate(spec: SpecArg = Path("pipeline.yaml"), stack: StackOpt = None,
             cloud: Annotated[list[str] | None, typer.Option("--cloud", "-c", metavar="CLOUD[,CLOUD]", autocompletion=completion.clouds,
                                                             help="Check these clouds (repeatable or a comma list; default: the clouds the spec configures).")] = None,
             format: Annotated[TextFormat, typer.Option("--format", "-f", help="text, or json (every problem, located).")] = TextFormat.text) -> None:
    """Check a spec, and that each cloud it configures (or each --cloud) can express it and carry its workload, without planning."""
    import json

    from pipeline.backend import backend_class
    from pipeline.cloud_checks import merged, problems_for
    from pipeline.errors import PipelineError

    want_json_errors(format is TextFormat.json, valid=False)
    loaded = load(spec, stack)
    # Like `terraform validate`, check what the spec configures: a region a cloud does not have, a timeout it cannot run,
    # and, as `plan` and `compare` would, whether each stage's sizing carries the workload (pure Python: no Pulumi program).
    configured = tuple(name for name in ("aws", "gcp", "azure") if name in loaded.spec.clouds.model_fields_set)
    clouds = parse_clouds(cloud, default=configured)
    per_cloud = []
    for name in clouds:
        try:
            backend = backend_class(name)(loaded.spec, loaded.stack, loaded.base_dir)
        except PipelineError as exc:
            fail(EXIT_BAD_INPUT, f"error: {exc}")
        per_cloud.append((backend.title, problems_for(loaded, backend)))
    problems = merged(per_cloud)
    if problems:
        spec_failure(f"the spec has {len(problems)} problem{'s' if len(problems) != 1 else ''}", problems)  # each names its clouds
    s = loaded.spec
    if format is TextFormat.json:
        stages = [{"name": st.name, "trigger": st.trigger.kind} for st in s.stages]
        sys.stdout.write(json.dumps({"valid": True, "pipeline": s.name, "stack": loaded.stack, "stages": stages, "clouds_checked": clouds,
                                     "problems": []}, indent=2) + "\n")
        return
    kinds = ", ".join(f"{st.name} ({st.trigger.kind})" for st in s.stages)
    checked = f"; {', '.join(clouds)} can express it and carry its workload" if clouds else ""
    out.print(f"[green]valid[/green]: {s.name} (stack {loaded.stack}): {len(s.stages)} stage(s): {kinds}{checked}", highlight=False, soft_wrap=True)


# ---- plan ---------------------------------------------------------------------------------


class PlanFormat(StrEnum):
    table = "table"
    tree = "tree"
    json = "json"
    scan = "scan"  # what a scanner reads: Terraform plan JSON (AWS, GCP) or an ARM template (Azure)


@app.command()
def plan(
    spec: SpecArg = Path("pipeline.yaml"),
    stack: StackOpt = None,
    cloud: CloudOpt = "aws",
    format: Annotated[PlanFormat, typer.Option("--format", "-f", help="table, tree, json (stable) or scan (for checkov).")] = PlanFormat.table,
    output: OutputOpt = None,
    cache: CacheOpt = True,
) -> None:
    """Show exactly what would be created on a cloud: offline, no credentials, no Pulumi CLI."""
    from pipeline import plan_cache
    from pipeline.cli import plan_view

    want_json_errors(format is PlanFormat.json)
    cloud = one_cloud(cloud, "plan")
    # The scan view reads the backend's own scanner mapping, so it always plans.
    request = plan_cache.Request("plan", spec, {"cloud": cloud, "stack": stack}) \
        if plan_cache.enabled(cache) and format is not PlanFormat.scan else None
    cached = plan_cache.lookup(request) if request else None
    result = restored(cached) if cached is not None else None
    if result is None:
        from pipeline.planner import plan as make_plan

        loaded = load(spec, stack, request)
        with reported(f"the spec cannot be planned for {cloud}"), working(f"planning {cloud}"):
            result = make_plan(loaded, cloud)
        if request:
            plan_cache.store(request, result.state())
    if format is PlanFormat.json:
        write_or_print(result.to_json(), output)
        return
    if format is PlanFormat.scan:
        from collections import Counter

        from pipeline.scan import scan_document

        with reported(f"the {cloud} plan cannot be written for a scanner"):
            document = scan_document([result])
        write_or_print(document.to_json(), output)
        for reason, count in sorted(Counter(reason for _, reason in document.unscanned).items()):
            err.print(f"left out {count} resource(s): {reason}", markup=False, highlight=False)
        err.print(f"scan it with: checkov -f {output or 'FILE'} --framework {document.framework}", markup=False, highlight=False)
        return
    with console_for(output, 100) as console:
        if format is PlanFormat.tree:
            console.print(plan_view.plan_tree(result))
        else:
            for line in plan_view.plan_lines(result, console.width):
                console.print(line)  # already wrapped to the width, at spaces
        console.print(plan_view.plan_summary(result))


app.command()(compare_commands.compare)
app.command()(compare_commands.diff)


# ---- diagram ------------------------------------------------------------------------------


class DiagramView(StrEnum):
    all = "all"
    data = "data"
    identity = "identity"


@app.command()
def diagram(
    spec: SpecArg = Path("pipeline.yaml"),
    stack: StackOpt = None,
    cloud: CloudOpt = "aws",
    output: Annotated[Path, typer.Option("--output", "-o", metavar="FILE", help="FILE.svg, FILE.png or FILE.dot.")] = Path("pipeline.svg"),
    view: Annotated[DiagramView, typer.Option("--view", help="all, data (the data path) or identity (who may do what).")] = DiagramView.all,
    detail: Annotated[bool, typer.Option("--detail", "-d", help="List every resource of a role (bucket settings, grants) instead of collapsing them.")] = False,
) -> None:
    """Draw the planned architecture: nodes by role with real resource names, edges for data flow."""
    from pipeline import diagram as diagrams
    from pipeline.compare import compare as make_comparison

    cloud = one_cloud(cloud, "diagram")
    fmt = output.suffix.lstrip(".").lower()
    if fmt not in ("svg", "png", "dot"):
        fail(EXIT_BAD_INPUT, f"error: --output must end in .svg, .png or .dot (got {output.name})")
    loaded = load(spec, stack)
    with reported(f"the spec cannot be planned for {cloud}"), working(f"planning {cloud} and drawing"):
        comparison = make_comparison(loaded, [cloud])  # the plan plus what the cloud really delivers per invocation
        column = comparison.columns[0]
        assert column.plan is not None
        delivered = diagrams.delivered(comparison.to_dict()["clouds"][cloud])
        source = diagrams.to_dot(column.plan, loaded.spec, view=view.value, detail=detail, delivered=delivered)
        output.write_bytes(source.encode() if fmt == "dot" else diagrams.render(source, fmt))
    wrote(output)


@app.command()
def run(
    spec: SpecArg = Path("pipeline.yaml"),
    stack: StackOpt = None,
    input: Annotated[str | None, typer.Option(
        "--input", "-i", metavar="FILE|-", help="JSON-lines records to stream in: a file, or - for stdin (the default without --upload).")] = None,
    upload: Annotated[list[Path] | None, typer.Option(
        "--upload", "-u", metavar="FILE",
        help="A file (JSON lines, optionally gzip) to drop into the uploads bucket, as <uploads>/<its name>; repeat for more.")] = None,
    tick: Annotated[float | None, typer.Option("--tick", min=0.1, metavar="SECONDS", help="Run schedule stages every this many seconds (they always run once at the end).")] = None,
    store: StoreOpt = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Start a new run instead of resuming (new inputs or changed code start one anyway).")] = False,
    fsync: FsyncOpt = True,
    quiet: QuietOpt = False,
    watch: Annotated[bool, typer.Option("--watch", help="Run again whenever the spec, a handler or an input file changes.")] = False,
) -> None:
    """Run the whole pipeline on this machine with the functions' runtime; resumable after a crash."""
    from pipeline.cli.local_run import RunOptions, run_command

    options = RunOptions(spec, stack, input, tick, store, fresh, fsync, quiet, list(upload or ()))
    code = run_command(options, watch, load, out, err)
    if code:
        raise typer.Exit(code)


@app.command()
def serve(
    spec: SpecArg = Path("pipeline.yaml"),
    stack: StackOpt = None,
    host: Annotated[str, typer.Option("--host", metavar="ADDRESS", help="Address to listen on (anything but localhost lets other machines in).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="Port to listen on (0: any free port, shown when serving).")] = 8080,
    tick: Annotated[float | None, typer.Option("--tick", min=0.1, metavar="SECONDS", help="Also run schedule stages every this many seconds (POST /tick runs them now).")] = None,
    max_body_mb: Annotated[int, typer.Option("--max-body-mb", min=1, max=4096, metavar="MB", help="Largest request body taken (413 beyond).")] = 64,
    store: StoreOpt = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Start a new run instead of continuing the last `pipeline serve`.")] = False,
    fsync: FsyncOpt = True,
    quiet: QuietOpt = False,
    allow_host: Annotated[list[str] | None, typer.Option(
        "--allow-host", metavar="NAME",
        help="Also answer requests whose Host is NAME (localhost, *.localhost and IP addresses always are); repeat for more.")] = None,
) -> None:
    """Serve the pipeline over local HTTP: HTTP stages on request, records into the stream, files into the uploads bucket."""
    from pipeline.cli.local_serve import ServeOptions, serve_command

    options = ServeOptions(spec, stack, host, port, tick, max_body_mb * 1024 * 1024, store, fresh, fsync, quiet, tuple(allow_host or ()))
    code = serve_command(options, load, err)
    if code:
        raise typer.Exit(code)


class InvokeFormat(StrEnum):
    jsonl = "jsonl"
    json = "json"


@app.command()
def invoke(
    stage: Annotated[str, typer.Argument(metavar="STAGE", help="The stage to invoke.", autocompletion=completion.stages)],
    spec: SpecArg = Path("pipeline.yaml"),
    stack: StackOpt = None,
    input: Annotated[str | None, typer.Option(
        "--input", "-i", metavar="FILE|-",
        help="The stage's input: stream records (one per line), an object's rows, or an HTTP request body; - for stdin.")] = None,
    format: Annotated[InvokeFormat, typer.Option("--format", "-f", help="jsonl (the output rows, one per line) or json (everything).")] = InvokeFormat.jsonl,
    store: Annotated[Path | None, typer.Option("--store", metavar="DIR", help="Keep the outputs and dead letters here (default: a scratch folder, removed).")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Invoke one stage once, as its trigger would: print its output rows; exit 1 if anything was dead-lettered."""
    from pipeline.cli.local_invoke import InvokeOptions, invoke_command

    want_json_errors(format is InvokeFormat.json)
    options = InvokeOptions(stage, spec, stack, input, format.value, store, quiet)
    invoke_command(options, load, out, err)


@app.command()
def package(
    spec: SpecArg = Path("pipeline.yaml"),
    stack: StackOpt = None,
    cloud: CloudOpt = "aws",
    deps: Annotated[bool, typer.Option("--deps/--no-deps", help="Install requirements into packages that ship them (needs PyPI).")] = True,
    format: Annotated[PlanFormat, typer.Option("--format", "-f", help="table or json.")] = PlanFormat.table,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse installed requirements where pip could not install anything else "
                                                                   "(--no-cache, or PIPELINE_NO_CACHE=1, installs and compresses afresh).")] = True,
) -> None:
    """Build every stage's function package (deterministic zip) and report its size, as deploy would."""
    from pipeline import package_cache
    from pipeline.backend import backend_class
    from pipeline.roles import FunctionCode

    want_json_errors(format is PlanFormat.json)
    cloud = one_cloud(cloud, "package")
    if not cache:
        package_cache.disable()
    loaded = load(spec, stack)
    built = []
    with reported(f"the spec cannot be packaged for {cloud}"):
        backend = backend_class(cloud)(loaded.spec, loaded.stack, loaded.base_dir)
        backend.vendor_dependencies = deps
        for stage in loaded.spec.stages:
            with working(f"building the {stage.name} package for {cloud}" + (" (installing requirements)" if deps and stage.requirements else "")):
                built.append(backend.package(stage, FunctionCode.for_stage(loaded.base_dir, stage)))
    if format is PlanFormat.json:
        import json

        rows = [{"stage": b.stage, "files": b.files, "bytes": b.size, "unpacked_bytes": b.unpacked, "sha256": b.sha256,
                 "path": b.path.relative_to(loaded.base_dir).as_posix()} for b in built]
        sys.stdout.write(json.dumps({"cloud": cloud, "pipeline": loaded.spec.name, "stack": loaded.stack, "packages": rows}, indent=2) + "\n")
        return
    from pipeline.cli.package_table import package_table

    out.print(package_table(f"{loaded.spec.name} ({loaded.stack}) packages for {cloud}", built, loaded.base_dir, loaded.path.name))


@app.command()
def export(
    spec: SpecArg = Path("pipeline.yaml"),
    stack: StackOpt = None,
    cloud: CloudOpt = "aws",
    output: Annotated[Path, typer.Option("--output", "-o", metavar="DIR", help="A new or empty folder for the Pulumi project.")] = Path("exported"),
) -> None:
    """Write a standalone Pulumi project (program, spec, vendored library) for plain `pulumi up`."""
    from pipeline.export import export as write_project

    cloud = one_cloud(cloud, "export")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        fail(EXIT_BAD_INPUT, f"error: {output} is not empty; export into a new or empty folder")
    loaded = load(spec, stack)
    with reported(f"the spec cannot be exported for {cloud}"), working(f"exporting for {cloud}"):
        files = write_project(loaded, cloud, output)
    out.print(f"wrote {len(files)} files to {output}; run it with: cd {output} && pulumi up (see its README.md)", markup=False, highlight=False)


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="A new or empty folder for the project.", metavar="DIR")] = Path("."),
    template: Annotated[str, typer.Option("--template", "-t", metavar="NAME", help="The bundled stack to start from (see --list).",
                                          autocompletion=completion.templates)] = "transactions",
    name: Annotated[str | None, typer.Option("--name", "-n", metavar="NAME", help="Pipeline name (default: from the folder's name).")] = None,
    list_templates: Annotated[bool, typer.Option("--list", help="List the templates and exit.")] = False,
) -> None:
    """Start a new project from a template: spec, stack overlays, handlers, sample data and a handler test."""
    from pipeline import init as starter

    if list_templates:
        for found, path in starter.templates().items():
            out.print(f"{found}: {starter.describe(path)}", markup=False, highlight=False, soft_wrap=True)
        return
    try:
        created = starter.init_project(directory, template, name)
    except starter.InitError as exc:
        fail(EXIT_BAD_INPUT, f"error: {exc}")
    out.print(starter.next_steps(created, directory), markup=False, highlight=False, soft_wrap=True)


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


server_commands.register(app)  # server start, stop, status
lifecycle.register(app)  # preview, deploy, outputs, refresh, destroy, cancel
operations.register(app)  # dlq list|show|replay, status


# Short-lived commands that only compute and print: as the console script, they run with the garbage
# collector off and end without interpreter teardown (freeing a plan's few hundred thousand objects
# one by one takes most of a second and changes nothing a user sees). Commands that start workers,
# hold temporary folders or talk to the Pulumi engine end normally.
_QUICK_COMMANDS = frozenset({"validate", "plan", "compare", "diff", "diagram", "schema", "backends"})


def _command_name(args: Sequence[str]) -> str:
    return next((a for a in args if not a.startswith("-")), "")


class _InterruptedError(Exception):
    """Ctrl-C inside a command. Typer turns a KeyboardInterrupt into a silent exit 130; this one reaches `main`,
    which says so (and writes the JSON error a JSON command owes)."""


class _OutputClosedError(Exception):
    """The reader of stdout went away (`pipeline compare | head -1`): nothing left to say, and not a failure."""


def _guarded(callback: Any) -> Any:
    import functools

    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except KeyboardInterrupt:
            raise _InterruptedError from None
        except BrokenPipeError:
            raise _OutputClosedError from None

    run.pipeline_guarded = True  # type: ignore[attr-defined]
    return run


def _guard_commands(group: Any) -> None:
    """Every command (and sub-command) reports Ctrl-C and ends quietly on a closed pipe. Commands that handle
    Ctrl-C themselves (run, serve, the deploy lifecycle) still do; this only sees what they let through."""
    for command in group.commands.values():
        if hasattr(command, "commands"):
            _guard_commands(command)
        elif command.callback is not None and not getattr(command.callback, "pipeline_guarded", False):
            command.callback = _guarded(command.callback)


_sigint_seen = False


INTERRUPT_GRACE_S = 15.0  # how long a command that only computes may take to unwind after Ctrl-C


def _on_sigint(signum: int, frame: Any) -> None:
    """Ctrl-C, remembered: a KeyboardInterrupt raised inside a library can come out wrapped in its own error
    (pydantic building a schema reports a SchemaError), which must still read as "interrupted", not as a bug.
    A library thread can also swallow it (rarely, planning has been seen to hang after Ctrl-C): a command that
    only computes is then ended by a watchdog after INTERRUPT_GRACE_S, saying so, as it would have."""
    global _sigint_seen
    if not _sigint_seen and _command_name(sys.argv[1:]) in _QUICK_COMMANDS:
        import threading

        from pipeline.cli.argv import say_interrupted

        watchdog = threading.Timer(INTERRUPT_GRACE_S, say_interrupted)
        watchdog.daemon = True
        watchdog.start()
    _sigint_seen = True
    raise KeyboardInterrupt


def _quiet_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the final flush cannot fail again (Python's own advice)."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry: readable help, `--no-color` anywhere, JSON errors when JSON was asked
    for, Ctrl-C said in one line (130), a closed pipe ending quietly (0, like other CLIs), and never a traceback."""
    from pipeline.cli.output import EXIT_INTERRUPTED, disable_colour, emit_json_error, json_errors_requested

    try:  # Typer >= 0.2x carries its own copy of click; older Typer uses click itself
        from typer._click.exceptions import ClickException
    except ImportError:
        from click.exceptions import ClickException  # type: ignore[assignment]

    args = list(sys.argv[1:] if argv is None else argv)
    cut = args.index("--") if "--" in args else len(args)
    if "--no-color" in args[:cut]:  # a global flag: accepted before or after the command
        args = [a for i, a in enumerate(args) if not (a == "--no-color" and i < cut)]
        disable_colour()
    script = completion.requested_script(args)
    if script is not None:  # `--show-completion zsh` shows zsh's script, whatever shell runs it
        code, text = completion.completion_script(*script)
        (sys.stdout if code == 0 else sys.stderr).write(text + "\n")
        sys.exit(code)
    json_wanted = json_errors_requested(args)
    quick = argv is None and _command_name(args) in _QUICK_COMMANDS
    if quick:
        import gc

        gc.disable()
    command = typer.main.get_command(app)
    help_text.polish(command)
    _guard_commands(command)
    import signal

    from pipeline.cli.argv import loading_handler_or_default

    if loading_handler_or_default():  # not where Ctrl-C is ignored (a background job)
        signal.signal(signal.SIGINT, _on_sigint)
    try:
        code = command.main(args=args, prog_name="pipeline", standalone_mode=False)
    except typer.Exit as exc:
        code = exc.exit_code
    except ClickException as exc:  # usage errors: unknown option, bad value, missing argument
        if json_wanted:
            emit_json_error("usage", exc.format_message(), exc.exit_code)
        exc.show()
        code = exc.exit_code
    except _OutputClosedError:
        _quiet_stdout()
        code = 0
    except (KeyboardInterrupt, _InterruptedError, typer.Abort):
        code = report_interrupt(args)
    except Exception as exc:  # last resort: a bug, reported in one line with a pointer
        if _sigint_seen:  # ... unless Ctrl-C came first and a library wrapped it
            if json_wanted:
                emit_json_error("interrupted", "interrupted", EXIT_INTERRUPTED)
            err.print("interrupted")
            exit_now(EXIT_INTERRUPTED) if quick else sys.exit(EXIT_INTERRUPTED)
        message = f"internal error: {type(exc).__name__}: {exc}"
        if json_wanted:
            emit_json_error("internal", message, EXIT_FAILED)
        err.print(f"{message}\nplease report this with the command you ran", markup=False)
        code = EXIT_FAILED
    code = code if isinstance(code, int) else 0
    if quick:
        exit_now(code)
    sys.exit(code)
