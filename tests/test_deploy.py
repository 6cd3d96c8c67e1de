"""Deploy lifecycle units, without the Pulumi CLI, credentials or network: naming and config,
state backend and secrets resolution, the CLI and passphrase preflight, engine events -> progress
rows, engine errors -> recovery messages, and each cloud's credential check and test-record hint.
"""

from __future__ import annotations

import importlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from pulumi.automation import CommandResult, OutputValue
from pulumi.automation.errors import create_command_error
from pulumi.automation.events import EngineEvent

from pipeline.backend import Backend, backend_class
from pipeline.deploy import engine, naming, preflight, progress, summary
from pipeline.deploy.errors import DeployError, DeployUsageError
from pipeline.spec.load import LoadedSpec, load_spec

CLOUDS = ("aws", "gcp", "azure")
# Tests only: the per-cloud hook implementations, for as long as the backend classes do not expose them yet.
HOOK_MODULES = {cloud: f"pipeline_{cloud}.credentials" for cloud in CLOUDS}
CREDENTIAL_ENV_PREFIXES = ("AWS_", "GOOGLE_", "GCLOUD_", "CLOUDSDK_", "ARM_", "AZURE_", "PULUMI_")


@pytest.fixture(autouse=True)
def deploy_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give each backend class the deploy hooks from its credentials module if it lacks them (tests only)."""
    for cloud, module_name in HOOK_MODULES.items():
        cls = backend_class(cloud)
        module: Any = importlib.import_module(module_name)
        if "stack_config" not in cls.__dict__:
            monkeypatch.setattr(cls, "stack_config", lambda self, m=module: m.stack_config(self.spec), raising=False)
        if "credentials_problem" not in cls.__dict__:
            monkeypatch.setattr(cls, "credentials_problem", lambda self, m=module: m.credentials_problem(self.spec), raising=False)
        if "test_record_hint" not in cls.__dict__:
            monkeypatch.setattr(cls, "test_record_hint", lambda self, outputs, m=module: m.test_record_hint(self.spec, self.stack, outputs),
                                raising=False)


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No cloud credentials anywhere this process could look, and no network for AWS instance metadata."""
    for name in list(os.environ):
        if name.startswith(CREDENTIAL_ENV_PREFIXES):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    (home / "gcloud").mkdir()
    (home / "azure").mkdir()
    empty = home / ".aws" / "empty"
    empty.write_text("", encoding="utf-8")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(home / "gcloud"))
    monkeypatch.setenv("AZURE_CONFIG_DIR", str(home / "azure"))
    gcp: Any = importlib.import_module("pipeline_gcp.credentials")
    monkeypatch.setattr(gcp, "_on_google_host", lambda: False)
    return home


@pytest.fixture
def loaded(example_spec: Path) -> LoadedSpec:
    return load_spec(example_spec, "dev")


def target_for(loaded: LoadedSpec, cloud: str = "aws", url: str | None = None) -> engine.Target:
    return engine.Target(loaded, cloud, url or naming.default_backend_url(loaded), None, preflight.Cli("/usr/bin/pulumi", (3, 150, 0)))


# --- naming and config -------------------------------------------------------------------------


def test_project_and_stack_names_match_the_planner(loaded: LoadedSpec) -> None:
    assert naming.project_name(loaded) == "txn-scoring"
    for cloud in CLOUDS:
        assert naming.stack_name(loaded, cloud) == f"dev-{cloud}"  # planner: f"{loaded.stack}-{cloud}"


def test_state_and_work_dirs_live_next_to_the_spec(loaded: LoadedSpec) -> None:
    assert naming.state_dir(loaded) == loaded.base_dir / ".pipeline" / "state"
    assert naming.work_dir(loaded) == loaded.base_dir / ".pipeline" / "pulumi" / "txn-scoring"
    assert naming.default_backend_url(loaded) == f"file://{loaded.base_dir.as_posix()}/.pipeline/state"


