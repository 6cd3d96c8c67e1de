"""`pipeline dlq list | show | replay` and `pipeline status`: day two, on the local store or a deployed stack.

Thin commands over `pipeline.operations`: they resolve the target (`--local`, or `--cloud C` with the stack's
outputs from its Pulumi state or `--outputs FILE`), then list, show, replay or report. Exit codes: 0 done
(list, show and status also when dead letters exist, unless `--fail-if-any`), 1 a replay failed or the
target refused or could not be reached (the message names the permission), 2 bad usage, 130 interrupted.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pipeline.cli.output import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, err, fail, out, want_json_errors

if TYPE_CHECKING:
    from pipeline.operations.mask import Masker
    from pipeline.operations.model import DeadLetter
    from pipeline.operations.protocol import Operations
    from pipeline.spec.load import LoadedSpec
    from pipeline.spec.model import StageSpec

SPEC_EXAMPLE = "stacks/transactions/pipeline.yaml"
SHOW_LIMIT = 20  # records `dlq show` prints as text unless --limit says otherwise

SpecArg = Annotated[Path, typer.Argument(help="The pipeline spec (YAML).", show_default=True, metavar="SPEC")]
StackOpt = Annotated[str | None, typer.Option("--stack", "-s", metavar="NAME", help="Merge stacks/NAME.yaml (next to the spec) over the spec.")]
LocalOpt = Annotated[bool, typer.Option("--local", help="The local store of `pipeline run` / `pipeline serve`.")]
CloudOpt = Annotated[str | None, typer.Option("--cloud", "-c", metavar="CLOUD", help="A deployed stack on aws, gcp or azure.")]
StoreOpt = Annotated[Path | None, typer.Option("--store", metavar="DIR", help="With --local: the store (default: .pipeline/local/<name>/<stack>/ next to the spec).")]
OutputsOpt = Annotated[Path | None, typer.Option(
    "--outputs", metavar="FILE.json", help="With --cloud: the stack's outputs as `pipeline outputs --json` printed them (default: read the stack's Pulumi state).")]
BackendOpt = Annotated[str | None, typer.Option("--backend-url", metavar="URL", help="With --cloud: where the Pulumi state is (as for `pipeline outputs`).")]
StageOpt = Annotated[list[str] | None, typer.Option("--stage", metavar="NAME", help="Only this stage (repeatable; default: every stage).")]
SinceOpt = Annotated[str | None, typer.Option("--since", metavar="DURATION", help="Only dead letters of the last DURATION: 30m, 2h, 7d, 1h30m.")]


class ListFormat(StrEnum):
    table = "table"
    json = "json"


class ShowFormat(StrEnum):
    table = "table"
    json = "json"
    jsonl = "jsonl"


dlq_app = typer.Typer(help="Dead letters of the pipeline: list them by cause, show the records, replay them once the handler is fixed.",
                      no_args_is_help=True)


def _examples(*lines: str) -> str:
    return "Examples:\n\n\b\n" + "\n".join(f"  {line}" for line in lines)


# ---- the target ---------------------------------------------------------------------------------------


class Target:
    """What a day-two command works on: the loaded spec, the operations face and the masker."""

    def __init__(self, loaded: LoadedSpec, ops: Operations, masker: Masker, spec: Path) -> None:
        self.loaded, self.ops, self.masker, self.spec = loaded, ops, masker, spec

    @property
    def heading(self) -> str:
        where = "the local store" if self.ops.name == "local" else f"{self.ops.title} stack {self.loaded.stack}-{self.ops.name}"
        return f"{self.loaded.spec.name} ({self.loaded.stack}), {where}"


def _target(spec: Path, stack: str | None, local: bool, cloud: str | None, store: Path | None, outputs: Path | None,
            backend_url: str | None) -> Target:
    from pipeline.cli.common import load
    from pipeline.operations.mask import Masker

    if local == (cloud is not None):
        fail(EXIT_BAD_INPUT, "error: say where: --local (the store of `pipeline run` / `pipeline serve`) or --cloud aws|gcp|azure (a deployed stack)")
    if local and (outputs is not None or backend_url is not None):
        fail(EXIT_BAD_INPUT, "error: --outputs and --backend-url name a deployed stack's outputs; they go with --cloud, not --local")
    if cloud is not None and store is not None:
        fail(EXIT_BAD_INPUT, "error: --store is the local store; it goes with --local, not --cloud")
    loaded = load(spec, stack)
    masker = Masker.for_spec(loaded.spec)
    if local:
        from pipeline.operations.local import LocalOperations

        return Target(loaded, LocalOperations(loaded, store), masker, spec)
    assert cloud is not None
    return Target(loaded, _cloud(loaded, cloud.strip().lower(), outputs, backend_url), masker, spec)


def _cloud(loaded: LoadedSpec, cloud: str, outputs: Path | None, backend_url: str | None) -> Operations:
    from pipeline.backend import backend_class
    from pipeline.errors import PipelineError, UnknownBackendError
    from pipeline.operations.outputs import check_outputs, read_outputs_file, stack_outputs

    try:
        backend = backend_class(cloud)(loaded.spec, loaded.stack, loaded.base_dir)
    except UnknownBackendError as exc:
        fail(EXIT_BAD_INPUT, f"error: {exc}")
    with _reported():
        if outputs is not None:
            values = read_outputs_file(outputs)
            check_outputs(values, loaded, cloud, f"--outputs {outputs}", from_file=True)
        else:
            values = stack_outputs(loaded, cloud, backend_url)
            check_outputs(values, loaded, cloud, "the stack's outputs", from_file=False)
        try:
            return backend.operations(values)
        except NotImplementedError as exc:
            raise PipelineError(str(exc)) from None
    raise AssertionError("unreachable")  # _reported ends the command on any error


@contextmanager
def _reported() -> Iterator[None]:
    """Library errors -> one message and the exit code: bad usage 2, everything else explained 1."""
    from pipeline.errors import PipelineError
    from pipeline.local.errors import LocalUsageError
    from pipeline.local.stages import LocalRunError

    try:
        yield
    except LocalUsageError as exc:
        fail(EXIT_BAD_INPUT, f"error: {exc}")
    except LocalRunError as exc:
        fail(EXIT_FAILED, f"error: {exc}")
    except PipelineError as exc:
        fail(int(getattr(exc, "exit_code", EXIT_FAILED)), f"error: {exc}")


def _stages(target: Target, names: Sequence[str] | None) -> list[StageSpec]:
    spec = target.loaded.spec
    known = [stage.name for stage in spec.stages]
    wanted = list(dict.fromkeys(name for value in names or () for name in value.split(",") if name))
    unknown = [name for name in wanted if name not in known]
    if unknown:
        fail(EXIT_BAD_INPUT, f"error: {spec.name} has no stage {', '.join(map(repr, unknown))}; its stages: {', '.join(known)}")
    return [stage for stage in spec.stages if not wanted or stage.name in wanted]


def _earliest(since: str | None) -> float | None:
    from pipeline.operations.model import cutoff, parse_duration

    if since is None:
        return None
    try:
        return cutoff(parse_duration(since))
    except ValueError as exc:
        fail(EXIT_BAD_INPUT, f"error: --since {exc}")


def _letters(target: Target, stages: Sequence[StageSpec], earliest: float | None) -> Iterator[DeadLetter]:
    """Runtime dead letters, then each stage's queued events, read-only."""
    from pipeline.operations.letters import runtime_letters
    from pipeline.operations.model import shown

    ops = target.ops
    if not ops.exists():
        return
    yield from runtime_letters(ops, stages, earliest)
    for stage in stages:
        with ops.guarded(f"reading the failure queues of stage {stage.name}"):
            for letter in ops.queued(stage, earliest):
                if shown(letter, earliest):
                    yield letter


