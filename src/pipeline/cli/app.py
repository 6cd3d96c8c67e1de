"""The `pipeline` command: thin Typer commands over library calls.

Exit codes: 0 success, 1 a check or operation failed, 2 bad usage or a bad spec, 130 interrupted.
A command asked for JSON (`--format json`, `--json`) writes a JSON object on stdout even when it
fails (see `pipeline.cli.output`). Heavy imports (pydantic, Pulumi, cloud SDKs) happen inside
commands so `--help` is instant.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from pipeline import __version__
from pipeline.cli import completion, help_text, lifecycle, operations, server_commands
from pipeline.cli.entry import exit_now, planning_begins, report_interrupt
from pipeline.cli.output import EXIT_BAD_INPUT, EXIT_FAILED, err, fail, out, spec_failure, want_json_errors, working, wrote

if TYPE_CHECKING:
    from pipeline import plan_cache
    from pipeline.spec.load import LoadedSpec

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "app", "err", "main", "out"]

app = typer.Typer(
    name="pipeline",
    help="Describe a streaming pipeline once; validate, plan, compare, run and deploy it on AWS, GCP and Azure.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

SpecArg = Annotated[Path, typer.Argument(help="The pipeline spec (YAML).", show_default=True, metavar="SPEC")]
StackOpt = Annotated[str | None, typer.Option("--stack", "-s", metavar="NAME", help="Merge stacks/NAME.yaml (next to the spec) over the spec.",
                                              autocompletion=completion.stacks)]
CloudOpt = Annotated[str, typer.Option("--cloud", "-c", metavar="CLOUD", help="Target cloud: aws, gcp or azure.", autocompletion=completion.clouds)]
CloudsOpt = Annotated[list[str] | None, typer.Option(
    "--cloud", "-c", metavar="CLOUD[,CLOUD]", help="Clouds to use: repeat the option or give a comma list (default: aws,gcp,azure).",
    autocompletion=completion.clouds)]
OutputOpt = Annotated[Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write to this file instead of the terminal.")]
DEFAULT_CLOUDS = ("aws", "gcp", "azure")
EXIT_CHANGES = 3  # `diff --exit-code`: changes present (terraform's -detailed-exitcode uses 2, which here means bad input)
StoreOpt = Annotated[Path | None, typer.Option("--store", metavar="DIR", help="Local object store (default: .pipeline/local/<name>/<stack>/ next to the spec).")]
FsyncOpt = Annotated[bool, typer.Option("--fsync/--no-fsync", help="fsync every object (survives power loss; kill -9 safety needs no fsync).")]
CacheOpt = Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse the answer for an unchanged spec; --no-cache (or PIPELINE_NO_CACHE=1) plans afresh.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Do not show handler logs and tracebacks on stderr (run.log keeps them).")]


def _fail(code: int, message: str) -> NoReturn:
    """Kept for the commands that call it by this name (lifecycle, run)."""
    fail(code, message)


def parse_clouds(values: Sequence[str] | None, default: Sequence[str] = DEFAULT_CLOUDS) -> list[str]:
    """`--cloud aws --cloud gcp` and `--cloud aws,gcp` mean the same; order kept, repeats dropped."""
    names = [name.strip().lower() for value in values or () for name in value.split(",") if name.strip()]
    return list(dict.fromkeys(names)) or list(default)


def _one_cloud(value: str, command: str) -> str:
    names = parse_clouds([value], default=())
    if len(names) != 1:
        fail(EXIT_BAD_INPUT, f"error: {command} works on one cloud at a time (got {value!r}); run it once per cloud, or use `pipeline compare` for several")
    return names[0]


@contextmanager
def _reported(what: str) -> Iterator[None]:
    """One mapping from library errors to messages and exit codes: a spec a cloud cannot express is
    a bad spec (2), an unknown cloud is bad usage (2); any other explained failure is a failed operation (1)."""
    from pipeline.errors import PipelineError, SpecError, UnknownBackendError

    try:
        yield
    except SpecError as exc:
        spec_failure(what, exc.problems)
    except UnknownBackendError as exc:
        fail(EXIT_BAD_INPUT, f"error: {exc}")
    except PipelineError as exc:
        fail(EXIT_FAILED, f"error: {exc}")


def _load(spec: Path, stack: str | None, request: plan_cache.Request | None = None) -> LoadedSpec:
    """The spec, or exit 2 with its problems. With a plan-cache `request`, the spec and overlays are
    the very bytes its key covers, and the other inputs are fingerprinted for `plan_cache.store`."""
    from pipeline.errors import SpecError
    from pipeline.spec.load import load_spec

    try:
        loaded = load_spec(spec, stack, request.read) if request else load_spec(spec, stack)
    except SpecError as exc:
        count = len(exc.problems)
        spec_failure(f"the spec has {count} problem{'s' if count != 1 else ''}", exc.problems)
    if request:
        request.watch(loaded)
    planning_begins()
    return loaded


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
    loaded = _load(spec, stack)
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
    cloud = _one_cloud(cloud, "plan")
    # The scan view reads the backend's own scanner mapping, so it always plans.
    request = plan_cache.Request("plan", spec, {"cloud": cloud, "stack": stack}) \
        if plan_cache.enabled(cache) and format is not PlanFormat.scan else None
    cached = plan_cache.lookup(request) if request else None
    result = _restored(cached) if cached is not None else None
    if result is None:
        from pipeline.planner import plan as make_plan

        loaded = _load(spec, stack, request)
        with _reported(f"the spec cannot be planned for {cloud}"), working(f"planning {cloud}"):
            result = make_plan(loaded, cloud)
        if request:
            plan_cache.store(request, result.state())
    if format is PlanFormat.json:
        _write_or_print(result.to_json(), output)
        return
    if format is PlanFormat.scan:
        from collections import Counter

        from pipeline.scan import scan_document

        with _reported(f"the {cloud} plan cannot be written for a scanner"):
            document = scan_document([result])
        _write_or_print(document.to_json(), output)
        for reason, count in sorted(Counter(reason for _, reason in document.unscanned).items()):
            err.print(f"left out {count} resource(s): {reason}", markup=False, highlight=False)
        err.print(f"scan it with: checkov -f {output or 'FILE'} --framework {document.framework}", markup=False, highlight=False)
        return
    with _console(output, 100) as console:
        if format is PlanFormat.tree:
            console.print(plan_view.plan_tree(result))
        else:
            for line in plan_view.plan_lines(result, console.width):
                console.print(line)  # already wrapped to the width, at spaces
        console.print(plan_view.plan_summary(result))


def _restored(state: dict[str, Any]) -> Any:
    """A cached plan, or None when the entry (checksummed, so only ever hand-made) does not make one."""
    from pipeline.plan import Plan

    try:
        return Plan.restore(state)
    except (TypeError, KeyError, ValueError, AttributeError):
        return None


@contextmanager
def _console(output: Path | None, width: int) -> Iterator[Any]:
    """The terminal, or a file written with a fixed width and no colour."""
    from rich.console import Console

    if output is None:
        yield out
        return
    with output.open("w", encoding="utf-8") as handle:
        yield Console(file=handle, width=width, no_color=True, force_terminal=False)
    wrote(output)


def _write_or_print(text: str, output: Path | None) -> None:
    """The finished answer, written whole: Ctrl-C is ignored while it is written (the work is done; an
    interrupt now would only leave half a JSON document for the reader, followed by the error object)."""
    import signal

    text = text if text.endswith("\n") else text + "\n"
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if output:
            output.write_text(text, encoding="utf-8")
            wrote(output)
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
    finally:
        signal.signal(signal.SIGINT, previous)


# ---- compare ------------------------------------------------------------------------------


class CompareFormat(StrEnum):
    table = "table"
    json = "json"
    markdown = "markdown"
    html = "html"


@app.command()
def compare(
    spec: SpecArg = Path("pipeline.yaml"),
    stack: StackOpt = None,
    cloud: CloudsOpt = None,
    clouds: Annotated[str | None, typer.Option("--clouds", hidden=True, help="Old spelling of --cloud aws,gcp.")] = None,
    format: Annotated[CompareFormat, typer.Option("--format", "-f", help="table (a one-screen summary), json, markdown or html.")] = CompareFormat.table,
    output: OutputOpt = None,
    detail: Annotated[bool, typer.Option("--detail", "-d", help="Also show every role's resources, limits in words, sizing reasoning and all notes.")] = False,
    free_tier: Annotated[bool, typer.Option("--free-tier/--no-free-tier", help="Subtract each cloud's monthly free tier.")] = False,
    cache: CacheOpt = True,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, max=16, metavar="N",
                                      help="Plan up to N clouds at once in separate processes (faster only on an idle multi-core machine).")] = 1,
    sweep: Annotated[str | None, typer.Option("--sweep", metavar="FIELD=LOW..HIGH",
                                              help="Compare across a range of one workload field (records_per_second, record_bytes, "
                                                   "uploads.files_per_hour, uploads.records_per_file, http.requests_per_second, "
                                                   "http.rows_per_request), log-spaced, or FIELD=V1,V2,...: each cloud's cost per "
                                                   "point and where the cheapest cloud changes.")] = None,
    points: Annotated[int | None, typer.Option("--points", min=2, max=60, metavar="N", help="Points in a --sweep range (default 12).")] = None,
    linear: Annotated[bool, typer.Option("--linear", help="Space a --sweep range evenly instead of logarithmically.")] = False,
) -> None:
    """Plan, size and price the spec on several clouds and show them side by side, offline."""
    import json

    from pipeline import plan_cache

    want_json_errors(format is CompareFormat.json)
    names = parse_clouds([*(cloud or []), *([clouds] if clouds else [])])
    if sweep is None and (points is not None or linear):
        fail(EXIT_BAD_INPUT, "error: --points and --linear shape a --sweep; add --sweep FIELD=LOW..HIGH")
    if sweep is not None:
        _compare_sweep(spec, stack, names, format, output, _SweepOptions(sweep, points, linear, free_tier, cache, detail))
        return
    request = plan_cache.Request("compare", spec, {"clouds": names, "stack": stack, "free_tier": free_tier}) if plan_cache.enabled(cache) else None
    # The one-screen summary and the JSON are drawn from the comparison's JSON object, which the cache
    # keeps; the detailed views read the plans themselves, so they always plan.
    from_data = format is CompareFormat.json or (format is CompareFormat.table and not detail)
    cached = plan_cache.lookup(request) if request and from_data else None
    if cached is not None:
        if format is CompareFormat.json:
            _write_or_print(json.dumps(cached, indent=2, sort_keys=True), output)
        else:
            _print_summary(cached, output)
        return

    from pipeline.compare import compare as make_comparison

    loaded = _load(spec, stack, request)
    with _reported("no cloud can plan this spec"):
        with working(f"planning and pricing {', '.join(names)}"):
            result = make_comparison(loaded, names, free_tier, jobs)
        data = result.to_dict()
        if request:
            plan_cache.store(request, data)
        if format is CompareFormat.json:
            _write_or_print(json.dumps(data, indent=2, sort_keys=True), output)
        elif format is CompareFormat.markdown:
            from pipeline.report import markdown

            _write_or_print(markdown(result), output)
        elif format is CompareFormat.html:
            from pipeline import sweep as sweeps
            from pipeline.sweep_axis import default_axis

            with working("sweeping the workload for the cost-vs-load chart"):
                swept = sweeps.run(loaded, names, default_axis(loaded), free_tier).to_dict()
            _write_html(result, loaded, swept, output)
        elif detail:
            _print_detail(result, output)
        else:
            _print_summary(data, output)


@dataclass(frozen=True)
class _SweepOptions:
    """`compare --sweep` and the options that shape it."""

    text: str
    points: int | None
    linear: bool
    free_tier: bool
    cache: bool
    detail: bool


def _compare_sweep(spec: Path, stack: str | None, names: list[str], format: CompareFormat, output: Path | None, options: _SweepOptions) -> None:
    """The comparison at every point of a workload range; the table, JSON and Markdown come from the sweep's
    JSON object (live or cached), the HTML report plans the spec itself and adds the sweep's chart."""
    import json

    from pipeline import plan_cache
    from pipeline.errors import PipelineError

    if options.detail:
        fail(EXIT_BAD_INPUT, "error: --detail shows one workload; with --sweep, --format json has every point's detail "
                             "(or run compare --detail with that workload)")
    request = plan_cache.Request("compare-sweep", spec, {"clouds": names, "stack": stack, "free_tier": options.free_tier, "sweep": options.text,
                                                         "points": options.points, "linear": options.linear}) \
        if plan_cache.enabled(options.cache) and format is not CompareFormat.html else None
    data = plan_cache.lookup(request) if request else None
    if data is None:
        from pipeline import sweep as sweeps
        from pipeline.sweep_axis import DEFAULT_POINTS, parse_axis

        loaded = _load(spec, stack, request)
        try:
            axis = parse_axis(options.text, loaded, options.points or DEFAULT_POINTS, options.linear)
        except PipelineError as exc:
            fail(EXIT_BAD_INPUT, f"error: {exc}")
        with _reported("the spec cannot be swept"):
            with working(f"planning and pricing {', '.join(names)} at {len(axis.values)} values of {axis.field}"):
                data = sweeps.run(loaded, names, axis, options.free_tier).to_dict()
            if format is CompareFormat.html:
                from pipeline.compare import compare as make_comparison

                with working(f"planning {', '.join(names)} for the report"):
                    result = make_comparison(loaded, names, options.free_tier)
                _write_html(result, loaded, data, output)
                return
        if request:
            plan_cache.store(request, data)
    if format is CompareFormat.json:
        _write_or_print(json.dumps(data, indent=2, sort_keys=True), output)
    elif format is CompareFormat.markdown:
        from pipeline.sweep_view import markdown_sweep

        _write_or_print(markdown_sweep(data), output)
    else:
        from pipeline.cli import render
        from pipeline.sweep_view import summarize_sweep

        with _console(output, 120) as console:
            for part in render.sweep_screen(summarize_sweep(data)):
                console.print(part)


