"""Helpers for the `pipeline run` tests: a small project on disk and what its run left in the store."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

NAME = "semantics"


def project(folder: Path, handlers: str, stages: str, records: list[dict[str, Any]], name: str = NAME, spec_name: str = "pipeline.yaml",
            header: str = "stream: {archive: false}\n") -> tuple[Path, Path]:
    """A spec with `stages` (YAML list items), handlers/h.py and an input of `records`."""
    (folder / "handlers").mkdir(parents=True, exist_ok=True)
    (folder / "handlers" / "h.py").write_text(textwrap.dedent(handlers), encoding="utf-8")
    spec = folder / spec_name
    spec.write_text(f"name: {name}\n{header}stages:\n" + textwrap.dedent(stages), encoding="utf-8")
    data = folder / "input.jsonl"
    write_records(data, records)
    return spec, data


def write_records(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def run(env: dict[str, str], exe: str, *args: str | Path, stdin: Any = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`pipeline run ARGS` through the installed console script (stdin: /dev/null unless given)."""
    return subprocess.run([exe, "run", *map(str, args)], env=env, capture_output=True, text=True, timeout=timeout, check=False,
                          stdin=stdin if stdin is not None else subprocess.DEVNULL)


def store_of(spec: Path, name: str = NAME, stack: str = "default") -> Path:
    return spec.parent / ".pipeline" / "local" / name / stack


def jsonl(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def dead_letters(spec: Path, stage: str, name: str = NAME) -> list[dict[str, Any]]:
    return [entry for path in sorted((store_of(spec, name) / "dead-letter" / stage).rglob("*.jsonl")) for entry in jsonl(path)]


def rows(spec: Path, stage: str, name: str = NAME) -> list[Any]:
    return [row for path in sorted((store_of(spec, name) / stage / stage).rglob("*.jsonl")) for row in jsonl(path)]


def files(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its bytes (to show a run left another store alone)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


STREAM_STAGE = """\
  - name: parse
    handler: handlers/h.py:parse
    retries: 1
    timeout_s: {timeout}
    trigger: {{stream: {{batch_size: 10, max_batching_window_s: 1}}}}
"""
