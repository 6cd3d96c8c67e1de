"""The project the day-two tests fail and replay, on the local store and on each cloud's emulator: a stream stage
`parse` (raises on records marked bad, quoting a stage secret), an object stage `enrich` and a
schedule `total` over parse's outputs; FIXED is the same file with the bugs fixed.

enrich fails two ways: on n == 5 it raises while holding that row (the row is dead-lettered alone), on n == 16 it raises
ConnectionError (retryable: the whole input fails, and after its retries every row of it is dead-lettered)."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

NAME = "daytwo"
TOKEN = "tok-3f9a77c2-secret"  # a stage's environment value: never printed
SPEC = f"""\
name: {NAME}
stream: {{archive: {{archive}}}}
stages:
  - name: parse
    handler: handlers/h.py:parse
    retries: 1
    trigger: {{stream: {{batch_size: 10, max_batching_window_s: 1}}}}
    environment: {{API_TOKEN: {TOKEN}}}
  - name: enrich
    handler: handlers/h.py:enrich
    retries: 1
    trigger: {{objects: {{from: parse}}}}
  - name: total
    handler: handlers/h.py:total
    retries: 0
    trigger: {{schedule: rate(1 hour), from: parse}}
"""
BROKEN = """\
import os
import time
from pathlib import Path


def parse(records, context):
    for record in records:
        row = record.json()
        if row.get("bad"):
            raise ValueError(f"record {row['id']} is bad (token {os.environ['API_TOKEN']})")
        yield {"id": row["id"], "n": row["n"]}


def enrich(rows, context):
    for row in rows:
        if row["n"] == 5:
            raise KeyError("unlucky")
        if row["n"] == 16:
            raise ConnectionError("enrichment service down")
        yield {**row, "enriched": True}


def total(rows, context):
    if Path("down").exists():
        raise ConnectionError("the totals service is down")
    for row in rows:
        yield {"id": row["id"]}
"""
FIXED = BROKEN.replace('        if row.get("bad"):\n            raise', '        if row.get("bad") and False:\n            raise') \
              .replace('        if row["n"] == 5:\n            raise KeyError("unlucky")\n', '') \
              .replace('        if row["n"] == 16:\n            raise ConnectionError("enrichment service down")\n', '') \
              .replace('def parse(records, context):\n    for record in records:\n        row = record.json()\n',
                       'def parse(records, context):\n    for record in records:\n        row = record.json()\n'
                       '        if row["id"] == 15 and Path("block").exists():\n'
                       '            Path("reached").touch()\n'
                       '            while not Path("release").exists():\n'
                       '                time.sleep(0.05)\n')
RECORDS = [{"id": i, "n": i, **({"bad": True, "password": "hunter2-pw"} if i in (3, 15) else {})} for i in range(20)]


def make_project(folder: Path, archive: bool = False, clouds: str = "") -> Path:
    (folder / "handlers").mkdir(parents=True, exist_ok=True)
    (folder / "handlers" / "h.py").write_text(BROKEN, encoding="utf-8")
    spec = folder / "pipeline.yaml"
    spec.write_text(SPEC.replace("{archive}", "true" if archive else "false") + clouds, encoding="utf-8")
    (folder / "input.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS), encoding="utf-8")
    return spec


def fix(folder: Path) -> None:
    (folder / "handlers" / "h.py").write_text(FIXED, encoding="utf-8")


def line(record: dict[str, Any]) -> bytes:
    return json.dumps(record).encode()


def stage_environment(spec: Path, stage: str, buckets: dict[str, str]) -> dict[str, str]:
    """The PIPELINE_* environment the orchestrator gives the stage's function, with these physical bucket names."""
    from pipeline.spec.load import load_spec
    from pipeline.wiring import stage_env

    loaded = load_spec(spec, None)
    env = stage_env(loaded.spec, loaded.stack, loaded.spec.stage(stage), lambda key: buckets[key])
    return {key: str(value) for key, value in env.items()}


def set_stage(monkeypatch: Any, spec: Path, stage: str, buckets: dict[str, str]) -> None:
    """Make this process a function of `stage` (what the runtime entry points read), code root at the project: a new
    container, so the handler file is imported afresh (the tests fix it between deliveries, as a redeploy would)."""
    import sys

    from pipeline.runtime import entry, invoke

    for name in [k for k in os.environ if k.startswith("PIPELINE_") and k not in {"PIPELINE_S3_ENDPOINT_URL", "PIPELINE_DATA_CONNECTION_STRING"}]:
        monkeypatch.delenv(name)
    for name, value in stage_environment(spec, stage, buckets).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PIPELINE_CODE_ROOT", str(spec.parent))
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(spec.parent))
    monkeypatch.chdir(spec.parent)
    entry.reset()
    invoke._loaded.clear()
    for module in [name for name in sys.modules if name.startswith("pipeline_user_")]:
        del sys.modules[module]


def cli(env: dict[str, str], exe: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([exe, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180, check=False, stdin=subprocess.DEVNULL)


def answer(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.stdout.strip(), result.stderr
    return json.loads(result.stdout)


def ids(rows: list[dict[str, Any]]) -> Counter[int]:
    return Counter(row["id"] for row in rows)


def jsonl(data: bytes) -> list[Any]:
    return [json.loads(part) for part in data.splitlines() if part.strip()]


def write_outputs(folder: Path, values: dict[str, Any]) -> Path:
    path = folder / "outputs.json"
    path.write_text(json.dumps(values, indent=2), encoding="utf-8")
    return path
