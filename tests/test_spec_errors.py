"""Malformed specs: each must raise SpecError naming the file, line, column, field path and
a message a user can act on -- never a traceback or a bare pydantic/YAML message."""

from __future__ import annotations

import random
import re
import subprocess
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import EllipsisType

import pytest
from hostile import Mutation, file_mutation, name_mutation, path_mutation, prepare_project

from pipeline.errors import Problem, SpecError
from pipeline.spec.load import load_spec

HANDLER = "handlers/h.py:handle"


def spec(body: str) -> str:
    return textwrap.dedent(body).lstrip("\n")


# Two stages; most cases below are small edits of this layout so line numbers are easy to read.
TWO_STAGES = spec("""
    name: demo
    stages:
      - name: first
        handler: handlers/h.py:handle
        trigger:
          stream: {}
      - name: second
        handler: handlers/h.py:handle
        trigger:
          objects:
            from: first
""")


def one_stage(extra: str = "", trigger: str = "stream: {}", top: str = "", name: str = "demo", stage_name: str = "first",
              handler: str = HANDLER) -> str:
    """name (line 1), stages (2), - name (3), handler (4), trigger (5), trigger body (6), extra stage lines (7+),
    then top-level lines."""
    text = f"name: {name}\nstages:\n  - name: {stage_name}\n    handler: {handler}\n    trigger:\n      {trigger}\n"
    for line in textwrap.dedent(extra).strip("\n").splitlines() if extra else []:
        text += f"    {line}\n"
    if top:
        text += textwrap.dedent(top).strip("\n") + "\n"
    return text


@dataclass
class Case:
    id: str
    text: str | bytes
    line: int | EllipsisType | None  # expected 1-based line (None: no line, e.g. an empty file; ...: don't check)
    at: str | None  # substring on that line where the column must point (None: don't check the column)
    path: str | None  # expected dotted field path (None: a YAML-level problem with no field)
    words: tuple[str, ...]  # must all appear in the message (+ hint), case-insensitive
    file: str = "pipeline.yaml"  # relative to the spec folder
    files: dict[str, str | bytes] = field(default_factory=dict)
    stack: str | None = None
    column: int | None = None  # explicit column when `at` can't express it
    count: int = 1  # how many problems the spec must produce


def c(*args: object, **kwargs: object) -> Case:
    return Case(*args, **kwargs)  # type: ignore[arg-type]


BILLION_LAUGHS = spec("""
    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
    i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
    j: &j [*i,*i,*i,*i,*i,*i,*i,*i,*i]
    k: &k [*j,*j,*j,*j,*j,*j,*j,*j,*j]
    l: &l [*k,*k,*k,*k,*k,*k,*k,*k,*k]
""")
# Under the 100-alias cap but still exponential: 5 levels of 10 aliases = 10^5 values.
ALIAS_EXPANSION = "name: demo\n" + "\n".join(
    [f"l0: &l0 [{', '.join(['x'] * 10)}]"]
    + [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 10)}]" for n in range(1, 6)]
) + "\n"

_rng = random.Random(7)
GARBAGE = bytes(_rng.randrange(256) for _ in range(300)).replace(b"\x00", b"") + b"\x00" + bytes(_rng.randrange(256) for _ in range(200))

