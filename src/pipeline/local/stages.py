"""A pipeline's stages on this machine: one worker process per stage (`stage_process.py`), and one
invocation with the stage's retries, then dead letters. Shared by `pipeline run`, `pipeline serve`
and `pipeline invoke`, so all three give a handler the same semantics.

Workers only compute: what an invocation writes (outputs, dead letters) a worker stages in temporary
files and names in its reply, and it lands here, in the reply's order, through the store the caller
gives (the run's queued writer, or a plain `LocalStore`). A run over a window of accumulated outputs
takes its lease, lists and commits here, with the clouds' code (`window.py`) on the local store.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, Protocol

from pipeline.local.deps import RequirementsError, installed_path
from pipeline.local.stage_process import Reply, StageProcess
from pipeline.runtime.context import Context
from pipeline.runtime.invoke import BatchResult, Settings, StageRunner
from pipeline.runtime.logs import JsonLogger
from pipeline.runtime.store import LocalStore, ObjectStore
from pipeline.runtime.window import Skipped, WindowOutcome, Windows
from pipeline.spec.load import LoadedSpec
from pipeline.spec.model import StageSpec

Stats = dict[str, dict[str, int]]  # per stage (or the raw archive): invocations, items, rows, dead_letters, ...
Inputs = Callable[[], tuple[list[bytes], list[dict[str, Any]]]]  # an input's items (bytes, identities), for dead letters


class LocalRunError(Exception):
    """A problem the user must fix (store in use, disk full, a handler that cannot be imported...)."""


def stage_env(loaded: LoadedSpec, stage: StageSpec) -> dict[str, str]:
    """The environment the orchestrator gives the stage's function (`pipeline.wiring.stage_env`), with local
    bucket names (the bucket role keys) and the model as a local file."""
    from pipeline.wiring import stage_env as wired

    env = {key: str(value) for key, value in wired(loaded.spec, loaded.stack, stage, lambda key: key).items()}
    if stage.model:
        env["PIPELINE_MODEL_PATH"] = str(loaded.base_dir / stage.model)
    return env


def add_stats(stats: Stats, stage: str, counts: Mapping[str, int]) -> None:
    entry = stats.setdefault(stage, {})
    for name, value in counts.items():
        if value:
            entry[name] = entry.get(name, 0) + value


class RemoteError(Exception):
    """A failure described by a worker process (or about it): dead letters carry its description."""

    def __init__(self, info: dict[str, Any]) -> None:
        super().__init__(f"{info.get('type')}: {info.get('message')}")
        self.error_info = info


def _not_loaded(items: Any, context: Context) -> Any:
    raise RuntimeError("handlers run in the stage's worker process")


class Call(NamedTuple):
    """An input handed to a stage's worker: what `LocalStages.finish` needs to wait for it and retry it."""

    stage: StageSpec
    request: tuple[Any, ...]
    refused: Reply | None  # the first attempt's reply when the worker could not even take the input


class StagingStore(ObjectStore, Protocol):
    """Where invocations land what they wrote: the run's queued writer, or a plain `LocalStore`."""

    root: str  # workers write their objects' temporary files under it

    def put_file(self, bucket: str, key: str, tmp: str) -> None:
        """Land the object a worker wrote to `tmp` (a temporary file next to the key) as bucket/key."""


