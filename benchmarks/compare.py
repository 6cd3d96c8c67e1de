"""Time `pipeline compare` (all three clouds, JSON) as a fresh process, and how it grows with stages.

    python benchmarks/compare.py [--runs 5]

Prints the median on the bundled example, then on generated specs with 1, 5 and 20 stages
(one stream stage followed by a chain of object stages).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "stacks" / "transactions" / "pipeline.yaml"


def spec_with(stages: int, folder: Path) -> Path:
    (folder / "h.py").write_text("def handle(rows, context):\n    return []\n")
    lines = ["name: bench", "clouds: {gcp: {project: bench-project}}", "stages:",
             '  - {name: s1, handler: "h.py:handle", trigger: {stream: {}}}']
    lines += [f'  - {{name: s{i}, handler: "h.py:handle", trigger: {{objects: {{from: s{i - 1}}}}}}}' for i in range(2, stages + 1)]
    path = folder / f"pipeline-{stages}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def median_seconds(exe: str, spec: Path, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([exe, "compare", str(spec), "--format", "json"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    exe = shutil.which("pipeline", path=str(Path(sys.executable).parent)) or "pipeline"
    print(f"pipeline compare --format json, aws+gcp+azure, fresh process, median of {args.runs}")
    print(f"{'spec':<28}{'median s':>10}")
    print(f"{'example (3 stages)':<28}{median_seconds(exe, EXAMPLE, args.runs):>10.3f}")
    with tempfile.TemporaryDirectory() as tmp:
        for stages in (1, 5, 20):
            print(f"{f'{stages} stage(s)':<28}{median_seconds(exe, spec_with(stages, Path(tmp)), args.runs):>10.3f}")


if __name__ == "__main__":
    main()