CASES: list[Case] = [
    # --- wrong types -------------------------------------------------------------------
    c("string-for-int", one_stage("memory_mb: lots"), 7, "lots", "stages[0].memory_mb", ("valid integer", "'lots'")),
    c("float-for-int", one_stage(trigger="stream: {batch_size: 1.5}"), 6, "1.5", "stages[0].trigger.stream.batch_size",
      ("integer", "1.5")),
    c("list-for-mapping", one_stage(top="stream: [1, 2]"), 7, "[1, 2]", "stream", ("must be a mapping", "not a list", "stream: {}")),
    c("mapping-for-list", "name: demo\nstages:\n  first: {}\n", 3, "first", "stages", ("list",)),
    c("bool-for-name", one_stage(name="true"), 1, "true", "name", ("valid string",)),
    # --- unknown keys (did you mean) ---------------------------------------------------
    c("unknown-top-level-key", one_stage(top="descripton: hi"), 7, "descripton", "descripton",
      ("unknown key 'descripton'", "did you mean 'description'")),
    c("unknown-nested-retention", one_stage(top="stream:\n  retention_hour: 48"), 8, "retention_hour", "stream.retention_hour",
      ("did you mean 'retention_hours'",)),
    c("unknown-stage-key", one_stage("memmory_mb: 256"), 7, "memmory_mb", "stages[0].memmory_mb", ("did you mean 'memory_mb'",)),
    c("unknown-trigger-key", one_stage(trigger="strem: {}"), 6, "strem", "stages[0].trigger.strem", ("did you mean 'stream'",)),
    c("unknown-key-no-suggestion", one_stage(top="zzzzzz: 1"), 7, "zzzzzz", "zzzzzz", ("unknown key 'zzzzzz'", "valid keys here")),
    c("unknown-objects-key", TWO_STAGES.replace("from: first", "frm: first"), 11, "frm", "stages[1].trigger.objects.frm",
      ("did you mean 'from'",), count=2),
    # --- duplicate keys ----------------------------------------------------------------
    c("duplicate-top-level-key", "name: demo\nname: other\nstages: []\n", 2, "name", None,
      ("duplicate key 'name'", "first defined on line 1")),
    c("duplicate-nested-key", one_stage("memory_mb: 256\nmemory_mb: 512"), 8, "memory_mb", None,
      ("duplicate key 'memory_mb'", "line 7")),
    # --- names -------------------------------------------------------------------------
    c("name-uppercase", one_stage(name="Demo"), 1, "Demo", "name", ("'Demo' is not a valid name", "lowercase")),
    c("name-too-long", one_stage(name="a" * 21), 1, "a" * 21, "name", ("not a valid name", "3-20 characters")),
    c("name-leading-digit", one_stage(name="1demo"), 1, "1demo", "name", ("not a valid name", "starting with a letter")),
    c("name-trailing-hyphen", one_stage(name="demo-"), 1, "demo-", "name", ("not a valid name",)),
    c("name-double-hyphen", one_stage(name="de--mo"), 1, "de--mo", "name", ("not a valid name", "single hyphens")),
    c("name-too-short", one_stage(name="ab"), 1, "ab", "name", ("not a valid name", "3-20")),
    c("stage-name-underscore", one_stage(stage_name="first_stage"), 3, "first_stage", "stages[0].name", ("not a valid name",)),
    c("stage-name-one-char", one_stage(stage_name="a"), 3, None, "stages[0].name", ("not a valid name", "2-20"), column=11),
    c("duplicate-stage-names", TWO_STAGES.replace("name: second", "name: first").replace("from: first", "from: first"),
      None, None, None, ()),  # placeholder replaced below (needs a non-objects second stage)
    # --- missing / empty ---------------------------------------------------------------
    c("missing-name", "stages:\n  - name: first\n    handler: handlers/h.py:handle\n    trigger:\n      stream: {}\n",
      1, "stages", "name", ("missing required field 'name'",)),
    c("missing-stages", "name: demo\n", 1, "name", "stages", ("missing required field 'stages'",)),
    c("missing-handler", "name: demo\nstages:\n  - name: first\n    trigger:\n      stream: {}\n", 3, "name: first",
      "stages[0].handler", ("missing required field 'handler'",)),
    c("missing-trigger", "name: demo\nstages:\n  - name: first\n    handler: handlers/h.py:handle\n", 3, "name: first",
      "stages[0].trigger", ("missing required field 'trigger'",)),
    c("empty-stages", "name: demo\nstages: []\n", 2, "[]", "stages", ("at least 1",)),
    c("null-stages", "name: demo\nstages:\n", 2, None, "stages", ("valid list",)),
    # --- handlers and files ------------------------------------------------------------
    c("handler-missing-file", one_stage(handler="handlers/nope.py:handle"), 4, "handlers/nope.py", "stages[0].handler",
      ("handler file 'handlers/nope.py' does not exist",)),
    c("handler-no-colon", one_stage(handler="handlers/h.py"), 4, "handlers/h.py", "stages[0].handler",
      ("is not a handler", "file.py:function")),
    c("handler-function-undefined", one_stage(handler="handlers/h.py:nope"), 4, "handlers/h.py", "stages[0].handler",
      ("no top-level function 'nope'", "functions found: handle")),
    c("handler-syntax-error", one_stage(handler="handlers/bad.py:handle"), 4, "handlers/bad.py", "stages[0].handler",
      ("handlers/bad.py is not valid python",), files={"handlers/bad.py": "def handle(records, context)\n    return []\n"}),
    c("handler-absolute-path", one_stage(handler="/etc/h.py:handle"), 4, "/etc/h.py", "stages[0].handler",
      ("is absolute", "relative to the spec file")),
    c("handler-not-python", one_stage(handler="handlers/h.js:handle"), 4, "handlers/h.js", "stages[0].handler",
      ("is not a handler",)),
    c("requirements-missing", one_stage("requirements: handlers/missing.txt"), 7, "handlers/missing.txt",
      "stages[0].requirements", ("requirements file 'handlers/missing.txt' does not exist",)),
    c("model-missing", one_stage("model: models/m.json"), 7, "models/m.json", "stages[0].model", ("model file", "does not exist")),
    # --- triggers ----------------------------------------------------------------------
    c("trigger-two-kinds", one_stage(trigger="stream: {}\n      schedule: rate(5 minutes)"), 6, "stream", "stages[0].trigger",
      ("exactly one of 'stream', 'objects', 'schedule' or 'http'", "found stream, schedule")),
    c("trigger-none", one_stage(trigger="{}").replace("trigger:\n      {}", "trigger: {}"), 5, "{}", "stages[0].trigger",
      ("exactly one", "found none")),
    c("objects-from-first-stage", one_stage(trigger="objects: {from: first}"), 6, "first}", "stages[0].trigger.objects.from",
      ("reads objects from 'first', which is not an earlier stage", "the first stage must read the stream, run on a schedule or serve http")),
    c("objects-from-unknown-stage", TWO_STAGES.replace("from: first", "from: nosuch"), 11, "nosuch", "stages[1].trigger.objects.from",
      ("'nosuch'", "not an earlier stage", "can read: first")),
    c("objects-from-later-stage", TWO_STAGES + "  - name: third\n    handler: handlers/h.py:handle\n    trigger:\n      objects:\n"
      "        from: first\n".replace("first", "first"), None, None, None, ()),  # placeholder replaced below
    # --- schedules ---------------------------------------------------------------------
    c("cron-six-fields", one_stage(trigger='schedule: "0 0 * * * *"'), 6, '"0 0', "stages[0].trigger.schedule",
      ("6 fields", "exactly 5")),
    c("cron-minute-61", one_stage(trigger='schedule: "61 * * * *"'), 6, '"61', "stages[0].trigger.schedule",
      ("minute 61 is out of range 0-59",)),
    c("cron-aws-wrapper", one_stage(trigger='schedule: "cron(0 12 * * ? *)"'), 6, '"cron', "stages[0].trigger.schedule",
      ("cron(...)", "five cron fields")),
    c("rate-zero", one_stage(trigger="schedule: rate(0 minutes)"), 6, "rate(", "stages[0].trigger.schedule", ("at least 1",)),
    c("rate-singular-unit", one_stage(trigger="schedule: rate(5 minute)"), 6, "rate(", "stages[0].trigger.schedule",
      ("rate(5 minutes)", "plural")),
    c("rate-bad-unit", one_stage(trigger="schedule: rate(5 weeks)"), 6, "rate(", "stages[0].trigger.schedule",
      ("not a valid rate",)),
    c("cron-zero-step", one_stage(trigger='schedule: "*/0 * * * *"'), 6, '"*/0', "stages[0].trigger.schedule",
      ("step '0'", "minute", "positive")),
    c("cron-question-mark", one_stage(trigger='schedule: "0 12 ? * *"'), 6, '"0 12', "stages[0].trigger.schedule",
      ("'?' is aws-only",)),
    c("cron-backwards-range", one_stage(trigger='schedule: "0 20-5 * * *"'), 6, '"0 20', "stages[0].trigger.schedule",
      ("runs backwards", "hour")),
    # --- ranges ------------------------------------------------------------------------
    c("memory-64", one_stage("memory_mb: 64"), 7, "64", "stages[0].memory_mb", ("memory_mb must be from 128 to 10,240 (got 64)", "e.g. `memory_mb: 512`")),
    c("timeout-901", one_stage("timeout_s: 901"), 7, "901", "stages[0].timeout_s", ("timeout_s must be from 1 to 900 (got 901)", "e.g. `timeout_s: 60`")),
    c("batch-size-0", one_stage(trigger="stream:\n        batch_size: 0"), 7, "0", "stages[0].trigger.stream.batch_size",
      ("batch_size must be from 1 to 10,000 (got 0)", "e.g. `batch_size: 100`")),
    c("retention-12", one_stage(top="stream:\n  retention_hours: 12"), 8, "12", "stream.retention_hours",
      ("retention_hours must be from 24 to 168 (got 12)", "the range all three clouds support", "e.g. `retention_hours: 24`")),
    c("partitions-0", one_stage(top="stream:\n  partitions: 0"), 8, "0", "stream.partitions", ("'auto' or a whole number from 1 to 1024",)),
    c("partitions-word", one_stage(top="stream:\n  partitions: many"), 8, "many", "stream.partitions", ("'auto'",)),
    c("intermediate-days-0", one_stage(top="storage:\n  intermediate_days: 0"), 8, "0", "storage.intermediate_days",
      ("intermediate_days must be from 1 to 3,650 (got 0)",)),
    c("dead-letter-30", one_stage(top="storage:\n  dead_letter_days: 30"), 8, "30", "storage.dead_letter_days",
      ("dead_letter_days must be from 1 to 14 (got 30)", "the SQS maximum")),
    c("records-per-second-0", one_stage(top="workload:\n  records_per_second: 0"), 8, "0", "workload.records_per_second",
      ("records_per_second must be more than 0 and at most 1,000,000 (got 0)", "e.g. `records_per_second: 100`")),
    c("stream-mode-literal", one_stage(top="clouds:\n  aws:\n    stream_mode: fast"), 9, "fast", "clouds.aws.stream_mode",
      ("provisioned", "on_demand")),
    c("aws-region-pattern", one_stage(top="clouds:\n  aws:\n    region: US-EAST-1"), 9, "US-EAST-1", "clouds.aws.region",
      ("'US-EAST-1' is not an AWS region", "e.g. `region: eu-west-1`")),
    # --- the likeliest first edits: the valid shape and an example, never a pydantic class or a regex --------
    c("uploads-true", one_stage(top="uploads: true"), 7, "true", "uploads",
      ("uploads must be a mapping", "not true", "`uploads: {}`", "`uploads: {name: landing}`")),
    c("trigger-http-word", one_stage().replace("    trigger:\n      stream: {}\n", "    trigger: http\n"), 5, "http", "stages[0].trigger",
      ("a trigger is a mapping with exactly one of stream, objects, schedule, http (got 'http')", "for an HTTP stage write `trigger: {http: {}}`")),
    c("trigger-cron-string", one_stage().replace("    trigger:\n      stream: {}\n", "    trigger: '0 * * * *'\n"), 5, "'0 * * * *'",
      "stages[0].trigger", ("`trigger: {schedule: \"0 * * * *\"}`",)),
    c("http-true", one_stage(trigger="http: true"), 6, "true", "stages[0].trigger.http", ("`http: {}`", "`http: {persist: true}`")),
    c("objects-as-a-name", TWO_STAGES.replace("objects:\n        from: first", "objects: first"), 10, "first", "stages[1].trigger.objects",
      ("write `objects: {from: first}`",)),
    c("gcp-project-display-name", one_stage(top="clouds:\n  gcp:\n    project: My_Project"), 9, "My_Project", "clouds.gcp.project",
      ("'My_Project' is not a GCP project ID", "6-30 characters", "`project: my-project-123`", "gcloud projects list")),
    # --- tags and environment ----------------------------------------------------------
    c("tag-key-uppercase", one_stage(top="tags:\n  Team: risk"), 8, "Team", "tags.Team", ("tag key 'Team' is not portable",)),
    c("tag-value-spaces", one_stage(top="tags:\n  team: Risk ML"), 8, None, "tags.team",
      ("tag value 'Risk ML' is not portable",)),
    c("env-reserved-prefix", one_stage("environment:\n  PIPELINE_X: '1'"), 8, "PIPELINE_X", "stages[0].environment.PIPELINE_X",
      ("'PIPELINE_X' uses a prefix reserved",)),
    c("env-aws-prefix", one_stage("environment:\n  aws_region: x"), 8, "aws_region", "stages[0].environment.aws_region", ("reserved",)),
    c("tag-key-second-entry", one_stage(top="tags:\n  team: risk\n  Owner: ml"), 9, None, "tags.Owner", ("tag key 'Owner'",)),
    c("env-reserved-second-entry", one_stage("environment:\n  CURRENCY: USD\n  AWS_REGION: x"), 9, None, "stages[0].environment.AWS_REGION",
      ("'AWS_REGION' uses a prefix reserved",)),
    c("env-invalid-name", one_stage("environment:\n  1BAD: x"), 8, "1BAD", "stages[0].environment.1BAD",
      ("'1BAD' is not a valid environment variable name",)),
    # --- workload wiring ---------------------------------------------------------------
    c("stage-workload-unknown-stage", one_stage(top="workload:\n  stages:\n    first: {ms_per_record: 1}\n    nosuch: {ms_per_record: 2}"), 10,
      "{ms_per_record: 2}", "workload.stages.nosuch", ("'nosuch' is not a stage", "stages: first")),
    c("stage-duration-renamed", one_stage(top="workload:\n  stage_duration_ms:\n    first: 10"), 9, "first",
      "workload.stage_duration_ms", ("replaced by a per-record model", "workload.stages.<stage>", "ms_per_record", "ms_per_invocation")),
    c("workload-negative-ms", one_stage(top="workload:\n  stages:\n    first: {ms_per_record: -1}"), 9, "-1",
      "workload.stages.first.ms_per_record", ("greater than or equal to 0",)),
    # --- sources, http and schedules over accumulated outputs ----------------------------
    c("no-source", one_stage(trigger="schedule: rate(1 hour)", top="stream: null"), 7, "null", "stream",
      ("a pipeline needs a source",)),
    c("stream-stage-without-stream", one_stage(top="uploads: {}"), 6, "{}", "stages[0].trigger.stream",
      ("reads the stream, but this pipeline has none", "add 'stream: {}'")),
    c("from-beside-objects", one_stage(trigger="objects: {from: uploads}\n      from: uploads", top="uploads: {}"), 6, "objects",
      "stages[0].trigger", ("'from' beside the trigger kind only goes with 'schedule'",)),
    c("schedule-from-http-without-persist", TWO_STAGES.replace("trigger:\n      stream: {}", "trigger:\n      http: {}")
      .replace("objects:\n        from: first", "schedule: rate(1 hour)\n      from: first"), 11, "first", "stages[1].trigger.from",
      ("reads objects from 'first', which is not an earlier stage that writes objects",)),
    c("uploads-name-is-a-stage", one_stage(top="stream: {}\nuploads: {name: first}"), 3, "first", "stages[0].name",
      ("the uploads bucket's name",)),
    c("uploads-name-reserved", one_stage(top="stream: {}\nuploads: {name: raw}"), 8, "raw", "uploads.name", ("reserved for a pipeline bucket",)),
    # --- hostile / broken YAML ---------------------------------------------------------
    c("billion-laughs", BILLION_LAUGHS, ..., None, None, ("expands to more than 50,000 values", "aliases")),
    c("alias-expansion", ALIAS_EXPANSION, ..., None, None, ("expands to more than",)),
    c("too-many-aliases", "x: &x 1\ny: [" + ", ".join(["*x"] * 101) + "]\n", 2, None, None, ("more than 100 aliases",),
      column=5 + 4 * 100),
    c("alias-cycle", "name: &n [*n]\n", ..., None, None, ("alias",)),
    c("alias-without-anchor", one_stage(top="tags: *nothing"), 7, "*nothing", None, ("alias *nothing has no matching anchor",)),
    c("deep-nesting", "name: " + "[" * 100 + "]" * 100 + "\n", 1, None, None, ("nesting is deeper than 32",)),
    c("empty-file", "", None, None, None, ("empty",)),
    c("whitespace-only", "\n   \n\t\n", None, None, None, ("empty",)),
    c("comment-only", "# just a comment\n  # another\n", None, None, None, ("empty",)),
    c("null-document", "~\n", 1, None, None, ("must be a mapping",)),
    c("binary-garbage", GARBAGE, GARBAGE[: GARBAGE.index(b"\x00")].count(b"\n") + 1, None, None, ("nul bytes", "binary"), column=1),
    c("non-utf8", b"name: demo\ndescription: caf\xe9\n", 2, None, None, ("not utf-8", "offset 27"), column=1),
    c("latin1-file", "name: demo\n# r\xe9sum\xe9\nstages: []\n".encode("latin-1"), 2, None, None, ("not utf-8",)),
    c("python-object-tag", "name: !!python/object/apply:os.system ['echo pwned']\nstages: []\n", 1, "!!python", None,
      ("tag:yaml.org,2002:python/object/apply:os.system is not allowed",)),
    c("custom-ref-tag", one_stage(top="description: !Ref Something"), 7, "!Ref", None, ("the tag !Ref is not allowed",)),
    c("multiple-documents", one_stage() + "---\nname: other\n", 7, "---", None, ("more than one yaml document",)),
    c("top-level-list", "- name: demo\n- stages: []\n", 1, "-", None, ("top level of a spec must be a mapping",)),
    c("top-level-scalar", "just some words\n", 1, None, None, ("must be a mapping",)),
    c("bad-indentation", "name: demo\nstages:\n  - name: first\n   handler: x\n", 4, None, None, ("invalid yaml",)),
    c("unclosed-flow", "name: demo\nstages: [\n  {name: first\n", 4, None, None, ("invalid yaml", "expected ',' or '}'")),
    c("tab-indentation", "name: demo\nstages:\n\t- name: first\n", 3, None, None, ("invalid yaml",)),
    c("huge-file", "name: demo\n" + "# " + "x" * (1024 * 1024) + "\n", None, None, None, ("1,048,576 bytes",)),
    c("number-too-long", one_stage("memory_mb: " + "9" * 40), 7, "999", None, ("number is too long",)),
    c("mapping-key", one_stage(top="? [a, b]\n: 1"), 7, None, None, ("keys must be plain text",)),
    c("null-key", one_stage(top="~: 1"), 7, "~", None, ("is not text", "quote the key")),
    # --- stack overlays ----------------------------------------------------------------
    c("overlay-unknown-stack", one_stage(), None, None, None, ("no overlay for stack 'nosuch'", "available stacks: dev, prod"),
      file="stacks/nosuch.yaml", stack="nosuch", files={"stacks/dev.yaml": "tags: {env: dev}\n", "stacks/prod.yaml": "tags: {env: prod}\n"}),
    c("overlay-unknown-stack-no-folder", one_stage(), None, None, None, ("no overlay for stack 'dev'", "create"),
      file="stacks/dev.yaml", stack="dev"),
    c("overlay-unknown-key", one_stage(top="stream:\n  retention_hours: 24"), 3, "retention_hour", "stream.retention_hour",
      ("did you mean 'retention_hours'",), file="stacks/dev.yaml", stack="dev",
      files={"stacks/dev.yaml": "# dev\nstream:\n  retention_hour: 48\n"}),
    c("overlay-new-top-level-unknown-key", one_stage(), 2, "workloads", "workloads", ("did you mean 'workload'",),
      file="stacks/dev.yaml", stack="dev", files={"stacks/dev.yaml": "tags: {env: dev}\nworkloads: {}\n"}),
    c("overlay-bad-value", one_stage(), 4, "lots", "stages[0].memory_mb", ("valid integer",), file="stacks/dev.yaml", stack="dev",
      files={"stacks/dev.yaml": "# dev\nstages:\n  - name: first\n    memory_mb: lots\n"}),
    c("overlay-stage-unknown-key", one_stage(), 3, "memmory_mb", "stages[0].memmory_mb", ("did you mean 'memory_mb'",),
      file="stacks/dev.yaml", stack="dev", files={"stacks/dev.yaml": "stages:\n  - name: first\n    memmory_mb: 256\n"}),
    c("overlay-new-stage-bad-handler", one_stage(), 3, "handlers/nope.py", "stages[1].handler", ("does not exist",),
      file="stacks/dev.yaml", stack="dev",
      files={"stacks/dev.yaml": "stages:\n  - name: extra\n    handler: handlers/nope.py:handle\n    trigger: {schedule: rate(1 hour)}\n"}),
    c("overlay-duplicate-key", one_stage(), 2, "tags", None, ("duplicate key 'tags'",), file="stacks/dev.yaml", stack="dev",
      files={"stacks/dev.yaml": "tags: {env: dev}\ntags: {env: prod}\n"}),
    c("overlay-top-level-list", one_stage(), 1, None, None, ("overlay's top level must be a mapping",), file="stacks/dev.yaml",
      stack="dev", files={"stacks/dev.yaml": "- a\n- b\n"}),
    c("overlay-changes-trigger-kind", one_stage(), 4, "schedule", "stages[0].trigger.schedule",
      ("cannot change the trigger of stage 'first' from 'stream'", "pipeline.yaml:6", "to 'schedule'", "same way in every stack"),
      file="stacks/dev.yaml", stack="dev",
      files={"stacks/dev.yaml": "stages:\n  - name: first\n    trigger:\n      schedule: rate(1 hour)\n"}),
    c("control-character", one_stage(top='description: "bell \x07 here"'), 7, "\x07", None,
      ("control character U+0007 is not allowed", "\\x07")),
    c("control-character-in-overlay", one_stage(), 2, "\x1b", None, ("control character U+001B",), file="stacks/dev.yaml", stack="dev",
      files={"stacks/dev.yaml": "tags:\n  env: \x1b[31mred\n"}),
    c("invalid-stack-name", one_stage(), None, None, None, ("'Dev' is not a valid stack name",), file="", stack="Dev"),
]

