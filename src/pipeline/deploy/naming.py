"""Stable names for everything the deploy lifecycle creates or reads.

One Pulumi project per pipeline (the spec's `name`), one stack per environment and cloud
(`<stack>-<cloud>`, exactly the name the offline planner uses), state in a local file backend
next to the spec unless told otherwise. These names are part of the user's contract: renaming
any of them would orphan deployed resources, so they live here, once, and are tested.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.deploy.errors import DeployUsageError
from pipeline.spec.load import DEFAULT_STACK, LoadedSpec, overlay_path

if TYPE_CHECKING:
    from pipeline.faces import Deploy

BACKEND_URL_ENV = "PULUMI_BACKEND_URL"
PASSPHRASE_ENV = "PULUMI_CONFIG_PASSPHRASE"
PASSPHRASE_FILE_ENV = "PULUMI_CONFIG_PASSPHRASE_FILE"
PIPELINE_DIR = ".pipeline"  # next to the spec; already git-ignored, shared with `pipeline run`'s local store

# Pulumi's DIY backends (object storage or a folder) and Pulumi Cloud (https://api.pulumi.com or self-hosted).
DIY_SCHEMES = ("file://", "s3://", "gs://", "azblob://")
CLOUD_SCHEMES = ("https://", "http://")
# Secrets providers Pulumi accepts for `stack init --secrets-provider`.
SECRETS_SCHEMES = ("awskms://", "gcpkms://", "azurekeyvault://", "hashivault://")
PASSPHRASE = "passphrase"


def project_name(loaded: LoadedSpec) -> str:
    """The Pulumi project: the pipeline's name, so every environment and cloud shares one project."""
    return loaded.spec.name


def stack_name(loaded: LoadedSpec, cloud: str) -> str:
    """The Pulumi stack: `<stack>-<cloud>`, e.g. `dev-aws`; the same name the offline planner gives its mock stack."""
    return f"{loaded.stack}-{cloud}"


def state_dir(loaded: LoadedSpec) -> Path:
    """Where the default file backend keeps state: inside the project, so nothing needs an account."""
    return loaded.base_dir / PIPELINE_DIR / "state"


def work_dir(loaded: LoadedSpec) -> Path:
    """The Pulumi workspace (Pulumi.yaml, Pulumi.<stack>.yaml): stable, so `pulumi` CLI users can cd here."""
    return loaded.base_dir / PIPELINE_DIR / "pulumi" / loaded.spec.name


def default_backend_url(loaded: LoadedSpec) -> str:
    # Pulumi reads file:// URLs as plain paths (no percent-decoding), so no Path.as_uri() here.
    return "file://" + state_dir(loaded).as_posix()


def resolve_backend_url(loaded: LoadedSpec, option: str | None, environ: Mapping[str, str] | None = None) -> str:
    """--backend-url, else PULUMI_BACKEND_URL, else the local file backend next to the spec."""
    env = os.environ if environ is None else environ
    url = (option or env.get(BACKEND_URL_ENV) or "").strip()
    if not url:
        return default_backend_url(loaded)
    if url.startswith(DIY_SCHEMES + CLOUD_SCHEMES) and len(url.split("://", 1)[1]) > 0:
        return url
    source = "--backend-url" if option else BACKEND_URL_ENV
    raise DeployUsageError(
        f"{source} {url!r} is not a Pulumi state backend; use file://<folder>, s3://<bucket>, gs://<bucket>, "
        f"azblob://<container> or https://api.pulumi.com (Pulumi Cloud)"
    )


def is_diy(url: str) -> bool:
    """A self-managed backend (folder or bucket): passphrase secrets by default, locks as files."""
    return url.startswith(DIY_SCHEMES)


def resolve_secrets_provider(option: str | None) -> str | None:
    """None means Pulumi's default for the backend (passphrase on DIY backends, the service on Pulumi Cloud)."""
    if option is None or option.strip() in ("", "default"):
        return None
    value = option.strip()
    if value == PASSPHRASE or (value.startswith(SECRETS_SCHEMES) and len(value.split("://", 1)[1]) > 0):
        return value
    raise DeployUsageError(
        f"--secrets-provider {value!r} is not a Pulumi secrets provider; use passphrase, awskms://<key>?region=<region>, "
        f"gcpkms://projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k> or azurekeyvault://<vault>.vault.azure.net/keys/<key>"
    )


def uses_passphrase(backend_url: str, secrets_provider: str | None) -> bool:
    """Whether Pulumi will ask for a passphrase: explicitly, or by default on a DIY backend."""
    return secrets_provider == PASSPHRASE or (secrets_provider is None and is_diy(backend_url))


def stack_config(loaded: LoadedSpec, cloud: str, backend: Deploy | None = None) -> dict[str, str]:
    """Stack configuration from the spec and overlay.

    The program reads nothing from it (every provider is explicit and configured from the spec),
    but `pulumi config` and `pulumi refresh` users see where the stack lives. Cloud keys
    (`aws:region`, `gcp:project`, ...) come from the backend's `stack_config()` hook.
    """
    if backend is None:
        from pipeline.backend import backend_class

        backend = backend_class(cloud)(loaded.spec, loaded.stack, loaded.base_dir)
    config = {
        "pipeline:spec": str(loaded.path),
        "pipeline:stack": loaded.stack,
        "pipeline:cloud": cloud,
        "pipeline:tags": json.dumps(dict(sorted(loaded.spec.tags.items())), separators=(",", ":")),
    }
    config.update(backend.stack_config())
    return config


def cli_command(verb: str, loaded: LoadedSpec, cloud: str, *extra: str, backend_url: str | None = None) -> str:
    """The `pipeline ...` command line that reaches the same stack, for recovery hints."""
    try:
        spec = str(loaded.path.relative_to(Path.cwd()))
    except ValueError:
        spec = str(loaded.path)
    parts = ["pipeline", verb, spec, "--cloud", cloud]
    if loaded.stack != DEFAULT_STACK or overlay_path(loaded.path, loaded.stack).is_file():
        parts += ["--stack", loaded.stack]
    if backend_url and backend_url != default_backend_url(loaded):
        parts += ["--backend-url", backend_url]
    parts += list(extra)
    return shlex.join(parts)
