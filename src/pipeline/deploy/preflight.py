"""Checks that run before the engine is touched, each failing with one message that says what to do.

A deploy that fails ten minutes in because the CLI is missing, a passphrase was never set or
the credentials point nowhere wastes the user's time and can leave a half-created stack behind.
Everything here is local (no network, no token acquisition, no Pulumi engine), except a backend's
`deploy_problem` before a preview or deploy: a check the cloud alone can answer, e.g. whether the account's quota
leaves room for what the spec reserves.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.deploy import naming
from pipeline.errors import Problem

if TYPE_CHECKING:
    from pipeline.faces import Deploy

MIN_VERSION = (3, 120, 0)  # destroy --preview-only (3.105), event logs, refresh --clear-pending-creates
INSTALL_DOCS = "https://www.pulumi.com/docs/install/"
WITHOUT_CLI = "`pipeline plan` and `pipeline compare` work without it (offline, no credentials)"
CONFIRMATION = "confirmation"  # the preflight check a missing --yes fails: bad usage (exit 2), not a failed check
_VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True)
class Cli:
    """The Pulumi CLI the Automation API will drive."""

    path: str
    version: tuple[int, int, int]

    @property
    def root(self) -> str | None:
        """`PulumiCommand(root=...)`: None when PATH finds it, else the folder holding bin/pulumi."""
        if shutil.which("pulumi") == self.path:
            return None
        return str(Path(self.path).parent.parent)


def version_text(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def parse_version(text: str) -> tuple[int, int, int] | None:
    """`pulumi version` prints e.g. `v3.150.0` (or `v3.150.0-dev.0` for dev builds)."""
    match = _VERSION.search(text.strip())
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def find_cli(environ: Mapping[str, str] | None = None) -> str | None:
    """`pulumi` on PATH, else the installer's default ~/.pulumi/bin (often not on PATH in CI shells)."""
    env = os.environ if environ is None else environ
    found = shutil.which("pulumi", path=env.get("PATH"))
    if found:
        return found
    home = Path(env["PULUMI_HOME"]) if env.get("PULUMI_HOME") else Path.home() / ".pulumi"
    candidate = home / "bin" / ("pulumi.exe" if os.name == "nt" else "pulumi")
    return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None