@pytest.mark.parametrize(("cloud", "expected"), [
    ("aws", {"aws:region": "us-east-1"}),
    ("gcp", {"gcp:project": "txn-scoring-demo", "gcp:region": "us-central1"}),
    ("azure", {"azure-native:location": "eastus"}),
])
def test_stack_config_from_spec_overlay_and_backend(loaded: LoadedSpec, cloud: str, expected: dict[str, str]) -> None:
    config = naming.stack_config(loaded, cloud)
    for key, value in expected.items():
        assert config[key] == value
    cloud_keys = {k for k in config if not k.startswith("pipeline:")}
    assert cloud_keys == set(expected), "cloud keys come only from that cloud's backend"
    assert config["pipeline:stack"] == "dev" and config["pipeline:cloud"] == cloud
    assert json.loads(config["pipeline:tags"]) == {"cost-center": "4711", "env": "dev", "team": "risk-ml"}  # overlay tag merged
    assert all(isinstance(v, str) for v in config.values())


def test_stack_config_follows_the_overlay(example_spec: Path) -> None:
    prod = load_spec(example_spec, "prod")
    assert json.loads(naming.stack_config(prod, "aws")["pipeline:tags"])["env"] == "prod"


def test_base_backend_hooks_default_to_nothing() -> None:
    if not hasattr(Backend, "stack_config"):
        pytest.skip("the Backend base hooks are not applied yet")
    assert Backend.stack_config.__qualname__.startswith("Backend.")


# --- state backend and secrets provider --------------------------------------------------------


def test_backend_url_precedence(loaded: LoadedSpec) -> None:
    env = {"PULUMI_BACKEND_URL": "s3://team-state/pipelines"}
    assert naming.resolve_backend_url(loaded, None, {}) == naming.default_backend_url(loaded)
    assert naming.resolve_backend_url(loaded, None, env) == "s3://team-state/pipelines"
    assert naming.resolve_backend_url(loaded, "gs://other", env) == "gs://other"


@pytest.mark.parametrize("url", ["s3://b", "s3://b/prefix?region=eu-west-1", "gs://b", "azblob://container", "https://api.pulumi.com", "file:///tmp/state"])
def test_backend_urls_accepted(loaded: LoadedSpec, url: str) -> None:
    assert naming.resolve_backend_url(loaded, url, {}) == url


@pytest.mark.parametrize("url", ["bucket-name", "ftp://x", "s3://", "/tmp/state"])
def test_backend_url_rejected_is_usage_error(loaded: LoadedSpec, url: str) -> None:
    with pytest.raises(DeployUsageError) as info:
        naming.resolve_backend_url(loaded, url, {})
    assert info.value.exit_code == 2 and "s3://" in str(info.value)


def test_secrets_provider_resolution() -> None:
    assert naming.resolve_secrets_provider(None) is None
    assert naming.resolve_secrets_provider("default") is None
    assert naming.resolve_secrets_provider("passphrase") == "passphrase"
    assert naming.resolve_secrets_provider("awskms://alias/pipeline?region=us-east-1") == "awskms://alias/pipeline?region=us-east-1"
    assert naming.resolve_secrets_provider("azurekeyvault://v.vault.azure.net/keys/k")
    with pytest.raises(DeployUsageError, match="gcpkms://"):
        naming.resolve_secrets_provider("vault")


def test_passphrase_needed_only_for_passphrase_secrets() -> None:
    assert naming.uses_passphrase("file:///s", None)
    assert naming.uses_passphrase("s3://b", None)
    assert not naming.uses_passphrase("https://api.pulumi.com", None)  # Pulumi Cloud encrypts by default
    assert naming.uses_passphrase("https://api.pulumi.com", "passphrase")
    assert not naming.uses_passphrase("file:///s", "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k")