def _no_store_note(target: Target) -> None:
    if not target.ops.exists():
        err.print(f"note: {target.ops.missing_note()}", markup=False, highlight=False)


def _write_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")


def _hint(target: Target, verb: str) -> str:
    loaded = target.loaded
    where = "--local" if target.ops.name == "local" else f"--cloud {target.ops.name}"
    stack = f" --stack {loaded.stack}" if loaded.stack != "default" else ""
    return f"pipeline dlq {verb} {target.spec} {where}{stack}"


# ---- dlq list ----------------------------------------------------------------------------------------


@dlq_app.command("list", epilog=_examples(f"pipeline dlq list {SPEC_EXAMPLE} --stack dev --local",
                                          f"pipeline dlq list {SPEC_EXAMPLE} --stack dev --cloud aws --since 2h",
                                          "pipeline dlq list --cloud gcp --outputs outputs.json --format json --fail-if-any   # monitoring"))
def dlq_list(
    spec: SpecArg = Path("pipeline.yaml"), stack: StackOpt = None, local: LocalOpt = False, cloud: CloudOpt = None, store: StoreOpt = None,
    outputs: OutputsOpt = None, backend_url: BackendOpt = None, stage: StageOpt = None, since: SinceOpt = None,
    format: Annotated[ListFormat, typer.Option("--format", "-f", metavar="table|json", help="table, or json (every group).")] = ListFormat.table,
    fail_if_any: Annotated[bool, typer.Option("--fail-if-any", help="Exit 1 when there is any dead letter (for monitoring).")] = False,
) -> None:
    """Every dead letter of the pipeline, grouped by stage and cause: counts, first and last time, the error, where it is kept."""
    from pipeline.operations.model import group
    from pipeline.operations.render import group_dict, list_lines

    want_json_errors(format is ListFormat.json)
    target = _target(spec, stack, local, cloud, store, outputs, backend_url)
    stages = _stages(target, stage)
    earliest = _earliest(since)
    with _reported():
        groups = group(_letters(target, stages, earliest))
    total = sum(g.count for g in groups)
    if format is ListFormat.json:
        _write_json({"pipeline": target.loaded.spec.name, "stack": target.loaded.stack, "target": target.ops.name, "total": total,
                     "groups": [group_dict(g, target.masker) for g in groups]})
    else:
        _no_store_note(target)
        out.print(f"{target.heading}: {total:,} dead letter{'s' if total != 1 else ''}"
                  + (f" in {len(groups)} group{'s' if len(groups) != 1 else ''}" if groups else ""), markup=False, highlight=False)
        for line in list_lines(groups, target.masker):
            out.print(line, markup=False, highlight=False, soft_wrap=True)
        if groups:
            out.print(f"show them: {_hint(target, 'show')}\nreplay them once the handler is fixed: {_hint(target, 'replay')}",
                      markup=False, highlight=False, soft_wrap=True)
    if fail_if_any and total:
        raise typer.Exit(EXIT_FAILED)


