"""Runs the real checkov CLI on scan documents and reads back its failed checks.

checkov lives in its own venv (`.venv-checkov`, made by `./dev setup`; see
tests/checkov-requirements.txt for why), so it runs as a subprocess. Several documents are
scanned by concurrent processes: checkov spends most of its time starting up.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.scan import Origin, ScanDocument

REPO = Path(__file__).resolve().parents[1]
SCANNER_VENV = REPO / ".venv-checkov"
TIMEOUT_S = 600


@dataclass(frozen=True)
class Finding:
    """One failed check on one resource."""

    check_id: str
    check_name: str
    resource: str  # checkov's resource id: a Terraform address or "<ARM type>.<name>"
    origin: Origin | None  # None for resources nested inside another (an ARM deployment's template)

    def describe(self) -> str:
        where = f"{self.origin.stack}: {self.origin.urn}" if self.origin else "(nested in the template)"
        return f"{self.check_id} {self.check_name}\n    {self.resource}\n    from {where}"


@dataclass
class ScanResult:
    """What checkov reported for one document."""

    path: Path
    failed: list[Finding]
    passed: list[Finding]
    resource_count: int  # resources checkov ran at least one check on

    def merge(self, other: ScanResult) -> ScanResult:
        """One result for several files of the same stack and cloud (e.g. one ARM template per overlay)."""
        return ScanResult(self.path, self.failed + other.failed, self.passed + other.passed, self.resource_count + other.resource_count)


def checkov_command() -> str:
    """The checkov console script: PIPELINE_CHECKOV, else the scanner venv, else PATH."""
    configured = os.environ.get("PIPELINE_CHECKOV")
    if configured:
        return configured
    local = SCANNER_VENV / "bin" / "checkov"
    if local.exists():
        return str(local)
    found = shutil.which("checkov")
    if found is None:
        raise FileNotFoundError("checkov is not installed: run ./dev setup (it installs tests/checkov-requirements.txt into .venv-checkov)")
    return found


def scan(documents: Sequence[tuple[ScanDocument, Path]]) -> list[ScanResult]:
    """Write each document to its path and scan them, in one checkov process per framework (run concurrently):
    checkov spends most of its time starting up. Documents scanned together must not share resource ids
    (see `pipeline.scan.scan_document`'s namespace)."""
    command = checkov_command()
    by_framework: dict[str, list[tuple[ScanDocument, Path]]] = {}
    for document, path in documents:
        path.write_text(document.to_json(), encoding="utf-8")
        by_framework.setdefault(document.framework, []).append((document, path))
    running = []
    for framework, group in by_framework.items():
        files = [arg for _, path in group for arg in ("-f", str(path))]
        # --skip-download: no calls to the vendor's API (no network here, and nothing we need from it).
        argv = [command, *files, "--framework", framework, "-o", "json", "--skip-download", "--compact"]
        running.append((group, subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    results: dict[Path, ScanResult] = {}
    for group, process in running:
        stdout, stderr = process.communicate(timeout=TIMEOUT_S)
        if process.returncode not in (0, 1):  # 1 = some check failed
            raise RuntimeError(f"checkov exited {process.returncode} on {[str(p) for _, p in group]}:\n{stderr[-4000:]}")
        results.update(_results(group, stdout, stderr))
    return [results[path] for _, path in documents]


def _results(group: list[tuple[ScanDocument, Path]], stdout: str, stderr: str) -> dict[Path, ScanResult]:
    reports: Any = json.loads(stdout)
    if isinstance(reports, dict):
        reports = [reports]
    documents = {path.resolve(): (document, path) for document, path in group}
    results = {path: ScanResult(path, [], [], 0) for _, path in group}
    for report in reports:
        if not isinstance(report, dict) or "results" not in report:
            continue
        if report.get("summary", {}).get("parsing_errors"):
            raise RuntimeError(f"checkov could not parse some of {[str(p) for _, p in group]}:\n{stderr[-4000:]}")
        for kind in ("failed_checks", "passed_checks"):
            for check in report["results"].get(kind, []):
                document, path = documents[Path(check["file_abs_path"]).resolve()]
                resource = str(check["resource"])
                finding = Finding(str(check["check_id"]), str(check["check_name"]), resource, document.origins.get(resource))
                (results[path].failed if kind == "failed_checks" else results[path].passed).append(finding)
    for document, path in group:
        seen = {f.resource for f in results[path].failed + results[path].passed}
        results[path].resource_count = len(seen)
        if not seen & set(document.origins):
            # A document checkov silently skipped (not recognised as a plan or template) would pass every check.
            raise RuntimeError(f"checkov checked none of the {len(document.origins)} resources of {path}:\n{stderr[-4000:]}")
    return results