# Cases that need a few more lines than the helpers offer.
_DUP_STAGES = TWO_STAGES.replace("name: second", "name: first").replace("objects:\n        from: first", "schedule: rate(1 hour)")
_LATER = spec("""
    name: demo
    stages:
      - name: first
        handler: handlers/h.py:handle
        trigger:
          stream: {}
      - name: second
        handler: handlers/h.py:handle
        trigger:
          objects:
            from: third
      - name: third
        handler: handlers/h.py:handle
        trigger:
          objects:
            from: first
""")
for i, case in enumerate(CASES):
    if case.id == "duplicate-stage-names":
        CASES[i] = c(case.id, _DUP_STAGES, 7, "first", "stages[1].name", ("stage name 'first' is used twice", "unique"))
    elif case.id == "objects-from-later-stage":
        CASES[i] = c(case.id, _LATER, 11, "third", "stages[1].trigger.objects.from",
                     ("reads objects from 'third', which is not an earlier stage", "can read: first"))

# Known problems: the test states the behaviour we want; strict xfail flags the day it is fixed.
XFAIL: dict[str, str] = {}


def _problem_text(problem: Problem) -> str:
    return f"{problem.message} ({problem.hint})".lower()


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_malformed_spec(case: Case, write_spec, request: pytest.FixtureRequest) -> None:
    if case.id in XFAIL:
        request.applymarker(pytest.mark.xfail(strict=True, reason=XFAIL[case.id]))
    raw = case.text if isinstance(case.text, bytes) else case.text.encode("utf-8")
    path = write_spec(raw=raw, files=case.files)
    with pytest.raises(SpecError) as info:
        load_spec(path, case.stack)
    problems = info.value.problems
    rendered = str(info.value)
    assert "Traceback" not in rendered and "errors.pydantic.dev" not in rendered and "Value error," not in rendered
    assert len(problems) == case.count, f"expected {case.count} problem(s), got:\n{rendered}"
    problem = next((p for p in problems if p.path == case.path), problems[0])

    expected_file = str(path.parent / case.file) if case.file else ""
    assert problem.file == expected_file, rendered
    if case.line is not ...:
        assert problem.line == case.line, rendered
    if case.at is not None:
        assert isinstance(case.line, int)
        source = (path.parent / case.file).read_text(encoding="utf-8").splitlines()[case.line - 1]
        assert case.at in source, f"test bug: {case.at!r} not on line {case.line}: {source!r}"
        assert problem.column == source.index(case.at) + 1, rendered
    if case.column is not None:
        assert problem.column == case.column, rendered
    if case.path is not None:
        assert problem.path == case.path, rendered
    else:
        assert problem.path == "", rendered
    text = _problem_text(problem)
    for word in case.words:
        assert word.lower() in text, f"{word!r} not in {rendered!r}"
    # the rendered form leads with file:line[:column] so editors and terminals can jump to it
    assert rendered.startswith(problem.location() + ":")


