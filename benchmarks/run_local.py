"""Records per second through `pipeline run`'s runtime, against a bare loop over the same handlers.

    python benchmarks/run_local.py [--records 200000] [--runs 3]

Two pipelines, each on a generated input of `--records` lines:

* example: the bundled transactions pipeline (preprocess -> score -> calibrate) on its sample
  data repeated (malformed records included, so dead-lettering is on the measured path);
* trivial: the same shape with handlers that only parse and pass rows through, where the
  runtime's own cost (batching, per-record isolation, JSON-lines outputs, raw archive, journal,
  atomic writes) is all there is to measure.

The bare loop reads the same file, builds the same `Record`s, calls the same handlers batch by
batch (record by record only for a batch that raised), serializes every row to the same JSON
lines with the runtime's own row encoder, writes one file per stage and, when the spec archives
the stream, one file of the raw records: what any hand-written script would do, minus crash
safety and minus the runtime's isolation (`pipeline run` runs each stage's handler in a worker
process of its own, so an object stage parses the JSON lines its source wrote, where the loop
hands the rows over in memory). Overhead ratio = bare records/s / runtime records/s.
Targets: ratio <= 1.3, trivial >= 50,000/s.

The CPU columns are seconds of CPU per run (this process and its worker processes): on a shared
machine wall-clock rates swing with the load, CPU time much less.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from pipeline.local.runner import LocalRun  # noqa: E402
from pipeline.local.stages import stage_env  # noqa: E402
from pipeline.runtime.context import Context  # noqa: E402
from pipeline.runtime.invoke import encode_row, load_handler  # noqa: E402
from pipeline.runtime.records import Record  # noqa: E402
from pipeline.spec.load import LoadedSpec, load_spec  # noqa: E402

EXAMPLE = ROOT / "stacks" / "transactions"

TRIVIAL_SPEC = """\
name: trivial
stages:
  - name: parse
    handler: handlers/h.py:parse
    trigger: {stream: {batch_size: 500, max_batching_window_s: 5}}
  - name: copy
    handler: handlers/h.py:copy
    trigger: {objects: {from: parse}}
"""
TRIVIAL_HANDLERS = """\
def parse(records, context):
    for record in records:
        yield record.json()


def copy(rows, context):
    yield from rows
"""


def make_input(path: Path, count: int) -> None:
    """The example's 2,000 records and its sample of bad ones, repeated with unique ids (malformed ones included)."""
    lines = [line for name in ("transactions.jsonl", "transactions-with-errors.jsonl")
             for line in (EXAMPLE / "data" / name).read_text(encoding="utf-8").splitlines()]
    with path.open("w", encoding="utf-8") as out:
        for i in range(count):
            line = lines[i % len(lines)]
            out.write(line.replace('"txn_id": "t', f'"txn_id": "r{i // len(lines)}-t', 1) + "\n")


def bare_loop(loaded: LoadedSpec, source: Path, out_dir: Path) -> int:
    """The same handlers, called directly: batches, per-record fallback, JSON lines, one file per stage."""
    spec = loaded.spec
    handlers: dict[str, Callable[..., Any]] = {s.name: load_handler(s.handler, loaded.base_dir) for s in spec.stages}
    contexts = {s.name: Context(s.name, model_path=str(loaded.base_dir / s.model) if s.model else None) for s in spec.stages}
    saved = dict(os.environ)
    outputs = {s.name: (out_dir / f"{s.name}.jsonl").open("wb") for s in spec.stages}
    raw = (out_dir / "raw.jsonl").open("wb") if spec.stream is not None and spec.stream.archive else None
    stream = next(s for s in spec.stages if s.trigger.stream)
    assert stream.trigger.stream is not None
    batch_size = stream.trigger.stream.batch_size
    os.environ.update(stage_env(loaded, stream))

    def call(name: str, items: list[Any]) -> list[Any]:
        try:
            return list(handlers[name](items, contexts[name]) or [])
        except Exception:
            rows: list[Any] = []
            for item in items:
                try:
                    rows.extend(handlers[name]([item], contexts[name]) or [])
                except Exception:
                    continue
            return rows

    def cascade(name: str, rows: list[Any]) -> None:
        outputs[name].write(b"".join([encode_row(r) + b"\n" for r in rows]))
        for consumer in spec.consumers_of(name):
            cascade(consumer.name, call(consumer.name, rows))

    def flush(batch: list[Record]) -> None:
        if raw is not None:
            raw.write(b"".join([record.data + b"\n" for record in batch]))
        cascade(stream.name, call(stream.name, batch))

    count = 0
    batch: list[Record] = []
    with source.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            data = line.rstrip(b"\r\n")
            if not data.strip():
                continue
            batch.append(Record(data, record_id=str(number), sequence=str(number)))
            count += 1
            if len(batch) == batch_size:
                flush(batch)
                batch = []
    if batch:
        flush(batch)
    for s in spec.stages:
        if s.trigger.schedule:
            cascade(s.name, call(s.name, []))
    for handle_ in [*outputs.values(), *([raw] if raw is not None else [])]:
        handle_.close()
    os.environ.clear()
    os.environ.update(saved)
    return count


