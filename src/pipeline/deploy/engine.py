"""Drive one Pulumi stack through the Automation API with the core's inline program.

The program is `pipeline_program(backend)`, the very function the offline planner runs under
the mock engine, so a plan and a deployment can never disagree on wiring. Every Automation API
failure leaves this module as a `DeployError` whose message explains what happened and gives the
`pipeline` command that recovers (a stale lock, pending operations after an interrupted run, a
stack that was never deployed, a wrong passphrase).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pipeline.deploy import naming
from pipeline.deploy.errors import DeployError
from pipeline.deploy.progress import ProgressModel
from pipeline.deploy.summary import Outcome, change_counts, plain_outputs, steps
from pipeline.spec.load import LoadedSpec

if TYPE_CHECKING:
    from pulumi import automation as auto

    from pipeline.backend import Backend
    from pipeline.deploy.preflight import Cli

T = TypeVar("T")
_LOCK_HOLDER = re.compile(r"created by (.+)$")
_PENDING = re.compile(r"(urn:pulumi:\S+?),? interrupted while (\w+)")
STATE_EDITING_DOCS = "https://www.pulumi.com/docs/iac/operations/troubleshooting/interrupted-updates/"


@dataclass
class Target:
    """One stack: which spec, cloud, state backend and secrets provider, and the CLI that runs it."""

    loaded: LoadedSpec
    cloud: str
    backend_url: str
    secrets_provider: str | None
    cli: Cli
    passphrase: str | None = None  # asked for interactively; otherwise Pulumi reads the environment
    # The stack's outputs before this run, read by `Engine` before preview/deploy: sizing keeps what cannot
    # change in place (see Backend.previous_outputs).
    previous_outputs: dict[str, Any] = field(default_factory=dict)
    delete_data: bool = False  # destroy --delete-data: data buckets are deleted with their objects, not kept

    @property
    def project(self) -> str:
        return naming.project_name(self.loaded)

    @property
    def stack(self) -> str:
        return naming.stack_name(self.loaded, self.cloud)

    def make_backend(self) -> Backend:
        """A fresh backend: the interface promises one instance per program run. Deploys ship each
        stage's requirements inside its package where the cloud does not build remotely."""
        from pipeline.backend import backend_class

        backend = backend_class(self.cloud)(self.loaded.spec, self.loaded.stack, self.loaded.base_dir)
        backend.vendor_dependencies = True
        backend.previous_outputs = self.previous_outputs
        backend.delete_data = self.delete_data
        return backend

    def command(self, verb: str, *extra: str) -> str:
        return naming.cli_command(verb, self.loaded, self.cloud, *extra, backend_url=self.backend_url)

    def env_vars(self) -> dict[str, str]:
        """Environment for every Pulumi command: the resolved state URL wins over the user's login."""
        env = {"PULUMI_SKIP_UPDATE_CHECK": "true", naming.BACKEND_URL_ENV: self.backend_url}
        if self.passphrase is not None:
            env[naming.PASSPHRASE_ENV] = self.passphrase
        return env


def program(target: Target) -> Callable[[], None]:
    """The inline Pulumi program: the core's orchestrator over a fresh backend, nothing else."""

    def run() -> None:
        from pipeline.program import pipeline_program

        pipeline_program(target.make_backend())

    return run


def workspace_options(target: Target, pulumi_command: Any = None) -> auto.LocalWorkspaceOptions:
    """Project settings (name, state backend) and the stable work dir, so `pulumi` CLI users find the same stack."""
    from pulumi import automation as auto

    return auto.LocalWorkspaceOptions(
        work_dir=str(naming.work_dir(target.loaded)),
        program=program(target),
        project_settings=auto.ProjectSettings(
            name=target.project,
            runtime="python",
            description=f"pipeline-deployer: {target.loaded.spec.description or target.loaded.spec.name}",
            backend=auto.ProjectBackend(url=target.backend_url),
        ),
        secrets_provider=target.secrets_provider,
        env_vars=target.env_vars(),
        pulumi_command=pulumi_command,
    )


