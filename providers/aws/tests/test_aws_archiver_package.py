"""The raw archiver's Lambda package: built like a stage's, deterministic, and complete on its own."""

from __future__ import annotations

import base64
import subprocess
import sys
import zipfile
from pathlib import Path

from pipeline_aws import archiver_resources

EXAMPLE = Path(__file__).parents[3] / "stacks" / "transactions" / "pipeline.yaml"


def test_the_package_holds_the_archiver_and_the_runtime_modules_it_imports_only(tmp_path: Path) -> None:
    package = archiver_resources.package(tmp_path, "dev")
    assert package.path == tmp_path / ".pipeline" / "build" / "aws" / "dev" / "raw_archive.zip"
    with zipfile.ZipFile(package.path) as archive:
        names = set(archive.namelist())
    assert names == {"pipeline/__init__.py", "pipeline/runtime/__init__.py", "pipeline/runtime/keys.py", "pipeline/runtime/logs.py",
                     "pipeline_aws/__init__.py", "pipeline_aws/archive.py"}
    again = archiver_resources.package(tmp_path / "again", "dev")
    assert again.sha256 == package.sha256  # byte-identical: a redeploy only when the code changes


def test_the_package_runs_from_the_zip_alone(tmp_path: Path) -> None:
    """Import the handler in a fresh interpreter that sees nothing but the zip (no site-packages, so no pulumi and no
    pipeline install), and archive a batch the way Lambda would hand it over."""
    package = archiver_resources.package(tmp_path, "dev")
    data = base64.b64encode(b'{"txn_id": "t-1"}').decode()
    program = (
        "import sys, gzip\n"
        f"sys.path[:0] = [{str(package.path)!r}]\n"
        "from pipeline_aws import archive\n"
        f"records = [{{'eventSource': 'aws:kinesis', 'eventID': 'shardId-000000000003:17', 'kinesis': {{'sequenceNumber': '17', 'data': {data!r}}}}}]\n"
        "print(archive.archive_key('raw/', records))\n"
        "print(gzip.decompress(archive.archive_body(records)).decode(), end='')\n"
        "print(sorted(m for m in sys.modules if m.startswith(('pulumi', 'boto3', 'pipeline_aws.', 'pipeline.'))))\n"
    )
    result = subprocess.run([sys.executable, "-I", "-S", "-c", program], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    key, line, modules = result.stdout.splitlines()
    assert key == "raw/shardId-000000000003/17-17.jsonl.gz"
    assert line == '{"txn_id": "t-1"}'
    assert modules == "['pipeline.runtime', 'pipeline.runtime.keys', 'pipeline.runtime.logs', 'pipeline_aws.archive']"
