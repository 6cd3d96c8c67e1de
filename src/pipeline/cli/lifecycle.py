"""`pipeline preview | deploy | outputs | refresh | destroy | cancel`: thin commands over `pipeline.deploy`.

Every command resolves the same things in the same order (spec, cloud, state backend, secrets
provider), runs the local preflight before touching the engine, and reports failures as one
message with the exit code the rest of the CLI uses: 1 a failed check or operation, 2 bad usage
or a bad spec. Progress goes to stderr, so `--json` output on stdout stays clean for scripts.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from pipeline.cli import completion

if TYPE_CHECKING:
    from collections.abc import Callable

    from pipeline.deploy.engine import Engine, Target
    from pipeline.deploy.progress import ProgressModel
    from pipeline.deploy.summary import Outcome

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

SpecArg = Annotated[Path, typer.Argument(help="The pipeline spec (YAML).", show_default=True)]
StackOpt = Annotated[str | None, typer.Option("--stack", "-s", help="Environment: merge stacks/NAME.yaml over the spec; the Pulumi stack is NAME-CLOUD.",
                                              autocompletion=completion.stacks)]
CloudOpt = Annotated[str, typer.Option("--cloud", "-c", help="Target cloud: aws, gcp or azure.", autocompletion=completion.clouds)]
BackendOpt = Annotated[str | None, typer.Option(
    "--backend-url", help="Where Pulumi keeps state: file://DIR, s3://BUCKET, gs://BUCKET, azblob://CONTAINER or https://api.pulumi.com "
                          "(default: $PULUMI_BACKEND_URL, else file://<spec dir>/.pipeline/state).")]
SecretsOpt = Annotated[str | None, typer.Option(
    "--secrets-provider", help="passphrase (default on file/bucket state), awskms://..., gcpkms://... or azurekeyvault://...; used when the stack is created.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (required without a terminal, e.g. in CI).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout (progress still goes to stderr).")]


def _fail(code: int, message: str) -> NoReturn:
    from pipeline.cli.output import fail

    fail(code, message)


def _json_errors(enabled: bool) -> None:
    from pipeline.cli.output import want_json_errors

    want_json_errors(enabled)


def _confirm(question: str) -> None:
    from pipeline.cli.output import err

    try:
        answer = err.input(f"{question} [y/N] ")
    except EOFError:
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        _fail(EXIT_FAILED, "cancelled: nothing was changed")


def _prepare(verb: str, spec: Path, stack: str | None, cloud: str, backend_url: str | None, secrets_provider: str | None, *,
             credentials: bool, passphrase: bool, confirm: bool = False) -> Target:
    """Spec, cloud and state options resolved, spec checked for the cloud, local preflight passed. `confirm`: the
    command will ask before changing anything, so without a terminal it needs --yes (checked with the rest)."""
    from pipeline.backend import backend_class
    from pipeline.cli.common import load
    from pipeline.cli.output import err, fail, spec_failure
    from pipeline.cloud_checks import merged, problems_for
    from pipeline.deploy import naming, preflight
    from pipeline.deploy.engine import Target
    from pipeline.errors import PipelineError

    loaded = load(spec, stack)
    try:
        backend = backend_class(cloud)(loaded.spec, loaded.stack, loaded.base_dir)
        url = naming.resolve_backend_url(loaded, backend_url)
        secrets = naming.resolve_secrets_provider(secrets_provider)
    except PipelineError as exc:
        _fail(EXIT_BAD_INPUT, f"error: {exc}")
    problems = merged([(backend.title, problems_for(loaded, backend))])  # what validate and plan check, the same way
    if problems:
        spec_failure(f"{backend.title} cannot plan this spec", problems)
    interactive = preflight.is_interactive()
    cli, found = preflight.environment_problems(backend, url, secrets, credentials=credentials, passphrase=passphrase, interactive=interactive,
                                                deploying=verb in ("preview", "deploy"), confirm=verb if confirm else None)
    if found or cli is None:
        listed = "".join(f"\n  - {problem.render()}" for problem in found)
        usage = any(problem.check == preflight.CONFIRMATION for problem in found)  # fix the command line first: bad usage
        fail(EXIT_BAD_INPUT if usage else EXIT_FAILED, f"error: {verb} did not start: {len(found)} problem{'s' if len(found) != 1 else ''} to fix first:{listed}",
             kind="usage" if usage else "failed", problems=found)
    target = Target(loaded, cloud, url, secrets, cli)
    if passphrase and interactive and preflight.passphrase_problem(url, secrets, interactive=False) is not None:
        target.passphrase = err.input(f"Passphrase for the secrets of stack {target.stack}: ", password=True)
    return target


def _open(target: Target, create: bool) -> Engine:
    from pipeline.deploy.engine import Engine, open_stack
    from pipeline.deploy.errors import DeployError

    try:
        return Engine(target, open_stack(target, create))
    except DeployError as exc:
        _fail(exc.exit_code, f"error: {exc}")


def _run(target: Target, operation: str, call: Callable[[ProgressModel], Outcome]) -> Outcome:
    """Run one engine operation under the live view; errors and Ctrl-C end the command with a recovery hint."""
    from pipeline.cli.output import err
    from pipeline.deploy.errors import DeployError
    from pipeline.deploy.progress import ProgressModel, live_view

    model = ProgressModel(preview=operation.startswith("preview"))
    try:
        with live_view(err, model):
            outcome = call(model)
    except DeployError as exc:
        _fail(exc.exit_code, f"error: {exc}")
    except KeyboardInterrupt:
        err.print(f"interrupted. If the stack is now locked or has pending operations, recover with:\n  {target.command('cancel')}\n"
                  f"  {target.command('refresh', '--clear-pending-creates')}", markup=False, highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    for warning in model.warnings[:10]:
        err.print(f"warning: {warning}", markup=False, highlight=False)
    return outcome


def _print_result(target: Target, outcome: Outcome, json_output: bool, hint: bool = True) -> None:
    from pipeline.cli.output import out
    from pipeline.deploy.summary import done_line, outputs_table

    if json_output:
        sys.stdout.write(outcome.to_json() + "\n")
        return
    out.print(done_line(outcome), markup=False, highlight=False)
    if outcome.outputs:
        out.print(outputs_table(outcome.outputs))
    text = target.make_backend().test_record_hint(outcome.outputs) if hint and outcome.outputs else ""
    if text:
        out.print(text, markup=False, highlight=False)


def _print_plan(outcome: Outcome) -> None:
    from pipeline.cli.output import err
    from pipeline.deploy.summary import counts_line, plan_table

    if outcome.changes:
        err.print(plan_table(outcome.changes))
    err.print(f"plan for {outcome.project}/{outcome.stack}: {counts_line(outcome.counts, planned=True)}", highlight=False)


def preview(cloud: CloudOpt, spec: SpecArg = Path("pipeline.yaml"), stack: StackOpt = None, backend_url: BackendOpt = None,
            secrets_provider: SecretsOpt = None, json_output: JsonOpt = False) -> None:
    """Show what deploy would change on the cloud (a real Pulumi preview: needs the CLI and credentials)."""
    _json_errors(json_output)
    from pipeline.cli.output import out
    from pipeline.deploy.summary import counts_line, plan_table

    target = _prepare("preview", spec, stack, cloud, backend_url, secrets_provider, credentials=True, passphrase=True)
    engine = _open(target, create=True)
    outcome = _run(target, "preview", engine.preview)
    if json_output:
        sys.stdout.write(outcome.to_json() + "\n")
        return
    if outcome.changes:
        out.print(plan_table(outcome.changes))
    out.print(f"plan for {outcome.project}/{outcome.stack}: {counts_line(outcome.counts, planned=True)}", highlight=False)


def deploy(cloud: CloudOpt, spec: SpecArg = Path("pipeline.yaml"), stack: StackOpt = None, backend_url: BackendOpt = None,
           secrets_provider: SecretsOpt = None, yes: YesOpt = False, json_output: JsonOpt = False) -> None:
    """Create or update the pipeline on a cloud: preview, confirm, deploy with live progress, then show outputs."""
    _json_errors(json_output)
    from pipeline.cli.output import err
    from pipeline.deploy.summary import has_changes

    target = _prepare("deploy", spec, stack, cloud, backend_url, secrets_provider, credentials=True, passphrase=True, confirm=not yes)
    engine = _open(target, create=True)
    if not yes:
        plan = _run(target, "preview", engine.preview)
        _print_plan(plan)
        if not has_changes(plan.counts):
            err.print("nothing to change", highlight=False)
            plan.operation, plan.changes, plan.outputs = "deploy", [], engine_outputs(engine)
            _print_result(target, plan, json_output)
            return
        _confirm(f"Deploy these changes to {target.project}/{target.stack}?")
    outcome = _run(target, "deploy", engine.deploy)
    _print_result(target, outcome, json_output)


def engine_outputs(engine: Engine) -> dict[str, object]:
    from pipeline.deploy.errors import DeployError

    try:
        return engine.outputs()
    except DeployError:
        return {}


def outputs(cloud: CloudOpt, spec: SpecArg = Path("pipeline.yaml"), stack: StackOpt = None, backend_url: BackendOpt = None,
            json_output: JsonOpt = False,
            show_secrets: Annotated[bool, typer.Option("--show-secrets", help="Show secret outputs instead of [secret].")] = False) -> None:
    """Print a deployed stack's outputs (stream, buckets, functions, dead letters); --json for scripts."""
    _json_errors(json_output)
    import json

    from pipeline.cli.output import out
    from pipeline.deploy.errors import DeployError
    from pipeline.deploy.summary import outputs_table

    target = _prepare("outputs", spec, stack, cloud, backend_url, None, credentials=False, passphrase=True)
    engine = _open(target, create=False)
    try:
        values = engine.outputs(show_secrets)
    except DeployError as exc:
        _fail(exc.exit_code, f"error: {exc}")
    if json_output:
        sys.stdout.write(json.dumps(values, indent=2, sort_keys=True) + "\n")
        return
    if not values:
        out.print(f"{target.project}/{target.stack} has no outputs: it has not been deployed, or it was destroyed", highlight=False)
        return
    out.print(outputs_table(values))
    text = target.make_backend().test_record_hint(values)
    if text:
        out.print(text, markup=False, highlight=False)