# ---- dlq show ----------------------------------------------------------------------------------------


@dlq_app.command("show", epilog=_examples(f"pipeline dlq show {SPEC_EXAMPLE} --stack dev --local --stage preprocess --limit 5",
                                          f"pipeline dlq show {SPEC_EXAMPLE} --cloud azure --format jsonl > dead-letters.jsonl"))
def dlq_show(
    spec: SpecArg = Path("pipeline.yaml"), stack: StackOpt = None, local: LocalOpt = False, cloud: CloudOpt = None, store: StoreOpt = None,
    outputs: OutputsOpt = None, backend_url: BackendOpt = None, stage: StageOpt = None, since: SinceOpt = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=0, metavar="N",
                                              help=f"At most N dead letters (0: all; default {SHOW_LIMIT} as text, all as json/jsonl).")] = None,
    format: Annotated[ShowFormat, typer.Option("--format", "-f", metavar="table|json|jsonl",
                                               help="table (readable, records shortened), json or jsonl (records whole).")] = ShowFormat.table,
) -> None:
    """The dead-lettered records and events themselves, decoded and with secrets masked, with their error and attempts."""
    from pipeline.operations.render import letter_dict, show_lines

    want_json_errors(format is not ShowFormat.table)
    target = _target(spec, stack, local, cloud, store, outputs, backend_url)
    stages = _stages(target, stage)
    earliest = _earliest(since)
    most = limit if limit is not None else (SHOW_LIMIT if format is ShowFormat.table else 0)
    shown_count, more = 0, False
    collected: list[dict[str, Any]] = []
    if format is ShowFormat.table:
        _no_store_note(target)
    with _reported():
        for letter in (record for found in _letters(target, stages, earliest) for record in target.ops.records_of(found)):
            if most and shown_count >= most:
                more = True
                break
            shown_count += 1
            if format is ShowFormat.jsonl:
                sys.stdout.write(json.dumps(letter_dict(letter, target.masker), ensure_ascii=False, default=str) + "\n")
            elif format is ShowFormat.json:
                collected.append(letter_dict(letter, target.masker))
            else:
                for line in show_lines(letter, target.masker):
                    out.print(line, markup=False, highlight=False, soft_wrap=True)
    if format is ShowFormat.json:
        _write_json({"pipeline": target.loaded.spec.name, "stack": target.loaded.stack, "target": target.ops.name,
                     "dead_letters": collected, "more": more})
    elif format is ShowFormat.table:
        tail = "; more follow (--limit 0 shows all, --format jsonl for scripts)" if more else ""
        out.print(f"{shown_count:,} dead letter{'s' if shown_count != 1 else ''} shown{tail}", markup=False, highlight=False)


