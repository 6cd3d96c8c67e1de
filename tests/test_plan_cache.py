"""The plan cache: a hit answers byte for byte what planning answers, without importing pydantic,
Pulumi or a cloud SDK; a change to any input is a miss; damaged or foreign entries are ignored."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import EXAMPLE_DIR, cli_env

from pipeline import plan_cache
from pipeline.spec.load import load_spec

HEAVY = ("pydantic", "pulumi", "pulumi_aws", "pulumi_gcp", "pulumi_azure_native")

# Runs the CLI in this interpreter (no fast exit: argv is given) and reports what it imported.
_IN_PROCESS = textwrap.dedent("""
    import json, sys
    from pipeline.cli.app import main
    code = 0
    try:
        main(ARGS)
    except SystemExit as exc:
        code = exc.code
    heavy = sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in HEAVY})
    print("\\n@@" + json.dumps({"code": code, "heavy": heavy}))
""")


def _cli(args: list[str], cache: Path, **env: str) -> tuple[str, dict[str, object]]:
    code = _IN_PROCESS.replace("ARGS", repr(args)).replace("HEAVY", repr(HEAVY))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False,
                            env={**cli_env(), "PIPELINE_CACHE_DIR": str(cache), **env})
    out, _, report = result.stdout.rpartition("\n@@")
    assert report, result.stderr
    return out, json.loads(report)


@pytest.mark.parametrize("args", [
    ["compare", str(EXAMPLE_DIR / "pipeline.yaml"), "--stack", "dev"],
    ["compare", str(EXAMPLE_DIR / "pipeline.yaml"), "--stack", "prod", "--format", "json"],
    ["plan", str(EXAMPLE_DIR / "pipeline.yaml"), "--stack", "dev", "--cloud", "azure", "--format", "json"],
    ["plan", str(EXAMPLE_DIR / "pipeline.yaml"), "--stack", "dev", "--cloud", "gcp", "--format", "tree"],
], ids=["compare-table", "compare-json", "plan-json", "plan-tree"])
def test_a_hit_answers_the_same_bytes_without_heavy_imports(args: list[str], tmp_path: Path) -> None:
    first, miss = _cli(args, tmp_path)
    second, hit = _cli(args, tmp_path)
    assert miss["code"] == hit["code"] == 0
    assert "pulumi" in miss["heavy"]  # the first run planned
    assert hit["heavy"] == [], f"a cache hit imported {hit['heavy']}"
    assert second == first
    if "--format" in args and args[args.index("--format") + 1] == "json":
        json.loads(second)


def test_no_cache_flag_and_environment_turn_it_off(tmp_path: Path) -> None:
    args = ["plan", str(EXAMPLE_DIR / "pipeline.yaml"), "--stack", "dev", "--cloud", "aws", "--format", "json"]
    plans = tmp_path / "plans"
    _cli([*args, "--no-cache"], tmp_path)
    assert not list(plans.rglob("*.json")), "--no-cache stored an entry"
    _cli(args, tmp_path, PIPELINE_NO_CACHE="1")
    assert not list(plans.rglob("*.json")), "PIPELINE_NO_CACHE=1 stored an entry"
    _cli(args, tmp_path)
    _, again = _cli([*args, "--no-cache"], tmp_path)
    assert "pulumi" in again["heavy"], "--no-cache used the stored entry"


def test_entries_are_private(tmp_path: Path) -> None:
    _cli(["plan", str(EXAMPLE_DIR / "pipeline.yaml"), "--cloud", "aws", "--format", "json"], tmp_path)
    entries = list((tmp_path / "plans").rglob("*.json"))
    assert len(entries) == 1
    assert stat.S_IMODE(entries[0].stat().st_mode) == 0o600
    for folder in (tmp_path / "plans", entries[0].parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700


# ---- keys and inputs (library level: fast) --------------------------------------------------------

@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PIPELINE_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "project"
    (folder / "handlers" / "lib").mkdir(parents=True)
    (folder / "handlers" / "score.py").write_text("def handle(records, context):\n    return []\n")
    (folder / "handlers" / "lib" / "util.py").write_text("X = 1\n")
    (folder / "handlers" / "requirements.txt").write_text("numpy==2.1.0\n")
    (folder / "models").mkdir()
    (folder / "models" / "model.json").write_text('{"w": 1}')
    (folder / "stacks").mkdir()
    (folder / "stacks" / "dev.yaml").write_text("workload: {records_per_second: 10}\n")
    (folder / "pipeline.yaml").write_text(textwrap.dedent("""\
        name: demo
        stages:
          - name: score
            handler: handlers/score.py:handle
            requirements: handlers/requirements.txt
            model: models/model.json
            trigger: {stream: {}}
    """))
    return folder


def _stored(folder: Path) -> plan_cache.Request:
    request = plan_cache.Request("compare", folder / "pipeline.yaml", {"clouds": ["aws"], "stack": "dev"})
    plan_cache.store(request, load_spec(folder / "pipeline.yaml", "dev"), {"answer": 42})
    assert plan_cache.lookup(request) == {"answer": 42}
    return request


@pytest.mark.parametrize("change", [
    lambda f: (f / "pipeline.yaml").write_text((f / "pipeline.yaml").read_text() + "description: changed\n"),
    lambda f: (f / "stacks" / "dev.yaml").write_text("workload: {records_per_second: 11}\n"),
    lambda f: (f / "stacks" / "prod.yaml").write_text("workload: {records_per_second: 99}\n"),
    lambda f: (f / "handlers" / "score.py").write_text("def handle(records, context):\n    return list(records)\n"),
    lambda f: (f / "handlers" / "lib" / "util.py").write_text("X = 2\n"),
    lambda f: (f / "handlers" / "new_module.py").write_text(""),
    lambda f: (f / "handlers" / "lib" / "util.py").rename(f / "handlers" / "lib" / "renamed.py"),
    lambda f: (f / "handlers" / "requirements.txt").write_text("numpy==2.1.1\n"),
    lambda f: (f / "models" / "model.json").write_text('{"w": 2}'),
], ids=["spec", "overlay", "another-overlay", "handler", "handler-neighbour", "new-file", "renamed-file", "requirements", "model"])
def test_a_change_to_any_project_input_is_a_miss(project: Path, change) -> None:
    request = _stored(project)
    change(project)
    assert plan_cache.lookup(request) is None


def test_files_outside_the_inputs_do_not_matter(project: Path) -> None:
    request = _stored(project)
    (project / "README.md").write_text("notes")
    (project / "handlers" / "__pycache__").mkdir()
    (project / "handlers" / "__pycache__" / "score.cpython-311.pyc").write_bytes(b"\0")
    assert plan_cache.lookup(request) == {"answer": 42}


def test_options_are_part_of_the_key(project: Path) -> None:
    _stored(project)
    for options in ({"clouds": ["gcp"], "stack": "dev"}, {"clouds": ["aws"], "stack": None}, {"clouds": ["aws"], "stack": "dev", "free_tier": True}):
        assert plan_cache.lookup(plan_cache.Request("compare", project / "pipeline.yaml", options)) is None
    assert plan_cache.lookup(plan_cache.Request("plan", project / "pipeline.yaml", {"clouds": ["aws"], "stack": "dev"})) is None


def test_tool_code_and_installed_versions_are_part_of_the_key(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new SDK version, or a change to an installed backend's code, is a miss."""
    site = tmp_path / "site"
    backend = site / "acme_backend"
    backend.mkdir(parents=True)
    (backend / "__init__.py").write_text("")
    (backend / "backend.py").write_text("PRICE = 1\n")
    dist = site / "acme_backend-1.0.dist-info"
    dist.mkdir()
    (dist / "entry_points.txt").write_text("[pipeline.backends]\nacme = acme_backend.backend:AcmeBackend\n")
    monkeypatch.syspath_prepend(str(site))
    plan_cache.tool_fingerprint.cache_clear()
    request = _stored(project)
    assert "acme_backend" in set(plan_cache._backend_packages())

    (backend / "backend.py").write_text("PRICE = 2\n")  # the backend's code changed
    plan_cache.tool_fingerprint.cache_clear()
    assert plan_cache.lookup(request) is None
    request = _stored(project)

    (site / "pulumi_acme-3.0.0.dist-info").mkdir()  # a new (or upgraded) distribution
    plan_cache.tool_fingerprint.cache_clear()
    assert plan_cache.lookup(request) is None
    plan_cache.tool_fingerprint.cache_clear()


