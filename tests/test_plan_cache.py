"""The plan cache: a hit answers byte for byte what planning answers, without importing pydantic,
Pulumi or a cloud SDK; a change to any input is a miss; damaged, foreign or racing entries are
never served; the spec is read once, bounded, and never before it is known to be a regular file."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import EXAMPLE_DIR, cli_env, pipeline_script
from faults import injected

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


def _script(*args: str | Path, cache: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The real console script, planning in its own process."""
    return subprocess.run([pipeline_script(), *map(str, args)], capture_output=True, text=True, timeout=600, check=False,
                          env={**cli_env(), "PIPELINE_CACHE_DIR": str(cache), "PIPELINE_SERVER": "0", **env})


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

RESULT = {"schema_version": 2, "pipeline": "demo", "stack": "dev", "clouds": {"aws": {"answer": 42}}}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PIPELINE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(plan_cache, "_CLOCK_SLACK_NS", 0)  # the project is written just before it is watched
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


def _request(folder: Path, command: str = "compare", **options: object) -> plan_cache.Request:
    return plan_cache.Request(command, folder / "pipeline.yaml", options or {"clouds": ["aws"], "stack": "dev"})


def _store(folder: Path, result: dict[str, object] = RESULT) -> None:
    request = _request(folder)
    request.watch(load_spec(folder / "pipeline.yaml", "dev", request.read))
    plan_cache.store(request, result)
    assert plan_cache.lookup(_request(folder)) == result


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
    lambda f: os.mkfifo(f / "handlers" / "pipe.py"),
    lambda f: (f / "handlers" / "out.py").symlink_to("/etc/hostname"),
], ids=["spec", "overlay", "another-overlay", "handler", "handler-neighbour", "new-file", "renamed-file", "requirements", "model",
        "fifo", "link-out"])
def test_a_change_to_any_project_input_is_a_miss(project: Path, change) -> None:
    _store(project)
    change(project)
    assert plan_cache.lookup(_request(project)) is None


def test_files_outside_the_inputs_do_not_matter(project: Path) -> None:
    _store(project)
    (project / "README.md").write_text("notes")
    (project / "handlers" / "__pycache__").mkdir()
    (project / "handlers" / "__pycache__" / "score.cpython-311.pyc").write_bytes(b"\0")
    assert plan_cache.lookup(_request(project)) == RESULT


def test_options_are_part_of_the_key(project: Path) -> None:
    _store(project)
    for options in ({"clouds": ["gcp"], "stack": "dev"}, {"clouds": ["aws"], "stack": None}, {"clouds": ["aws"], "stack": "dev", "free_tier": True}):
        assert plan_cache.lookup(plan_cache.Request("compare", project / "pipeline.yaml", options)) is None
    assert plan_cache.lookup(plan_cache.Request("plan", project / "pipeline.yaml", {"clouds": ["aws"], "stack": "dev"})) is None


def test_the_key_and_the_loader_see_the_same_bytes(project: Path) -> None:
    """A request reads the spec once: an edit after the key was computed is not what gets planned,
    and the answer is filed under the bytes that were planned."""
    request = _request(project)
    key = request.key()
    (project / "pipeline.yaml").write_text((project / "pipeline.yaml").read_text().replace("name: demo", "name: edited"))
    loaded = load_spec(project / "pipeline.yaml", "dev", request.read)
    assert loaded.spec.name == "demo" and request.key() == key
    assert _request(project).key() != key


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
    monkeypatch.setattr(sys, "path", [sys.path[0], str(site), *sys.path[1:]])  # after the entry Python put first for the program
    importlib.invalidate_caches()
    plan_cache.tool_fingerprint.cache_clear()
    _store(project)
    assert "acme_backend" in set(plan_cache._backend_packages())

    (backend / "backend.py").write_text("PRICE = 2\n")  # the backend's code changed
    plan_cache.tool_fingerprint.cache_clear()
    assert plan_cache.lookup(_request(project)) is None
    _store(project)

    (site / "pulumi_acme-3.0.0.dist-info").mkdir()  # a new (or upgraded) distribution
    plan_cache.tool_fingerprint.cache_clear()
    assert plan_cache.lookup(_request(project)) is None
    plan_cache.tool_fingerprint.cache_clear()


