"""No import cycles in the core or any backend (issue 23): every import counts, also inside a function."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "import_cycles.py"
TREES = ["src", "providers/aws/src", "providers/gcp/src", "providers/azure/src"]


def _run(*roots: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, roots)], cwd=cwd, capture_output=True, text=True, check=False)


def test_the_project_has_no_import_cycles() -> None:
    result = _run(*TREES)
    assert result.stdout.strip().splitlines()[-1] == "0 cycles", result.stdout
    assert result.returncode == 0


def test_a_cycle_through_a_function_level_import_is_found(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("def later():\n    from pkg.a import something\n")
    (package / "c.py").write_text("from . import a\n")  # imports into the cycle, is not part of it
    result = _run(tmp_path)
    assert result.returncode == 1
    assert "2 ['pkg.a', 'pkg.b']" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "1 cycles"
