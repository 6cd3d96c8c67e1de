"""Issue 14's and 21's speed figures ("fast enough to run on every save"), each against its target.

    python benchmarks/speed.py [--runs 5] [--quick] [--json] [--skip-wing] [--skip-run] [--skip-package]
                               [--spec SPEC --stack NAME] [--clouds aws,gcp,azure] [--stages 1,10,25,50]

Every timed figure is wall time of a fresh `pipeline` process (the console script in this
interpreter's folder), median / min / max of `--runs`, plus the CPU seconds the process tree used:
on a shared machine wall time swings with the load, CPU time much less.

* One `PIPELINE_CACHE_DIR` (a temp folder) for the whole run, warmed by one untimed compare: what a
  user's cache folder holds after the first run since install (the plan cache's entries, and the
  SDK-module indexes the lazy loader keeps there too). Every process runs with `PIPELINE_SERVER=0`
  (no warm planning server: these are fresh-process figures) and without `PIPELINE_NO_CACHE`.
* cache miss: every run on a changed spec (a copy whose `description` and a `bench-run` tag differ
  per run; the tag lands on every resource, so the plan differs too). Checked: a miss stores a new
  entry, so a run after which the cache folder holds no more files than before is flagged.
* cache hit: one copy of the spec, run once untimed, then timed `--runs` times; flagged when the
  cache folder grew during the timed runs (not hits) or stayed empty (a CLI without a plan cache).
* stages: generated specs (benchmarks/compare.py's `spec_with`: one stream stage, then a chain of
  object stages) at each `--stages` count, each run a miss; the least-squares slope is the time per
  added stage.
* `compare --jobs 1` vs `--jobs 3`: only where `pipeline compare --help` lists `--jobs`.
* on demand (issue 21, item 12): what a user gets with the default settings (no PIPELINE_SERVER,
  no CI, a runtime folder of the run's own): the first miss of a session runs in its own process
  and starts the planning server on its way out (timed: it must not cost more than a fresh miss);
  once the server is warm (`pipeline server start` waits for it, untimed), misses of compare, plan
  per cloud and the largest --stages spec are timed. Each timed run is checked to have been
  answered by the server (its log gains a line), else flagged.
* Winglang: benchmarks/winglang.py's one-cloud compile of a tiny app, measured in this same run,
  and compare-miss / wing-compile, for a fresh process and on demand (the everyday case; its
  target is issue 21's).
* `package --cloud azure` with its requirements (issue 21, item 8): a cold package cache, then warm;
  skipped when pip cannot install them (no index).
* `pipeline run`: benchmarks/run_local.py in a subprocess (trivial handlers: records/s and the
  ratio to a bare loop), read from its table.

The exit code is 0 whether or not targets are met (this is a benchmark, not a gate) and 1 when a command failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from compare import spec_with
from winglang import Skipped, wing_compile

from pipeline.errors import SpecError
from pipeline.spec.safe_yaml import load_yaml

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
EXAMPLE = ROOT / "stacks" / "transactions" / "pipeline.yaml"
ALL_CLOUDS = ("aws", "gcp", "azure")
FULL_STAGES = (1, 10, 25, 50)
QUICK_STAGES = (1, 50)

# Issue 14's targets (21's for the on-demand rows).
COMPARE_MISS_S = 1.5
COMPARE_VS_WING = 0.5
PLAN_MISS_S = 0.8
COMPARE_HIT_S = 0.3
FIFTY_STAGES_S = 5.0
RUN_RECORDS_PER_S = 50_000
RUN_VS_BARE = 1.3


class CommandError(Exception):
    """A timed command exited non-zero: the figure would be meaningless."""


@dataclass
class Row:
    """One line of the report: a figure, its spread, its target and whether it is met (None: no target)."""

    figure: str
    unit: str  # "s", "x" or "rec/s"
    median: float | None = None
    low: float | None = None
    high: float | None = None
    cpu: float | None = None
    target: str = "-"
    met: bool | None = None
    note: str = ""
    samples: list[float] = field(default_factory=list)


# ---- running things ------------------------------------------------------------------------


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[float, float]:
    """Wall and CPU seconds of one fresh process (CPU: it and every process it waited for)."""
    cpu, start = cpu_of_children(), time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise CommandError(f"`{' '.join(cmd)}` exited {done.returncode}:\n{tail}")
    return wall, cpu_of_children() - cpu


def pipeline_env(cache_dir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "PIPELINE_NO_CACHE"}
    return {**env, "PIPELINE_CACHE_DIR": str(cache_dir), "PIPELINE_SERVER": "0", "NO_COLOR": "1"}


def files_in(folder: Path) -> int:
    return sum(1 for path in folder.rglob("*") if path.is_file())


@dataclass
class Sample:
    """Wall and CPU seconds of a figure's runs, and what went unexpectedly (a miss that stored nothing...)."""

    walls: list[float]
    cpus: list[float]
    note: str = ""