def refresh(cloud: CloudOpt, spec: SpecArg = Path("pipeline.yaml"), stack: StackOpt = None, backend_url: BackendOpt = None,
            json_output: JsonOpt = False,
            clear_pending_creates: Annotated[bool, typer.Option(
                "--clear-pending-creates", help="Forget creates an interrupted run left pending (use when they were not created).")] = False) -> None:
    """Bring the stack's state in line with what exists in the cloud (after an interrupted run or manual changes)."""
    _json_errors(json_output)
    target = _prepare("refresh", spec, stack, cloud, backend_url, None, credentials=True, passphrase=True)
    engine = _open(target, create=False)
    outcome = _run(target, "refresh", lambda model: engine.refresh(model, clear_pending_creates))
    _print_result(target, outcome, json_output, hint=False)


def destroy(cloud: CloudOpt, spec: SpecArg = Path("pipeline.yaml"), stack: StackOpt = None, backend_url: BackendOpt = None,
            yes: YesOpt = False, json_output: JsonOpt = False,
            delete_data: Annotated[bool, typer.Option(
                "--delete-data", help="Also delete the data buckets and every object in them (kept by default).")] = False) -> None:
    """Delete every resource of the stack (state, history and config are kept). Data buckets (uploads, outputs,
    raw archive, dead letters) are kept with their objects unless --delete-data is given."""
    _json_errors(json_output)
    from pipeline.cli.output import err
    from pipeline.deploy import naming

    target = _prepare("destroy", spec, stack, cloud, backend_url, None, credentials=True, passphrase=True, confirm=not yes)
    engine = _open(target, create=False)
    if not yes:
        plan = _run(target, "preview-destroy", engine.preview_destroy)
        _print_plan(plan)
        kept = ("Its data buckets and every object in them are deleted too (--delete-data)." if delete_data else
                "Its data buckets are kept with their objects (pass --delete-data to delete them); the stream's records are lost.")
        _confirm(f"Delete these resources of {target.project}/{target.stack}? {kept}")
    if delete_data:
        _run(target, "deploy", engine.release_data)
    outcome = _run(target, "destroy", engine.destroy)
    _print_result(target, outcome, json_output, hint=False)
    if not json_output:
        err.print(f"the stack's history and config are kept in {naming.work_dir(target.loaded)}; deploy again any time", highlight=False)


def cancel(cloud: CloudOpt, spec: SpecArg = Path("pipeline.yaml"), stack: StackOpt = None, backend_url: BackendOpt = None,
           yes: YesOpt = False) -> None:
    """Release the lock an interrupted run left on the stack (only when no other run is in progress)."""
    from pipeline.cli.output import out
    from pipeline.deploy.errors import DeployError

    target = _prepare("cancel", spec, stack, cloud, backend_url, None, credentials=False, passphrase=False, confirm=not yes)
    engine = _open(target, create=False)
    if not yes:
        _confirm(f"Release the lock on {target.project}/{target.stack}? Only do this when no other deploy, refresh or destroy of it is running.")
    try:
        engine.cancel()
    except DeployError as exc:
        _fail(exc.exit_code, f"error: {exc}")
    out.print(f"released the lock on {target.project}/{target.stack}; now reconcile its state with:\n  {target.command('refresh')}",
              markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    """Add the lifecycle commands to the `pipeline` app."""
    for command in (preview, deploy, outputs, refresh, destroy, cancel):
        app.command()(command)