def test_passphrase_rules(tmp_path: Path) -> None:
    url = "file:///state"
    problem = preflight.passphrase_problem(url, None, {}, interactive=False)
    assert problem and "PULUMI_CONFIG_PASSPHRASE" in problem and "PULUMI_CONFIG_PASSPHRASE_FILE" in problem and "non-interactive" in problem
    assert preflight.passphrase_problem(url, None, {}, interactive=True) is None  # pipeline prompts
    assert preflight.passphrase_problem(url, None, {"PULUMI_CONFIG_PASSPHRASE": ""}) is None  # empty is allowed by Pulumi
    missing = preflight.passphrase_problem(url, None, {"PULUMI_CONFIG_PASSPHRASE_FILE": str(tmp_path / "nope")})
    assert missing and "does not exist" in missing
    (tmp_path / "pass").write_text("secret", encoding="utf-8")
    assert preflight.passphrase_problem(url, None, {"PULUMI_CONFIG_PASSPHRASE_FILE": str(tmp_path / "pass")}) is None
    assert preflight.passphrase_problem(url, "awskms://alias/x", {}) is None


def test_pulumi_cloud_needs_a_token(tmp_path: Path) -> None:
    env = {"PULUMI_HOME": str(tmp_path)}
    problem = preflight.pulumi_cloud_problem("https://api.pulumi.com", env)
    assert problem and "pulumi login" in problem
    assert preflight.pulumi_cloud_problem("https://api.pulumi.com", {**env, "PULUMI_ACCESS_TOKEN": "pul-x"}) is None
    assert preflight.pulumi_cloud_problem("s3://b", env) is None


def test_recovery_command_lines(loaded: LoadedSpec) -> None:
    target = target_for(loaded)
    assert target.command("cancel").startswith("pipeline cancel ")
    assert "--cloud aws --stack dev" in target.command("refresh", "--clear-pending-creates")
    assert target.command("refresh", "--clear-pending-creates").endswith("--clear-pending-creates")
    other = target_for(loaded, url="s3://state")
    assert "--backend-url s3://state" in other.command("cancel")


# --- CLI preflight ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [("v3.150.0\n", (3, 150, 0)), ("3.99.1", (3, 99, 1)), ("v3.200.0-alpha.1+dirty", (3, 200, 0)), ("oops", None)])
def test_parse_version(text: str, expected: tuple[int, int, int] | None) -> None:
    assert preflight.parse_version(text) == expected


