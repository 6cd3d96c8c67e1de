"""Issue 19, item 13: plan cache entries were trusted whoever wrote them.

With a shared `PIPELINE_CACHE_DIR` (or `XDG_CACHE_HOME` in a shared place), another user (a real
other uid: the tests run as root and the attacker drops to 65534) plants a well-formed entry with
the right key and a forged verdict. The console script must print the true answer, say why it
ignored the cache, and write nothing into folders it does not own.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import EXAMPLE_DIR, cli_env, pipeline_script
from faults import OTHER_UID, need_root, other_user, remove, shared_folder

SPEC = EXAMPLE_DIR / "pipeline.yaml"
ARGS = ("compare", str(SPEC), "--stack", "dev", "--format", "json")


def _compare(cache: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([pipeline_script(), *ARGS], capture_output=True, text=True, timeout=600, check=False,
                          env={**cli_env(), "PIPELINE_SERVER": "0", "PIPELINE_CACHE_DIR": str(cache), **env})


def _forged(genuine: Path) -> bytes:
    """The genuine entry with a forged verdict, its checksum recomputed: all that an attacker cannot fake is who wrote it."""
    data = genuine.read_bytes()
    if b"\n" not in data.strip():  # the format before checksums: one JSON object
        return data.replace(b"txn-scoring", b"FORGED-VERDICT")
    header, _, body = data.partition(b"\n")
    forged = body.replace(b"txn-scoring", b"FORGED-VERDICT")
    fields = json.loads(header)
    fields.update(result_sha256=hashlib.sha256(forged).hexdigest(), result_bytes=len(forged))
    return json.dumps(fields).encode() + b"\n" + forged


def _plant(path: Path, data: bytes) -> None:
    """Another user writes `data` at `path`, making the folders on the way."""
    code = "import os, sys; os.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True); open(sys.argv[1], 'wb').write(sys.stdin.buffer.read())"
    subprocess.run(["/usr/bin/python3", "-c", code, str(path)], input=data, preexec_fn=other_user(), check=True)


@pytest.fixture
def genuine(tmp_path: Path) -> tuple[Path, str, bytes]:
    """(the entry's path relative to a cache folder, the true answer, the forged entry's bytes)."""
    need_root()
    private = tmp_path / "private-cache"
    first = _compare(private)
    assert first.returncode == 0, first.stderr
    (entry,) = (private / "plans").rglob("*.json")
    forged = tmp_path / "forged.json"
    forged.write_bytes(_forged(entry))
    return entry.relative_to(private), first.stdout, forged.read_bytes()


def _check(cache: Path, truth: str, owned_by_other: Path | None = None) -> None:
    before = {p: p.stat().st_uid for p in cache.rglob("*")} if cache.exists() else {}
    result = _compare(cache)
    assert result.returncode == 0, result.stderr
    assert result.stdout == truth and "FORGED" not in result.stdout, "a forged entry was served"
    assert "not using the plan cache" in result.stderr
    if owned_by_other is not None:  # nothing of ours appeared in a folder someone else owns
        for path in owned_by_other.rglob("*"):
            assert path.stat().st_uid == OTHER_UID or path in before, f"wrote {path} into another user's folder"


def test_a_cache_folder_made_by_another_user(genuine: tuple[Path, str, bytes], tmp_path: Path) -> None:
    relative, truth, forged = genuine
    shared = shared_folder()
    try:
        cache = shared / "cache"
        _plant(cache / relative, forged)
        _check(cache, truth, owned_by_other=cache)
    finally:
        remove(shared)


def test_a_plans_folder_planted_in_our_open_cache_folder(genuine: tuple[Path, str, bytes], tmp_path: Path) -> None:
    """Our cache folder was left open (0777): another user made plans/ in it."""
    relative, truth, forged = genuine
    shared = shared_folder()
    try:
        cache = shared / "open-cache"
        cache.mkdir()
        os.chmod(cache, 0o777)
        _plant(cache / relative, forged)
        _check(cache, truth, owned_by_other=cache / "plans")
    finally:
        remove(shared)


@pytest.mark.parametrize("how", ["owner", "mode", "symlink"])
def test_an_entry_that_is_not_ours_and_private(genuine: tuple[Path, str, bytes], tmp_path: Path, how: str) -> None:
    relative, truth, forged = genuine
    cache = tmp_path / "cache"
    target = cache / relative
    target.parent.mkdir(parents=True, mode=0o700)
    os.chmod(cache, 0o700)
    os.chmod(cache / "plans", 0o700)
    changes: dict[str, Callable[[], None]] = {
        "owner": lambda: (target.write_bytes(forged), os.chmod(target, 0o600), os.chown(target, OTHER_UID, OTHER_UID)),
        "mode": lambda: (target.write_bytes(forged), os.chmod(target, 0o666)),
        "symlink": lambda: target.symlink_to(tmp_path / "forged.json"),
    }
    changes[how]()
    _check(cache, truth)


def test_a_shared_xdg_cache_home_is_refused_too(genuine: tuple[Path, str, bytes], tmp_path: Path) -> None:
    relative, truth, forged = genuine
    shared = shared_folder()
    try:
        home_cache = shared / "xdg"
        _plant(home_cache / "pipeline-deployer" / relative, forged)
        env = {k: v for k, v in cli_env().items() if k != "PIPELINE_CACHE_DIR"}
        result = subprocess.run([pipeline_script(), *ARGS], capture_output=True, text=True, timeout=600, check=False,
                                env={**env, "PIPELINE_SERVER": "0", "XDG_CACHE_HOME": str(home_cache)})
        assert result.returncode == 0 and result.stdout == truth, result.stderr
        assert "not using the plan cache" in result.stderr
    finally:
        remove(shared)
    shutil.rmtree(tmp_path / "private-cache", ignore_errors=True)