def changed(spec: Path, tag: str) -> Path:
    """Make `spec` differ from every other run's: its description and a `bench-run` tag (on every resource)."""
    data = load_yaml(spec.read_bytes(), str(spec)).data  # the CLI's own reader: YAML 1.2 scalars, as the CLI sees them
    data["description"] = f"speed benchmark run {tag}"
    data["tags"] = {**(data.get("tags") or {}), "bench-run": tag}
    spec.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return spec


COPY_IGNORED = (".pipeline", "__pycache__", ".git", ".venv", "node_modules")
COPY_MAX_FILES = 2_000
COPY_MAX_BYTES = 50 * 1024 * 1024


def skip_when_copying(scratch: Path) -> Callable[[str, list[str]], set[str]]:
    """copytree's ignore: run state, caches, and the scratch folder itself (a spec in a temp folder holds it)."""
    ignored = shutil.ignore_patterns(*COPY_IGNORED)

    def ignore(folder: str, names: list[str]) -> set[str]:
        return set(ignored(folder, names)) | {name for name in names if Path(folder, name) == scratch}

    return ignore


def copy_problem(folder: Path) -> str | None:
    """Why the spec's folder is too big to copy once per run (the copy happens --runs times per figure), or None."""
    files = size = 0
    for base, dirs, names in os.walk(folder):
        dirs[:] = [name for name in dirs if name not in COPY_IGNORED]
        files += len(names)
        size += sum(Path(base, name).lstat().st_size for name in names)
        if files > COPY_MAX_FILES or size > COPY_MAX_BYTES:
            return (f"its folder {folder} holds more than {COPY_MAX_FILES:,} files or {COPY_MAX_BYTES // 2**20} MB, and every run "
                    "copies it; put the spec, its handlers and stacks/ in a folder of their own")
    return None


