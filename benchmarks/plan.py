"""Time `pipeline plan` on the bundled example as a fresh process, per cloud.

    python benchmarks/plan.py [--runs 7] [--clouds aws,gcp,azure]

Prints the median, min and max wall time per cloud, plus how much of it is Python start-up
and imports (measured by running the same interpreter with the imports only).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "stacks" / "transactions" / "pipeline.yaml"


def timed(cmd: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--clouds", default="aws,gcp,azure")
    args = parser.parse_args()
    exe = shutil.which("pipeline", path=str(Path(sys.executable).parent)) or "pipeline"
    print(f"pipeline plan {EXAMPLE.relative_to(ROOT)} --stack dev, {args.runs} fresh processes each")
    print(f"{'cloud':<7}{'median s':>10}{'min s':>8}{'max s':>8}   {'of which imports (median s)':>28}")
    for cloud in args.clouds.split(","):
        times = timed([exe, "plan", str(EXAMPLE), "--stack", "dev", "--cloud", cloud, "--format", "json"], args.runs)
        imports = timed([sys.executable, "-c", f"import pipeline.planner, pipeline.spec.load, pipeline_{cloud}.backend"], max(3, args.runs // 2))
        print(f"{cloud:<7}{statistics.median(times):>10.3f}{min(times):>8.3f}{max(times):>8.3f}   {statistics.median(imports):>28.3f}")


if __name__ == "__main__":
    main()