def fake_pulumi(folder: Path, version: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "pulumi"
    script.write_text(f'#!/bin/sh\nif [ "$1" = version ]; then echo "{version}"; exit 0; fi\necho "fake pulumi: $*" >&2; exit 1\n', encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_cli_missing(tmp_path: Path) -> None:
    cli, problem = preflight.check_cli({"PATH": str(tmp_path / "empty"), "PULUMI_HOME": str(tmp_path / "nohome")})
    assert cli is None and problem
    assert preflight.INSTALL_DOCS in problem and "pipeline plan" in problem and "pipeline compare" in problem


def test_cli_too_old_and_recent(tmp_path: Path) -> None:
    fake_pulumi(tmp_path / "old", "v3.50.0")
    cli, problem = preflight.check_cli({"PATH": str(tmp_path / "old"), "PULUMI_HOME": str(tmp_path)})
    assert cli is None and problem and "too old" in problem and "3.50.0" in problem
    path = fake_pulumi(tmp_path / "new", "v3.201.0")
    cli, problem = preflight.check_cli({"PATH": str(tmp_path / "new"), "PULUMI_HOME": str(tmp_path)})
    assert problem is None and cli == preflight.Cli(str(path), (3, 201, 0))


def test_cli_found_in_pulumi_home(tmp_path: Path) -> None:
    fake_pulumi(tmp_path / "home" / "bin", "v3.201.0")
    cli, problem = preflight.check_cli({"PATH": str(tmp_path / "empty"), "PULUMI_HOME": str(tmp_path / "home")})
    assert problem is None and cli is not None and cli.root == str(tmp_path / "home")


# --- engine events -> progress -----------------------------------------------------------------------

URN = "urn:pulumi:dev-aws::txn-scoring::pipeline:index:Pipeline$pipeline:roles:Bucket$aws:s3/bucketV2:BucketV2::txn-scoring-raw-bucket"


def step(kind: str, op: str, urn: str = URN, type_: str = "aws:s3/bucketV2:BucketV2", planning: bool | None = None, seq: int = 1) -> EngineEvent:
    body: dict[str, Any] = {"metadata": {"op": op, "urn": urn, "type": type_, "provider": ""}}
    if planning is not None:
        body["planning"] = planning
    return EngineEvent.from_json({"sequence": seq, "timestamp": 0, kind: body})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_rows_follow_the_steps() -> None:
    clock = Clock()
    model = progress.ProgressModel(clock=clock)
    finished: list[progress.Row] = []
    model.listeners.append(finished.append)
    model.handle(step("resourcePreEvent", "create"))
    row = model.changes()[0]
    assert (row.name, row.operation, row.status, row.verb()) == ("txn-scoring-raw-bucket", "create", "running", "creating")
    clock.now = 103.5
    assert row.elapsed(clock.now) == 3.5
    model.handle(step("resOutputsEvent", "create"))
    assert row.status == "done" and row.verb() == "created" and row.elapsed(200.0) == 3.5
    assert finished == [row]
    model.handle(step("resourcePreEvent", "same", urn=URN + "-other"))
    model.handle(step("resourcePreEvent", "same", urn="urn:pulumi:dev-aws::txn-scoring::pulumi:pulumi:Stack::txn-scoring-dev-aws",
                      type_="pulumi:pulumi:Stack"))
    assert model.counts() == {"create": 1, "update": 0, "replace": 0, "delete": 0, "same": 1, "failed": 0}
    assert "created" in progress.step_line(row, clock.now) and "txn-scoring-raw-bucket" in progress.step_line(row, clock.now)


def test_progress_failure_keeps_the_diagnostic() -> None:
    model = progress.ProgressModel(clock=Clock())
    model.handle(step("resourcePreEvent", "update"))
    model.handle(EngineEvent.from_json({"sequence": 2, "timestamp": 0, "diagnosticEvent": {
        "urn": URN, "message": "<{%fg 1%}>AccessDenied: not authorized to perform s3:PutBucketPolicy<{%reset%}>\n", "color": "raw",
        "severity": "error"}}))
    model.handle(step("resOpFailedEvent", "update"))
    row = model.changes()[0]
    assert row.status == "failed" and row.verb() == "failed to update"
    assert row.message == "AccessDenied: not authorized to perform s3:PutBucketPolicy"
    assert model.errors == ["txn-scoring-raw-bucket: AccessDenied: not authorized to perform s3:PutBucketPolicy"]
    assert model.counts()["failed"] == 1


def test_progress_preview_rows_are_planned_and_replacements_are_one_row() -> None:
    model = progress.ProgressModel(clock=Clock(), preview=True)
    model.handle(step("resourcePreEvent", "create-replacement", planning=True))
    model.handle(step("resourcePreEvent", "replace", planning=True))
    model.handle(step("resourcePreEvent", "delete-replaced", planning=True))
    model.handle(step("resOutputsEvent", "replace", planning=True))
    rows = model.changes()
    assert len(rows) == 1 and rows[0].operation == "replace" and rows[0].status == "planned" and rows[0].verb() == "will replace"
    assert summary.steps(rows) == [{"operation": "replace", "type": "aws:s3/bucketV2:BucketV2", "name": "txn-scoring-raw-bucket", "urn": URN}]


def test_progress_summary_event_and_render() -> None:
    model = progress.ProgressModel(clock=Clock())
    for i in range(30):
        model.handle(step("resourcePreEvent", "create", urn=f"{URN}-{i}", seq=i))
    model.handle(EngineEvent.from_json({"sequence": 99, "timestamp": 0, "summaryEvent": {"durationSeconds": 61, "resourceChanges": {"create": 30}}}))
    assert model.summary is not None and model.summary.duration_seconds == 61
    table = model.render(limit=10)
    assert table.row_count == 10 and table.caption == "... and 20 more"
    assert progress.format_seconds(61) == "1m01s" and progress.format_seconds(5.9) == "5s"


# --- summaries ------------------------------------------------------------------------------------------


def test_change_counts_and_lines() -> None:
    from pulumi.automation.events import OpType

    counts = summary.change_counts({OpType.CREATE: 3, "same": 12, "update": 1})
    assert counts == {"created": 3, "updated": 1, "replaced": 0, "deleted": 0, "unchanged": 12}
    assert summary.counts_line(counts) == "3 created, 1 updated, 12 unchanged"
    assert summary.counts_line(counts, planned=True) == "3 to create, 1 to update, 12 unchanged"
    assert summary.has_changes(counts) and not summary.has_changes(summary.change_counts({"same": 4}))
    assert summary.counts_line(summary.change_counts(None)) == "no resources"


def test_outputs_are_plain_and_secrets_masked() -> None:
    outputs = {"stream": OutputValue("txn-stream", False), "token": OutputValue("s3cr3t", True), "buckets": OutputValue({"raw": "b1"}, False)}
    assert summary.plain_outputs(outputs) == {"buckets": {"raw": "b1"}, "stream": "txn-stream", "token": "[secret]"}
    assert summary.plain_outputs(outputs, show_secrets=True)["token"] == "s3cr3t"
    assert summary.flatten({"buckets": {"raw": "b1", "score": "b2"}, "stream": "s"}) == [("buckets.raw", "b1"), ("buckets.score", "b2"), ("stream", "s")]
    outcome = summary.Outcome("deploy", "txn-scoring", "dev-aws", {"created": 2}, 12.34, {"stream": "s"})
    assert json.loads(outcome.to_json()) == {"operation": "deploy", "project": "txn-scoring", "stack": "dev-aws", "changes": {"created": 2},
                                             "duration_seconds": 12.3, "outputs": {"stream": "s"}}


# --- engine errors -> recovery ---------------------------------------------------------------------------


def command_error(stderr: str, stdout: str = "") -> Exception:
    return create_command_error(CommandResult(stdout=stdout, stderr=stderr, code=255))


def test_locked_stack_explains_and_gives_cancel(loaded: LoadedSpec) -> None:
    exc = command_error("error: the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end or delete the lock file "
                        "with `pulumi cancel`.\n  file:///x/.pulumi/locks/organization/txn-scoring/dev-aws/1.json: created by alice@laptop "
                        "(pid 4242) at 2025-01-01T10:00:00Z\n")
    error = engine.translate(exc, target_for(loaded), "deploy")
    text = str(error)
    assert isinstance(error, DeployError) and error.exit_code == 1
    assert "is locked" in text and "alice@laptop (pid 4242)" in text
    assert "pipeline cancel " in text and "--cloud aws --stack dev" in text and "pipeline refresh " in text


def test_pending_operations_give_clear_pending_creates(loaded: LoadedSpec) -> None:
    exc = command_error("error: the current deployment has 1 resource(s) with pending operations:\n"
                        f"  * {URN}, interrupted while creating\n")
    text = str(engine.translate(exc, target_for(loaded), "refresh"))
    assert "interrupted" in text and URN in text and "(interrupted while creating)" in text
    assert "--clear-pending-creates" in text and "--import-pending-creates" in text


def test_missing_stack_points_at_deploy(loaded: LoadedSpec) -> None:
    exc = command_error("error: no stack named 'dev-aws' found\n")
    text = str(engine.translate(exc, target_for(loaded), "outputs"))
    assert "nothing has been deployed" in text and "pipeline deploy " in text


def test_wrong_passphrase(loaded: LoadedSpec) -> None:
    exc = command_error("error: constructing secrets manager of type \"passphrase\": incorrect passphrase, please set PULUMI_CONFIG_PASSPHRASE\n")
    assert "PULUMI_CONFIG_PASSPHRASE" in str(engine.translate(exc, target_for(loaded), "deploy"))


def test_other_failures_keep_the_error_lines(loaded: LoadedSpec) -> None:
    exc = command_error("error: update failed\n", stdout="Diagnostics:\n  aws:s3:BucketV2 (x):\n    error: creating bucket: BucketAlreadyExists\n")
    text = str(engine.translate(exc, target_for(loaded), "deploy"))
    assert text.startswith("deploy failed for stack txn-scoring/dev-aws:") and "BucketAlreadyExists" in text
    model = progress.ProgressModel(clock=Clock())
    model.errors.append("bucket: AccessDenied")
    assert "bucket: AccessDenied" in str(engine.translate(exc, target_for(loaded), "deploy", model))


# --- the inline program is the core's program ------------------------------------------------------------


def test_inline_program_is_the_core_orchestrator(loaded: LoadedSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.program

    seen: list[Backend] = []
    monkeypatch.setattr(pipeline.program, "pipeline_program", seen.append)
    target = target_for(loaded, "gcp")
    engine.program(target)()
    engine.program(target)()
    assert [type(b).name for b in seen] == ["gcp", "gcp"] and seen[0] is not seen[1]  # a fresh backend per run
    assert (seen[0].stack, seen[0].base_dir) == ("dev", loaded.base_dir)


class _FakeStack:
    """Records the Automation API calls an Engine makes, in order."""

    def __init__(self, outputs: dict[str, Any]) -> None:
        self.calls: list[str] = []
        self._outputs = outputs

    def outputs(self) -> dict[str, Any]:
        self.calls.append("outputs")
        return self._outputs

    def up(self, on_event: Any = None) -> Any:
        self.calls.append("up")
        summary = type("Summary", (), {"resource_changes": {"update": 3}})()
        return type("Result", (), {"summary": summary, "outputs": self._outputs})()

    def destroy(self, on_event: Any = None) -> Any:
        self.calls.append("destroy")
        return type("Result", (), {"summary": type("Summary", (), {"resource_changes": {"delete": 9}})()})()


def test_destroy_keeps_data_unless_asked_and_backends_see_the_last_outputs(loaded: LoadedSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.deploy.progress import ProgressModel

    target = target_for(loaded, "aws")
    stack = _FakeStack({"stream_sizing": {"units": 3, "partitions": 3, "mode": "provisioned"}})
    runner = engine.Engine(target, stack)  # type: ignore[arg-type]
    assert target.make_backend().delete_data is False
    runner.destroy(ProgressModel())
    assert stack.calls == ["destroy"]
    runner.release_data(ProgressModel())
    runner.destroy(ProgressModel())
    assert stack.calls == ["destroy", "outputs", "up", "destroy"]
    backend = target.make_backend()
    assert backend.delete_data is True and backend.previous_outputs["stream_sizing"]["units"] == 3


def test_workspace_options(loaded: LoadedSpec) -> None:
    target = target_for(loaded, "azure", "s3://state")
    target.passphrase = "pw"
    opts = engine.workspace_options(target)
    assert opts.work_dir == str(naming.work_dir(loaded))
    assert opts.project_settings is not None and opts.project_settings.name == "txn-scoring"
    assert opts.project_settings.backend is not None and opts.project_settings.backend.url == "s3://state"
    assert opts.env_vars == {"PULUMI_SKIP_UPDATE_CHECK": "true", "PULUMI_BACKEND_URL": "s3://state", "PULUMI_CONFIG_PASSPHRASE": "pw"}
    assert opts.secrets_provider is None


# --- per-cloud credentials and hints (local only) -----------------------------------------------------------


@pytest.mark.parametrize(("cloud", "words"), [
    ("aws", ("no AWS credentials", "aws configure")),
    ("gcp", ("no Google Cloud credentials", "gcloud auth application-default login")),
    ("azure", ("no Azure credentials", "az login")),
])
def test_missing_credentials_name_the_source(loaded: LoadedSpec, no_credentials: Path, cloud: str, words: tuple[str, ...]) -> None:
    backend = backend_class(cloud)(loaded.spec, loaded.stack, loaded.base_dir)
    problem = preflight.credentials_problem(backend)
    assert problem is not None
    for word in words:
        assert word in problem


def test_aws_credentials_from_environment(loaded: LoadedSpec, no_credentials: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    assert preflight.credentials_problem(backend_class("aws")(loaded.spec, loaded.stack, loaded.base_dir)) is None
    monkeypatch.setenv("AWS_PROFILE", "nope")
    problem = preflight.credentials_problem(backend_class("aws")(loaded.spec, loaded.stack, loaded.base_dir))
    assert problem and "nope" in problem


def test_gcp_credentials_files(loaded: LoadedSpec, no_credentials: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = backend_class("gcp")(loaded.spec, loaded.stack, loaded.base_dir)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(no_credentials / "missing.json"))
    problem = preflight.credentials_problem(backend)
    assert problem and "does not exist" in problem
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS")
    adc = no_credentials / "gcloud" / "application_default_credentials.json"
    adc.write_text(json.dumps({"type": "authorized_user", "client_id": "c", "client_secret": "s", "refresh_token": "r"}), encoding="utf-8")
    assert preflight.credentials_problem(backend) is None
    adc.write_text("{not json", encoding="utf-8")
    problem = preflight.credentials_problem(backend)
    assert problem and "cannot be" in problem


def test_azure_credentials(loaded: LoadedSpec, no_credentials: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = backend_class("azure")(loaded.spec, loaded.stack, loaded.base_dir)
    profile = no_credentials / "azure" / "azureProfile.json"
    profile.write_text("\ufeff" + json.dumps({"subscriptions": [{"id": "s", "isDefault": True}]}), encoding="utf-8")
    assert preflight.credentials_problem(backend) is None
    profile.unlink()
    for name, value in (("ARM_CLIENT_ID", "c"), ("ARM_CLIENT_SECRET", "s"), ("ARM_TENANT_ID", "t")):
        monkeypatch.setenv(name, value)
    problem = preflight.credentials_problem(backend)
    assert problem and "ARM_SUBSCRIPTION_ID" in problem
    monkeypatch.setenv("ARM_SUBSCRIPTION_ID", "sub")
    assert preflight.credentials_problem(backend) is None


OUTPUTS = {"stream": "txn-stream", "buckets": {"raw": "raw-b", "preprocess": "pre-b", "score": "score-b", "calibrate": "cal-b"}}


@pytest.mark.parametrize(("cloud", "words"), [
    ("aws", ("aws kinesis put-record", "--stream-name txn-stream", "--region us-east-1", "s3://score-b/score/", "s3://cal-b/calibrate/")),
    ("gcp", ("gcloud pubsub topics publish txn-stream", "--project txn-scoring-demo", "gs://score-b/score/")),
    ("azure", ("az rest --method post", ".servicebus.windows.net/txn-stream/messages", "--container-name score-b")),
])
def test_test_record_hint_uses_real_names(loaded: LoadedSpec, cloud: str, words: tuple[str, ...]) -> None:
    hint = backend_class(cloud)(loaded.spec, loaded.stack, loaded.base_dir).test_record_hint(OUTPUTS)
    for word in words:
        assert word in hint
    assert "pre-b" not in hint  # intermediate outputs are not where results land