def open_stack(target: Target, create: bool) -> auto.Stack:
    """Select the stack (or create it, when `create`), with its config set from the spec."""
    from pulumi import automation as auto

    naming.work_dir(target.loaded).mkdir(parents=True, exist_ok=True)
    if target.backend_url == naming.default_backend_url(target.loaded):
        naming.state_dir(target.loaded).mkdir(parents=True, exist_ok=True)

    def start() -> auto.Stack:
        command = auto.PulumiCommand(root=target.cli.root, skip_version_check=True)  # preflight checked the version
        opts = workspace_options(target, command)
        if create:
            stack = auto.create_or_select_stack(target.stack, project_name=target.project, program=opts.program, opts=opts)
            config = naming.stack_config(target.loaded, target.cloud)
            stack.set_all_config({key: auto.ConfigValue(value) for key, value in config.items()})
            return stack
        return auto.select_stack(target.stack, project_name=target.project, program=opts.program, opts=opts)

    return guarded(target, "preparing the stack", start)


def guarded(target: Target, operation: str, call: Callable[[], T], model: ProgressModel | None = None) -> T:
    """Run an Automation API call; any failure becomes a DeployError that says how to recover."""
    from pulumi.automation import errors

    try:
        return call()
    except (errors.CommandError, errors.InvalidVersionError) as exc:
        raise translate(exc, target, operation, model) from None
    except FileNotFoundError as exc:  # the CLI disappeared between preflight and now
        raise DeployError(f"could not run the Pulumi CLI: {exc}") from None
    except DeployError:
        raise
    except Exception as exc:  # an SDK/CLI mismatch (unparsable output...) must still be one line, not a traceback
        raise DeployError(f"{operation} failed for stack {target.project}/{target.stack}: {type(exc).__name__}: {exc}") from exc


def _error_lines(text: str, limit: int = 12) -> list[str]:
    lines: list[str] = []
    for raw in text.splitlines():
        line = raw.strip().removeprefix("stderr:").removeprefix("stdout:").strip()  # CommandResult's own labels
        if line.startswith("error:"):
            line = line[len("error:"):].strip()
            if line and line not in lines:
                lines.append(line)
    if not lines:
        tail = text.split(" stderr:", 1)[-1]
        lines = [line.strip() for line in tail.splitlines() if line.strip()][-limit:]
    return lines[:limit]


def translate(exc: Exception, target: Target, operation: str, model: ProgressModel | None = None) -> DeployError:
    """An Automation API failure as one message: what happened, why, and the command that recovers."""
    from pulumi.automation import errors

    text = str(exc)
    stack = f"{target.project}/{target.stack}"
    cancel, refresh = target.command("cancel"), target.command("refresh")
    if isinstance(exc, errors.ConcurrentUpdateError) or "is currently locked by" in text:
        holders = [m.group(1).strip() for line in text.splitlines() if (m := _LOCK_HOLDER.search(line))]
        held = "".join(f"\n  lock: {h}" for h in holders)
        return DeployError(
            f"stack {stack} is locked: another run is updating it, or a run that was interrupted left its lock behind.{held}\n"
            f"If no other deploy, refresh or destroy of this stack is running, release the lock:\n  {cancel}\n"
            f"then bring the state in line with the cloud before deploying again:\n  {refresh}"
        )
    pending = _PENDING.findall(text)
    if pending or "pending operation" in text or "pending create" in text:
        listed = "".join(f"\n  {urn} (interrupted while {verb})" for urn, verb in pending)
        return DeployError(
            f"stack {stack} has operations that an interrupted run left pending: Pulumi cannot tell whether they finished.{listed}\n"
            f"If the resources were not created in the cloud, forget them:\n  {target.command('refresh', '--clear-pending-creates')}\n"
            f"If they were, import them with `pulumi refresh --import-pending-creates <URN> --import-pending-creates <id>` run in "
            f"{naming.work_dir(target.loaded)} (see {STATE_EDITING_DOCS})."
        )
    if isinstance(exc, errors.StackNotFoundError):
        return DeployError(
            f"stack {stack} does not exist in {target.backend_url}: nothing has been deployed there yet. "
            f"Deploy it with `{target.command('deploy')}`; if it was deployed with another state backend, pass the same --backend-url."
        )
    if "passphrase" in text.lower() and ("incorrect" in text.lower() or "must be set" in text.lower() or "PULUMI_CONFIG_PASSPHRASE" in text):
        return DeployError(
            f"the secrets passphrase for stack {stack} is missing or wrong; set {naming.PASSPHRASE_ENV} "
            f"(or {naming.PASSPHRASE_FILE_ENV}) to the passphrase the stack was created with"
        )
    if isinstance(exc, errors.InvalidVersionError):
        return DeployError(f"the Pulumi CLI does not fit this SDK: {exc}")
    details = (model.errors if model is not None and model.errors else []) or _error_lines(text)
    body = "".join(f"\n  {line}" for line in details)
    interrupted = operation in ("deploy", "destroy", "refresh")
    after = (f"\nNothing is locked after a failed run; fix the cause and run it again. If the run was killed instead, "
             f"see `{cancel}` and `{refresh}`.") if interrupted else ""
    return DeployError(f"{operation} failed for stack {stack}:{body}{after}")