@pytest.mark.parametrize("damage", [
    lambda path: path.write_bytes(b"\x00\xffnot json"),
    lambda path: path.write_text(""),
    lambda path: path.write_text("[1, 2]"),
    lambda path: path.write_text(json.dumps({**json.loads(path.read_text()), "format": "someone else's"})),
    lambda path: path.write_text(json.dumps({**json.loads(path.read_text()), "version": 0})),
    lambda path: path.write_text(json.dumps({**json.loads(path.read_text()), "key": "0" * 64})),
    lambda path: path.write_text(json.dumps({**json.loads(path.read_text()), "inputs": [["x", 1]]})),
    lambda path: path.write_text(json.dumps({**json.loads(path.read_text()), "inputs": [["/", "0" * 64]]})),
    lambda path: path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != "result"})),
], ids=["binary", "empty", "not-an-object", "foreign-format", "old-version", "other-key", "bad-inputs", "outside-the-project", "no-result"])
def test_damaged_or_foreign_entries_are_ignored_and_replaced(project: Path, damage) -> None:
    request = _stored(project)
    (entry,) = (project.parent / "cache" / "plans").rglob("*.json")
    damage(entry)
    assert plan_cache.lookup(request) is None
    plan_cache.store(request, load_spec(project / "pipeline.yaml", "dev"), {"answer": 43})
    assert plan_cache.lookup(request) == {"answer": 43}


def test_an_unwritable_cache_is_not_an_error(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = project.parent / "blocked"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("PIPELINE_CACHE_DIR", str(blocker))
    request = plan_cache.Request("compare", project / "pipeline.yaml", {})
    plan_cache.store(request, load_spec(project / "pipeline.yaml", "dev"), {"answer": 1})
    assert plan_cache.lookup(request) is None


def test_old_entries_are_pruned(tmp_path: Path) -> None:
    root = tmp_path / "plans"
    for index in range(5):
        path = root / f"{index:02d}" / f"{index:02d}.json"
        path.parent.mkdir(parents=True)
        path.write_text("{}")
        os.utime(path, (1000 + index, 1000 + index))
    plan_cache._prune(root, 3)
    assert sorted(p.name for p in root.rglob("*.json")) == ["02.json", "03.json", "04.json"]