def test_every_problem_is_reported_not_just_the_first(write_spec) -> None:
    path = write_spec(one_stage("memory_mb: 64\ntimeout_s: 0", name="Bad"))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    paths = {p.path for p in info.value.problems}
    assert paths == {"name", "stages[0].memory_mb", "stages[0].timeout_s"}
    assert sorted(p.line for p in info.value.problems) == [1, 7, 8]


def test_missing_spec_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "nope.yaml")
    assert "no such file" in info.value.problems[0].message
    assert info.value.problems[0].file == str(tmp_path / "nope.yaml")


def test_directory_instead_of_spec(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path)
    assert "directory" in info.value.problems[0].message


_GARBAGE = ["\x00", "\t", ":", "- ", "&a", "*a", "!", "{", "]", "'", '"', "\\", "#", "%", "@", "`", "|", ">", "? ", "é", "\ufeff",
            "\u2028", "0x", "---", "...", "<<: *a", "~", " " * 7, "\r"]
FUZZ_COUNT = 200


def _text_mutation(text: str, rng: random.Random) -> str:
    lines = text.splitlines(keepends=True)
    for _ in range(rng.randint(1, 3)):
        op = rng.choice(["delete", "duplicate", "insert", "swap"])
        i = rng.randrange(len(lines)) if lines else 0
        if op == "delete" and lines:
            del lines[i]
        elif op == "duplicate" and lines:
            lines.insert(i, lines[i])
        elif op == "swap" and len(lines) > 1:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif lines:
            pos = rng.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:pos] + rng.choice(_GARBAGE) + lines[i][pos:]
    return "".join(lines)


