"""What a field should look like, in words and with an example, for the validator errors new users meet first.

Why: pydantic's messages name its own classes and regular expressions ("Input should be a valid dictionary
or instance of UploadsSpec", "String should match pattern '^[a-z][a-z0-9-]{4,28}[a-z0-9]$'"). The likeliest
first edits (`uploads: true`, `trigger: http`, `retention_hours: 12`, a GCP project's display name) each get
the valid shape and an example to copy instead. `pipeline.spec.load` asks here when it turns a validation
error into a `Problem`; anything not described here keeps the loader's own wording.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from pipeline.errors import echo

TRIGGER_KINDS = ("stream", "objects", "schedule", "http")
TRIGGER_EXAMPLES = {
    "stream": "trigger: {stream: {batch_size: 100}}",
    "objects": "trigger: {objects: {from: <an earlier stage>}}",
    "schedule": 'trigger: {schedule: "rate(1 hour)"}',
    "http": "trigger: {http: {}}",
}

STAGE_KINDS = {"stream": "a stage on stream batches", "objects": "a stage on new objects", "schedule": "a scheduled stage", "http": "an HTTP stage"}

# Model class name -> (what it is, examples to copy). Models not listed get their first fields as the example.
MAPPINGS: dict[str, tuple[str, str]] = {
    "UploadsSpec": ("an uploads bucket's settings",
                    "write `uploads: {}` for a landing bucket named 'uploads', or `uploads: {name: landing}`; leave `uploads` out for none"),
    "StreamSpec": ("the stream's settings",
                   "write `stream: {}` for the defaults, or `stream: {partitions: auto, retention_hours: 24, archive: true}`"),
    "StreamTrigger": ("a stream trigger's options",
                      "write `stream: {}` for the defaults, or `stream: {batch_size: 500, max_batching_window_s: 5}`"),
    "HttpTrigger": ("an HTTP trigger's options",
                    "write `http: {}` to answer requests, or `http: {persist: true}` to also keep each request's rows"),
    "Trigger": ("a trigger", "one of: " + "; ".join(f"`{example}`" for example in TRIGGER_EXAMPLES.values())),
}

# (model class name, field) -> (what a valid value is, an example line)
PATTERNS: dict[tuple[str, str], tuple[str, str]] = {
    ("GcpSettings", "project"): (
        "a GCP project ID: 6-30 characters, lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen",
        "project: my-project-123`; the ID, not the display name or number: `gcloud projects list` shows it"),
    ("GcpSettings", "region"): ("a GCP region: lowercase words and a number", "region: europe-west1"),
    ("AwsSettings", "region"): ("an AWS region: area, direction and number", "region: eu-west-1"),
    ("AzureSettings", "location"): ("an Azure location name: lowercase letters and digits, no spaces or hyphens",
                                    "location: westeurope`; `az account list-locations -o table` lists them"),
    ("AlertsSpec", "webhook"): ("an https:// URL without spaces", "webhook: https://hooks.example.com/services/T000/B000"),
    ("AlertsSpec", "emails"): ("an e-mail address", "emails: [ml-oncall@example.com]"),
}

_BOUNDS = {"greater_than_equal": "ge", "greater_than": "gt", "less_than_equal": "le", "less_than": "lt"}


def _number(value: float) -> str:
    """1048576 -> 1,048,576; 0.5 -> 0.5 (never 1.04858e+06)."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,}"


