"""The size of the environment a stage's Lambda function really gets, against Lambda's 4 KB limit.

The spec lets `environment` hold 4,000 characters, but the orchestrator (`pipeline.program`) adds its own
PIPELINE_* variables: bucket names, prefixes, the handler, the model key. Lambda refuses the whole set
above 4 KB, measured on its JSON text (its error quotes "String measured: {...}";
https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html "4 KB, for all environment
variables associated with the function, in aggregate"). This module rebuilds that set before planning:
exact values where the spec fixes them, exact lengths for autonamed buckets (their prefix plus the
26-character suffix S3 autonaming appends), so `check()` can point at the stage's `environment`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pipeline.spec.model import PipelineSpec, StageSpec
from pipeline.wiring import artifact_key, stage_env
from pipeline_aws.storage import bucket_prefix

# Lambda's pattern for a key (botocore lambda/2015-03-31 service-2.json, shape EnvironmentVariableName): a letter,
# then at least one letter, digit or '_'. The spec allows more (a leading '_', one character), which other clouds take.
NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9_]+")
# Keys Lambda's runtime sets and refuses in a function's configuration
# (https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html, "Reserved environment variables").
# The spec already refuses every AWS_* key; these are the others. TZ is not among them: the page lists it with the
# variables a function may set (LANG, PATH, PYTHONPATH, TZ, ...).
RESERVED = frozenset({"_HANDLER", "_X_AMZN_TRACE_ID", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR"})
LIMIT_BYTES = 4096
AUTONAME_SUFFIX = 26  # the provider's unique suffix after `bucket_prefix` (S3 names are at most 63 characters)


def _bucket(spec: PipelineSpec, stack: str, key: str) -> str:
    """A stand-in of the real length: the bucket's prefix plus the autonaming suffix."""
    return bucket_prefix(spec.name, stack, key) + "x" * AUTONAME_SUFFIX


def _model_key(base_dir: Path, model: str) -> str:
    path = base_dir / model
    return artifact_key(path) if path.is_file() else f"models/{'0' * 16}/{Path(model).name}"


def pipeline_variables(spec: PipelineSpec, stack: str, stage: StageSpec, base_dir: Path) -> dict[str, str]:
    """The PIPELINE_* variables the orchestrator sets for `stage` (`pipeline.wiring.stage_env`), values of the real length."""
    model = _model_key(base_dir, stage.model) if stage.model else None
    env = stage_env(spec, stack, stage, lambda key: _bucket(spec, stack, key), model)
    return {key: value for key, value in env.items() if key not in stage.environment}


def measured(variables: dict[str, str]) -> int:
    """Bytes Lambda counts: the JSON object of the variables."""
    return len(json.dumps(variables, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def name_problems(stage: StageSpec) -> list[tuple[str, str, str]]:
    """(key, message, hint) for each `environment` key Lambda's CreateFunction would refuse."""
    problems = []
    for key in stage.environment:
        if key.upper() in RESERVED:
            problems.append((key, f"stage {stage.name!r}: {key} is reserved by the Lambda runtime, which sets it itself",
                             f"rename it: Lambda reserves {', '.join(sorted(RESERVED))} and every AWS_* key"))
        elif not NAME.fullmatch(key):
            problems.append((key, f"stage {stage.name!r}: Lambda refuses the environment variable name {key!r}: it must start with a letter "
                                  "and be at least 2 characters",
                             f"use letters, digits and '_', starting with a letter, e.g. {_suggestion(key)}"))
    return problems


def _suggestion(key: str) -> str:
    stripped = key.lstrip("_0123456789") or "VALUE"
    return stripped if len(stripped) >= 2 else f"{stripped}_VALUE"


def environment_problem(spec: PipelineSpec, stack: str, stage: StageSpec, base_dir: Path) -> tuple[str, str] | None:
    """(message, hint) when the stage's whole environment is over 4 KB, else None."""
    own = pipeline_variables(spec, stack, stage, base_dir)
    total = measured({**own, **stage.environment})
    if total <= LIMIT_BYTES:
        return None
    room = LIMIT_BYTES - measured(own)
    return (f"stage {stage.name!r}: its Lambda function would get {total:,} bytes of environment variables ({measured(own):,} of "
            f"them the pipeline's own PIPELINE_* variables: bucket names, prefixes, handler), over Lambda's 4 KB ({LIMIT_BYTES:,} bytes, "
            "measured as JSON)",
            f"shorten `environment`: it has about {max(room, 0):,} bytes left (keys, values and JSON quoting)")
