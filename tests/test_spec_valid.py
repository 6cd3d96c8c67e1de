"""Valid specs: the example and its stacks load, overlays merge as documented, defaults hold,
the JSON Schema is usable, and YAML 1.2 rules apply (no Norway problem)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from pipeline.spec import safe_yaml
from pipeline.spec.load import load_spec
from pipeline.spec.model import PipelineSpec
from pipeline.spec.schedule import Cron, Rate, parse_schedule

MINIMAL = """\
name: demo
stages:
  - name: first
    handler: handlers/h.py:handle
    trigger:
      stream: {}
"""


# --- the example -----------------------------------------------------------------------


@pytest.mark.parametrize("stack", [None, "dev", "prod"])
def test_example_loads(example_spec: Path, stack: str | None) -> None:
    loaded = load_spec(example_spec, stack)
    spec = loaded.spec
    assert loaded.stack == (stack or "default")
    assert loaded.path == example_spec.resolve()
    assert spec.name == "txn-scoring"
    assert [s.name for s in spec.stages] == ["preprocess", "score", "calibrate"]
    assert [s.trigger.kind for s in spec.stages] == ["stream", "objects", "schedule"]
    assert spec.stages[1].trigger.objects is not None and spec.stages[1].trigger.objects.from_stage == "preprocess"
    assert spec.tags["team"] == "risk-ml" and spec.tags["cost-center"] == "4711"


def test_example_without_stack_uses_base_values(example_spec: Path) -> None:
    spec = load_spec(example_spec).spec
    assert spec.workload.records_per_second == 1500
    assert spec.stage("score").memory_mb == 1024
    assert spec.stream.retention_hours == 24
    assert "env" not in spec.tags


def test_dev_overlay_takes_effect(example_spec: Path) -> None:
    loaded = load_spec(example_spec, "dev")
    spec = loaded.spec
    assert spec.workload.records_per_second == 150
    assert spec.workload.record_bytes == 700  # sibling keys of an overridden mapping stay
    assert spec.storage.raw_days == 7 and spec.storage.final_days == 30 and spec.storage.intermediate_days == 7
    assert spec.tags == {"team": "risk-ml", "cost-center": "4711", "env": "dev"}
    # stages merge by name: only score's memory changes, its other fields and the other stages stay
    score = spec.stage("score")
    assert score.memory_mb == 512
    assert score.timeout_s == 120
    assert score.model == "models/fraud-model.json"
    assert score.requirements == "handlers/requirements.txt"
    assert score.handler == "handlers/score.py:score"
    assert [s.name for s in spec.stages] == ["preprocess", "score", "calibrate"]
    assert spec.stage("preprocess").memory_mb == 512 and spec.stage("calibrate").memory_mb == 256


def test_dev_overlay_positions_follow_the_values(example_spec: Path) -> None:
    loaded = load_spec(example_spec, "dev")
    overlay = str(example_spec.parent / "stacks" / "dev.yaml")
    base = str(example_spec)
    assert loaded.positions[("workload", "records_per_second")].file == overlay
    assert loaded.positions[("stages", 1, "memory_mb")].file == overlay
    assert loaded.positions[("stages", 1, "timeout_s")].file == base
    assert loaded.positions[("workload", "record_bytes")].file == base


def test_prod_overlay_takes_effect(example_spec: Path) -> None:
    spec = load_spec(example_spec, "prod").spec
    assert spec.stream.retention_hours == 168
    assert spec.workload.records_per_second == 1500
    assert spec.tags["env"] == "prod"
    assert spec.stage("score").memory_mb == 1024


def test_overlay_can_add_a_stage(write_spec) -> None:
    path = write_spec(MINIMAL, files={"stacks/dev.yaml": """\
        stages:
          - name: nightly
            handler: handlers/h.py:handle
            trigger: {schedule: rate(1 day)}
        """})
    spec = load_spec(path, "dev").spec
    assert [s.name for s in spec.stages] == ["first", "nightly"]
    assert spec.stage("nightly").trigger.parsed_schedule == Rate(1, "days")


def test_overlay_replaces_scalars_and_lists(write_spec) -> None:
    path = write_spec(MINIMAL + "stream:\n  partitions: 4\n", files={"stacks/dev.yaml": "stream:\n  partitions: auto\n"})
    assert load_spec(path).spec.stream.partitions == 4
    assert load_spec(path, "dev").spec.stream.partitions == "auto"


# --- defaults ---------------------------------------------------------------------------


def test_minimal_spec_gets_documented_defaults(write_spec) -> None:
    spec = load_spec(write_spec(MINIMAL)).spec
    assert spec.description == ""
    assert spec.stream.partitions == "auto"
    assert spec.stream.retention_hours == 24
    assert spec.stream.archive is True
    stage = spec.stages[0]
    assert stage.trigger.kind == "stream"
    assert stage.trigger.stream is not None
    assert stage.trigger.stream.batch_size == 100
    assert stage.trigger.stream.max_batching_window_s == 5
    assert stage.trigger.stream.starting_position == "latest"
    assert (stage.memory_mb, stage.timeout_s, stage.retries, stage.max_event_age_s) == (512, 60, 3, 3600)
    assert stage.environment == {} and stage.requirements is None and stage.model is None
    assert (spec.storage.raw_days, spec.storage.intermediate_days, spec.storage.final_days, spec.storage.dead_letter_days) == (30, 7, 365, 14)
    assert spec.workload.records_per_second == 100.0 and spec.workload.record_bytes == 1024
    work = spec.workload.stage("first")
    assert (work.ms_per_record, work.ms_per_invocation, work.output_ratio) == (1.0, 100.0, 1.0)
    assert spec.workload_given is False
    assert spec.uploads is None and spec.alerts.emails == [] and spec.alerts.webhook is None
    assert (spec.workload.http.requests_per_second, spec.workload.http.rows_per_request) == (1.0, 10)
    assert (spec.workload.uploads.files_per_hour, spec.workload.uploads.records_per_file) == (60.0, 10_000)
    assert spec.clouds.aws.region == "us-east-1" and spec.clouds.aws.stream_mode == "provisioned"
    assert spec.clouds.gcp.project is None and spec.clouds.gcp.region == "us-central1"
    assert spec.clouds.azure.location == "eastus"
    assert spec.tags == {}


def test_boundary_values_are_accepted(write_spec) -> None:
    text = MINIMAL.replace("stream: {}", "stream: {batch_size: 10000, max_batching_window_s: 0}") + (
        "    memory_mb: 128\n    timeout_s: 900\n    retries: 0\n"
        "stream:\n  retention_hours: 168\n  partitions: 1024\n"
    )
    spec = load_spec(write_spec(text + "workload:\n  stages:\n    first: {ms_per_record: 0, ms_per_invocation: 900000, output_ratio: 0}\n")).spec
    assert spec.stages[0].memory_mb == 128 and spec.stages[0].timeout_s == 900 and spec.stages[0].retries == 0
    assert spec.stream.retention_hours == 168 and spec.stream.partitions == 1024
    assert spec.workload.stage("first").ms_per_invocation == 900_000 and spec.workload_given


def test_both_reference_architectures_are_expressible(write_spec) -> None:
    """Uploads only (no stream), an HTTP stage, and a schedule over accumulated outputs."""
    text = (MINIMAL.replace("stream: {}", "objects: {from: uploads}")
            + "  - name: api\n    handler: handlers/h.py:handle\n    trigger: {http: {persist: true}}\n"
            + "  - name: nightly\n    handler: handlers/h.py:handle\n    trigger: {schedule: '0 2 * * *', from: first}\n"
            + "uploads: {}\nalerts: {emails: [ops@example.com], webhook: 'https://hooks.example.com/x'}\n")
    spec = load_spec(write_spec(text)).spec
    assert spec.stream is None and spec.uploads is not None and spec.uploads.prefix == "uploads/"
    kinds = [(s.name, s.trigger.kind, s.trigger.source) for s in spec.stages]
    assert kinds == [("first", "objects", "uploads"), ("api", "http", None), ("nightly", "schedule", "first")]
    assert [s.name for s in spec.consumers_of("first")] == ["nightly"]


@pytest.mark.parametrize(("name", "stage"), [("abc", "ab"), ("a" * 20, "b" * 20), ("a1-b2-c3", "x9"), ("txn-scoring", "s-1")])
def test_name_boundaries(write_spec, name: str, stage: str) -> None:
    spec = load_spec(write_spec(MINIMAL.replace("name: demo", f"name: {name}").replace("name: first", f"name: {stage}"))).spec
    assert (spec.name, spec.stages[0].name) == (name, stage)


@pytest.mark.parametrize(("text", "expected"), [
    ("rate(1 minute)", Rate(1, "minutes")),
    ("rate(5 minutes)", Rate(5, "minutes")),
    ("rate(2 days)", Rate(2, "days")),
    ("*/15 * * * *", Cron("*/15", "*", "*", "*", "*")),
    ("0 6 * * MON-FRI", Cron("0", "6", "*", "*", "MON-FRI")),
    ("0 0 1 JAN,jul 7", Cron("0", "0", "1", "JAN,jul", "7")),
])
def test_valid_schedules(text: str, expected: object) -> None:
    assert parse_schedule(text) == expected


def test_handler_in_subfolder_and_async_function(write_spec) -> None:
    path = write_spec(MINIMAL.replace("handlers/h.py:handle", "src/jobs/a.py:run"),
                      files={"src/jobs/a.py": "import os\n\nasync def run(records, context):\n    return []\n"})
    assert load_spec(path).spec.stages[0].handler_function == "run"


def test_utf8_bom_and_crlf_are_fine(write_spec) -> None:
    raw = b"\xef\xbb\xbf" + MINIMAL.replace("\n", "\r\n").encode()
    assert load_spec(write_spec(raw=raw)).spec.name == "demo"


def test_anchors_and_a_few_aliases_are_allowed(write_spec) -> None:
    text = MINIMAL + "  - name: second\n    handler: handlers/h.py:handle\n    trigger: &t\n      objects: {from: first}\n" \
        "  - name: third\n    handler: handlers/h.py:handle\n    trigger: *t\n"
    spec = load_spec(write_spec(text)).spec
    assert [s.trigger.kind for s in spec.stages] == ["stream", "objects", "objects"]


def test_schema_has_stages_and_from_alias() -> None:
    schema = PipelineSpec.model_json_schema(by_alias=True)
    assert "stages" in schema["properties"]
    assert set(schema["required"]) == {"name", "stages"}
    objects = schema["$defs"]["ObjectsTrigger"]
    assert "from" in objects["properties"] and "from_stage" not in objects["properties"]


def test_objects_trigger_accepts_from_stage_name_too(write_spec) -> None:
    text = MINIMAL + "  - name: second\n    handler: handlers/h.py:handle\n    trigger:\n      objects: {from_stage: first}\n"
    spec = load_spec(write_spec(text)).spec
    assert spec.consumers_of("first")[0].name == "second"


# --- YAML 1.2 semantics -------------------------------------------------------------------


def test_norway_problem_words_stay_strings(write_spec) -> None:
    text = (MINIMAL.replace("name: demo", "name: off").replace("name: first", "name: no")
            + "    environment:\n      FLAG: on\n      OTHER: Off\n      N: n\n"
            + "description: no\ntags:\n  enabled: yes\n  country: no\n  y: y\n")
    spec = load_spec(write_spec(text)).spec
    assert spec.name == "off"
    assert spec.stages[0].name == "no"
    assert spec.stages[0].environment == {"FLAG": "on", "OTHER": "Off", "N": "n"}
    assert spec.description == "no"
    assert spec.tags == {"enabled": "yes", "country": "no", "y": "y"}


def test_quoted_numbers_stay_strings(write_spec) -> None:
    spec = load_spec(write_spec(MINIMAL + "tags:\n  cost-center: \"4711\"\n  zip: '01234'\n")).spec
    assert spec.tags == {"cost-center": "4711", "zip": "01234"}


_SCALARS = (b"a: 1\nb: true\nc: null\nd: 0x10\ne: 1.5\nf: \"1\"\ng: no\nh: on\ni: 010\nj: 0o17\nk: .inf\n"
            b"l: yes\nm: ~\nn: False\no: -3\np: 'true'\nq:\n")
_EXPECTED = {"a": 1, "b": True, "c": None, "d": 16, "e": 1.5, "f": "1", "g": "no", "h": "on", "i": 10, "j": 15, "k": math.inf,
             "l": "yes", "m": None, "n": False, "o": -3, "p": "true", "q": None}
_LIBYAML = ("safe_yaml: under libyaml (CSafeLoader) plain scalars have style '' (not None), so `plain` is False and every "
            "unquoted scalar is returned as a string ('1', 'true', 'null', '0x10')")


@pytest.mark.parametrize("loader", [
    "python",
    pytest.param("libyaml"),
])
def test_yaml_12_core_schema_scalars(monkeypatch: pytest.MonkeyPatch, loader: str) -> None:
    if loader == "python":
        monkeypatch.delattr(yaml, "CSafeLoader", raising=False)
    elif not getattr(yaml, "__with_libyaml__", False):
        pytest.skip("PyYAML built without libyaml")
    data = safe_yaml.load_yaml(_SCALARS, "x.yaml").data
    assert data == _EXPECTED
    assert {k: type(v) for k, v in data.items()} == {k: type(v) for k, v in _EXPECTED.items()}


def test_explicit_null_means_unset(write_spec) -> None:
    text = MINIMAL + "    requirements: null\n    model: ~\nclouds:\n  gcp:\n    project: null\n"
    spec = load_spec(write_spec(text)).spec
    assert spec.stages[0].requirements is None and spec.stages[0].model is None
    assert spec.clouds.gcp.project is None


def test_hex_and_octal_numbers(write_spec) -> None:
    spec = load_spec(write_spec(MINIMAL + "stream:\n  partitions: 0x10\n  retention_hours: 0o60\n")).spec
    assert spec.stream.partitions == 16 and spec.stream.retention_hours == 48