def _rewrite(entry: Path, header: dict[str, object] | None = None, body: bytes | None = None, checksum: bool = True) -> None:
    """Change an entry's header fields or its result; with `checksum`, the checksum is made to match
    (as only someone forging an entry on purpose would). Entries of the format before checksums
    (one JSON object with a "result") get the same change, so these tests tell old from new."""
    data = entry.read_bytes()
    if b"\n" not in data.strip():
        whole = json.loads(data)
        whole.update(header or {})
        if body is not None:
            whole["result"] = json.loads(body)
        entry.write_text(json.dumps(whole))
        return
    old_header, _, old_body = data.partition(b"\n")
    new_header = {**json.loads(old_header), **(header or {})}
    new_body = old_body if body is None else body
    if checksum:
        new_header.update(result_sha256=hashlib.sha256(new_body).hexdigest(), result_bytes=len(new_body))
    entry.write_bytes(json.dumps(new_header).encode() + b"\n" + new_body)


@pytest.mark.parametrize("damage", [
    lambda path: path.write_bytes(b"\x00\xffnot json"),
    lambda path: path.write_text(""),
    lambda path: path.write_text("[1, 2]"),
    lambda path: _rewrite(path, {"format": "someone else's"}),
    lambda path: _rewrite(path, {"version": 1}),
    lambda path: _rewrite(path, {"key": "0" * 64}),
    lambda path: _rewrite(path, {"inputs": [["x", 1]]}),
    lambda path: _rewrite(path, {"inputs": [["/", "0" * 64]]}),
    lambda path: _rewrite(path, body=b"5", checksum=False),
    lambda path: _rewrite(path, body=b"5"),
    lambda path: _rewrite(path, body=json.dumps({**RESULT, "clouds": {"aws": {"answer": 43}}}).encode(), checksum=False),
    lambda path: _rewrite(path, body=b'{"clouds": {}}'),
    lambda path: _rewrite(path, body=b'{"clouds": [], "schema_version": 2, "pipeline": "demo", "stack": "dev"}'),
    lambda path: path.write_bytes(path.read_bytes()[:-3]),
], ids=["binary", "empty", "not-an-object", "foreign-format", "old-version", "other-key", "bad-inputs", "outside-the-project",
        "a-number", "a-checksummed-number", "a-changed-value", "missing-fields", "wrong-type", "truncated"])
def test_damaged_or_foreign_entries_are_ignored_and_replaced(project: Path, damage) -> None:
    _store(project)
    (entry,) = (project.parent / "cache" / "plans").rglob("*.json")
    damage(entry)
    assert plan_cache.lookup(_request(project)) is None
    _store(project, {**RESULT, "clouds": {"aws": {"answer": 43}}})


