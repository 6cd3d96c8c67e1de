"""The lifecycle commands through the real `pipeline` console script, with no Pulumi CLI (or a fake
one that only answers `version`), no cloud credentials and no terminal: every preflight failure is
one clear message with exit code 1 (2 for bad usage), and never a traceback.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.backend import Backend, backend_class

CREDENTIAL_ENV_PREFIXES = ("AWS_", "GOOGLE_", "GCLOUD_", "CLOUDSDK_", "ARM_", "AZURE_", "PULUMI_", "CI")
GCP_SPEC = """\
name: demo
stages:
  - name: first
    handler: handlers/h.py:handle
    trigger:
      stream: {}
clouds:
  gcp:
    project: demo-project-1
"""
needs_base_hooks = pytest.mark.skipif(not hasattr(Backend, "credentials_problem"), reason="apply the Backend deploy-hook diff to src/pipeline/backend.py")


def has_cloud_hooks(cloud: str) -> bool:
    return "credentials_problem" in backend_class(cloud).__dict__


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    for stream in (result.stdout, result.stderr):
        assert "Traceback" not in stream, stream
        assert "internal error" not in stream, stream


def fake_pulumi(folder: Path, version: str) -> None:
    """A `pulumi` that only answers `version` (anything else fails loudly, so a test would notice)."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "pulumi"
    script.write_text(f'#!/bin/sh\nif [ "$1" = version ]; then echo "{version}"; exit 0; fi\necho "fake pulumi cannot $*" >&2; exit 3\n', encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def run(tmp_path: Path, cli_env_vars: dict[str, str], pipeline_exe: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `pipeline ...` with PATH stripped of pulumi, no credentials, no TTY; `pulumi=` puts a fake CLI first on PATH."""
    home = tmp_path / "home"
    for folder in (home / ".aws", home / "gcloud", home / "azure"):
        folder.mkdir(parents=True, exist_ok=True)
    empty = home / ".aws" / "empty"
    empty.write_text("", encoding="utf-8")
    base = {k: v for k, v in cli_env_vars.items() if not k.startswith(CREDENTIAL_ENV_PREFIXES)}
    path = [p for p in base.get("PATH", "").split(os.pathsep) if p and not (Path(p) / "pulumi").exists()]
    base.update({
        "HOME": str(home), "AWS_EC2_METADATA_DISABLED": "true", "AWS_SHARED_CREDENTIALS_FILE": str(empty), "AWS_CONFIG_FILE": str(empty),
        "CLOUDSDK_CONFIG": str(home / "gcloud"), "AZURE_CONFIG_DIR": str(home / "azure"), "PULUMI_HOME": str(home / ".pulumi"),
        "GCE_METADATA_HOST": "127.0.0.1:9",  # should anything still ask the GCE metadata server, it gets a refusal, not the network
    })

    def go(*args: str | Path, pulumi: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        entries = list(path)
        if pulumi:
            fake_pulumi(tmp_path / "fakebin", pulumi)
            entries.insert(0, str(tmp_path / "fakebin"))
        full = {**base, "PATH": os.pathsep.join(entries), **(env or {})}
        return subprocess.run([pipeline_exe, *map(str, args)], env=full, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL, check=False)

    return go


AWS_KEYS = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "not-a-secret"}
PASSPHRASE = {"PULUMI_CONFIG_PASSPHRASE": "test"}


def test_help_lists_lifecycle_commands(run) -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("preview", "deploy", "outputs", "refresh", "destroy", "cancel"):
        assert command in result.stdout


@pytest.mark.parametrize("command", ["outputs", "cancel"])
def test_missing_cli(run, write_spec, command: str) -> None:
    args = [command, write_spec(), "--cloud", "aws"] + (["--yes"] if command == "cancel" else [])
    result = run(*args, env=PASSPHRASE)
    assert result.returncode == 1, result.stderr
    assert "Pulumi CLI is not installed" in result.stderr
    assert "https://www.pulumi.com/docs/install/" in result.stderr
    assert "`pipeline plan` and `pipeline compare` work without it" in result.stderr
    no_traceback(result)


def test_old_cli_is_too_old(run, write_spec) -> None:
    result = run("outputs", write_spec(), "--cloud", "aws", pulumi="v3.50.0", env=PASSPHRASE)
    assert result.returncode == 1, result.stderr
    assert "too old" in result.stderr and "3.50.0" in result.stderr and "3.120.0" in result.stderr
    no_traceback(result)


@needs_base_hooks
def test_missing_cli_on_preview_lists_every_problem(run, write_spec) -> None:
    result = run("preview", write_spec(), "--cloud", "aws")
    assert result.returncode == 1
    assert "Pulumi CLI is not installed" in result.stderr and "PULUMI_CONFIG_PASSPHRASE" in result.stderr
    no_traceback(result)


@pytest.mark.parametrize(("cloud", "words"), [
    ("aws", ("no AWS credentials", "aws configure")),
    ("gcp", ("no Google Cloud credentials", "gcloud auth application-default login")),
    ("azure", ("no Azure credentials", "az login")),
])
def test_missing_credentials_name_the_source(run, write_spec, cloud: str, words: tuple[str, ...]) -> None:
    if not has_cloud_hooks(cloud):
        pytest.skip(f"apply the deploy-hook lines to the {cloud} backend class")
    result = run("preview", write_spec(GCP_SPEC), "--cloud", cloud, pulumi="v3.201.0", env=PASSPHRASE)
    assert result.returncode == 1, result.stderr
    for word in words:
        assert word in result.stderr
    assert "Pulumi CLI" not in result.stderr  # the fake CLI passed
    no_traceback(result)


@needs_base_hooks
def test_missing_passphrase_non_interactive(run, write_spec) -> None:
    result = run("preview", write_spec(), "--cloud", "aws", pulumi="v3.201.0", env=AWS_KEYS)
    assert result.returncode == 1, result.stderr
    assert "PULUMI_CONFIG_PASSPHRASE" in result.stderr and "non-interactive" in result.stderr
    no_traceback(result)


@needs_base_hooks
def test_kms_secrets_provider_needs_no_passphrase(run, write_spec) -> None:
    if not has_cloud_hooks("aws"):
        pytest.skip("apply the deploy-hook lines to the aws backend class")
    result = run("preview", write_spec(), "--cloud", "aws", "--secrets-provider", "awskms://alias/x?region=us-east-1", pulumi="v3.201.0")
    assert "PULUMI_CONFIG_PASSPHRASE" not in result.stderr
    assert "no AWS credentials" in result.stderr and result.returncode == 1
    no_traceback(result)


@pytest.mark.parametrize("command", ["deploy", "destroy", "cancel"])
def test_confirmation_needs_yes_without_a_terminal(run, write_spec, command: str) -> None:
    result = run(command, write_spec(), "--cloud", "aws")
    assert result.returncode == 2, result.stderr
    assert "--yes" in result.stderr
    no_traceback(result)


def test_ci_counts_as_non_interactive(run, write_spec) -> None:
    result = run("deploy", write_spec(), "--cloud", "aws", env={"CI": "true"})
    assert result.returncode == 2 and "--yes" in result.stderr


def test_bad_backend_url_is_bad_usage(run, write_spec) -> None:
    result = run("outputs", write_spec(), "--cloud", "aws", "--backend-url", "ftp://state")
    assert result.returncode == 2 and "not a Pulumi state backend" in result.stderr
    no_traceback(result)


def test_bad_backend_url_from_environment(run, write_spec) -> None:
    result = run("outputs", write_spec(), "--cloud", "aws", env={"PULUMI_BACKEND_URL": "my-bucket"})
    assert result.returncode == 2 and "PULUMI_BACKEND_URL" in result.stderr


def test_unknown_cloud_is_bad_usage(run, write_spec) -> None:
    result = run("outputs", write_spec(), "--cloud", "nimbus")
    assert result.returncode == 2 and "no backend named 'nimbus'" in result.stderr
    no_traceback(result)


def test_spec_the_cloud_cannot_express_is_bad_input(run, write_spec) -> None:
    result = run("outputs", write_spec(), "--cloud", "gcp", env=PASSPHRASE)  # no clouds.gcp.project
    assert result.returncode == 2 and "clouds.gcp.project" in result.stderr
    no_traceback(result)


def test_cloud_is_required(run, write_spec) -> None:
    result = run("deploy", write_spec(), "--yes")
    assert result.returncode == 2 and "--cloud" in result.stderr


def test_ci_learns_every_preflight_problem_in_one_run(run, write_spec) -> None:
    """Without --yes in CI, the credentials, passphrase and CLI problems are listed too, not only after --yes is added."""
    if not has_cloud_hooks("aws"):
        pytest.skip("apply the deploy-hook lines to the aws backend class")
    result = run("deploy", write_spec(), "--cloud", "aws", env={"CI": "true"})
    assert result.returncode == 2, result.stderr  # the command line needs fixing (--yes): bad usage
    for words in ("--yes", "Pulumi CLI is not installed", "PULUMI_CONFIG_PASSPHRASE", "no AWS credentials"):
        assert words in result.stderr, words
    assert "deploy did not start: 4 problems to fix first" in result.stderr
    no_traceback(result)


def test_preflight_problems_are_listed_one_by_one_in_json(run, write_spec) -> None:
    import json

    if not has_cloud_hooks("aws"):
        pytest.skip("apply the deploy-hook lines to the aws backend class")
    result = run("deploy", write_spec(), "--cloud", "aws", "--json", pulumi="v3.201.0", env={"CI": "true"})
    assert result.returncode == 2, result.stderr
    error = json.loads(result.stdout)["error"]
    assert error["kind"] == "usage" and error["message"] == "deploy did not start: 3 problems to fix first"
    assert [p["check"] for p in error["problems"]] == ["confirmation", "passphrase", "credentials"]
    assert "--yes" in error["problems"][0]["message"] and "no AWS credentials" in error["problems"][2]["message"]
    with_yes = run("preview", write_spec(), "--cloud", "aws", "--json", pulumi="v3.201.0", env=PASSPHRASE)
    assert with_yes.returncode == 1, with_yes.stderr  # only failed checks: exit 1
    failed = json.loads(with_yes.stdout)["error"]
    assert failed["kind"] == "failed" and [p["check"] for p in failed["problems"]] == ["credentials"]
    no_traceback(result)
