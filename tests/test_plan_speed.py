"""What makes planning fast must not change a plan: alias stripping, the paused collector, packages
built once per run, and clouds planned in parallel processes."""

from __future__ import annotations

import gc
import subprocess
import zipfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLE_DIR, cli_env, pipeline_script

from pipeline import packaging, planner
from pipeline.spec.load import load_spec


def _alias_count(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the aliases of every registration the mock monitor receives."""
    seen: list[int] = []
    original = planner._RecordingMonitor.RegisterResource

    def register(self: Any, request: Any) -> Any:
        seen.append(len(request.aliases) + len(getattr(request, "aliasSpecs", []) or []))
        return original(self, request)

    monkeypatch.setattr(planner._RecordingMonitor, "RegisterResource", register)
    return seen


def test_azure_plans_without_aliases_and_the_plan_is_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = load_spec(EXAMPLE_DIR / "pipeline.yaml", "dev")
    seen = _alias_count(monkeypatch)
    fast = planner.plan(loaded, "azure")
    assert seen and not any(seen), "aliases reached the mock engine"

    seen.clear()
    monkeypatch.setattr(planner, "_without_aliases", nullcontext)
    slow = planner.plan(loaded, "azure")
    assert sum(seen) > 100, "azure-native no longer sends aliases: _without_aliases can go"
    assert fast.to_json() == slow.to_json()


def test_aliases_are_restored_after_planning() -> None:
    import pulumi

    before = pulumi.Resource.__init__
    planner.plan(load_spec(EXAMPLE_DIR / "pipeline.yaml", "dev"), "aws")
    assert pulumi.Resource.__init__ is before


@pytest.mark.parametrize("enabled", [True, False])
def test_the_collector_state_is_restored(enabled: bool) -> None:
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        planner.plan(load_spec(EXAMPLE_DIR / "pipeline.yaml", "dev"), "gcp")
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


def test_identical_packages_are_compressed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each member is deflated once per content (pipeline.zipper), however many archives hold it."""
    from pipeline import zipper

    compressions: list[int] = []
    original = zipper.zlib.compressobj

    def counted(*args: Any, **kwargs: Any) -> Any:
        compressions.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(zipper.zlib, "compressobj", counted)
    monkeypatch.setattr(zipper, "_deflated", {})
    monkeypatch.setattr(packaging, "_built", {})
    a = {"handler.py": b"def handle(r, c):\n    return []\n", "pipeline/runtime/__init__.py": b""}
    b = {**a, "handler.py": b"def handle(r, c):\n    return list(r)\n"}

    first = packaging.write_zip(a, tmp_path / "aws" / "s1.zip")
    assert len(compressions) == 2
    second = packaging.write_zip(a, tmp_path / "aws" / "s2.zip")
    assert len(compressions) == 2, "the same entries were compressed twice"
    assert second == first
    assert (tmp_path / "aws" / "s2.zip").read_bytes() == (tmp_path / "aws" / "s1.zip").read_bytes()

    # s1.zip is overwritten with other entries (one new member): the next copy of `a` must not come from it.
    packaging.write_zip(b, tmp_path / "aws" / "s1.zip")
    assert len(compressions) == 3
    third = packaging.write_zip(a, tmp_path / "aws" / "s3.zip")
    assert third == first
    with zipfile.ZipFile(tmp_path / "aws" / "s3.zip") as archive:
        assert archive.read("handler.py") == a["handler.py"]


def test_parallel_compare_gives_the_same_answer() -> None:
    def compare(jobs: int) -> str:
        result = subprocess.run([pipeline_script(), "compare", str(EXAMPLE_DIR / "pipeline.yaml"), "--stack", "prod", "--format", "json",
                                 "--no-cache", "--jobs", str(jobs)], capture_output=True, text=True, env=cli_env(), timeout=300, check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert compare(3) == compare(1)


@pytest.mark.parametrize("clouds", [["aws", "gcp"], ["gcp"]], ids=["one-cloud-cannot", "no-cloud-can"])
def test_parallel_compare_reports_problems_like_the_serial_one(write_spec: Any, clouds: list[str]) -> None:
    spec = write_spec()  # no GCP project: GCP cannot plan it
    results = [subprocess.run([pipeline_script(), "compare", str(spec), "--cloud", ",".join(clouds), "--jobs", str(jobs), "--no-cache"],
                              capture_output=True, text=True, env=cli_env(), timeout=300, check=False) for jobs in (1, 2)]
    assert results[0].returncode == (0 if len(clouds) > 1 else 2)
    assert "GCP needs a project" in results[0].stdout + results[0].stderr
    assert (results[1].returncode, results[1].stdout, results[1].stderr) == (results[0].returncode, results[0].stdout, results[0].stderr)