# ---- dlq replay --------------------------------------------------------------------------------------


@dlq_app.command("replay", epilog=_examples(f"pipeline dlq replay {SPEC_EXAMPLE} --stack dev --local --dry-run",
                                            f"pipeline dlq replay {SPEC_EXAMPLE} --stack dev --local --stage preprocess --yes",
                                            f"pipeline dlq replay {SPEC_EXAMPLE} --stack prod --cloud aws --outputs outputs.json"))
def dlq_replay(
    spec: SpecArg = Path("pipeline.yaml"), stack: StackOpt = None, local: LocalOpt = False, cloud: CloudOpt = None, store: StoreOpt = None,
    outputs: OutputsOpt = None, backend_url: BackendOpt = None, stage: StageOpt = None, since: SinceOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be sent through again; change nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask (required without a terminal, e.g. in CI).")] = False,
    format: Annotated[ListFormat, typer.Option("--format", "-f", metavar="table|json", help="table, or json (every result).")] = ListFormat.table,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not show handler logs on stderr.")] = False,
) -> None:
    """Send dead letters through their stage again once the handler is fixed; each is removed only after its replay succeeded."""
    from pipeline.cli.local_run import LogShower, stop_on_sigterm
    from pipeline.operations.local import LocalOperations
    from pipeline.operations.replay import Replayer

    want_json_errors(format is ListFormat.json)
    target = _target(spec, stack, local, cloud, store, outputs, backend_url)
    stages = _stages(target, stage)
    earliest = _earliest(since)
    ops = target.ops
    if not ops.exists():
        _no_store_note(target)
        _finish_replay(target, [], [], dry_run, format)
        return
    logs = LogShower(err, quiet)
    masker = target.masker

    def show(entry: dict[str, Any]) -> None:
        logs.show(masker.value(entry))

    results: list[Any] = []
    redriven: list[Any] = []
    replayer: Replayer | None = None
    try:
        with _reported(), stop_on_sigterm(), (ops.locked() if isinstance(ops, LocalOperations) and not dry_run else _nothing()):
            replayer = Replayer(target.loaded, ops, logs.note, None if quiet else show)
            items = replayer.objects(stages, earliest)
            queued = [letter for stage_ in stages for letter in _queued(target, stage_, earliest)]
            if not items and not queued:
                _finish_replay(target, [], [], dry_run, format)
                return
            if format is ListFormat.table and items:
                err.print(f"note: {ops.replay_note()}", markup=False, highlight=False)
            if not dry_run:
                _confirm(target, len(items), len(queued), yes)
            for outcome in replayer.replay_all(items, dry_run):
                results.append(outcome)
                if format is ListFormat.table:
                    from pipeline.operations.render import outcome_line

                    out.print(masker.text(outcome_line(outcome)), markup=False, highlight=False, soft_wrap=True)
            with ops.guarded("redriving the failure queues' events"):
                for result in ops.redrive(queued, dry_run):
                    redriven.append(result)
                    if format is ListFormat.table:
                        from pipeline.operations.render import redriven_line

                        out.print(redriven_line(result, masker), markup=False, highlight=False, soft_wrap=True)
    except KeyboardInterrupt:
        done = sum(1 for r in results if r.ok) + sum(1 for r in redriven if r.ok)
        fail(EXIT_INTERRUPTED, f"interrupted: {done} dead letter(s) replayed and removed; the rest are where they were (a dead letter "
                               "is removed only after its replay landed): run the same command again to replay them")
    finally:
        if replayer is not None:
            replayer.close(kill=True)
    _finish_replay(target, results, redriven, dry_run, format)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _queued(target: Target, stage: StageSpec, earliest: float | None) -> list[DeadLetter]:
    from pipeline.operations.model import shown

    with target.ops.guarded(f"reading the failure queues of stage {stage.name}"):
        return [letter for letter in target.ops.queued(stage, earliest) if shown(letter, earliest)]


