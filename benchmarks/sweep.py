"""Time `pipeline compare --sweep` against a plain `compare`, and what planning once per design saves.

    python benchmarks/sweep.py [--runs 3] [--spec stacks/transactions/pipeline.yaml] [--stack dev]

Prints, as fresh processes (median of --runs, plan cache off): a plain `compare`, then sweeps of
records_per_second=10..20000 at 5, 10, 20 and 40 points (with the plans each made); a 20-point sweep
answered from the plan cache; and in one process, a 20-point sweep planning every point afresh
(what `compare` per point would cost) against the same sweep planning each design once.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "stacks" / "transactions" / "pipeline.yaml"
RANGE = "records_per_second=10..20000"


def fresh(exe: str, args: list[str], runs: int, env: dict[str, str]) -> tuple[float, str]:
    """Median seconds of `pipeline ARGS` as a new process, and its last stdout."""
    times, out = [], ""
    for _ in range(runs):
        start = time.perf_counter()
        out = subprocess.run([exe, *args], check=True, capture_output=True, text=True, env=env).stdout
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def in_process(spec: Path, stack: str) -> tuple[float, float, int]:
    """(seconds planning every point, seconds planning each design once, plans made) for one 20-point sweep, warm."""
    from pipeline import sweep, sweep_axis
    from pipeline.compare import _planned, compare_point
    from pipeline.spec.load import load_spec
    from pipeline.workload import with_value

    loaded = load_spec(spec, stack)
    axis = sweep_axis.parse_axis(RANGE, loaded, points=20)
    compare_point(loaded, ["aws", "gcp", "azure"], False, _planned, None)  # imports and first plans out of the way
    start = time.perf_counter()
    for value in axis.values:
        compare_point(with_value(loaded, axis.field, value), ["aws", "gcp", "azure"], False, _planned, axis.field)
    every = time.perf_counter() - start
    start = time.perf_counter()
    result = sweep.run(loaded, ["aws", "gcp", "azure"], axis)
    return every, time.perf_counter() - start, result.plans_made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--spec", type=Path, default=EXAMPLE)
    parser.add_argument("--stack", default="dev")
    args = parser.parse_args()
    exe = shutil.which("pipeline", path=str(Path(sys.executable).parent)) or "pipeline"
    base = [str(args.spec), "--stack", args.stack]
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "PIPELINE_CACHE_DIR": cache, "PIPELINE_SERVER": "0"}
        print(f"{args.spec.parent.name} ({args.stack}), aws+gcp+azure, fresh process, median of {args.runs}")
        print(f"{'command':<62}{'seconds':>9}{'plans':>7}")
        seconds, _ = fresh(exe, ["compare", *base, "--format", "json", "--no-cache"], args.runs, env)
        print(f"{'compare (one workload)':<62}{seconds:>9.2f}{3:>7}")
        for points in (5, 10, 20, 40):
            seconds, out = fresh(exe, ["compare", *base, "--sweep", RANGE, "--points", str(points), "--format", "json", "--no-cache"], args.runs, env)
            data = json.loads(out)
            label = f"compare --sweep {RANGE} --points {points}"
            print(f"{label:<62}{seconds:>9.2f}{data['plans_made']:>7}")
        sweep_args = ["compare", *base, "--sweep", RANGE, "--points", "20", "--format", "json"]
        fresh(exe, sweep_args, 1, env)  # store the answer
        seconds, _ = fresh(exe, sweep_args, args.runs, env)
        print(f"{'the same 20-point sweep, answered from the plan cache':<62}{seconds:>9.2f}{0:>7}")
    every, once, made = in_process(args.spec, args.stack)
    print(f"\nin one process, warm, 20 points: planning every point {every:.2f} s ({20 * 3} plans); "
          f"planning each design once {once:.2f} s ({made} plans, crossovers and design changes narrowed included)")


if __name__ == "__main__":
    main()
