"""What `pipeline deploy` needs to know about GCP before it starts the engine.

Credentials are checked the way pulumi-gcp finds them (its GOOGLE_* variables, then Application
Default Credentials), without a network call: key and ADC files are only read and their `type`
checked (no credentials object is built, so nothing is refreshed or executed), and the metadata
server is never pinged (a Compute Engine or Cloud Run host is recognised locally instead).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.spec.model import PipelineSpec

ADC_DOCS = "https://cloud.google.com/docs/authentication/provide-credentials-adc"
SAMPLE_RECORD = '{"id": "test-1"}'
# The `type` values google.auth.load_credentials_from_file accepts.
CREDENTIAL_TYPES = ("authorized_user", "service_account", "external_account", "external_account_authorized_user",
                    "impersonated_service_account", "gdch_service_account")
_PROVIDER_ENV = ("GOOGLE_CREDENTIALS", "GOOGLE_CLOUD_KEYFILE_JSON", "GCLOUD_KEYFILE_JSON", "GOOGLE_OAUTH_ACCESS_TOKEN")


def _adc_file() -> Path:
    config = os.environ.get("CLOUDSDK_CONFIG")
    if config:
        return Path(config) / "application_default_credentials.json"
    if os.name == "nt":
        return Path(os.environ.get("APPDATA", "")) / "gcloud" / "application_default_credentials.json"
    return Path.home() / ".config" / "gcloud" / "application_default_credentials.json"


def _on_google_host() -> bool:
    if os.environ.get("K_SERVICE") or os.environ.get("CLOUD_RUN_JOB"):
        return True
    try:
        return "Google" in Path("/sys/class/dmi/id/product_name").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def _load(path: Path, source: str) -> str | None:
    """Read a credentials file as google-auth would, without creating credentials from it (nothing runs, nothing is fetched)."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"the Google credentials file {path} ({source}) cannot be read as JSON: {exc}; run `gcloud auth application-default login` again"
    kind = info.get("type") if isinstance(info, dict) else None
    if kind not in CREDENTIAL_TYPES:
        return f"the Google credentials file {path} ({source}) has type {kind!r}, which google-auth cannot use (expected one of {', '.join(CREDENTIAL_TYPES)})"
    return None


def credentials_problem(spec: PipelineSpec) -> str | None:
    """None when credentials and a project resolve, else one sentence saying how to fix it."""
    if not spec.clouds.gcp.project:
        return "no GCP project is set; set clouds.gcp.project in the spec or the stack overlay"
    if any(os.environ.get(name) for name in _PROVIDER_ENV):
        return None
    explicit = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            return f"GOOGLE_APPLICATION_CREDENTIALS points at {path}, which does not exist; point it at a service-account key or unset it ({ADC_DOCS})"
        return _load(path, "GOOGLE_APPLICATION_CREDENTIALS")
    adc = _adc_file()
    if adc.is_file():
        return _load(adc, "gcloud application-default credentials")
    if _on_google_host():
        return None
    return (
        "no Google Cloud credentials found (looked in GOOGLE_APPLICATION_CREDENTIALS, GOOGLE_CREDENTIALS and the gcloud "
        f"application-default credentials at {adc}); run `gcloud auth application-default login`, or set "
        f"GOOGLE_APPLICATION_CREDENTIALS to a service-account key file ({ADC_DOCS})"
    )


def stack_config(spec: PipelineSpec) -> dict[str, str]:
    """`gcp:project` and `gcp:region` for `pulumi config` readers; the program uses an explicit provider."""
    config = {"gcp:region": spec.clouds.gcp.region}
    if spec.clouds.gcp.project:
        config["gcp:project"] = spec.clouds.gcp.project
    return config


def test_record_hint(spec: PipelineSpec, stack: str, outputs: Mapping[str, Any]) -> str:
    """gcloud/curl commands that feed the deployed pipeline as its producer identities and show the final outputs.

    The producer and caller accounts (outputs `producers`, `http_callers`) are impersonated: the person running the
    commands needs roles/iam.serviceAccountTokenCreator on them (granted by whoever administers the project)."""
    project = spec.clouds.gcp.project or "<project>"
    producers = outputs.get("producers") or {}
    buckets = outputs.get("buckets") or {}
    lines: list[str] = []
    if spec.stream is not None:
        topic = outputs.get("stream", "<topic>")
        who = producers.get("stream", "<producer service account>")
        lines += ["Send a test record (as the stream producer):",
                  f"  gcloud pubsub topics publish {topic} --project {project} --impersonate-service-account {who} --message '{SAMPLE_RECORD}'"]
    if spec.uploads is not None:
        name = spec.uploads.name
        who = producers.get(name, "<producer service account>")
        # A new object name per upload: producers may create objects, not replace them (an existing name is refused).
        lines += ["Upload a file of JSON lines under a new name (as the uploads producer; .gz works too):",
                  f"  echo '{SAMPLE_RECORD}' > sample.jsonl",
                  f"  gcloud storage cp sample.jsonl gs://{buckets.get(name, '<uploads bucket>')}/{spec.uploads.prefix}sample-$(date +%s).jsonl "
                  f"--impersonate-service-account {who}"]
    endpoints = outputs.get("endpoints") or {}
    callers = outputs.get("http_callers") or {}
    for stage, url in endpoints.items():
        caller = callers.get(stage, "<caller service account>")
        lines += [f"Call HTTP stage {stage} (as its caller account):",
                  f"  curl -sS -X POST {url} -H \"Authorization: Bearer $(gcloud auth print-identity-token --impersonate-service-account "
                  f"{caller} --audiences {url} --include-email)\" -H 'Content-Type: application/json' -d '[{SAMPLE_RECORD}]'"]
    finals = [s.name for s in spec.stages if not spec.consumers_of(s.name) and s.name in buckets]
    if finals:
        lines.append("Then look for the results (a stream batch closes within its window, or max_duration when traffic is light):")
        lines += [f"  gcloud storage ls --project {project} --recursive gs://{buckets[name]}/{name}/" for name in finals]
    return "\n".join(lines)
