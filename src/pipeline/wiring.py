"""The wiring every cloud and the local runner share: which buckets exist, where each stage reads and
writes, and the environment its function gets. Pure data from the spec (no Pulumi), so the program
(`pipeline.program`), a backend's own checks and `pipeline run` all derive it from one place.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pipeline.roles import BucketSpec
from pipeline.sizing import MEMORY_USABLE, OBJECT_HELD_FACTOR
from pipeline.spec.model import PipelineSpec, StageSpec

T = TypeVar("T")


def stage_prefix(stage: str) -> str:
    """Every bucket keeps its data under `<key>/`: a stage's outputs, the uploads, dead letters per stage."""
    return f"{stage}/"


def state_prefix(stage: str) -> str:
    """Where a schedule stage keeps its watermark, in its own output bucket (outside its output prefix,
    so it never triggers a consumer)."""
    return f"_state/{stage}/"


# How long before it shows in a listing an object's last-modified time may be, per kind of source. A windowed
# stage keeps the keys it read this recently, so an object that appears late is read once, not missed or read twice:
# S3 dates a multipart upload at its start, and every uploads bucket aborts incomplete multipart uploads after one
# day (AWS lifecycle rule), so an upload appears at most a day after its date; a stage's own outputs are single
# writes, bounded by the writing function's timeout.
UPLOAD_LATENESS_S = 25 * 3600
OUTPUT_LATENESS_MARGIN_S = 300


def window_lateness_s(spec: PipelineSpec, source: str) -> int:
    """Seconds an object of `source` may appear in a listing after its last-modified time (see above)."""
    if source == spec.uploads_name:
        return UPLOAD_LATENESS_S
    return spec.stage(source).timeout_s + OUTPUT_LATENESS_MARGIN_S


def window_max_bytes(stage: StageSpec) -> int:
    """Most bytes of source objects one window run reads (the rest waits for the next run), so a backlog after an
    outage is taken in runs that fit the stage's memory (the runtime holds about OBJECT_HELD_FACTOR x what it reads)."""
    return int(stage.memory_mb * 2**20 * MEMORY_USABLE / OBJECT_HELD_FACTOR)


def writes_objects(stage: StageSpec) -> bool:
    """See `StageSpec.writes_objects`."""
    return stage.writes_objects


def has_bucket(stage: StageSpec) -> bool:
    """A stage gets its own bucket for its outputs, or for a windowed stage's watermark and lease."""
    return writes_objects(stage) or bool(stage.trigger.window_source)


def bucket_plan(spec: PipelineSpec) -> list[BucketSpec]:
    """The buckets a pipeline needs: raw archive, uploads, one per stage's output, dead letters, models."""
    read = {s.trigger.source for s in spec.stages if s.trigger.objects}
    buckets = []
    if spec.stream is not None and spec.stream.archive:
        buckets.append(BucketSpec("raw", "raw stream records", spec.storage.raw_days))
    if spec.uploads is not None:
        name = spec.uploads.name
        buckets.append(BucketSpec(name, "files uploaded by producers", spec.storage.uploads_days, notify=name in read))
    for stage in spec.stages:
        consumed = bool(spec.consumers_of(stage.name))
        days = spec.storage.intermediate_days if consumed else spec.storage.final_days
        kind = "intermediate" if consumed else "final"
        if has_bucket(stage):
            buckets.append(BucketSpec(stage.name, f"{kind} outputs of stage {stage.name}", days, notify=stage.name in read))
    buckets.append(BucketSpec("dead-letter", "records and events that kept failing", spec.storage.dead_letter_days))
    if any(stage.model for stage in spec.stages):
        buckets.append(BucketSpec("artifacts", "model artifacts", None, data=False))
    return buckets


def artifact_key(path: Path) -> str:
    """Content-addressed object key, so a changed model is a new object and a redeploy."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return f"models/{digest}/{path.name}"


def stage_env(spec: PipelineSpec, stack: str, stage: StageSpec, bucket: Callable[[str], T], model_key: T | None = None) -> dict[str, T | str]:
    """The PIPELINE_* variables a stage's function gets (the runtime's `Settings.from_env` reads them), then
    the spec's own `environment`. `bucket(key)` names a bucket of `bucket_plan` (a Pulumi Output when
    deploying, a plain name locally); `model_key` is the model's object key when the stage has a model."""
    env: dict[str, T | str] = {
        "PIPELINE_NAME": spec.name,
        "PIPELINE_STACK": stack,
        "PIPELINE_STAGE": stage.name,
        "PIPELINE_TRIGGER": stage.trigger.kind,
        "PIPELINE_HANDLER": stage.handler,
        "PIPELINE_DEAD_LETTER_BUCKET": bucket("dead-letter"),
        "PIPELINE_DEAD_LETTER_PREFIX": stage_prefix(stage.name),
    }
    if writes_objects(stage):
        env["PIPELINE_OUTPUT_BUCKET"] = bucket(stage.name)
        env["PIPELINE_OUTPUT_PREFIX"] = stage_prefix(stage.name)
    source = stage.trigger.source
    if source is not None:
        env["PIPELINE_INPUT_BUCKET"] = bucket(source)
        env["PIPELINE_INPUT_PREFIX"] = stage_prefix(source)
    window = stage.trigger.window_source
    if window:
        env["PIPELINE_STATE_BUCKET"] = bucket(stage.name)
        env["PIPELINE_STATE_PREFIX"] = state_prefix(stage.name)
        env["PIPELINE_WINDOW_LATENESS_S"] = str(window_lateness_s(spec, window))
        env["PIPELINE_WINDOW_MAX_BYTES"] = str(window_max_bytes(stage))
        env["PIPELINE_TIMEOUT_S"] = str(stage.timeout_s)  # a window's lease outlives a run the platform stops at its timeout
    if stage.model and model_key is not None:
        env["PIPELINE_MODEL_BUCKET"] = bucket("artifacts")
        env["PIPELINE_MODEL_KEY"] = model_key
    env.update(stage.environment)
    return env