def _mutations(text: str, count: int) -> list[Mutation]:
    """Half are YAML-level edits (delete, duplicate, swap lines, insert syntax); the rest are
    hostile paths (see tests/hostile.py), spoiled names, and spec files or overlays that are
    devices, FIFOs or links out of the project."""
    rng = random.Random(0)
    out: list[Mutation] = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.2:
            out.append(path_mutation(text, rng))
        elif roll < 0.4:
            out.append(name_mutation(text, rng))
        elif roll < 0.5:
            out.append(file_mutation(text, rng))
        else:
            out.append(Mutation("text", _text_mutation(text, rng)))
    return out


def fuzz_project(example_spec: Path, tmp_path: Path) -> Path:
    """A copy of the example with the traps hostile paths point at (links out, FIFOs, devices)."""
    import shutil

    folder = tmp_path / "example"
    shutil.copytree(example_spec.parent, folder, ignore=shutil.ignore_patterns(".pipeline", "__pycache__"))
    prepare_project(folder)
    return folder


def test_mutations_cover_every_kind_of_hostile_input(example_spec: Path) -> None:
    kinds = Counter(m.kind for m in _mutations(example_spec.read_text(encoding="utf-8"), FUZZ_COUNT))
    assert set(kinds) == {"text", "path", "name", "spec-file", "overlay"} and min(kinds.values()) >= 5, kinds


