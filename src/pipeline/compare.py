"""Plan several clouds in one process and line them up role by role.

Every backend runs the same orchestrator, so role keys ("stream", "score-function", ...) are
the same on every cloud: that is what lets one row of the comparison hold a Kinesis stream,
a Pub/Sub topic and an Event Hubs namespace side by side. Costs and limits come from each
backend; the verdict (cheapest cloud, limits the spec exceeds) is computed here, once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from pipeline import sdk_modules, verdict
from pipeline.backend import backend_class
from pipeline.cloud_checks import merged, problems_for
from pipeline.comparison import CloudColumn, Lineup
from pipeline.errors import PipelineError, Problem, SpecError
from pipeline.faces import Catalogue
from pipeline.plan import Plan
from pipeline.planner import plan as make_plan
from pipeline.sizing import latency_paths
from pipeline.spec.load import LoadedSpec

# How a column gets its plan: the planner by default; `compare --sweep` passes one that re-plans only when a
# cloud's design changes (pipeline.sweep).
PlanSource = Callable[[LoadedSpec, Catalogue, "CloudColumn"], Plan]

COMPARISON_SCHEMA_VERSION = 2
# What the totals mean, the same on every cloud; carried in the JSON and printed under every view.
DEFINITIONS = {
    "identities": "principals the plan creates (roles, service accounts, managed identities, producer policies/identities)",
    "permission_grants": "one principal allowed one role or action set on one resource scope: an IAM policy statement counts once "
                         "per resource it names; a role assignment, an IAM member binding or a resource-policy permission counts once",
    "capacity": "records per second a stage (or the stream) can carry as planned, against what reaches it; sized with 25 % headroom",
    "latency": "typical and worst-case seconds along each path from a source to a last stage: trigger waits plus invocation times, "
               "estimated from the sizing",
    "max_stage_timeout_s": "the platform's longest invocation for each trigger kind the spec uses, as planned (the spec's own "
                           "timeouts must fit within it)",
    "workload": "the numbers every cloud is sized and priced for, each from the spec, the documented default, or --sweep",
}


@dataclass
class Comparison(Lineup):
    """A comparison as `pipeline compare` returns it: the lined-up clouds, the verdict, and the documented JSON."""

    def verdicts(self) -> list[str]:
        """One line per finding (see `pipeline.verdict`)."""
        return verdict.findings(self)

    def assumptions(self) -> list[str]:
        """What the comparison holds equal across clouds and what it does not (see `pipeline.verdict`)."""
        return verdict.assumptions(self)

    def to_dict(self) -> dict[str, Any]:
        """The stable, documented JSON shape (see README, 'compare --format json')."""
        return {
            "schema_version": COMPARISON_SCHEMA_VERSION,
            "pipeline": self.pipeline,
            "stack": self.stack,
            "free_tier": self.free_tier,
            "hours_per_month": 730,
            "definitions": DEFINITIONS,
            "workload": self.workload(),
            "assumptions": self.assumptions(),
            "clouds": {
                c.cloud: {
                    "title": c.title,
                    "location": c.location,
                    "planned": c.ok,
                    "problems": c.problems,
                    "totals": c.totals(),
                    "stream": c.stream,
                    "stages": c.stages,
                    "latency": c.latency.to_dict() if c.latency else None,
                    "latency_paths": [latency.to_dict() for latency in c.latency_paths],
                    "limits": asdict(c.limits) if c.limits else None,
                    "cost": c.cost.to_dict() if c.cost else None,
                    "cost_by_role": {k: round(v, 4) for k, v in c.cost.by_role().items()} if c.cost else {},
                    "cost_error": c.cost_error,
                    "assumptions": c.cost.assumptions if c.cost else [],
                    "unpriced": c.cost.unpriced if c.cost else [],
                    "verify": c.cost.to_verify if c.cost else [],
                    "verify_usd": round(c.verify_usd, 4),
                    "compute": {stage: asdict(compute) for stage, compute in c.compute.items()},
                    "data_protection": c.data_protection,
                }
                for c in self.columns
            },
            "roles": [
                {
                    "role": key,
                    "kind": kind,
                    "clouds": {
                        c.cloud: [{"type": r.type, "name": r.physical_name, "logical": r.name, "inputs_sha256": c.plan.inputs_sha256(r),
                                   "inputs": c.plan.portable_inputs(r)}  # for `pipeline diff`: what changed, secrets masked as in the JSON plan
                                  for r in c.plan.by_role().get(key, [])]
                        for c in self.planned()
                        if c.plan
                    },
                }
                for key, kind in self.roles()
            ],
            "verdicts": self.verdicts(),
        }



def _planned(loaded: LoadedSpec, backend: Catalogue, column: CloudColumn) -> Plan:
    """The default plan source: plan this cloud afresh."""
    return make_plan(loaded, backend.name)


def _column(loaded: LoadedSpec, name: str, free_tier: bool, plans: PlanSource = _planned) -> CloudColumn:
    """One cloud: whether it can express and carry the spec (the planner's own preflight), then its sizing,
    latency, limits and cost, then its plan (from `plans`). A cloud that fails has problems and nothing else."""
    sdk_modules.install()  # before the backend (and its SDKs) is imported; see pipeline.sdk_modules
    cls = backend_class(name)
    backend: Catalogue = cls(loaded.spec, loaded.stack, loaded.base_dir)
    column = CloudColumn(name, cls.title, backend.location(), grant_types=cls.grant_types, key_settings=cls.key_settings)
    located = problems_for(loaded, backend)  # the planner's own preflight, located as `validate` says it
    if located:
        column.located = located
        column.problems = _problem_lines(located)
        return column
    column.latency_paths = latency_paths(loaded.spec, backend.sizing())
    try:
        column.limits = backend.limits()
    except NotImplementedError as exc:
        column.limits_error = str(exc)
    try:
        column.cost = backend.estimate_cost(free_tier)
    except (PipelineError, NotImplementedError) as exc:
        column.cost_error = str(exc)
    try:
        column.compute = {stage.name: backend.compute(stage) for stage in loaded.spec.stages}
        column.data_protection = backend.data_protection()
    except NotImplementedError:
        pass  # the comparison's assumptions leave this cloud out of those lines
    try:
        column.plan = plans(loaded, backend, column)
    except SpecError as exc:  # the program itself refused (e.g. a shipped file changed since validation)
        return CloudColumn(name, cls.title, backend.location(), problems=_problem_lines(exc.problems), located=exc.problems, grant_types=cls.grant_types,
                           key_settings=cls.key_settings)
    column.identities = sum(1 for r in column.plan.cloud_resources if r.type in cls.identity_types)
    column.permission_grants = backend.count_grants(column.plan)
    return column


def _problem_lines(problems: list[Problem]) -> list[str]:
    return [f"{p.path}: {p.message}" if p.path else p.message for p in problems]


def compare(loaded: LoadedSpec, clouds: list[str], free_tier: bool = False, jobs: int = 1) -> Comparison:
    """Plan, size, price and check the spec on each cloud: one after another in this process, or with
    `jobs` > 1 up to that many clouds at once in child processes (each imports only its own SDK)."""
    if not clouds:
        raise PipelineError("name at least one cloud to compare")
    parallel = jobs > 1 and len(clouds) > 1
    columns = _columns_in_processes(loaded, clouds, free_tier, jobs) if parallel else [_column(loaded, name, free_tier) for name in clouds]
    if not any(c.ok for c in columns):  # each problem at its field's line, shared ones once (as `validate` says them)
        raise SpecError(merged([(c.title, c.located) for c in columns]))
    return Comparison(loaded.spec.name, loaded.stack, free_tier, columns, loaded.spec)


def compare_point(loaded: LoadedSpec, clouds: list[str], free_tier: bool, plans: PlanSource, swept: str | None) -> Comparison:
    """One point of `compare --sweep`: the same columns `compare` builds, with plans from `plans`, and the
    comparison kept even when no cloud can carry the load (a sweep shows such a point, it does not stop)."""
    columns = [_column(loaded, name, free_tier, plans) for name in clouds]
    return Comparison(loaded.spec.name, loaded.stack, free_tier, columns, loaded.spec, swept)


def _columns_in_processes(loaded: LoadedSpec, clouds: list[str], free_tier: bool, jobs: int) -> list[CloudColumn]:
    """One child process per cloud, at most `jobs` at a time; columns come back pickled, in order.

    Forked where the platform can (the spec is already loaded and validated), spawned elsewhere.
    Helps when there is a free core per cloud: on a busy 2-core machine three SDK imports and
    plans side by side are no faster than in turn (see benchmarks/speed.py), hence the default of 1."""
    import multiprocessing

    context: Any = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    columns: list[CloudColumn] = []
    for start in range(0, len(clouds), jobs):
        running = []
        for name in clouds[start:start + jobs]:
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(target=_column_in_child, args=(sender, loaded, name, free_tier), daemon=True)
            process.start()
            sender.close()
            running.append((name, receiver, process))
        try:
            for name, receiver, process in running:
                try:
                    outcome, value = receiver.recv()
                except (EOFError, OSError):
                    outcome, value = "error", PipelineError(f"planning {name} failed: its worker process ended without an answer "
                                                            f"(exit code {process.exitcode}); run with --jobs 1 to see why")
                finally:
                    receiver.close()
                process.join()
                if outcome != "ok":
                    raise value
                columns.append(value)
        finally:  # Ctrl-C or a failed cloud: no worker outlives the command (the console script exits without teardown)
            for _, _, process in running:
                if process.is_alive():
                    process.kill()
                    process.join()
    return columns


def _column_in_child(sender: Any, loaded: LoadedSpec, name: str, free_tier: bool) -> None:
    """Plan one cloud, send the column (or the error) back and leave at once (no teardown)."""
    import gc
    import os
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to report; it ends this worker
    gc.disable()
    try:
        answer: tuple[str, Any] = ("ok", _column(loaded, name, free_tier))
    except (PipelineError, SpecError) as exc:
        answer = ("error", exc)
    except Exception as exc:  # a backend bug: reported like the in-process path reports it
        answer = ("error", PipelineError(f"planning for {name} failed: {type(exc).__name__}: {exc}"))
    try:
        sender.send(answer)
    finally:
        sender.close()
        os._exit(0)