@dataclass
class Bench:
    """Where the runs happen and what they run on."""

    exe: str
    runs: int
    spec: Path
    stack: str | None
    clouds: list[str]
    scratch: Path
    counter: int = 0
    on_demand: bool = False  # set: the default settings (no PIPELINE_SERVER, no CI): a server started on demand answers

    @property
    def cache_dir(self) -> Path:
        path = self.scratch / "cache"
        path.mkdir(exist_ok=True)
        return path

    @property
    def runtime_dir(self) -> Path:
        path = self.scratch / "rt"
        path.mkdir(mode=0o700, exist_ok=True)
        return path

    def env(self) -> dict[str, str]:
        env = pipeline_env(self.cache_dir)
        if self.on_demand:
            env = {k: v for k, v in env.items() if k not in ("PIPELINE_SERVER", "PIPELINE_SERVER_SOCKET", "CI")}
            env["XDG_RUNTIME_DIR"] = str(self.runtime_dir)
        return env

    def run(self, command: list[str]) -> tuple[float, float]:
        return timed(command, self.env())

    def served(self) -> int:
        """Commands the on-demand server has answered so far (lines of its log)."""
        return sum(log.read_text().count("-> child") for log in self.runtime_dir.glob("pipeline-deployer-*/planner-*.log"))

    def fresh(self, kind: str) -> str:
        self.counter += 1
        return f"{kind}-{self.counter}"

    def copy_of_spec(self, tag: str) -> Path:
        """The spec's folder (handlers, models, stacks) copied, with the spec changed for this run."""
        folder = self.scratch / tag
        shutil.copytree(self.spec.parent, folder, symlinks=True, ignore=skip_when_copying(self.scratch))
        return changed(folder / self.spec.name, tag)

    def generated(self, stages: int, tag: str) -> Path:
        folder = self.scratch / tag
        folder.mkdir()
        return changed(spec_with(stages, folder), tag)

    def compare_cmd(self, spec: Path, stack: str | None = None, jobs: int | None = None) -> list[str]:
        clouds = [] if self.clouds == list(ALL_CLOUDS) else ["--cloud", ",".join(self.clouds)]
        stack_args = ["--stack", stack] if stack else []
        jobs_args = ["--jobs", str(jobs)] if jobs is not None else []
        return [self.exe, "compare", str(spec), *stack_args, *clouds, "--format", "json", *jobs_args]

    def plan_cmd(self, spec: Path, cloud: str) -> list[str]:
        stack_args = ["--stack", self.stack] if self.stack else []
        return [self.exe, "plan", str(spec), *stack_args, "--cloud", cloud, "--format", "json"]

    def misses(self, make_spec: Callable[[str], Path], command: Callable[[Path], list[str]]) -> Sample:
        """`runs` cache misses, each on a newly changed spec; flags runs that stored nothing in a cache in use
        and, on demand, runs the server did not answer."""
        sample, stored_nothing, not_served = Sample([], []), 0, 0
        for _ in range(self.runs):
            cmd = command(make_spec(self.fresh("miss")))
            before, served = files_in(self.cache_dir), self.served()
            wall, cpu = self.run(cmd)
            after = files_in(self.cache_dir)
            stored_nothing += after > 0 and after <= before
            not_served += self.on_demand and self.served() == served
            sample.walls.append(wall)
            sample.cpus.append(cpu)
        notes = []
        if stored_nothing:
            notes.append(f"{stored_nothing} of {self.runs} run(s) stored no cache entry: maybe not misses")
        if not_served:
            notes.append(f"{not_served} of {self.runs} run(s) not answered by the server")
        sample.note = "; ".join(notes)
        return sample

    def hits(self) -> Sample:
        """`runs` cache hits on one unchanged spec after one untimed run."""
        command = self.compare_cmd(self.copy_of_spec(self.fresh("hit")), stack=self.stack)
        self.run(command)
        before = files_in(self.cache_dir)
        sample = Sample([], [])
        for _ in range(self.runs):
            wall, cpu = self.run(command)
            sample.walls.append(wall)
            sample.cpus.append(cpu)
        after = files_in(self.cache_dir)
        if after == 0:
            sample.note = "cache folder stayed empty: no plan cache, hit = miss"
        elif after > before:
            sample.note = f"{after - before} file(s) stored during the timed runs: not all hits"
        return sample


def timing_row(figure: str, sample: Sample, limit: float | None) -> Row:
    walls, median = sample.walls, statistics.median(sample.walls)
    return Row(figure, "s", median, min(walls), max(walls), statistics.median(sample.cpus),
               f"<= {limit:g} s" if limit is not None else "-", None if limit is None else median <= limit, sample.note, walls)


def slope(points: list[tuple[int, float]]) -> float:
    """Least-squares seconds per stage through (stages, seconds)."""
    mean_x = statistics.fmean(x for x, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)


def accepts(exe: str, command: str, option: str) -> bool:
    """Whether `pipeline COMMAND --help` lists OPTION (wide, plain help so nothing is cut)."""
    env = {**os.environ, "COLUMNS": "300", "NO_COLOR": "1", "TERM": "dumb"}
    done = subprocess.run([exe, command, "--help"], env=env, capture_output=True, text=True)
    return re.search(rf"{re.escape(option)}\b", done.stdout) is not None


# ---- pipeline run (benchmarks/run_local.py) --------------------------------------------------

RUN_LOCAL_LINE = re.compile(r"^(trivial, (?:no )?fsync)\s+([\d,]+)\s+([\d,]+)\s+([\d.]+)", re.MULTILINE)


