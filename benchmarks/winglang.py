"""Winglang's one-cloud compile of a tiny app, timed as a fresh process: the yardstick for `pipeline compare`.

    python benchmarks/winglang.py [--runs 5]

Installs the pinned `winglang` from npm once into a cache folder outside the repository
(`$XDG_CACHE_HOME/pipeline-deployer-bench/winglang/<version>`, else `~/.cache/...`), then times
`wing compile -t tf-aws main.w` on `benchmarks/wing/main.w` (a bucket, a queue with a consumer that writes
to the bucket, and a function that feeds the queue) in a fresh copy of the app each run, so no run reuses
an earlier run's `target/` folder.

Offline: after the install nothing here needs the network. Wing's CLI sends usage analytics to Segment and
checks npm for a newer version unless told not to, so every compile runs with `WING_DISABLE_ANALYTICS=1`,
`--no-analytics` and `--no-update-check` (flags read from winglang's `dist/cli.js`). Checked with
`unshare -n` (no network at all): the compile succeeds and writes the same Terraform.

Where node or npm is missing, too old, or the install fails, `wing_compile` returns a `Skipped` with the
reason and the caller prints "skipped: <reason>".
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

WING_VERSION = "0.85.49"  # the newest on npm when this was written; the compile flags below are checked against it
APP = Path(__file__).resolve().parent / "wing" / "main.w"
# What the tiny app must compile to: proof that a timed run did the whole job, not an early exit.
EXPECTED_RESOURCES = ("aws_s3_bucket", "aws_sqs_queue", "aws_lambda_function", "aws_lambda_event_source_mapping")
INSTALL_TIMEOUT_S = 900
COMPILE_TIMEOUT_S = 300


@dataclass(frozen=True)
class WingTimes:
    version: str
    times: list[float]  # wall seconds per compile
    cpu: list[float]  # CPU seconds of each compile's process tree (node and the esbuild it starts)

    @property
    def median(self) -> float:
        return statistics.median(self.times)


@dataclass(frozen=True)
class Skipped:
    reason: str


def cache_folder() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "pipeline-deployer-bench" / "winglang" / WING_VERSION


def wing_env() -> dict[str, str]:
    """The environment of every wing process: no analytics, no colour codes in what we capture."""
    return {**os.environ, "WING_DISABLE_ANALYTICS": "1", "NO_COLOR": "1"}


def _node_too_old() -> str | None:
    """Why the installed node cannot run winglang (it needs node >= 18), or None."""
    node = shutil.which("node")
    if node is None:
        return "node is not installed"
    try:
        version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30, check=True).stdout.strip()
        major = int(version.lstrip("v").split(".")[0])
    except (OSError, subprocess.SubprocessError, ValueError) as error:
        return f"cannot tell node's version ({error})"
    return None if major >= 18 else f"winglang needs node >= 18, found {version}"


def install() -> Path | Skipped:
    """The path of the `wing` executable, installing the pinned version first if it is not there yet."""
    folder = cache_folder()
    wing = folder / "node_modules" / ".bin" / "wing"
    if wing.exists():
        return wing
    if why := _node_too_old():
        return Skipped(why)
    npm = shutil.which("npm")
    if npm is None:
        return Skipped("npm is not installed")
    folder.mkdir(parents=True, exist_ok=True)
    # A package.json of its own, so npm installs here and not into some package.json further up.
    (folder / "package.json").write_text(json.dumps({"name": "pipeline-deployer-bench-wing", "private": True}) + "\n")
    print(f"installing winglang@{WING_VERSION} into {folder} (once)", flush=True)
    try:
        done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error", f"winglang@{WING_VERSION}"],
                              cwd=folder, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as error:
        return Skipped(f"npm install winglang@{WING_VERSION} failed: {error}")
    if done.returncode != 0 or not wing.exists():
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return Skipped(f"npm install winglang@{WING_VERSION} failed (exit {done.returncode}): {tail[0]}")
    return wing


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def compile_command(wing: Path) -> list[str]:
    return [str(wing), "--no-update-check", "--no-analytics", "--no-progress", "compile", "-t", "tf-aws", "main.w"]


def _check_output(app_dir: Path) -> str | None:
    """What is wrong with the Terraform a compile wrote, or None."""
    terraform = app_dir / "target" / "main.tfaws" / "main.tf.json"
    if not terraform.exists():
        return f"no {terraform.relative_to(app_dir)} written"
    resources = json.loads(terraform.read_text(encoding="utf-8")).get("resource", {})
    missing = [kind for kind in EXPECTED_RESOURCES if kind not in resources]
    return f"the Terraform lacks {', '.join(missing)}" if missing else None


def wing_compile(runs: int) -> WingTimes | Skipped:
    """Wall time of `wing compile -t tf-aws` on the tiny app, one fresh process and one fresh folder per run."""
    wing = install()
    if isinstance(wing, Skipped):
        return wing
    try:
        version = subprocess.run([str(wing), "--version"], capture_output=True, text=True, timeout=60, env=wing_env()).stdout.strip()
    except (OSError, subprocess.SubprocessError) as error:
        return Skipped(f"wing --version failed: {error}")
    times, cpu = [], []
    with tempfile.TemporaryDirectory(prefix="wing-bench-") as tmp:
        for run in range(runs):
            app_dir = Path(tmp) / f"run{run}"
            app_dir.mkdir()
            shutil.copy(APP, app_dir / "main.w")
            start, cpu_start = time.perf_counter(), _children_cpu()
            try:
                done = subprocess.run(compile_command(wing), cwd=app_dir, capture_output=True, text=True,
                                      timeout=COMPILE_TIMEOUT_S, env=wing_env())
            except (OSError, subprocess.TimeoutExpired) as error:
                return Skipped(f"wing compile failed: {error}")
            elapsed, cpu_used = time.perf_counter() - start, _children_cpu() - cpu_start
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
                return Skipped(f"wing compile failed (exit {done.returncode}): {tail[0]}")
            if problem := _check_output(app_dir):
                return Skipped(f"wing compile did not do the whole job: {problem}")
            times.append(elapsed)
            cpu.append(cpu_used)
    return WingTimes(version or WING_VERSION, times, cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    result = wing_compile(args.runs)
    if isinstance(result, Skipped):
        print(f"winglang compile: skipped: {result.reason}")
        return
    print(f"winglang {result.version}: wing compile -t tf-aws {APP.name}, fresh process, {len(result.times)} runs: "
          f"median {result.median:.3f} s, min {min(result.times):.3f} s, max {max(result.times):.3f} s, "
          f"CPU median {statistics.median(result.cpu):.2f} s")


if __name__ == "__main__":
    main()
