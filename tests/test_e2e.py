"""Opt-in end to end: deploy the example to a real cloud, send records, wait for scored output, destroy.

Runs only with PIPELINE_E2E_CLOUD=aws|gcp|azure, the Pulumi CLI on PATH and that cloud's
credentials (and CLI: aws, gcloud or az) configured. It creates billable resources for a few
minutes and always tries to destroy them. State goes to a temporary file backend unless
PULUMI_BACKEND_URL is set; PULUMI_CONFIG_PASSPHRASE defaults to a throwaway value.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

CLOUD = os.environ.get("PIPELINE_E2E_CLOUD", "")
WAIT_S = float(os.environ.get("PIPELINE_E2E_WAIT_S", "900"))

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(CLOUD not in ("aws", "gcp", "azure"), reason="set PIPELINE_E2E_CLOUD=aws|gcp|azure to deploy to a real cloud"),
    pytest.mark.skipif(shutil.which("pulumi") is None, reason="the Pulumi CLI is not on PATH (https://www.pulumi.com/docs/install/)"),
]


def pipeline(exe: str, *args: str | Path, env: dict[str, str], timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([exe, *map(str, args)], env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def run(*command: str) -> str:
    return subprocess.run(list(command), capture_output=True, text=True, check=True, timeout=300).stdout


def send(cloud: str, spec_name: str, stack: str, outputs: dict[str, object], records: list[str]) -> None:
    stream = str(outputs["stream"])
    if cloud == "aws":
        import boto3

        kinesis = boto3.client("kinesis")
        kinesis.put_records(StreamName=stream, Records=[{"Data": r.encode(), "PartitionKey": str(i)} for i, r in enumerate(records)])
    elif cloud == "gcp":
        for record in records:
            run("gcloud", "pubsub", "topics", "publish", stream, "--message", record)
    else:
        from pipeline_azure import naming

        namespace = naming.namespace_name(spec_name, stack)
        for record in records:
            run("az", "rest", "--method", "post", "--resource", "https://eventhubs.azure.net",
                "--url", f"https://{namespace}.servicebus.windows.net/{stream}/messages?api-version=2014-01",
                "--headers", "Content-Type=application/atom+xml;type=entry;charset=utf-8", "--body", record)


def scored_objects(cloud: str, spec_name: str, stack: str, bucket: str, prefix: str) -> int:
    if cloud == "aws":
        import boto3

        return int(boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix).get("KeyCount", 0))
    if cloud == "gcp":
        result = subprocess.run(["gcloud", "storage", "ls", f"gs://{bucket}/{prefix}**"], capture_output=True, text=True, check=False)
        return len([line for line in result.stdout.splitlines() if line.strip()])
    from pipeline_azure import naming

    account = naming.storage_account_name(spec_name, stack, "dat")
    listed = run("az", "storage", "blob", "list", "--auth-mode", "login", "--account-name", account, "--container-name", bucket,
                 "--prefix", prefix, "-o", "json")
    return len(json.loads(listed))


def test_deploy_send_score_destroy(tmp_path: Path, example_spec: Path, pipeline_exe: str) -> None:
    project = tmp_path / "transactions"
    shutil.copytree(example_spec.parent, project, ignore=shutil.ignore_patterns(".pipeline"))
    spec = project / "pipeline.yaml"
    env = {**os.environ, "NO_COLOR": "1", "PULUMI_CONFIG_PASSPHRASE": os.environ.get("PULUMI_CONFIG_PASSPHRASE", "e2e-throwaway")}
    stack = "dev"
    deployed = False
    try:
        result = pipeline(pipeline_exe, "deploy", spec, "--cloud", CLOUD, "--stack", stack, "--yes", "--json", env=env)
        deployed = True
        assert result.returncode == 0, result.stderr
        outputs = json.loads(result.stdout)["outputs"]
        assert outputs["stream"] and outputs["buckets"]["score"]

        listed = pipeline(pipeline_exe, "outputs", spec, "--cloud", CLOUD, "--stack", stack, "--json", env=env)
        assert listed.returncode == 0 and json.loads(listed.stdout) == outputs

        records = (project / "data" / "transactions.jsonl").read_text(encoding="utf-8").splitlines()[:50]
        send(CLOUD, "txn-scoring", stack, outputs, records)
        deadline = time.monotonic() + WAIT_S
        while scored_objects(CLOUD, "txn-scoring", stack, outputs["buckets"]["score"], "score/") == 0:
            assert time.monotonic() < deadline, f"no scored output in {WAIT_S:.0f} s"
            time.sleep(20)
    finally:
        if deployed:
            destroyed = pipeline(pipeline_exe, "destroy", spec, "--cloud", CLOUD, "--stack", stack, "--yes", env=env)
            assert destroyed.returncode == 0, destroyed.stderr