def run_local_rows(records: int, runs: int) -> tuple[list[Row], str]:
    """benchmarks/run_local.py's trivial-handler figures as rows, and its whole output."""
    cmd = [sys.executable, str(BENCHMARKS / "run_local.py"), "--records", str(records), "--runs", str(runs)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise CommandError(f"`{' '.join(cmd)}` exited {done.returncode}:\n{done.stderr.strip()[-2000:]}")
    rows = []
    for match in RUN_LOCAL_LINE.finditer(done.stdout):
        label, runtime, bare, ratio = match[1], float(match[2].replace(",", "")), float(match[3].replace(",", "")), float(match[4])
        mode = label.removeprefix("trivial, ")
        rows.append(Row(f"pipeline run, trivial, {mode}", "rec/s", runtime, target=f">= {RUN_RECORDS_PER_S:,}",
                        met=runtime >= RUN_RECORDS_PER_S, note=f"bare loop {bare:,.0f} rec/s; run_local.py, {records:,} records, median of {runs}"))
        rows.append(Row(f"pipeline run, trivial, {mode}: bare / run", "x", ratio, target=f"<= {RUN_VS_BARE:g}x", met=ratio <= RUN_VS_BARE))
    if not rows:
        rows.append(Row("pipeline run, trivial", "rec/s", note="could not read run_local.py's table (printed above)"))
    return rows, done.stdout


# ---- the report ------------------------------------------------------------------------------

HEADER = f"{'figure':<50}{'median':>11}{'min':>11}{'max':>11}{'cpu s':>8}  {'target':<14}{'met':<5} note"


def number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "rec/s":
        return f"{value:,.0f}"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:.3f}"


def line(row: Row) -> str:
    met = "-" if row.met is None else ("yes" if row.met else "NO")
    cpu = f"{row.cpu:.2f}" if row.cpu is not None else "-"
    return (f"{row.figure:<50}{number(row.median, row.unit):>11}{number(row.low, row.unit):>11}"
            f"{number(row.high, row.unit):>11}{cpu:>8}  {row.target:<14}{met:<5} {row.note}").rstrip()