def _confirm(target: Target, objects: int, events: int, yes: bool) -> None:
    from pipeline.deploy.preflight import is_interactive

    what = ", ".join(part for part in (f"{objects:,} dead-letter object(s)" if objects else "", f"{events:,} queued event(s)" if events else "") if part)
    if yes:
        return
    if not is_interactive():
        fail(EXIT_BAD_INPUT, "error: replay asks for confirmation, but this run has no terminal to ask on (or CI is set); "
                             "use --yes to replay without asking, or --dry-run to see what it would do")
    try:
        answer = err.input(f"Send {what} of {target.heading} through their stages again? [y/N] ")
    except EOFError:
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        fail(EXIT_FAILED, "cancelled: nothing was replayed")


def _finish_replay(target: Target, results: Sequence[Any], redriven: Sequence[Any], dry_run: bool, format: ListFormat) -> None:
    from pipeline.operations.render import redriven_dict

    failed = [r for r in results if not r.ok] + [r for r in redriven if not r.ok]
    if format is ListFormat.json:
        _write_json({"pipeline": target.loaded.spec.name, "stack": target.loaded.stack, "target": target.ops.name, "dry_run": dry_run,
                     "note": target.ops.replay_note(), "results": [r.to_dict() for r in results],
                     "redriven": [redriven_dict(r, target.masker) for r in redriven], "ok": not failed})
    elif not results and not redriven:
        out.print(f"{target.heading}: no dead letters to replay", markup=False, highlight=False)
    else:
        verb = "would be replayed" if dry_run else "replayed"
        done = len(results) + len(redriven) - len(failed)
        out.print(f"{done} of {len(results) + len(redriven)} {verb}" + (f"; {len(failed)} still dead-lettered: "
                  f"see them with {_hint(target, 'show')}" if failed else ""), markup=False, highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(EXIT_FAILED)
    return None


# ---- status --------------------------------------------------------------------------------------


def status(
    spec: SpecArg = Path("pipeline.yaml"), stack: StackOpt = None, local: LocalOpt = False, cloud: CloudOpt = None, store: StoreOpt = None,
    outputs: OutputsOpt = None, backend_url: BackendOpt = None, stage: StageOpt = None,
    format: Annotated[ListFormat, typer.Option("--format", "-f", metavar="table|json", help="table, or json.")] = ListFormat.table,
    fail_if_any: Annotated[bool, typer.Option("--fail-if-any", help="Exit 1 when any stage has dead letters (for monitoring).")] = False,
) -> None:
    """Per stage: how far a windowed stage has read (its watermark), what waits for its next run and since when,
    its last successful run, and its dead letters."""
    from rich.table import Table

    from pipeline.operations.render import status_rows
    from pipeline.operations.status import pipeline_status

    want_json_errors(format is ListFormat.json)
    target = _target(spec, stack, local, cloud, store, outputs, backend_url)
    stages = _stages(target, stage)
    if not target.ops.exists():
        entries: list[dict[str, Any]] = []
        if format is ListFormat.table:
            _no_store_note(target)
    else:
        with _reported():
            entries = pipeline_status(target.ops, stages)
    dead = any((e.get("dead_letters") or {}).get("inputs") or (e.get("dead_letters") or {}).get("queued_events") for e in entries)
    if format is ListFormat.json:
        _write_json({"pipeline": target.loaded.spec.name, "stack": target.loaded.stack, "target": target.ops.name, "stages": entries})
    else:
        table = Table(title=target.heading, title_justify="left", box=None, show_edge=False, pad_edge=False)
        for column in ("stage", "trigger", "read up to / last run", "waiting", "dead letters"):
            table.add_column(column, overflow="fold")
        for row in status_rows(entries):
            table.add_row(*row)
        out.print(table)
    if fail_if_any and dead:
        raise typer.Exit(EXIT_FAILED)


STATUS_EXAMPLES = _examples(f"pipeline status {SPEC_EXAMPLE} --stack dev --local",
                            "pipeline status stacks/stream-scoring/pipeline.yaml --stack prod --cloud gcp --format json")


def register(app: typer.Typer) -> None:
    """Add `pipeline dlq ...` and `pipeline status` to the `pipeline` app."""
    app.add_typer(dlq_app, name="dlq")
    app.command("status", epilog=STATUS_EXAMPLES)(status)