def check_cli(environ: Mapping[str, str] | None = None) -> tuple[Cli | None, str | None]:
    """The CLI and no problem, or no CLI and the message that says what to install and where to read how."""
    minimum = version_text(MIN_VERSION)
    path = find_cli(environ)
    if path is None:
        return None, (
            f"the Pulumi CLI is not installed (no `pulumi` on PATH or in ~/.pulumi/bin), and deploying needs it; "
            f"install Pulumi {minimum} or newer as described at {INSTALL_DOCS} (e.g. `curl -fsSL https://get.pulumi.com | sh` "
            f"or `brew install pulumi/tap/pulumi`). {WITHOUT_CLI}."
        )
    env = dict(os.environ if environ is None else environ, PULUMI_SKIP_UPDATE_CHECK="true")
    try:
        result = subprocess.run([path, "version"], capture_output=True, text=True, timeout=60, env=env, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"the Pulumi CLI at {path} could not be run ({exc}); reinstall it ({INSTALL_DOCS}). {WITHOUT_CLI}."
    version = parse_version(result.stdout) if result.returncode == 0 else None
    if version is None:
        said = (result.stdout or result.stderr).strip().splitlines()[:1]
        return None, f"`{path} version` did not print a version ({said[0] if said else f'exit code {result.returncode}'}); reinstall Pulumi ({INSTALL_DOCS})."
    if version < MIN_VERSION:
        return None, (
            f"the Pulumi CLI at {path} is version {version_text(version)}, which is too old: deploying needs {minimum} or newer; "
            f"upgrade it as described at {INSTALL_DOCS}. {WITHOUT_CLI}."
        )
    return Cli(path, version), None


def is_interactive(environ: Mapping[str, str] | None = None) -> bool:
    """A person can answer a prompt: stdin is a terminal and this is not a CI job (CI=true)."""
    env = os.environ if environ is None else environ
    ci = env.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    return sys.stdin.isatty() and not ci


def passphrase_problem(backend_url: str, secrets_provider: str | None, environ: Mapping[str, str] | None = None,
                       interactive: bool = False) -> str | None:
    """Pulumi's passphrase provider reads the passphrase from the environment; say so before the engine asks.

    An empty PULUMI_CONFIG_PASSPHRASE counts as set (Pulumi allows it; it just protects nothing).
    In an interactive run a missing passphrase is not a problem: `pipeline` prompts for it and hands it to Pulumi
    (Pulumi itself cannot prompt: the Automation API captures its output).
    """
    if not naming.uses_passphrase(backend_url, secrets_provider):
        return None
    env = os.environ if environ is None else environ
    if naming.PASSPHRASE_ENV in env:
        return None
    file = env.get(naming.PASSPHRASE_FILE_ENV)
    if file:
        if Path(file).expanduser().is_file():
            return None
        return f"{naming.PASSPHRASE_FILE_ENV} points at {file}, which does not exist; point it at the file holding the stack's passphrase"
    if interactive:
        return None
    return (
        f"the stack's secrets are encrypted with a passphrase, and neither {naming.PASSPHRASE_ENV} nor {naming.PASSPHRASE_FILE_ENV} "
        f"is set in this non-interactive run; export one of them (keep the passphrase: the stack cannot be read without it), "
        f"or use a cloud KMS with --secrets-provider awskms://...|gcpkms://...|azurekeyvault://..."
    )


def pulumi_cloud_problem(backend_url: str, environ: Mapping[str, str] | None = None) -> str | None:
    """Pulumi Cloud needs a token: PULUMI_ACCESS_TOKEN, or a `pulumi login` that stored one."""
    if naming.is_diy(backend_url):
        return None
    env = os.environ if environ is None else environ
    if env.get("PULUMI_ACCESS_TOKEN"):
        return None
    home = Path(env["PULUMI_HOME"]) if env.get("PULUMI_HOME") else Path.home() / ".pulumi"
    if (home / "credentials.json").is_file():
        return None
    return f"state is kept in Pulumi Cloud ({backend_url}) but no access token is set; run `pulumi login {backend_url}` or export PULUMI_ACCESS_TOKEN"


def credentials_problem(backend: Deploy) -> str | None:
    """The backend says whether its cloud's credentials and region/project/location resolve, locally."""
    return backend.credentials_problem()


def confirmation_problem(verb: str, confirm: bool, interactive: bool) -> str | None:
    """A command that changes or unlocks cloud resources needs a person's yes, or --yes where no person can answer."""
    if not confirm or interactive:
        return None
    return f"{verb} asks for confirmation, but this run has no terminal to ask on (or CI is set); use --yes to {verb} without asking"


def environment_problems(backend: Deploy, backend_url: str, secrets_provider: str | None, *, credentials: bool, passphrase: bool,
                         interactive: bool, environ: Mapping[str, str] | None = None,
                         confirm: str | None = None, deploying: bool = False) -> tuple[Cli | None, list[Problem]]:
    """Every local problem at once (--yes, CLI, state login, passphrase, credentials), so one run lists every fix:
    a CI job learns about its credentials on the first try, not after adding --yes. `confirm` is the verb of a
    command that asks before changing anything (deploy, destroy, cancel); each problem names its check. When
    `deploying` (preview, deploy) and the credentials resolve, also what the cloud's account would refuse
    (`Backend.deploy_problem`, the one check here that calls the cloud)."""
    problems: list[Problem] = []
    if confirm:
        missing_yes = confirmation_problem(confirm, True, interactive)
        if missing_yes:
            problems.append(Problem(missing_yes, check=CONFIRMATION))
    cli, problem = check_cli(environ)
    found_credentials = credentials_problem(backend) if credentials else None
    for check, found in (
        ("pulumi-cli", problem),
        ("state-login", pulumi_cloud_problem(backend_url, environ)),
        ("passphrase", passphrase_problem(backend_url, secrets_provider, environ, interactive) if passphrase else None),
        ("credentials", found_credentials),
        ("account", backend.deploy_problem() if deploying and credentials and found_credentials is None else None),
    ):
        if found:
            problems.append(Problem(found, check=check))
    return cli, problems
