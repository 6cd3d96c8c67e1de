"""What `pipeline deploy` needs to know about AWS before it starts the engine.

Credentials are resolved the way boto3 (and the pulumi-aws provider) resolve them, but only
as far as the machine itself can tell: `Session().get_credentials()` reads the environment,
the shared files, SSO caches and web-identity files without a network call (instance metadata
is only asked when nothing local exists, and never when AWS_EC2_METADATA_DISABLED=true).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.spec.model import PipelineSpec

AUTH_DOCS = "https://docs.aws.amazon.com/cli/latest/userguide/cli-chap-authentication.html"
SAMPLE_RECORD = '{"id": "test-1"}'
_LOCAL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI")


def _missing() -> str:
    return (
        "no AWS credentials found (looked in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~/.aws/credentials, ~/.aws/config, "
        "SSO and web identity, as boto3 does); run `aws configure` or `aws sso login --profile NAME` and export AWS_PROFILE=NAME, "
        f"or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY ({AUTH_DOCS})"
    )


def credentials_problem(spec: PipelineSpec) -> str | None:
    """None when credentials resolve for the spec's region, else one sentence saying where to get them."""
    if not spec.clouds.aws.region:
        return "no AWS region is set; set clouds.aws.region in the spec or the stack overlay, e.g. us-east-1"
    try:
        import boto3
        import botocore.exceptions
    except ImportError:  # the CLI's own extras do not require boto3: judge from what is on disk
        files = [os.environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"), os.environ.get("AWS_CONFIG_FILE", "~/.aws/config")]
        if any(os.environ.get(name) for name in _LOCAL_ENV) or any(Path(f).expanduser().is_file() for f in files):
            return None
        return _missing()
    try:
        credentials = boto3.Session(region_name=spec.clouds.aws.region).get_credentials()
    except botocore.exceptions.ProfileNotFound as exc:
        return f"AWS profile not found: {exc}; check AWS_PROFILE against `aws configure list-profiles`"
    except (botocore.exceptions.BotoCoreError, ValueError, OSError) as exc:
        return f"AWS credentials could not be loaded: {exc} ({AUTH_DOCS})"
    return _missing() if credentials is None else None


def stack_config(spec: PipelineSpec) -> dict[str, str]:
    """`aws:region` for `pulumi config` readers; the program itself uses an explicit provider."""
    return {"aws:region": spec.clouds.aws.region}


def test_record_hint(spec: PipelineSpec, stack: str, outputs: Mapping[str, Any]) -> str:
    """AWS CLI / curl commands that feed the deployed pipeline (a record, a file, a request) and list its results.

    Each source names the customer-managed policy (from the outputs) the identity running the command needs; each
    outside producer (`clouds.aws.producers`) gets the assume-role command for its role, then the same commands.
    """
    region = spec.clouds.aws.region
    producers = outputs.get("producers") or {}
    buckets = outputs.get("buckets") or {}
    sends = _send_commands(spec, region, outputs)
    lines: list[str] = []
    for source, commands in sends.items():
        what = "a test record" if source == "stream" else "a test file"
        lines += [f"Send {what} (as an identity with the policy {producers.get(source, '<producer policy>')} attached):", *commands]
    lines += _outside_producers(spec, outputs, sends)
    endpoints = outputs.get("endpoints") or {}
    callers = outputs.get("http_callers") or {}
    for stage_name, url in endpoints.items():
        lines += [
            f"Call the HTTP stage {stage_name} (as an identity with the policy {callers.get(stage_name, '<caller policy>')} attached; "
            "the request is signed with SigV4):",
            f"  curl --aws-sigv4 'aws:amz:{region}:lambda' --user \"$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY\" "
            f"-H \"x-amz-security-token: $AWS_SESSION_TOKEN\" -H 'content-type: application/json' -d '[{SAMPLE_RECORD}]' {url}",
        ]
    finals = [s.name for s in spec.stages if not spec.consumers_of(s.name) and s.name in buckets]
    if finals:
        lines.append("Then look for its results:")
        lines += [f"  aws s3 ls --region {region} --recursive s3://{buckets[name]}/{name}/" for name in finals]
    return "\n".join(lines)


def _send_commands(spec: PipelineSpec, region: str, outputs: Mapping[str, Any]) -> dict[str, list[str]]:
    """Per source ("stream" or the uploads bucket's name), the commands that send it one test record or file."""
    buckets = outputs.get("buckets") or {}
    sends: dict[str, list[str]] = {}
    if spec.stream is not None:
        stream = outputs.get("stream", "<stream>")
        sends["stream"] = [f"  aws kinesis put-record --region {region} --stream-name {stream} --partition-key test-1 "
                           f"--cli-binary-format raw-in-base64-out --data '{SAMPLE_RECORD}'"]
    if spec.uploads is not None:
        name = spec.uploads.name
        bucket = buckets.get(name, "<uploads bucket>")
        # A new key per upload: an upload under an existing name replaces the file (the earlier one stays a noncurrent
        # version for a week) and is processed again into the same output key.
        sends[name] = [f"  echo '{SAMPLE_RECORD}' > test.jsonl && aws s3 cp --region {region} test.jsonl "
                       f"s3://{bucket}/{spec.uploads.prefix}test-$(date -u +%Y%m%dT%H%M%SZ).jsonl"]
    return sends


def _outside_producers(spec: PipelineSpec, outputs: Mapping[str, Any], sends: Mapping[str, list[str]]) -> list[str]:
    """For each outside producer: assume its role (with the external id it was given), then send what it may send."""
    roles = outputs.get("producer_roles") or {}
    lines: list[str] = []
    for producer in spec.clouds.aws.producers:
        found = roles.get(producer.principal)
        arn = found.get("role") if isinstance(found, Mapping) else None
        external = f" --external-id '{producer.external_id}'" if producer.external_id else ""
        lines += [
            f"As the outside producer {producer.principal}: assume its role, export the returned AccessKeyId, SecretAccessKey and "
            "SessionToken as AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, then send:",
            f"  aws sts assume-role --role-arn {arn or '<producer role>'} --role-session-name {spec.name}-producer{external} "
            "--query Credentials",
        ]
        for source, commands in sends.items():
            if producer.feeds(source):
                lines += commands
    return lines