def _write_html(result: Any, loaded: LoadedSpec, swept: dict[str, Any], output: Path | None) -> None:
    """The HTML report: the comparison, its diagrams and the cost-vs-load chart of `swept`."""
    from pipeline import diagram
    from pipeline.report import html

    data = result.to_dict()
    with working("drawing diagrams"):
        pictures = {c.cloud: diagram.report_views(c.plan, loaded.spec, diagram.delivered(data["clouds"][c.cloud]))
                    for c in result.planned() if c.plan}
    _write_or_print(html(result, pictures, swept), output)


def _print_summary(data: dict[str, Any], output: Path | None) -> None:
    """The one-screen summary, from the comparison's JSON object (live or cached)."""
    from pipeline.cli import render
    from pipeline.summary import summarize

    with _console(output, 120) as console:
        for part in render.comparison_summary(summarize(data), console.width):
            console.print(part)


def _print_detail(result: Any, output: Path | None) -> None:
    from pipeline.cli import render
    from pipeline.summary import of_comparison

    summary = of_comparison(result)
    with _console(output, 120) as console:
        console.print(render.role_table(result))
        for part in render.detail_texts(result, summary):
            console.print(part)
        for part in render.comparison_summary(summary, console.width):
            console.print(part)


# ---- diff ---------------------------------------------------------------------------------