class Report:
    """Rows printed as they are measured (text), or kept for one JSON document at the end."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.rows: list[Row] = []

    def say(self, text: str) -> None:
        print(text, file=sys.stderr if self.as_json else sys.stdout, flush=True)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        if not self.as_json:
            print(line(row), flush=True)
        return row

    def skip(self, figure: str, why: str) -> None:
        self.add(Row(figure, "s", note=f"skipped: {why}"))


# ---- the measurements ---------------------------------------------------------------------------


def on_demand_rows(bench: Bench, clouds: str, stages: list[int], report: Report, all_clouds: bool) -> Row | None:
    """What the default settings give: the first miss of a session in its own process (starting the
    server on its way out), then misses answered by the warm server. The compare-miss row, if measured."""
    bench.on_demand = True
    try:
        report.add(timing_row(f"compare, {clouds}, cache miss, first of a session (starts the server)", first_of_session(bench), None))
        started = subprocess.run([bench.exe, "server", "start"], env=bench.env(), capture_output=True, text=True, check=False)  # warm, untimed
        if started.returncode != 0:
            report.skip("compare on demand", f"`pipeline server start` failed: {started.stderr.strip()[:200]}")
            return None
        miss = report.add(timing_row(f"compare, {clouds}, cache miss, on demand (warm server)", bench.misses(bench.copy_of_spec,
                                     partial(bench.compare_cmd, stack=bench.stack)), COMPARE_MISS_S if all_clouds else None))
        for cloud in bench.clouds:
            sample = bench.misses(bench.copy_of_spec, partial(bench.plan_cmd, cloud=cloud))
            report.add(timing_row(f"plan --cloud {cloud}, cache miss, on demand", sample, PLAN_MISS_S))
        most = max(stages)
        sample = bench.misses(partial(bench.generated, most), bench.compare_cmd)
        report.add(timing_row(f"compare, {most} stage(s), cache miss, on demand", sample, None))
        return miss
    finally:
        subprocess.run([bench.exe, "server", "stop"], env=bench.env(), capture_output=True, check=False)
        bench.on_demand = False


def first_of_session(bench: Bench) -> Sample:
    """Misses with no server running (each stops the one the previous run started): they plan in their
    own process and start a server on the way out, which must not make them slower than a fresh miss."""
    sample, started_none = Sample([], []), 0
    for _ in range(bench.runs):
        subprocess.run([bench.exe, "server", "stop"], env=bench.env(), capture_output=True, check=False)
        wall, cpu = bench.run(bench.compare_cmd(bench.copy_of_spec(bench.fresh("first")), stack=bench.stack))
        status = subprocess.run([bench.exe, "server", "status"], env=bench.env(), capture_output=True, text=True, check=False)
        started_none += status.returncode != 0
        sample.walls.append(wall)
        sample.cpus.append(cpu)
    if started_none:
        sample.note = f"{started_none} of {bench.runs} run(s) started no server"
    return sample


def package_rows(bench: Bench, report: Report) -> None:
    """`package --cloud azure` with its requirements: a cold package cache, then warm (issue 21, item 8)."""
    cache = bench.scratch / "package-cache"
    spec = bench.copy_of_spec(bench.fresh("package"))
    command = [bench.exe, "package", str(spec), "--cloud", "azure", *(["--stack", bench.stack] if bench.stack else [])]
    env = {**pipeline_env(cache), "PIPELINE_NO_CACHE": ""}
    try:
        cold = timed(command, env)
        warm = [timed(command, env) for _ in range(max(1, min(bench.runs, 3)))]
    except CommandError as error:
        report.skip("package --cloud azure", f"could not install the requirements: {str(error).splitlines()[-1][:120]}")
        return
    report.add(timing_row("package --cloud azure, cold package cache", Sample([cold[0]], [cold[1]]), None))
    report.add(timing_row("package --cloud azure, warm package cache", Sample([w for w, _ in warm], [c for _, c in warm]), None))


def measure(args: argparse.Namespace, report: Report) -> dict[str, Any]:
    exe = shutil.which("pipeline", path=str(Path(sys.executable).parent)) or "pipeline"
    extras: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="speed-bench-") as tmp:
        bench = Bench(exe, args.runs, args.spec.resolve(), args.stack, args.clouds, Path(tmp))
        where = f"{args.spec}{f' --stack {args.stack}' if args.stack else ''}"
        report.say(f"pipeline speed, fresh processes, {args.runs} run(s) each, {os.cpu_count()} CPUs, "
                   f"load {os.getloadavg()[0]:.1f}; spec {where}; clouds {','.join(args.clouds)}")
        if not args.no_warmup:  # byte-compiled modules, the disk cache, the tool's cache folder: as after any first run
            bench.run(bench.compare_cmd(bench.copy_of_spec(bench.fresh("warmup")), stack=bench.stack))
        report.say(HEADER)
        n = len(args.clouds)
        clouds = f"{n} cloud{'s' if n > 1 else ''}"

        all_clouds = n == len(ALL_CLOUDS)  # the compare targets are for all three clouds
        sample = bench.misses(bench.copy_of_spec, partial(bench.compare_cmd, stack=bench.stack))
        miss = report.add(timing_row(f"compare, {clouds}, changed spec (cache miss)", sample, COMPARE_MISS_S if all_clouds else None))

        for cloud in args.clouds:
            sample = bench.misses(bench.copy_of_spec, partial(bench.plan_cmd, cloud=cloud))
            report.add(timing_row(f"plan --cloud {cloud}, cache miss", sample, PLAN_MISS_S))

        report.add(timing_row(f"compare, {clouds}, unchanged spec (cache hit)", bench.hits(), COMPARE_HIT_S))

        points = []
        for stages in args.stages:
            sample = bench.misses(partial(bench.generated, stages), bench.compare_cmd)
            limit = FIFTY_STAGES_S if stages == 50 and all_clouds else None
            row = report.add(timing_row(f"compare, {stages} stage(s), cache miss", sample, limit))
            points.append((stages, row.median or 0.0))
        extras["stages"] = {str(stages): seconds for stages, seconds in points}
        if len(points) >= 2:
            per_stage = slope(points)
            report.add(Row("compare, seconds per added stage (least squares)", "s", per_stage,
                           note=f"fit over {', '.join(str(s) for s, _ in points)} stages"))
            extras["seconds_per_stage"] = per_stage
        else:
            report.skip("compare, time per added stage", "needs at least two --stages counts")

        if accepts(exe, "compare", "--jobs"):
            for jobs in (1, 3):
                sample = bench.misses(bench.copy_of_spec, partial(bench.compare_cmd, stack=bench.stack, jobs=jobs))
                report.add(timing_row(f"compare --jobs {jobs}, {clouds}, cache miss", sample, None))
        else:
            report.skip("compare --jobs 1 vs --jobs 3", "`pipeline compare --help` lists no --jobs")

        everyday = None
        if accepts(exe, "server", "start"):
            everyday = on_demand_rows(bench, clouds, args.stages, report, all_clouds)
        else:
            report.skip("compare on demand", "no `pipeline server` command")

        if args.skip_wing:
            report.skip("Winglang compile, and compare miss / Winglang", "--skip-wing")
        else:
            wing = wing_compile(args.runs)
            if isinstance(wing, Skipped):
                report.skip("Winglang compile -t tf-aws (tiny app)", wing.reason)
            else:
                report.add(Row(f"Winglang {wing.version} compile -t tf-aws (tiny app)", "s", wing.median, min(wing.times),
                               max(wing.times), statistics.median(wing.cpu), note="benchmarks/wing/main.w, one cloud", samples=wing.times))
                ratio = (miss.median or 0.0) / wing.median
                report.add(Row(f"compare miss ({clouds}, fresh process) / Winglang", "x", ratio))
                if everyday is not None:
                    ratio = (everyday.median or 0.0) / wing.median
                    report.add(Row(f"compare miss ({clouds}, on demand) / Winglang", "x", ratio, target=f"<= {COMPARE_VS_WING:g}x" if all_clouds else "-",
                                   met=ratio <= COMPARE_VS_WING if all_clouds else None))

        if args.skip_package:
            report.skip("package --cloud azure", "--skip-package")
        else:
            package_rows(bench, report)

        if args.skip_run:
            report.skip("pipeline run, trivial handlers", "--skip-run")
        else:
            records, runs = (50_000, 2) if args.quick else (200_000, args.runs)
            report.say(f"(running benchmarks/run_local.py --records {records} --runs {runs})")
            rows, output = run_local_rows(records, runs)
            if any(row.median is None for row in rows):
                report.say(output)
            for row in rows:
                report.add(row)
    return extras


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, help="fresh processes per figure (default 5; 2 with --quick)")
    parser.add_argument("--quick", action="store_true", help=f"2 runs, stages {','.join(map(str, QUICK_STAGES))}, a short run_local")
    parser.add_argument("--json", action="store_true", help="print one JSON document (progress goes to stderr)")
    parser.add_argument("--skip-wing", action="store_true", help="leave out the Winglang side-by-side")
    parser.add_argument("--skip-run", action="store_true", help="leave out benchmarks/run_local.py")
    parser.add_argument("--skip-package", action="store_true", help="leave out `package --cloud azure` (installs its requirements)")
    parser.add_argument("--no-warmup", action="store_true", help="leave out the untimed first compare")
    parser.add_argument("--spec", type=Path, default=EXAMPLE, help="spec for the compare/plan rows (default: the bundled example)")
    parser.add_argument("--stack", help="stack of --spec (default: dev for the bundled example)")
    parser.add_argument("--clouds", default=",".join(ALL_CLOUDS), help="clouds for compare and plan (default: aws,gcp,azure)")
    parser.add_argument("--stages", help=f"stage counts for the growth rows (default {','.join(map(str, FULL_STAGES))})")
    args = parser.parse_args(argv)
    args.runs = args.runs or (2 if args.quick else 5)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.stack is None and args.spec == EXAMPLE:
        args.stack = "dev"
    if not args.spec.is_file():
        parser.error(f"--spec {args.spec}: no such file")
    try:
        if not isinstance(load_yaml(args.spec.read_bytes(), str(args.spec)).data, dict):
            parser.error(f"--spec {args.spec}: not a pipeline spec (a YAML mapping with name and stages)")
    except SpecError as error:
        parser.error(f"--spec {args.spec}: {error}")
    if problem := copy_problem(args.spec.resolve().parent):
        parser.error(f"--spec {args.spec}: {problem}")
    args.clouds = [cloud.strip() for cloud in args.clouds.split(",") if cloud.strip()]
    if not args.clouds or not set(args.clouds) <= set(ALL_CLOUDS):
        parser.error(f"--clouds takes a comma list of {', '.join(ALL_CLOUDS)}")
    try:
        args.stages = [int(s) for s in args.stages.split(",")] if args.stages else list(QUICK_STAGES if args.quick else FULL_STAGES)
    except ValueError:
        parser.error("--stages takes a comma list of whole numbers, e.g. 1,10,25,50")
    if any(s < 1 for s in args.stages):
        parser.error("--stages counts must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = Report(args.json)
    try:
        extras = measure(args, report)
    except CommandError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    if args.json:
        document = {"runs": args.runs, "cpus": os.cpu_count(), "load": os.getloadavg()[0], "spec": str(args.spec), "stack": args.stack,
                    "clouds": args.clouds, "rows": [asdict(row) for row in report.rows], **extras}
        print(json.dumps(document, indent=2))
    else:
        missed = [row.figure for row in report.rows if row.met is False]
        print(f"\n{len(missed)} target(s) not met" + (f": {'; '.join(missed)}" if missed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