def test_an_unwritable_cache_is_not_an_error(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = project.parent / "blocked"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("PIPELINE_CACHE_DIR", str(blocker))
    request = _request(project)
    request.watch(load_spec(project / "pipeline.yaml", "dev", request.read))
    plan_cache.store(request, RESULT)
    assert plan_cache.lookup(_request(project)) is None


def test_old_entries_are_pruned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_CACHE_DIR", str(tmp_path))
    root = tmp_path / "plans"
    for index in range(5):
        path = root / f"{index:02d}" / f"{index:02d}.json"
        path.parent.mkdir(parents=True)
        path.write_text("{}")
        os.utime(path, (1000 + index, 1000 + index))
    plan_cache._prune(root, 3)
    assert sorted(p.name for p in root.rglob("*.json")) == ["02.json", "03.json", "04.json"]


# ---- through the console script ------------------------------------------------------------------------

@pytest.fixture
def example(tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "example"
    shutil.copytree(EXAMPLE_DIR, target, ignore=shutil.ignore_patterns(".pipeline", "__pycache__"))
    return target / "pipeline.yaml"


_EDIT_BEFORE_PLANNING = """
    def wrap(module):
        original = module.plan

        def plan(loaded, cloud, *args, **kwargs):
            path, text = os.environ["FAULT"].split("::", 1)
            with open(path, "w") as handle:
                handle.write(text)
            return original(loaded, cloud, *args, **kwargs)

        module.plan = plan
"""


def test_an_edit_saved_during_a_miss_never_files_the_old_answer_under_the_new_text(example: Path, tmp_path: Path) -> None:
    """Issue 19, item 11: the spec changes after it was loaded and before the answer is stored."""
    env = injected(tmp_path / "hook", "pipeline.planner", _EDIT_BEFORE_PLANNING)
    cache = tmp_path / "cache"
    edited = example.read_text().replace("name: txn-scoring", "name: txn-edited", 1)
    assert edited != example.read_text()
    args = ("compare", example, "--stack", "dev", "--format", "json")
    during = _script(*args, cache=cache, FAULT=f"{example}::{edited}", **env)
    assert during.returncode == 0, during.stderr
    assert example.read_text() == edited
    after = _script(*args, cache=cache, **env)
    fresh = _script(*args, "--no-cache", cache=cache, **env)
    assert after.returncode == fresh.returncode == 0
    assert after.stdout == fresh.stdout, "the cache served the answer planned before the edit"
    assert after.stdout != during.stdout


_CHANGE_AND_UNDO_WHILE_PACKAGING = """
    def wrap(module):
        original = module.handler_sources

        def handler_sources(code):
            path = os.environ["FAULT"]
            with open(path) as handle:
                before = handle.read()
            with open(path, "w") as handle:
                handle.write(before + "\\n# changed while packaging\\n")
            try:
                return original(code)
            finally:
                with open(path, "w") as handle:
                    handle.write(before)

        module.handler_sources = handler_sources
"""


def test_a_handler_changed_and_changed_back_during_a_miss_stores_nothing(example: Path, tmp_path: Path) -> None:
    """The packages were built from the edited handler, which was then undone: the inputs look the
    same before and after, but what was planned is not what they hold now."""
    env = injected(tmp_path / "hook", "pipeline.packaging", _CHANGE_AND_UNDO_WHILE_PACKAGING)
    cache = tmp_path / "cache"
    handler = example.parent / "handlers" / "score.py"
    args = ("plan", example, "--stack", "dev", "--cloud", "aws", "--format", "json")
    during = _script(*args, cache=cache, FAULT=str(handler), **env)
    assert during.returncode == 0, during.stderr
    after = _script(*args, cache=cache, **env)
    fresh = _script(*args, "--no-cache", cache=cache, **env)
    assert after.stdout == fresh.stdout, "the cache served a plan of the handler as it was for a moment"
    assert during.stdout != fresh.stdout


def _entry(cache: Path) -> Path:
    (entry,) = (cache / "plans").rglob("*.json")
    return entry


@pytest.mark.parametrize("body", [b"5", b'{"clouds": 5, "schema_version": 2}', b'{"verdicts": ["forged"]}'], ids=["number", "wrong-shape", "missing-fields"])
def test_a_damaged_entry_that_parses_is_never_served(example: Path, tmp_path: Path, body: bytes) -> None:
    """Issue 19, item 12: `compare --format json` printed `5` with exit 0."""
    cache = tmp_path / "cache"
    args = ("compare", example, "--stack", "dev", "--format", "json")
    first = _script(*args, cache=cache)
    assert first.returncode == 0, first.stderr
    _rewrite(_entry(cache), body=body, checksum=False)
    damaged = _script(*args, cache=cache)
    assert (damaged.returncode, damaged.stdout) == (0, first.stdout)
    _rewrite(_entry(cache), body=body)  # checksummed, as only a hand-made entry could be
    forged = _script(*args, cache=cache)
    assert (forged.returncode, forged.stdout) == (0, first.stdout)


def test_a_plan_entry_that_restores_to_nothing_is_a_miss(example: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    args = ("plan", example, "--cloud", "gcp", "--format", "json")
    first = _script(*args, cache=cache)
    assert first.returncode == 0, first.stderr
    _rewrite(_entry(cache), body=json.dumps({"cloud": "gcp", "pipeline": "txn-scoring", "stack": "default", "resources": [{"bogus": 1}]}).encode())
    again = _script(*args, cache=cache)
    assert (again.returncode, again.stdout, "internal error" in again.stderr) == (0, first.stdout, False)


@pytest.mark.parametrize("command", [["plan", "--cloud", "aws"], ["compare"], ["plan", "--cloud", "azure", "--format", "json"]])
@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom", "fifo", "huge"])
def test_devices_fifos_and_huge_files_are_refused_before_reading(tmp_path: Path, command: list[str], target: str) -> None:
    """Issue 19, item 16: with the cache on, `plan /dev/zero` read 3.7 GB and died; a FIFO hung."""
    spec = Path(target)
    if target == "fifo":
        spec = tmp_path / "pipeline.yaml"
        os.mkfifo(spec)
    elif target == "huge":
        spec = tmp_path / "pipeline.yaml"
        with open(spec, "wb") as handle:
            handle.truncate(8 * 1024**3)  # sparse: 8 GB that take no disk
    result = _script(command[0], spec, *command[1:], cache=tmp_path / "cache")
    validate = _script("validate", spec, cache=tmp_path / "cache")
    assert result.returncode == validate.returncode == 2, result.stderr
    assert "internal error" not in result.stderr and "MemoryError" not in result.stderr
    problem = validate.stderr.strip().splitlines()[-1]
    assert problem in result.stderr or problem in result.stdout


@pytest.mark.parametrize("trap", ["fifo", "zero"])
def test_an_overlay_that_is_not_a_file_is_refused_before_reading(example: Path, tmp_path: Path, trap: str) -> None:
    overlay = example.parent / "stacks" / f"{trap}.yaml"
    if trap == "fifo":
        os.mkfifo(overlay)
    else:
        overlay.symlink_to("/dev/zero")
    for stack in (trap, "dev"):  # the broken overlay itself, and a sibling stack (the key reads every overlay)
        result = _script("plan", example, "--stack", stack, "--cloud", "aws", cache=tmp_path / "cache")
        assert result.returncode == (2 if stack == trap else 0), result.stderr
        assert "internal error" not in result.stderr


def test_a_fifo_in_a_handler_folder_neither_hangs_a_miss_nor_a_hit(example: Path, tmp_path: Path) -> None:
    os.mkfifo(example.parent / "handlers" / "pipe")
    args = ("plan", example, "--cloud", "aws", "--format", "json")
    miss = _script(*args, cache=tmp_path / "cache")
    hit = _script(*args, cache=tmp_path / "cache")
    assert miss.returncode == hit.returncode == 0, miss.stderr + hit.stderr
    assert hit.stdout == miss.stdout


def test_a_handler_next_to_the_spec_is_cached_from_the_first_run(tmp_path: Path) -> None:
    """The first plan makes `.pipeline/` in the spec's folder, which is also the handler's folder:
    that is the tool's own doing, not an edit, and the answer is stored."""
    project = tmp_path / "flat"
    project.mkdir()
    (project / "h.py").write_text("def handle(records, context):\n    return []\n")
    spec = project / "pipeline.yaml"
    spec.write_text('name: flat\nstages:\n  - {name: only, handler: "h.py:handle", trigger: {stream: {}}}\n')
    first = _script("plan", spec, "--cloud", "aws", "--format", "json", cache=tmp_path / "cache")
    assert first.returncode == 0, first.stderr
    assert len(list((tmp_path / "cache" / "plans").rglob("*.json"))) == 1