class LocalStages:
    """The stages' worker processes, and invocations of them with the clouds' retry semantics."""

    def __init__(self, loaded: LoadedSpec, store: StagingStore, logger: JsonLogger, on_line: Callable[[str, str], None],
                 notify: Callable[[str], None]) -> None:
        self.loaded = loaded
        self.store = store
        self.logger = logger
        self.on_line = on_line
        self.notify = notify
        self.retry_delay_s = 0.05
        self.envs = {s.name: stage_env(loaded, s) for s in loaded.spec.stages}
        self.processes: dict[str, StageProcess] = {}
        self.peers: list[StageProcess] = []  # every worker: each forwards the others' output while it waits
        self.dead_letterers: dict[str, StageRunner] = {}
        for stage in loaded.spec.stages:
            env = self.envs[stage.name]
            stage_logger = logger.bind(stage=stage.name)
            self.dead_letterers[stage.name] = StageRunner(Settings.from_env(env), _not_loaded, store,
                                                          Context(stage.name, logger=stage_logger, env=env), stage_logger)

    def start(self, stages: Iterable[StageSpec]) -> None:
        """Install requirements, start the stages' workers and wait until each imported its handler:
        a handler that cannot even be imported stops everything before any input is taken."""
        base = self.loaded.base_dir
        # This shell's environment, less the runtime's own settings: a stage sees only its own wiring.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_") or k == "PIPELINE_LOG_LEVEL"}
        started = []
        for stage in stages:
            paths = []
            if stage.requirements:
                shown = f"the requirements of stage {stage.name} ({stage.requirements})"
                try:
                    installed = installed_path(base, base / stage.requirements, shown, self.notify)
                except RequirementsError as exc:
                    raise LocalRunError(f"stage {stage.name}: {exc}") from None
                if installed is not None:
                    paths.append(str(installed))
            process = StageProcess(stage.name, {**inherited, **self.envs[stage.name]}, base, self.store.root, paths, stage.timeout_s,
                                   self.on_line)
            self.processes[stage.name] = process
            process.peers = self.peers
            self.peers[:] = self.processes.values()
            process.spawn()
            started.append(stage)
        for stage in started:
            error = self.processes[stage.name].ready()
            if error is not None:
                raise LocalRunError(self._load_failure(stage, error))

    @staticmethod
    def _load_failure(stage: StageSpec, error: dict[str, Any]) -> str:
        text = f"stage {stage.name}: its handler {stage.handler} could not be loaded: {error.get('type')}: {error.get('message')}"
        where = error.get("traceback") or []
        if where:
            text += "\n  at " + "\n  at ".join(where)
        if error.get("type") == "ModuleNotFoundError":
            text += ("\n  list the package in the stage's requirements file" if not stage.requirements else
                     f"\n  is it listed in {stage.requirements}, under the name it is imported by?")
        return text

    def _process(self, stage: StageSpec) -> StageProcess:
        if stage.name not in self.processes:
            self.start([stage])
        return self.processes[stage.name]

    def call(self, stage: StageSpec, request: tuple[Any, ...], batch_id: str, inputs: Inputs, stats: Stats) -> Reply | None:
        """Run one input in the stage's worker with the stage's retries, and write what it wrote; when the
        retries are exhausted, dead-letter the whole input (None)."""
        return self.finish(self.begin(stage, request), batch_id, inputs, stats)

    def begin(self, stage: StageSpec, request: tuple[Any, ...]) -> Call:
        """Hand the input to the stage's worker (its first attempt) and return while it computes; `finish`
        waits for it. The runner overlaps a stream stage's next batch with the rest of the pipeline so."""
        return Call(stage, request, self._process(stage).send(request))

    def finish(self, call: Call, batch_id: str, inputs: Inputs, stats: Stats) -> Reply | None:
        """The first attempt's reply, then the retries `call` describes; see `call`."""
        stage, request = call.stage, call.request
        process = self.processes[stage.name]
        counts = {"invocations": 1, "retries": 0}
        attempts = stage.retries + 1
        reply = call.refused or process.receive()
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                reply = process.call(request)
            if reply.status == "store_failed":  # the machine's problem, not the input's: no retry, no dead letters
                error = reply.error or {}
                raise OSError(error.get("errno"), error.get("strerror"), error.get("filename"))
            if reply.status == "ok":
                break
            self._log_crash(stage, reply, batch_id, attempt, attempts)
            if attempt < attempts:
                counts["retries"] += 1
                time.sleep(min(1.0, self.retry_delay_s * 2 ** (attempt - 1)))
        if reply.status != "ok":
            raws, identities = inputs()
            failed = self.dead_letterers[stage.name].dead_letter_all(batch_id, raws, identities, RemoteError(reply.error or {}))
            add_stats(stats, stage.name, {**counts, "failed_batches": 1, "items": failed.items, "dead_letters": failed.dead_letters})
            return None
        self._write(reply)
        result = reply.result
        items, rows, dead = result["items"], result["rows"], result["dead_letters"]
        add_stats(stats, stage.name, {**counts, "items": items, "rows": rows, "dead_letters": dead, "filtered": result.get("filtered", 0)})
        return reply

    def run_window(self, stage: StageSpec, store: LocalStore, land: Callable[[], None], cutoff: float, run: str,
                   stats: Stats, take_over: bool) -> tuple[WindowOutcome, Reply | None]:
        """One run of a stage over its window (`window.py`) on the local store: lease, listing and commit here, the
        handler in the stage's worker (with its retries, then dead letters). `land()` makes everything asked so far
        visible in `store` (the run's writer drains): before the listing, and after the output, before the commit.
        `take_over`: this process holds the store's lock (`pipeline run`, `serve`), so a lease a killed run left behind
        is taken at once; otherwise (`pipeline invoke` on a kept store) a lease held by another process is respected."""
        runner = self.dead_letterers[stage.name]
        settings = runner.settings
        windows = Windows(store, settings, runner.logger)
        land()
        begun = windows.begin(cutoff, run, take_over=take_over)
        if isinstance(begun, Skipped):
            return WindowOutcome.skipped(begun, windows.clock()), None
        try:
            objects = windows.read(begun)

            def inputs() -> tuple[list[bytes], list[dict[str, Any]]]:
                _, raws, identities, _ = StageRunner.object_rows(settings.input_bucket, objects)
                return raws, identities

            reply = self.call(stage, ("window", begun.batch_id, settings.input_bucket, objects), begun.batch_id, inputs, stats)
            if reply is None:  # retries exhausted: dead-lettered; the watermark stays, so the next run reads them again
                return WindowOutcome("dead_lettered", begun.describe()), None
            land()
            counts = reply.result
            windows.commit(begun, None, {"rows": counts["rows"], "dead_letters": counts["dead_letters"], "output": counts["output_key"]})
            result = BatchResult(begun.batch_id, counts["items"])
            result.rows, result.dead_letters, result.output_key = counts["rows"], counts["dead_letters"], counts["output_key"]
            return WindowOutcome("ran", begun.describe(), result, failed=counts.get("failed", [])), reply
        finally:
            windows.release(begun)

    def call_http(self, stage: StageSpec, body: bytes, content_type: str, stats: Stats) -> tuple[int, dict[str, Any], Reply]:
        """One request to an HTTP stage: (status, JSON answer, reply). Not retried, as no cloud retries a
        synchronous call: the caller gets the error (a 5xx) and may send the request again."""
        reply = self._process(stage).call(("http", body, content_type))
        if reply.status == "store_failed":
            error = reply.error or {}
            raise OSError(error.get("errno"), error.get("strerror"), error.get("filename"))
        if reply.status != "ok":
            self._log_crash(stage, reply, "request", 1, 1)
            error = reply.error or {}
            status = 504 if error.get("type") == "TimeoutError" else 502
            add_stats(stats, stage.name, {"invocations": 1, "failed_batches": 1})
            return status, {"error": f"{error.get('type')}: {error.get('message')}", "retryable": True}, reply
        self._write(reply)
        result = reply.result
        items, rows, dead = result["items"], result["rows"], result["dead_letters"]
        add_stats(stats, stage.name, {"invocations": 1, "items": items, "rows": rows, "dead_letters": dead,
                                      "filtered": result.get("filtered", 0), "failed_batches": int(result["status"] >= 500)})
        return result["status"], result["body"], reply

    def _log_crash(self, stage: StageSpec, reply: Reply, batch_id: str, attempt: int, attempts: int) -> None:
        if reply.status == "crashed":  # the worker logged handler failures itself; this one it could not
            error = reply.error or {}
            self.logger.log("ERROR", f"{error.get('type')}: {error.get('message')}", stage=stage.name, batch=batch_id,
                            attempt=attempt, of=attempts, where=error.get("traceback") or None)

    def _write(self, reply: Reply) -> None:
        for bucket, key, tmp in reply.puts:
            self.store.put_file(bucket, key, tmp)

    def stop(self, kill: bool = False) -> None:
        if not kill:
            for process in self.processes.values():  # every worker sees the end of its input now: they exit together
                process.hang_up()
        for process in self.processes.values():
            with contextlib.suppress(Exception):
                process.stop(kill=kill)


def output_of(reply: Reply, stage: StageSpec) -> str | None:
    """The temporary file holding the stage's output object among what the invocation wrote (None when it
    wrote no rows); `LocalStore.read_staged` reads it there, or at its key once it landed."""
    key = reply.result.get("output_key")
    return next((tmp for bucket, k, tmp in reply.puts if k == key and bucket == stage.name), None) if key else None


def object_items(bucket: str, key: str, data: bytes | Callable[[], bytes]) -> Inputs:
    """An object's items for dead letters: its lines (inflated when gzip), or the object itself when unreadable.
    `data` may be a function that reads it (only when an input is dead-lettered whole)."""
    def inputs() -> tuple[list[bytes], list[dict[str, Any]]]:
        body = data if isinstance(data, bytes) else data()
        try:
            raws = StageRunner.parse_object(body)[1]
        except Exception:  # not even readable (a broken gzip): the object itself is the one item
            raws = [body]
        return raws, [{"bucket": bucket, "key": key, "line": i} for i in range(len(raws))]
    return inputs
