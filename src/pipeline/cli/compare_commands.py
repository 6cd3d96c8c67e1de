"""`pipeline compare` and `pipeline diff`: several clouds lined up, and what a change to the spec does to each (the
commands, registered by `pipeline.cli.app` in their place in the help)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pipeline.cli import completion
from pipeline.cli.common import (
    DEFAULT_CLOUDS,
    EXIT_CHANGES,
    CacheOpt,
    CloudsOpt,
    OutputOpt,
    SpecArg,
    StackOpt,
    console_for,
    load,
    parse_clouds,
    reported,
    write_or_print,
)
from pipeline.cli.output import EXIT_BAD_INPUT, EXIT_FAILED, err, fail, want_json_errors, working

if TYPE_CHECKING:
    from pipeline.spec.load import LoadedSpec


# ---- compare ------------------------------------------------------------------------------


class CompareFormat(StrEnum):
    table = "table"
    json = "json"
    markdown = "markdown"
    html = "html"


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
            write_or_print(json.dumps(cached, indent=2, sort_keys=True), output)
        else:
            _print_summary(cached, output)
        return

    from pipeline.compare import compare as make_comparison

    loaded = load(spec, stack, request)
    with reported("no cloud can plan this spec"):
        with working(f"planning and pricing {', '.join(names)}"):
            result = make_comparison(loaded, names, free_tier, jobs)
        data = result.to_dict()
        if request:
            plan_cache.store(request, data)
        if format is CompareFormat.json:
            write_or_print(json.dumps(data, indent=2, sort_keys=True), output)
        elif format is CompareFormat.markdown:
            from pipeline.report import markdown

            write_or_print(markdown(result), output)
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

        loaded = load(spec, stack, request)
        try:
            axis = parse_axis(options.text, loaded, options.points or DEFAULT_POINTS, options.linear)
        except PipelineError as exc:
            fail(EXIT_BAD_INPUT, f"error: {exc}")
        with reported("the spec cannot be swept"):
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
        write_or_print(json.dumps(data, indent=2, sort_keys=True), output)
    elif format is CompareFormat.markdown:
        from pipeline.sweep_view import markdown_sweep

        write_or_print(markdown_sweep(data), output)
    else:
        from pipeline.cli import render
        from pipeline.sweep_view import summarize_sweep

        with console_for(output, 120) as console:
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
    write_or_print(html(result, pictures, swept), output)


def _print_summary(data: dict[str, Any], output: Path | None) -> None:
    """The one-screen summary, from the comparison's JSON object (live or cached)."""
    from pipeline.cli import render
    from pipeline.summary import summarize

    with console_for(output, 120) as console:
        for part in render.comparison_summary(summarize(data), console.width):
            console.print(part)


def _print_detail(result: Any, output: Path | None) -> None:
    from pipeline.cli import render
    from pipeline.summary import of_comparison

    summary = of_comparison(result)
    with console_for(output, 120) as console:
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
    loaded = load(spec, stack)
    with reported("the spec cannot be compared"), working(f"planning and pricing {', '.join(names)}"):
        if base_data is None:
            base_loaded = load(baseline_file, against_stack if against_stack is not None else stack)
            base_data = make_comparison(base_loaded, names, tier).to_dict()
            base_label = diffs.label_for(base_loaded.path, base_loaded.stack)
        else:
            base_label = f"{baseline_file.name} (saved compare of {base_data.get('pipeline')} {base_data.get('stack')})"
        head_data = make_comparison(loaded, names, tier).to_dict()
    result = diffs.diff(base_data, head_data, base_label, diffs.label_for(loaded.path, loaded.stack), names)
    over = result.over(threshold) if threshold else []
    if format is DiffFormat.json:
        write_or_print(json.dumps(result.to_dict(threshold), indent=2, sort_keys=True), output)
    elif format is DiffFormat.markdown:
        write_or_print(diffs.markdown(result, threshold), output)
    else:
        from pipeline.cli.diff_view import diff_view

        with console_for(output, 100) as console:
            for part in diff_view(result, threshold, console.width):
                console.print(part)
    if over:
        rises = ", ".join(f"{c.title} {c.change_text()}" for c in over)
        err.print(f"[bold red]failed[/bold red]: monthly cost rises by more than --fail-above {threshold}: {rises}", highlight=False)
        raise typer.Exit(EXIT_FAILED)
    if exit_code and result.changed:
        raise typer.Exit(EXIT_CHANGES)
