"""What `pipeline deploy` needs to know about Azure before it starts the engine.

pulumi-azure-native authenticates on its own (Azure CLI login, service principal, OIDC or managed
identity, from ARM_* variables), so presence is checked locally rather than by acquiring a token:
the variables, or an Azure CLI profile with a subscription. No network call is made.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.spec.model import PipelineSpec
from pipeline_azure import naming

AUTH_DOCS = "https://www.pulumi.com/registry/packages/azure-native/installation-configuration/"
SAMPLE_RECORD = '{"id": "test-1"}'


def _env(*names: str) -> str:
    return next((os.environ[n] for n in names if os.environ.get(n)), "")


def _cli_subscriptions() -> list[dict[str, Any]]:
    folder = Path(os.environ.get("AZURE_CONFIG_DIR") or Path.home() / ".azure")
    try:
        profile = json.loads((folder / "azureProfile.json").read_text(encoding="utf-8-sig"))  # the CLI writes a BOM
    except (OSError, ValueError):
        return []
    subscriptions = profile.get("subscriptions") if isinstance(profile, dict) else None
    return [s for s in subscriptions if isinstance(s, dict)] if isinstance(subscriptions, list) else []


def credentials_problem(spec: PipelineSpec) -> str | None:
    """None when some credential source and a subscription are present, else how to sign in."""
    if not spec.clouds.azure.location:
        return "no Azure location is set; set clouds.azure.location in the spec or the stack overlay, e.g. eastus"
    client = _env("ARM_CLIENT_ID", "AZURE_CLIENT_ID")
    secret = _env("ARM_CLIENT_SECRET", "AZURE_CLIENT_SECRET", "ARM_CLIENT_CERTIFICATE_PATH", "AZURE_CLIENT_CERTIFICATE_PATH",
                  "ARM_OIDC_TOKEN", "ARM_OIDC_TOKEN_FILE_PATH", "AZURE_FEDERATED_TOKEN_FILE", "ARM_OIDC_REQUEST_TOKEN")
    managed = _env("ARM_USE_MSI").lower() == "true"
    subscription = _env("ARM_SUBSCRIPTION_ID", "AZURE_SUBSCRIPTION_ID")
    if (client and secret and _env("ARM_TENANT_ID", "AZURE_TENANT_ID")) or managed:
        if not subscription:
            return "Azure credentials are set but no subscription is; export ARM_SUBSCRIPTION_ID=<subscription id>"
        return None
    subscriptions = _cli_subscriptions()
    if subscriptions:
        if subscription or any(s.get("isDefault") for s in subscriptions):
            return None
        return "the Azure CLI is signed in but has no default subscription; run `az account set --subscription <id>` or export ARM_SUBSCRIPTION_ID"
    return (
        "no Azure credentials found (looked for an Azure CLI login and ARM_CLIENT_ID/ARM_CLIENT_SECRET/ARM_TENANT_ID, "
        "OIDC and ARM_USE_MSI); run `az login`, or export ARM_CLIENT_ID, ARM_CLIENT_SECRET, ARM_TENANT_ID and "
        f"ARM_SUBSCRIPTION_ID for a service principal ({AUTH_DOCS})"
    )


def stack_config(spec: PipelineSpec) -> dict[str, str]:
    """`azure-native:location` for `pulumi config` readers; the program uses an explicit provider."""
    return {"azure-native:location": spec.clouds.azure.location}


DATA_ACCOUNT_OUTPUT = "azure_data_account"  # exported by the backend (observability role): the data account's name
HTTP_AUDIENCES_OUTPUT = "azure_http_audiences"  # HTTP stage -> the application id its callers get Entra ID tokens for


def test_record_hint(spec: PipelineSpec, stack: str, outputs: Mapping[str, Any]) -> str:
    """Commands that feed the deployed pipeline once (a stream record, an uploaded file, an HTTP request)
    and list the final outputs, with the real names in `outputs`.

    The Azure CLI has no "send an event" command for Event Hubs, and the namespace accepts only Entra ID
    (no SAS keys), so the event goes through the Event Hubs REST API with `az rest`, signed with the CLI's
    login. Run the commands as the producer identity (`producers` output: its client id), or as a user
    given the same role. HTTP stages take an Entra ID token for their audience and a function key, both for their callers only.
    """
    lines: list[str] = []
    account = str(outputs.get(DATA_ACCOUNT_OUTPUT) or "<data account>")
    producers = outputs.get("producers") or {}
    buckets = outputs.get("buckets") or {}
    stream = str(outputs.get("stream") or "")
    if stream:
        # The stream output is "<namespace>.servicebus.windows.net/<hub>" (older stacks: the hub alone).
        host, _, hub = stream.rpartition("/") if "/" in stream else ("<namespace>.servicebus.windows.net", "", stream)
        lines += [f"Send a test record (as producer identity {producers.get('stream', '<client id>')}, which has "
                  f"'Azure Event Hubs Data Sender' on the hub):",
                  f"  az rest --method post --resource https://eventhubs.azure.net "
                  f"--url 'https://{host}/{hub}/messages?api-version=2014-01' "
                  f"--headers 'Content-Type=application/atom+xml;type=entry;charset=utf-8' --body '{SAMPLE_RECORD}'"]
    if spec.uploads is not None and spec.uploads.name in buckets:
        name = spec.uploads.name
        lines += [f"Upload a JSON-lines file (as producer identity {producers.get(name, '<client id>')}: it may create new files under {name}/ "
                  "and nothing else, so a name can be used once):",
                  f"  printf '%s\\n' '{SAMPLE_RECORD}' > sample.jsonl",
                  f"  az storage blob upload --auth-mode login --account-name {account} --container-name {buckets[name]} "
                  f"--name {name}/sample-$(date +%s).jsonl --file sample.jsonl"]
    audiences = outputs.get(HTTP_AUDIENCES_OUTPUT) or {}
    for stage, url in (outputs.get("endpoints") or {}).items():
        lines += [f"Call HTTP stage {stage} (as its caller identity {(outputs.get('http_callers') or {}).get(stage, '<client id>')} or an "
                  "http_invoker: an Entra ID token for the stage's audience, and the function key only they may read):",
                  f"  TOKEN=$(az account get-access-token --resource {audiences.get(stage, '<audience>')} --query accessToken -o tsv)",
                  f"  KEY=$(az functionapp function keys list --resource-group {naming.resource_group_name(spec.name, stack)} "
                  f"--name {url.split('/')[2].split('.')[0]} --function-name stage --query default -o tsv)",
                  f"  curl -sS -H \"Authorization: Bearer $TOKEN\" -H \"x-functions-key: $KEY\" -H 'Content-Type: application/json' "
                  f"-d '[{SAMPLE_RECORD}]' {url}"]
    finals = [s.name for s in spec.stages if not spec.consumers_of(s.name) and s.name in buckets]
    if finals:
        lines.append("Then look for the results (needs 'Storage Blob Data Reader' on the data account):")
        lines += [f"  az storage blob list --auth-mode login --account-name {account} --container-name {buckets[name]} --prefix {name}/ -o table"
                  for name in finals]
    return "\n".join(lines)