def _show(value: Any) -> str:
    """A user's value as YAML would show it: true, 12, 'http'."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return echo(value)


def _first_fields(model: type[BaseModel], key: str) -> str:
    fields = []
    for name, info in list(model.model_fields.items())[:2]:
        if info.is_required() or info.exclude:
            continue
        default = info.get_default(call_default_factory=True)
        if isinstance(default, (str, int, float, bool)):
            fields.append(f"{info.alias or name}: {json.dumps(default) if isinstance(default, bool) else default}")
    return f"{key}: {{{', '.join(fields)}}}" if fields else f"{key}: {{}}"


def mapping_shape(model: type[BaseModel] | None, key: str, got: Any) -> tuple[str, str] | None:
    """(message, hint) for a scalar or list written where a mapping of settings belongs."""
    if isinstance(got, dict):
        return None
    what = "a list" if isinstance(got, list) else _show(got)
    if model is not None and model.__name__ == "Trigger" and isinstance(got, str):
        return _trigger_shape(got, what)
    if model is not None and model.__name__ == "ObjectsTrigger":
        source = got if isinstance(got, str) and got else "<an earlier stage>"
        return (f"{key} takes the stage (or uploads bucket) it reads as `from:` (got {what})", f"write `objects: {{from: {source}}}`")
    described = MAPPINGS.get(model.__name__) if model is not None else None
    if described:
        return f"{key} must be a mapping of {described[0]} (key: value lines), not {what}", described[1]
    example = _first_fields(model, key) if model is not None else f"{key}: {{NAME: value}}"
    return f"{key} must be a mapping (key: value lines), not {what}", f"e.g. `{example}`"


def _trigger_shape(got: str, what: str) -> tuple[str, str]:
    word = got.strip().lower()
    message = f"a trigger is a mapping with exactly one of {', '.join(TRIGGER_KINDS)} (got {what})"
    if word in TRIGGER_KINDS:
        return message, f"for {STAGE_KINDS[word]} write `{TRIGGER_EXAMPLES[word]}`"
    if word.startswith("rate(") or len(word.split()) == 5:
        return message, f"for a schedule write `trigger: {{schedule: {json.dumps(got.strip())}}}`"
    return message, MAPPINGS["Trigger"][1]


def bound_shape(model: type[BaseModel] | None, key: str, kind: str, got: Any) -> tuple[str, str] | None:
    """(message, hint) for a number outside its field's range: the whole range, what the field is, an example."""
    if model is None or key not in model.model_fields:
        return None
    info = model.model_fields[key]
    bounds: dict[str, Any] = {}
    for item in info.metadata:
        for name in ("ge", "gt", "le", "lt"):
            if getattr(item, name, None) is not None:
                bounds[name] = getattr(item, name)
    if _BOUNDS.get(kind) not in bounds:
        return None
    if "ge" in bounds and "le" in bounds:
        span = f"from {_number(bounds['ge'])} to {_number(bounds['le'])}"
    else:
        words = {"ge": "at least", "gt": "more than", "le": "at most", "lt": "less than"}
        span = " and ".join(f"{words[name]} {_number(bounds[name])}" for name in ("ge", "gt", "le", "lt") if name in bounds)
    default = info.get_default(call_default_factory=True)
    inside = default if isinstance(default, (int, float)) and not isinstance(default, bool) else bounds.get("ge", bounds.get("le"))
    about = (info.description or "").rstrip(".")
    shown = (str(int(inside)) if float(inside).is_integer() else str(inside)) if inside is not None else ""  # YAML takes no "1,024"
    example = f"e.g. `{key}: {shown}`" if shown else ""
    hint = "; ".join(part for part in (about, example) if part)
    return f"{key} must be {span} (got {_show(got)})", hint


def pattern_shape(model: type[BaseModel] | None, key: str, got: Any) -> tuple[str, str] | None:
    """(message, hint) for a string that does not match its field's pattern, in words, with an example."""
    if model is None:
        return None
    described = PATTERNS.get((model.__name__, key))
    if not described:
        return None
    return f"{_show(got)} is not {described[0]}", f"e.g. `{described[1]}`"


def describe(kind: str, path: tuple[str | int, ...], got: Any, model_at: Any) -> tuple[str, str] | None:
    """(message, hint) in words for the validation error `kind` at `path`, or None to keep the loader's wording.
    `model_at(path)` gives the model class owning the mapping at a path (the loader's lookup)."""
    named = [part for part in path if isinstance(part, str)]
    if not named:
        return None
    if kind in ("model_type", "dict_type"):
        return mapping_shape(model_at(path), named[-1], got)
    owner_path = path[:-1]
    key = path[-1]
    if isinstance(key, int):  # an item of a list field (alerts.emails[0]): the list's field describes it
        owner_path, key = path[:-2], path[-2]
    if not isinstance(key, str):
        return None
    if kind in _BOUNDS:
        return bound_shape(model_at(owner_path), key, kind, got)
    if kind == "string_pattern_mismatch":
        return pattern_shape(model_at(owner_path), key, got)
    return None