def _check_problems(exc: SpecError, mutation: Mutation, spec_file: Path, folder: Path, n: int) -> None:
    assert exc.problems, f"mutation {n}: a SpecError without problems"
    files = {str(spec_file)}
    if mutation.stack is not None or n % 4 == 0:
        files |= {str(folder / "stacks" / f"{mutation.stack or 'dev'}.yaml")}
    for problem in exc.problems:
        assert problem.message, f"mutation {n}: {problem}"
        assert problem.file in files or (problem.file == "" and "stack name" in problem.message), f"mutation {n}: {problem}"
        assert problem.line is None or 1 <= problem.line <= mutation.text.count("\n") + 2, f"mutation {n}: {problem}"
        if problem.path:  # a field problem must say where the field is
            assert problem.line is not None and problem.column is not None, f"mutation {n}: {problem}"
        rendered = problem.render()
        assert len(rendered) < 3000 and "\n" not in rendered and "\x1b" not in rendered, f"mutation {n}: {rendered[:3000]!r}"


@pytest.mark.parametrize("loader", ["libyaml", "python"])
def test_mutated_example_only_ever_raises_spec_error(example_spec: Path, tmp_path: Path, loader: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """200 deterministic mutations of the example: load_spec returns or raises a located SpecError, nothing else."""
    import yaml

    if loader == "python":
        monkeypatch.delattr(yaml, "CSafeLoader", raising=False)

    folder = fuzz_project(example_spec, tmp_path)
    target = folder / "pipeline.yaml"
    original = example_spec.read_text(encoding="utf-8")
    outcomes = {"ok": 0, "spec-error": 0}
    for n, mutation in enumerate(_mutations(original, FUZZ_COUNT)):
        target.write_text(mutation.text, encoding="utf-8", newline="")
        spec_file = mutation.spec_path(folder)
        stacks = [mutation.stack] if mutation.stack is not None else [None, "dev"] if n % 4 == 0 else [None]
        for stack in stacks:
            try:
                load_spec(spec_file, stack)
                outcomes["ok"] += 1
            except SpecError as exc:
                outcomes["spec-error"] += 1
                _check_problems(exc, mutation, spec_file, folder, n)
            except Exception as exc:  # pragma: no cover - this is the failure being hunted
                pytest.fail(f"mutation {n} raised {type(exc).__name__}: {exc}\n--- input ---\n{mutation}")
    assert outcomes["spec-error"] > 20 and outcomes["ok"] > 5, outcomes


_HEADER = re.compile(r"error: the spec has [0-9,]+ problems?:")


def test_mutated_example_through_the_console_script(example_spec: Path, tmp_path: Path, run_cli) -> None:
    """The same 200 mutations through `pipeline validate`: exit 0 with 'valid', or exit 2 with every
    problem on one line that starts with the spec's or overlay's path; never a traceback, never a hang.
    (~0.4 s of CPU per run: 200 runs, two at a time.)"""
    from concurrent.futures import ThreadPoolExecutor

    project = fuzz_project(example_spec, tmp_path)
    mutations = _mutations(example_spec.read_text(encoding="utf-8"), FUZZ_COUNT)

    def run(n: int) -> tuple[int, Path, subprocess.CompletedProcess[str]]:
        mutation = mutations[n]
        spec_file = project / f"pipeline-{n}.yaml"  # one spec per mutation, side by side: they run two at a time
        spec_file.write_text(mutation.text, encoding="utf-8", newline="")
        if mutation.kind == "spec-file":
            spec_file = mutation.spec_path(project)
        args = ["validate", str(spec_file)] + (["--stack", mutation.stack] if mutation.stack is not None else [])
        return n, spec_file, run_cli(*args, timeout=120)

    codes: Counter[int] = Counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        for n, spec_file, result in pool.map(run, range(len(mutations))):
            mutation = mutations[n]
            codes[result.returncode] += 1
            where = f"mutation {n} ({mutation.kind}, spec {mutation.spec!r}, stack {mutation.stack!r}):\n{result.stderr[:3000]}"
            for stream in (result.stdout, result.stderr):
                assert "Traceback" not in stream and "internal error" not in stream, where
                assert "\x1b" not in stream, where  # escape sequences from the input are shown escaped
            assert len(result.stderr) < 200_000, where
            if result.returncode == 0:
                assert result.stdout.startswith("valid:"), where
                continue
            assert result.returncode == 2, where
            lines = result.stderr.splitlines()
            assert _HEADER.fullmatch(lines[0]), where
            prefixes = (f"{spec_file}:", f"{project / 'stacks'}/", "<input>: ")
            for line in lines[1:]:
                assert line.startswith(prefixes) or line.startswith("... and "), where
    assert codes[2] > 20 and codes[0] > 5 and set(codes) <= {0, 2}, codes