def cpu_seconds() -> float:
    """CPU time of this process and of its children that ended (the runtime's worker processes)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def measure(name: str, loaded: LoadedSpec, source: Path, runs: int, durable: bool) -> dict[str, float]:
    runtime_rates, bare_rates, runtime_cpu, bare_cpu = [], [], [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            start, cpu = time.perf_counter(), cpu_seconds()
            summary = LocalRun(loaded, Path(tmp) / "store", durable=durable).run(str(source))
            runtime_rates.append(summary.records_in / (time.perf_counter() - start))
            runtime_cpu.append(cpu_seconds() - cpu)
        with tempfile.TemporaryDirectory() as tmp:
            start, cpu = time.perf_counter(), cpu_seconds()
            count = bare_loop(loaded, source, Path(tmp))
            bare_rates.append(count / (time.perf_counter() - start))
            bare_cpu.append(cpu_seconds() - cpu)
    runtime, bare = statistics.median(runtime_rates), statistics.median(bare_rates)
    cpu_runtime, cpu_bare = statistics.median(runtime_cpu), statistics.median(bare_cpu)
    print(f"{name:<17}{runtime:>14,.0f}{bare:>14,.0f}{bare / runtime:>9.2f}{cpu_runtime:>15.2f}{cpu_bare:>12.2f}")
    return {"runtime": runtime, "bare": bare, "ratio": bare / runtime, "cpu": cpu_runtime, "bare_cpu": cpu_bare}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = folder / "input.jsonl"
        make_input(source, args.records)
        trivial = folder / "trivial"
        (trivial / "handlers").mkdir(parents=True)
        (trivial / "pipeline.yaml").write_text(TRIVIAL_SPEC, encoding="utf-8")
        (trivial / "handlers" / "h.py").write_text(TRIVIAL_HANDLERS, encoding="utf-8")
        print(f"{args.records:,} records, median of {args.runs} runs, {os.cpu_count()} CPUs")
        print("fsync on = `pipeline run` (durable against power loss); off = `--no-fsync` (still safe against kill -9)")
        print(f"{'pipeline':<17}{'runtime rec/s':>14}{'bare rec/s':>14}{'ratio':>9}{'runtime cpu s':>15}{'bare cpu s':>12}")
        example, spec = load_spec(EXAMPLE / "pipeline.yaml", "dev"), load_spec(trivial / "pipeline.yaml")
        results: dict[str, Any] = {
            "example": measure("example, fsync", example, source, args.runs, True),
            "example-nofsync": measure("example, no fsync", example, source, args.runs, False),
            "trivial": measure("trivial, fsync", spec, source, args.runs, True),
            "trivial-nofsync": measure("trivial, no fsync", spec, source, args.runs, False),
        }
    for mode in ("", "-nofsync"):
        ok = results[f"example{mode}"]["ratio"] <= 1.3 and results[f"trivial{mode}"]["ratio"] <= 1.3 and results[f"trivial{mode}"]["runtime"] >= 50_000
        print(f"targets (ratio <= 1.3, trivial >= 50,000 rec/s), fsync {'off' if mode else 'on'}: {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
