"""benchmarks/speed.py runs end to end and prints every row of issue 14's table (no timing asserted).

One cloud, one run per figure and a one-stage spec keep it short: about ten `pipeline` processes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEED = ROOT / "benchmarks" / "speed.py"

TINY_SPEC = """\
name: tiny
stages:
  - name: only
    handler: h.py:handle
    trigger: {stream: {}}
"""


def speed(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SPEED), *args], capture_output=True, text=True, timeout=300)


def test_speed_prints_every_row(tmp_path: Path) -> None:
    (tmp_path / "h.py").write_text("def handle(records, context):\n    return []\n")
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(TINY_SPEC)
    result = speed("--quick", "--runs", "1", "--no-warmup", "--skip-wing", "--skip-run", "--skip-package", "--spec", str(spec), "--clouds", "aws",
                   "--stages", "1,2")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for figure in ("compare, 1 cloud, changed spec (cache miss)", "plan --cloud aws, cache miss", "compare, 1 cloud, unchanged spec (cache hit)",
                   "compare, 1 stage(s), cache miss", "compare, 2 stage(s), cache miss", "compare, seconds per added stage",
                   "compare --jobs", "first of a session (starts the server)", "cache miss, on demand (warm server)", "plan --cloud aws, cache miss, on demand",
                   "compare, 2 stage(s), cache miss, on demand", "Winglang", "pipeline run, trivial", "package --cloud azure"):
        assert figure in out, f"{figure!r} missing from:\n{out}"
    assert "skipped: --skip-wing" in out and "skipped: --skip-run" in out and "skipped: --skip-package" in out
    assert "not answered by the server" not in out and "started no server" not in out
    assert "target(s) not met" in out
    assert "Traceback" not in result.stderr


def test_speed_refuses_bad_stage_counts() -> None:
    result = speed("--stages", "ten")
    assert result.returncode == 2
    assert "--stages takes a comma list" in result.stderr