class DiffFormat(StrEnum):
    table = "table"
    json = "json"
    markdown = "markdown"


@app.command()
def diff(
    spec: SpecArg = Path("pipeline.yaml"),
    stack: StackOpt = None,
    against: Annotated[Path | None, typer.Option("--against", "-a", metavar="SPEC|JSON",
                                                 help="The baseline: another spec, or a saved `compare --format json` (default: SPEC itself).")] = None,
    against_stack: Annotated[str | None, typer.Option("--against-stack", metavar="NAME", help="The baseline's stack (default: --stack).",
                                                      autocompletion=completion.stacks)] = None,
    cloud: CloudsOpt = None,
    format: Annotated[DiffFormat, typer.Option("--format", "-f", help="table, json or markdown (for a pull-request comment).")] = DiffFormat.table,
    output: OutputOpt = None,
    fail_above: Annotated[str | None, typer.Option("--fail-above", metavar="USD|PCT%",
                                                   help="Exit 1 when any cloud's monthly cost rises by more than this: 5 (USD) or 10% (of the baseline).")] = None,
    free_tier: Annotated[bool | None, typer.Option("--free-tier/--no-free-tier", help="Subtract free tiers (default: as the saved baseline, else no).")] = None,
    exit_code: Annotated[bool, typer.Option("--exit-code", help=(
        "For CI: exit 3 when anything changed (a resource, a billing line, a cloud planned on one side only), 0 when nothing did. "
        "1 (failed, e.g. above --fail-above) and 2 (bad input) keep their meaning, so a change is never mistaken for an error."))] = False,
) -> None:
    """Cost and resource difference between a baseline (a spec, a stack or a saved comparison) and SPEC now: each
    resource added, removed or changed with the inputs that changed (old -> new, secrets masked), and the monthly
    cost per billing line. Exit codes: 0 no change (or without --exit-code), 1 failed or above --fail-above,
    2 bad input, 3 changes present with --exit-code."""
    import json

    from pipeline import diff as diffs
    from pipeline.compare import compare as make_comparison

    want_json_errors(format is DiffFormat.json)
    threshold = None
    if fail_above is not None:
        try:
            threshold = diffs.Threshold.parse(fail_above)
        except ValueError as exc:
            fail(EXIT_BAD_INPUT, f"error: --fail-above: {exc}")
    if against is None and against_stack is None:
        fail(EXIT_BAD_INPUT, "error: say what to diff against: --against OTHER.yaml, --against SAVED.json (from compare --format json) or --against-stack NAME")
    baseline_file = against if against is not None else spec
    saved = baseline_file.suffix.lower() == ".json"
    base_data: dict[str, Any] | None = None
    if saved:
        try:
            base_data = diffs.read_saved(baseline_file)
        except diffs.DiffInputError as exc:
            fail(EXIT_BAD_INPUT, f"error: {exc}")
    names = parse_clouds(cloud, default=list(base_data["clouds"]) if base_data else DEFAULT_CLOUDS)
    tier = free_tier if free_tier is not None else bool(base_data and base_data.get("free_tier"))
    loaded = _load(spec, stack)
    with _reported("the spec cannot be compared"), working(f"planning and pricing {', '.join(names)}"):
        if base_data is None:
            base_loaded = _load(baseline_file, against_stack if against_stack is not None else stack)
            base_data = make_comparison(base_loaded, names, tier).to_dict()
            base_label = diffs.label_for(base_loaded.path, base_loaded.stack)
        else:
            base_label = f"{baseline_file.name} (saved compare of {base_data.get('pipeline')} {base_data.get('stack')})"
        head_data = make_comparison(loaded, names, tier).to_dict()
    result = diffs.diff(base_data, head_data, base_label, diffs.label_for(loaded.path, loaded.stack), names)
    over = result.over(threshold) if threshold else []
    if format is DiffFormat.json:
        _write_or_print(json.dumps(result.to_dict(threshold), indent=2, sort_keys=True), output)
    elif format is DiffFormat.markdown:
        _write_or_print(diffs.markdown(result, threshold), output)
    else:
        from pipeline.cli.diff_view import diff_view

        with _console(output, 100) as console:
            for part in diff_view(result, threshold, console.width):
                console.print(part)
    if over:
        rises = ", ".join(f"{c.title} {c.change_text()}" for c in over)
        err.print(f"[bold red]failed[/bold red]: monthly cost rises by more than --fail-above {threshold}: {rises}", highlight=False)
        raise typer.Exit(EXIT_FAILED)
    if exit_code and result.changed:
        raise typer.Exit(EXIT_CHANGES)


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

    cloud = _one_cloud(cloud, "diagram")
    fmt = output.suffix.lstrip(".").lower()
    if fmt not in ("svg", "png", "dot"):
        fail(EXIT_BAD_INPUT, f"error: --output must end in .svg, .png or .dot (got {output.name})")
    loaded = _load(spec, stack)
    with _reported(f"the spec cannot be planned for {cloud}"), working(f"planning {cloud} and drawing"):
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
    code = run_command(options, watch, _load, out, err)
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
    code = serve_command(options, _load, err)
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
    invoke_command(options, _load, out, err)


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
    from pipeline.backend import FunctionCode, backend_class

    want_json_errors(format is PlanFormat.json)
    cloud = _one_cloud(cloud, "package")
    if not cache:
        package_cache.disable()
    loaded = _load(spec, stack)
    built = []
    with _reported(f"the spec cannot be packaged for {cloud}"):
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

    cloud = _one_cloud(cloud, "export")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        fail(EXIT_BAD_INPUT, f"error: {output} is not empty; export into a new or empty folder")
    loaded = _load(spec, stack)
    with _reported(f"the spec cannot be exported for {cloud}"), working(f"exporting for {cloud}"):
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


def _on_sigint(signum: int, frame: Any) -> None:
    """Ctrl-C, remembered: a KeyboardInterrupt raised inside a library can come out wrapped in its own error
    (pydantic building a schema reports a SchemaError), which must still read as "interrupted", not as a bug."""
    global _sigint_seen
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

    from pipeline.cli.entry import loading_handler

    if signal.getsignal(signal.SIGINT) in (signal.default_int_handler, loading_handler()):  # not where Ctrl-C is ignored
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
