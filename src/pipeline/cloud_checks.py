"""What each cloud cannot do with a spec, found without planning: one check for validate, plan, compare and deploy.

Why one place: `validate` used to check only what a backend's `check()` says (regions, schedules,
names), while `plan` and `compare` also sized every stage and refused a plan that cannot carry
its workload (a timeout shorter than one invocation, a schedule that reads more rows than its
memory holds, a stage below its demand). A spec could pass `validate` and then fail every cloud.
Here both checks run for every cloud, in pure Python (each backend's `check`, `size_stream`,
`size_stage` and `pipeline.sizing.capacity_problems`: no Pulumi program, no mock engine), and
every command reports the result the same way: each problem at the line of the field to change
(or, when the field is not in the spec, where to add it) with its hint, and a problem several
clouds share reported once, naming them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pipeline.errors import Problem, SpecError
from pipeline.sizing import capacity_problems
from pipeline.spec.load import format_path, spec_problems

if TYPE_CHECKING:
    from pipeline.faces import Catalogue
    from pipeline.spec.load import LoadedSpec


def problems_for(loaded: LoadedSpec, backend: Catalogue) -> list[Problem]:
    """Every problem `backend`'s cloud has with the spec, located, without the cloud's name (see `merged`).

    The sizing checks run even when `check()` found something, so one round lists everything; a
    sizing that cannot run on a spec the cloud already refused adds nothing rather than failing."""
    found = list(backend.check())
    try:
        sizing = backend.sizing()
    except Exception:
        if not found:
            raise
    else:
        found += capacity_problems(loaded.spec, sizing, backend.title)
    located = spec_problems(loaded, found).problems
    return [_for_cloud(loaded, problem, raw[0], backend.title) for problem, raw in zip(located, found, strict=True)]


def _for_cloud(loaded: LoadedSpec, problem: Problem, field_path: Sequence[str | int], title: str) -> Problem:
    """The message without the cloud's name (the caller names the clouds once), and for a field the
    spec leaves at its default, where to add it."""
    message = problem.message.replace(f" on {title}", "")
    hint = problem.hint
    path = tuple(field_path)
    if path and path not in loaded.positions and isinstance(path[-1], str):
        parent = _present_parent(loaded, path)
        where = f"under {format_path(parent)}" if parent else "at the top level"
        stage = _stage_name(loaded, path)
        add = f"{path[-1]} is not set (its default applies): add it {where}" + (f" (stage {stage!r})" if stage else "")
        hint = f"{hint}; {add}" if hint else add
    return Problem(message, file=problem.file, line=problem.line, column=problem.column, path=problem.path, hint=hint)


def _present_parent(loaded: LoadedSpec, path: tuple[str | int, ...]) -> tuple[str | int, ...]:
    for n in range(len(path) - 1, 0, -1):
        if path[:n] in loaded.positions:
            return path[:n]
    return ()


def _stage_name(loaded: LoadedSpec, path: tuple[str | int, ...]) -> str:
    if len(path) >= 2 and path[0] == "stages" and isinstance(path[1], int) and path[1] < len(loaded.spec.stages):
        return loaded.spec.stages[path[1]].name
    return ""


def merged(per_cloud: Sequence[tuple[str, Sequence[Problem]]]) -> list[Problem]:
    """Problems of several clouds (title, problems), each named by the clouds that have it: a problem
    AWS, GCP and Azure share is one line ("AWS, GCP, Azure: ..."), not three. Ordered by where they
    are in the spec, so they read top to bottom."""
    clouds: dict[Problem, list[str]] = {}
    for title, problems in per_cloud:
        for problem in problems:
            clouds.setdefault(problem, []).append(title)
    ordered = sorted(clouds, key=lambda p: (p.file, p.line or 0, p.column or 0))
    return [Problem(f"{', '.join(clouds[p])}: {p.message}", file=p.file, line=p.line, column=p.column, path=p.path, hint=p.hint)
            for p in ordered]


def check_clouds(loaded: LoadedSpec, backends: Sequence[Catalogue]) -> None:
    """Raise one SpecError listing every problem of every cloud in `backends` (nothing if all can plan)."""
    problems = merged([(backend.title, problems_for(loaded, backend)) for backend in backends])
    if problems:
        raise SpecError(problems)
