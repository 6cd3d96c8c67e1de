"""The workload a comparison prices: which numbers it uses, where each came from, and the same spec at another load.

A verdict is only as good as the load it names. The spec's `workload:` may state some numbers and
leave others to the documented defaults (a stage's work, the record size), and `compare --sweep`
replaces one of them at each point; so every number the comparison prices is named here with its
origin ("spec", "default" or "sweep"), and the verdict's phrase says which ones the reader did not
choose. `with_value` makes the spec of one sweep point: the same validated spec with one workload
field replaced (validated by the same model, so a sweep point is exactly a spec that states it).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from pipeline.errors import PipelineError
from pipeline.summary import amount

if TYPE_CHECKING:
    from pipeline.spec.load import LoadedSpec
    from pipeline.spec.model import PipelineSpec, StageSpec

# Workload fields a sweep may vary: the dotted path under `workload`, what it counts, and whether it is whole.
SWEEPABLE: dict[str, tuple[str, bool]] = {
    "records_per_second": ("records/s into the stream", False),
    "record_bytes": ("bytes per record", True),
    "uploads.files_per_hour": ("uploaded files per hour", False),
    "uploads.records_per_file": ("records per uploaded file", True),
    "http.requests_per_second": ("HTTP requests per second", False),
    "http.rows_per_request": ("rows per HTTP request", True),
}
SHORT_UNITS = {"records_per_second": "rec/s", "record_bytes": "B", "uploads.files_per_hour": "files/h",
               "uploads.records_per_file": "rows/file", "http.requests_per_second": "req/s", "http.rows_per_request": "rows/req"}


def sweepable_fields(spec: PipelineSpec) -> list[str]:
    """The sweepable fields this spec uses (a field of a source the spec does not have would change nothing)."""
    return [path for path in SWEEPABLE if _relevant(spec, path)]


def _relevant(spec: PipelineSpec, path: str) -> bool:
    has_http = any(stage.trigger.http for stage in spec.stages)
    if path == "records_per_second":
        return spec.stream is not None
    if path == "record_bytes":
        return spec.stream is not None or spec.uploads is not None
    if path.startswith("uploads."):
        return spec.uploads is not None
    if path.startswith("http."):
        return has_http
    return True


def _stage_fields(stage: StageSpec) -> list[str]:
    """The per-stage work numbers that change this stage's price."""
    trigger = stage.trigger
    reads_nothing = bool(trigger.schedule) and not trigger.from_stage
    writes = not (trigger.http and not trigger.http.persist)
    fields = ["ms_per_invocation"]
    if not reads_nothing:
        fields.append("ms_per_record")
        if writes:
            fields.append("output_ratio")
    return fields


def priced_fields(spec: PipelineSpec) -> list[str]:
    """Every workload number the comparison of this spec prices, as dotted paths under `workload`."""
    paths = sweepable_fields(spec)
    for stage in spec.stages:
        paths += [f"stages.{stage.name}.{name}" for name in _stage_fields(stage)]
    return paths


def value(spec: PipelineSpec, path: str) -> float:
    """The number at `path` (defaults filled in)."""
    node: Any = spec.workload
    parts = path.split(".")
    if parts[0] == "stages":
        return float(getattr(spec.workload.stage(parts[1]), parts[2]))
    for part in parts:
        node = getattr(node, part)
    return float(node)


def _stated(spec: PipelineSpec, path: str) -> bool:
    """Whether the spec (with its overlay) states this number, rather than leaving it to the default."""
    if "workload" not in spec.model_fields_set:
        return False
    parts = path.split(".")
    node: BaseModel = spec.workload
    if parts[0] == "stages":
        stage = spec.workload.stages.get(parts[1])
        return stage is not None and parts[2] in stage.model_fields_set
    for part in parts[:-1]:
        if part not in node.model_fields_set:
            return False
        node = getattr(node, part)
    return parts[-1] in node.model_fields_set


def origins(spec: PipelineSpec, swept: str | None = None) -> dict[str, str]:
    """Each priced number's origin: "spec", "default", or "sweep" (the field `compare --sweep` varies)."""
    return {path: "sweep" if path == swept else "spec" if _stated(spec, path) else "default" for path in priced_fields(spec)}


def defaults_text(spec: PipelineSpec, swept: str | None = None, most: int = 3) -> str:
    """"record_bytes 1,024, score.output_ratio 1": the defaulted numbers (a stage's by its name), at most `most` named."""
    defaulted = [path for path, origin in origins(spec, swept).items() if origin == "default"]
    named = ", ".join(f"{path.removeprefix('stages.')} {amount(value(spec, path))}" for path in defaulted[:most])
    return named + (f" and {len(defaulted) - most} more" if len(defaulted) > most else "")


def phrase(spec: PipelineSpec, swept: str | None = None) -> str:
    """The workload a verdict names, with where its numbers came from, e.g.
    "150 records/s of 700 B (from the spec; defaults: score.output_ratio 1)"."""
    work, parts = spec.workload, []
    if spec.stream is not None:
        parts.append(f"{amount(work.records_per_second)} records/s of {work.record_bytes:,} B")
    if spec.uploads is not None:
        parts.append(f"{amount(work.uploads.files_per_hour)} uploaded files/h of {work.uploads.records_per_file:,} rows")
    if any(stage.trigger.http for stage in spec.stages):
        own = [f"{stage.name} {amount(work.http_requests_per_second(stage.name))}/s" for stage in spec.stages
               if stage.trigger.http and work.stage(stage.name).requests_per_second is not None]
        parts.append(f"{amount(work.http.requests_per_second)} HTTP requests/s of {work.http.rows_per_request:,} rows"
                     + (f" ({', '.join(own)})" if own else ""))
    found = origins(spec, swept)
    sweep = f"{swept} from --sweep" if swept else ""
    if "spec" not in found.values():
        origin = "the default workload: the spec states none, set `workload:` for yours"
        origin = f"{sweep}; otherwise {origin}" if sweep else origin
    else:
        defaults = defaults_text(spec, swept)
        origin = "; ".join(x for x in (sweep, "from the spec" if not sweep else "the rest from the spec",
                                         f"defaults: {defaults}" if defaults else "") if x)
    return f"{', '.join(parts)} ({origin})"


def with_value(loaded: LoadedSpec, path: str, number: float) -> LoadedSpec:
    """The loaded spec with workload field `path` set to `number`, validated like a spec stating it
    (PipelineError naming the field and the allowed range when the model refuses the value)."""
    if path not in SWEEPABLE:
        raise PipelineError(f"{path!r} cannot be swept; sweepable workload fields: {', '.join(SWEEPABLE)}")
    whole = SWEEPABLE[path][1]
    given: float | int = round(number) if whole else number
    spec = loaded.spec
    parts = path.split(".")
    chain: list[BaseModel] = [spec.workload]
    for part in parts[:-1]:
        chain.append(getattr(chain[-1], part))
    leaf = chain[-1]
    try:
        updated: BaseModel = type(leaf).model_validate({**leaf.model_dump(exclude_unset=True), parts[-1]: given})
    except ValidationError as exc:
        reason = exc.errors()[0].get("msg", "not a valid value")
        raise PipelineError(f"workload.{path} = {amount(given)} is not valid: {reason}") from None
    for parent, part in zip(reversed(chain[:-1]), reversed(parts[:-1]), strict=True):
        updated = parent.model_copy(update={part: updated})
    return dataclasses.replace(loaded, spec=spec.model_copy(update={"workload": updated}))