class Engine:
    """One opened stack and the operations the CLI offers on it; each returns an Outcome."""

    def __init__(self, target: Target, stack: auto.Stack):
        self.target = target
        self.stack = stack

    def _outcome(self, operation: str, started: float, resource_changes: Any, outputs: Any = None,
                 model: ProgressModel | None = None) -> Outcome:
        return Outcome(
            operation=operation,
            project=self.target.project,
            stack=self.target.stack,
            counts=change_counts(resource_changes),
            duration_s=time.monotonic() - started,
            outputs=plain_outputs(outputs or {}),
            changes=steps(model.changes()) if model is not None and operation.startswith("preview") else [],
        )

    def remember_outputs(self) -> None:
        """The outputs of the last deploy, for the program's sizing (empty for a new stack)."""
        self.target.previous_outputs = plain_outputs(guarded(self.target, "reading the last outputs", self.stack.outputs), show_secrets=True)

    def preview(self, model: ProgressModel) -> Outcome:
        started = time.monotonic()
        self.remember_outputs()
        result = guarded(self.target, "preview", lambda: self.stack.preview(on_event=model.handle), model)
        return self._outcome("preview", started, result.change_summary, model=model)

    def deploy(self, model: ProgressModel) -> Outcome:
        started = time.monotonic()
        self.remember_outputs()
        result = guarded(self.target, "deploy", lambda: self.stack.up(on_event=model.handle), model)
        return self._outcome("deploy", started, result.summary.resource_changes, result.outputs)

    def refresh(self, model: ProgressModel, clear_pending_creates: bool = False) -> Outcome:
        started = time.monotonic()
        result = guarded(self.target, "refresh",
                         lambda: self.stack.refresh(on_event=model.handle, clear_pending_creates=clear_pending_creates or None), model)
        return self._outcome("refresh", started, result.summary.resource_changes, self.outputs())

    def preview_destroy(self, model: ProgressModel) -> Outcome:
        started = time.monotonic()
        result = guarded(self.target, "preview", lambda: self.stack.preview_destroy(on_event=model.handle), model)
        return self._outcome("preview-destroy", started, result.change_summary, model=model)

    def release_data(self, model: ProgressModel) -> Outcome:
        """Before `destroy --delete-data`: deploy once with deletable data buckets (no retain, force delete),
        so the destroy that follows removes them and their objects instead of leaving them behind."""
        started = time.monotonic()
        self.target.delete_data = True
        self.remember_outputs()
        result = guarded(self.target, "making data buckets deletable", lambda: self.stack.up(on_event=model.handle), model)
        return self._outcome("deploy", started, result.summary.resource_changes, result.outputs)

    def destroy(self, model: ProgressModel) -> Outcome:
        started = time.monotonic()
        result = guarded(self.target, "destroy", lambda: self.stack.destroy(on_event=model.handle), model)
        return self._outcome("destroy", started, result.summary.resource_changes)

    def outputs(self, show_secrets: bool = False) -> dict[str, Any]:
        return plain_outputs(guarded(self.target, "outputs", self.stack.outputs), show_secrets)

    def cancel(self) -> None:
        guarded(self.target, "cancel", self.stack.cancel)
