"""Hostile specs through the real `pipeline` console script: files from outside the project,
specs that are devices or FIFOs, names with control characters and look-alikes, huge values,
schedules that never fire, booleans for counts. Each must end in exit code 2 with located,
readable errors -- never a shipped system file, a hang, a traceback or megabytes of output."""

from __future__ import annotations

import json
import os
import re
import subprocess
import types
import zipfile
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel

from pipeline.spec.model import PipelineSpec

MINIMAL = "name: demo\nstages:\n  - name: first\n    handler: handlers/h.py:handle\n    trigger:\n      stream: {}\n"


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    for stream in (result.stdout, result.stderr):
        assert "Traceback" not in stream and "internal error" not in stream, stream


def problem_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The stderr lines after the 'error: ...:' header, one per problem."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    no_traceback(result)
    lines = result.stderr.splitlines()
    assert lines and lines[0].startswith("error: "), result.stderr
    return lines[1:]


def located(result: subprocess.CompletedProcess[str], spec: Path, field: str) -> str:
    """The problem line for `field`; it must start with spec:line:col: field:."""
    for line in problem_lines(result):
        if re.match(rf"{re.escape(str(spec))}:\d+:\d+: {re.escape(field)}: ", line):
            return line
    raise AssertionError(f"no located problem for {field} in:\n{result.stderr}")


# --- 1. files from outside the project ---------------------------------------------------------


@pytest.fixture
def project(write_spec) -> Path:
    """A spec folder with an outside folder next to it holding a 'secret' and a handler."""
    spec = write_spec(MINIMAL)
    outside = spec.parent.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.txt").write_text("TOP SECRET\n", encoding="utf-8")
    (outside / "h.py").write_text("def handle(records, context):\n    return []\n", encoding="utf-8")
    return spec


def _with(spec: Path, extra: str = "", handler: str = "handlers/h.py:handle") -> Path:
    spec.write_text(MINIMAL.replace("handlers/h.py:handle", handler) + "".join(f"    {line}\n" for line in extra.splitlines()), encoding="utf-8")
    return spec


ESCAPES = {
    "dot-dot": ("../outside/secret.txt", "uses '..'"),
    "dot-dot-system": ("../../../../../../../../etc/passwd", "uses '..'"),
    "absolute": ("/etc/passwd", "is absolute"),
    "symlink-to-system-file": ("links/passwd", "resolves to '/etc/passwd', outside the project folder"),
    "symlink-to-outside-file": ("links/secret", "outside the project folder"),
    "through-symlinked-folder": ("links/outdir/secret.txt", "outside the project folder"),
    "symlink-to-dev-zero": ("links/zero", "resolves to '/dev/zero', outside the project folder"),
    "fifo": ("links/fifo", "is a FIFO (named pipe), not a file"),
}


def _links(spec: Path) -> None:
    links = spec.parent / "links"
    links.mkdir(exist_ok=True)
    outside = spec.parent.parent / "outside"
    for name, target in [("passwd", "/etc/passwd"), ("secret", outside / "secret.txt"), ("outdir", outside), ("zero", "/dev/zero")]:
        (links / name).symlink_to(target)
    (links / "h.py").symlink_to(outside / "h.py")
    os.mkfifo(links / "fifo")


@pytest.mark.parametrize("field", ["requirements", "model"])
@pytest.mark.parametrize("escape", list(ESCAPES), ids=list(ESCAPES))
def test_requirements_and_model_must_stay_inside_the_project(run_cli, project: Path, field: str, escape: str) -> None:
    _links(project)
    value, words = ESCAPES[escape]
    _with(project, f"{field}: {value}")
    line = located(run_cli("validate", project, timeout=60), project, f"stages[0].{field}")
    assert words in line and "(" in line, line  # says what is wrong and, in brackets, what is valid
    assert f"{project}:7:{len('    ' + field + ': ') + 1}:" in line


@pytest.mark.parametrize(("handler", "words"), [
    ("../outside/h.py:handle", "uses '..'"),
    ("/tmp/h.py:handle", "is absolute"),
    ("links/h.py:handle", "outside the project folder"),
    ("links/outdir/h.py:handle", "outside the project folder"),
])
def test_handler_must_stay_inside_the_project(run_cli, project: Path, handler: str, words: str) -> None:
    _links(project)
    _with(project, handler=handler)
    assert words in located(run_cli("validate", project), project, "stages[0].handler")


def test_a_symlink_out_of_the_handler_folder_is_refused_at_validation(run_cli, project: Path) -> None:
    (project.parent / "handlers" / "creds.txt").symlink_to(project.parent.parent / "outside" / "secret.txt")
    line = located(run_cli("validate", project), project, "stages[0].handler")
    assert "'handlers/creds.txt' is a symlink to" in line and "outside the project folder" in line
    result = run_cli("package", project, "--cloud", "aws", "--no-deps")
    assert result.returncode == 2 and "outside the project folder" in result.stderr
    no_traceback(result)
    assert not list((project.parent / ".pipeline").rglob("*.zip"))


def test_symlinks_that_stay_inside_the_project_still_work(run_cli, project: Path) -> None:
    shared = project.parent / "shared"
    shared.mkdir()
    (shared / "common.py").write_text("RATE = 1\n", encoding="utf-8")
    (project.parent / "handlers" / "common.py").symlink_to(shared / "common.py")
    (project.parent / "handlers" / "reqs.txt").symlink_to(project.parent / "handlers" / "requirements.txt")
    _with(project, "requirements: handlers/reqs.txt")
    result = run_cli("package", project, "--cloud", "aws", "--no-deps")
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(next((project.parent / ".pipeline").rglob("first.zip"))) as archive:
        assert archive.read("handlers/common.py") == b"RATE = 1\n"


# A file swapped for a link out of the project *after* validation: a sitecustomize hook wraps
# load_spec in the real console-script process and swaps the file as soon as validation returns.
SWAP_HOOK = '''
import os
swap = os.environ.get("SWAP_AFTER_VALIDATION")
if swap:
    import pipeline.spec.load as load
    original = load.load_spec
    def load_spec(*args, **kwargs):
        loaded = original(*args, **kwargs)
        link, target = swap.split("=>")
        os.symlink(target, link + ".swap")
        os.replace(link + ".swap", link)
        return loaded
    load.load_spec = load_spec
'''


def _run_with_swap(pipeline_exe: str, cli_env_vars: dict[str, str], hook_dir: Path, link: Path, target: Path,
                   *args: str | Path) -> subprocess.CompletedProcess[str]:
    (hook_dir / "sitecustomize.py").write_text(SWAP_HOOK, encoding="utf-8")
    env = {**cli_env_vars, "PYTHONPATH": str(hook_dir), "SWAP_AFTER_VALIDATION": f"{link}=>{target}"}
    return subprocess.run([pipeline_exe, *map(str, args)], env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("swapped", ["handlers/h2.py", "handlers/requirements.txt"])
def test_packaging_rechecks_files_swapped_after_validation(project: Path, tmp_path: Path, pipeline_exe: str,
                                                          cli_env_vars: dict[str, str], swapped: str) -> None:
    (project.parent / "handlers" / "h2.py").write_text("X = 1\n", encoding="utf-8")
    _with(project, "requirements: handlers/requirements.txt")
    secret = project.parent.parent / "outside" / "secret.txt"
    result = _run_with_swap(pipeline_exe, cli_env_vars, tmp_path, project.parent / swapped, secret,
                            "package", project, "--cloud", "aws", "--no-deps")
    assert (project.parent / swapped).is_symlink()  # the hook did swap it
    assert result.returncode == 2, (result.stdout, result.stderr)
    no_traceback(result)
    assert "refusing to package" in result.stderr and "outside the project folder" in result.stderr
    assert "TOP SECRET" not in result.stdout + result.stderr
    for archive in (project.parent / ".pipeline").rglob("*.zip"):
        with zipfile.ZipFile(archive) as opened:
            assert not any(b"TOP SECRET" in opened.read(name) for name in opened.namelist())


def test_model_upload_rechecks_a_model_swapped_after_validation(project: Path, tmp_path: Path, pipeline_exe: str,
                                                                cli_env_vars: dict[str, str]) -> None:
    (project.parent / "model.json").write_text("{}", encoding="utf-8")
    _with(project, "model: model.json")
    result = _run_with_swap(pipeline_exe, cli_env_vars, tmp_path, project.parent / "model.json", Path("/etc/passwd"),
                            "plan", project, "--cloud", "aws")
    assert result.returncode == 2, (result.stdout, result.stderr)
    no_traceback(result)
    assert "refusing to upload the model" in result.stderr and "'/etc/passwd', outside the project folder" in result.stderr


# --- 2. specs that are not regular files are refused, never read without bounds ----------------


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom", "/dev/null", "link-to-zero", "fifo", "link-to-fifo"])
def test_spec_that_is_a_device_or_fifo_is_refused_without_reading(run_cli, tmp_path: Path, target: str) -> None:
    if target.startswith("/"):
        spec = Path(target)
    else:
        spec = tmp_path / f"{target}.yaml"
        if target == "link-to-zero":
            spec.symlink_to("/dev/zero")
        else:
            os.mkfifo(tmp_path / "fifo.yaml")
            if target == "link-to-fifo":
                spec.symlink_to(tmp_path / "fifo.yaml")
    result = run_cli("validate", spec, timeout=60)  # a blocking open or an unbounded read would time out or run out of memory
    lines = problem_lines(result)
    kind = "a FIFO (named pipe)" if "fifo" in target else "a character device"
    assert lines == [f"{spec}: this is {kind}, not a spec file (pass the path to a pipeline.yaml file)"]


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom", "fifo"])
def test_overlay_that_is_a_device_or_fifo_is_refused(run_cli, write_spec, target: str) -> None:
    spec = write_spec(MINIMAL)
    (spec.parent / "stacks").mkdir()
    overlay = spec.parent / "stacks" / "dev.yaml"
    if target == "fifo":
        os.mkfifo(overlay)
    else:
        overlay.symlink_to(target)
    lines = problem_lines(run_cli("validate", spec, "--stack", "dev", timeout=60))
    assert lines[0].startswith(f"{overlay}: this is a ") and "not a spec file" in lines[0]


def test_spec_and_overlay_over_the_size_limit(run_cli, write_spec) -> None:
    big = "# " + "x" * (1024 * 1024) + "\n"
    spec = write_spec(MINIMAL + big)
    assert problem_lines(run_cli("validate", spec))[0].startswith(f"{spec}: the file is 1,048,6")
    spec = write_spec(MINIMAL, files={"stacks/dev.yaml": "tags: {env: dev}\n" + big})
    line = problem_lines(run_cli("validate", spec, "--stack", "dev"))[0]
    assert line.startswith(f"{spec.parent / 'stacks' / 'dev.yaml'}: the file is") and "at most 1,048,576 bytes" in line


# --- 3. names: the whole value must match (no trailing newline, no look-alikes) ----------------

CYRILLIC = dict(zip("aeopcxyACEHKMOPTX", "аеорсхуАСЕНКМОРТХ", strict=True))


def _trailing_newline(value: str) -> str:
    return value + "\n"


def _look_alike(value: str) -> str:
    for i, char in enumerate(value):
        if char in CYRILLIC:
            return value[:i] + CYRILLIC[char] + value[i + 1:]
    return "а" + value


def _fullwidth_digit(value: str) -> str:
    for i, char in enumerate(value):
        if char.isdigit():
            return value[:i] + chr(0xFF10 + int(char)) + value[i + 1:]
    return value + "１"


def _control(value: str) -> str:
    return value[:1] + "\x1b" + value[1:]


SPOILERS = [_trailing_newline, _look_alike, _fullwidth_digit, _control]

# Every name-like field, each in a spec that is otherwise valid; placeholders {x} get the spoiled value.
NAME_FIELDS: dict[str, tuple[str, str]] = {
    "name": ("name", "demo"),
    "stages[0].name": ("stage", "first"),
    "stages[0].handler": ("function", "handle"),
    "stages[1].handler": ("file", "handlers/h.py"),
    "stages[1].trigger.schedule": ("schedule", "0 6 * * *"),
    "tags.team": ("tag value", "risk-ml2"),
    "tags.cost-center": ("tag key", "cost-center"),
    "stages[0].environment.CURRENCY": ("env key", "CURRENCY"),
    "clouds.aws.region": ("aws region", "us-east-1"),
    "clouds.gcp.project": ("gcp project", "txn-scoring-demo"),
    "clouds.gcp.region": ("gcp region", "us-central1"),
    "clouds.azure.location": ("azure location", "eastus2"),
}


def _q(value: str) -> str:
    """A YAML double-quoted scalar holding exactly `value` (JSON escapes are valid YAML)."""
    return json.dumps(value)


def _names_spec(spoil: Any) -> str:
    v = {slot: spoil(value) for slot, value in NAME_FIELDS.values()}
    return (
        f"name: {_q(v['name'])}\n"
        "stages:\n"
        f"  - name: {_q(v['stage'])}\n"
        f"    handler: {_q('handlers/h.py:' + v['function'])}\n"
        "    trigger: {stream: {}}\n"
        f"    environment: {{{_q(v['env key'])}: USD}}\n"
        "  - name: second\n"
        f"    handler: {_q(v['file'] + ':handle')}\n"
        f"    trigger: {{schedule: {_q(v['schedule'])}}}\n"
        f"tags: {{team: {_q(v['tag value'])}, {_q(v['tag key'])}: x}}\n"
        f"clouds: {{aws: {{region: {_q(v['aws region'])}}}, gcp: {{project: {_q(v['gcp project'])}, region: {_q(v['gcp region'])}}}, "
        f"azure: {{location: {_q(v['azure location'])}}}}}\n"
    )


def test_the_unspoiled_names_spec_is_valid(run_cli, write_spec) -> None:
    assert run_cli("validate", write_spec(_names_spec(lambda value: value))).returncode == 0


@pytest.mark.parametrize("spoil", SPOILERS, ids=[s.__name__.strip("_") for s in SPOILERS])
def test_every_name_field_refuses_spoiled_values(run_cli, write_spec, spoil: Any) -> None:
    """One spec with every name-like field spoiled at once: each must be reported, located."""
    spec = write_spec(_names_spec(spoil))
    result = run_cli("validate", spec)
    lines = problem_lines(result)
    assert "\x1b" not in result.stderr  # control characters are shown escaped, never sent to the terminal
    for field, (slot, _) in NAME_FIELDS.items():
        if slot == "tag key":
            key = spoil("cost-center")
            field = f"tags.{key}" if re.fullmatch(r"[\x21-\x7e]+", key) and "." not in key else f"tags[{key!r}]"
        if slot == "env key":
            key = spoil("CURRENCY")
            field = f"stages[0].environment.{key}" if re.fullmatch(r"[\x21-\x7e]+", key) else f"stages[0].environment[{key!r}]"
        located(result, spec, field)
    assert len(lines) == len(NAME_FIELDS), result.stderr


@pytest.mark.parametrize("spoil", SPOILERS, ids=[s.__name__.strip("_") for s in SPOILERS])
def test_names_compared_to_stage_names_refuse_spoiled_values(run_cli, write_spec, spoil: Any) -> None:
    text = (MINIMAL + "  - name: second\n    handler: handlers/h.py:handle\n"
            f"    trigger: {{objects: {{from: {_q(spoil('first'))}}}}}\n"
            f"workload: {{stages: {{{_q(spoil('first'))}: {{ms_per_record: 1}}}}}}\n")
    spec = write_spec(text)
    result = run_cli("validate", spec)
    assert "not an earlier stage" in located(result, spec, "stages[1].trigger.objects.from")
    assert "is not a stage" in result.stderr
    assert len(problem_lines(result)) == 2


@pytest.mark.parametrize("stack", ["dev\n", "dеv", "dev\x1b"])
def test_stack_names_refuse_spoiled_values(run_cli, write_spec, stack: str) -> None:
    spec = write_spec(MINIMAL, files={"stacks/dev.yaml": "tags: {env: dev}\n"})
    lines = problem_lines(run_cli("validate", spec, "--stack", stack))
    assert "is not a valid stack name" in lines[0] and "(it contains U+" in lines[0]


# --- 4. echoed values are truncated -------------------------------------------------------------


def test_huge_values_are_echoed_truncated(run_cli, write_spec) -> None:
    big = "x" * 50_000
    text = (
        f"name: {big}\n"
        "stages:\n"
        f"  - name: {big}\n"
        f"    handler: {big}.py:handle\n"
        f"    trigger: {{schedule: '{big}'}}\n"
        f"    memory_mb: {big}\n"
        f"    environment: {{{'X' * 1000}-: v}}\n"
        f"  - name: second\n"
        f"    handler: handlers/h.py:{big}\n"
        f"    trigger: {{objects: {{from: {big}}}}}\n"
        f"tags: {{team: {big}}}\n"
        f"clouds: {{aws: {{region: {big}}}}}\n"
    )
    spec = write_spec(text)
    result = run_cli("validate", spec)
    lines = problem_lines(result)
    assert len(lines) >= 9, result.stderr
    assert len(result.stderr) < 10_000, f"{len(result.stderr):,} characters of errors"
    assert all(len(line) < 500 for line in lines), result.stderr
    assert result.stderr.count("(50,000 characters)") >= 6, result.stderr


def test_thousands_of_problems_are_counted_not_all_printed(run_cli, write_spec) -> None:
    tags = ", ".join(f"K{i}: v" for i in range(5000))
    spec = write_spec(MINIMAL + f"tags: {{{tags}}}\n")
    result = run_cli("validate", spec)
    lines = problem_lines(result)
    assert result.stderr.startswith("error: the spec has 5000 problems:")
    assert len(lines) == 51 and lines[-1] == "... and 4,950 more problems (fix these first)"


# --- 5. schedules that never fire, booleans for numbers ------------------------------------------


@pytest.mark.parametrize(("schedule", "words"), [
    ("0 0 30 2 *", "day 30 of the month does not occur in February"),
    ("0 0 31 4,6 *", "day 31 of the month does not occur in April or June"),
    ("0 0 30,31 FEB *", "day 30, 31 of the month does not occur in February"),
    ("0 0 31 2,4,6,9,11 *", "does not occur in any of its months"),
    ("*/5 * 31 4-6/2 *", "does not occur in April or June"),
])
def test_schedules_that_never_fire_are_refused(run_cli, write_spec, schedule: str, words: str) -> None:
    spec = write_spec(MINIMAL.replace("stream: {}", f'schedule: "{schedule}"'))
    line = located(run_cli("validate", spec), spec, "stages[0].trigger.schedule")
    assert f"{spec}:6:17:" in line and "never runs" in line and words in line, line


@pytest.mark.parametrize("schedule", ["0 0 29 2 *", "0 0 31 1-12 *", "0 0 30 2 MON", "0 0 28 2 *", "0 0 31 */2 *"])
def test_schedules_that_fire_rarely_are_accepted(run_cli, write_spec, schedule: str) -> None:
    result = run_cli("validate", write_spec(MINIMAL.replace("stream: {}", f'schedule: "{schedule}"')))
    assert result.returncode == 0, result.stderr


def _wants_number(annotation: Any) -> bool:
    """Independently of the implementation: does this annotation take int or float but not bool?"""
    if get_origin(annotation) is Annotated:
        return _wants_number(get_args(annotation)[0])
    members = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    if any(m is bool or (get_origin(m) is Literal and True in get_args(m)) for m in members):
        return False
    return any(m in (int, float) for m in members)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
        if get_origin(candidate) is list:
            return _model_in(get_args(candidate)[0])
    return None


def _booleans_everywhere(model: type[BaseModel]) -> tuple[dict[str, Any], list[str]]:
    """`true` for every number field of `model` and the models below it, and their paths."""
    data: dict[str, Any] = {}
    paths: list[str] = []
    for name, field in model.model_fields.items():
        key, annotation = field.alias or name, field.annotation
        if _wants_number(annotation):
            data[key], paths = True, [*paths, key]
        elif get_origin(annotation) is dict and _wants_number(get_args(annotation)[1]):
            data[key], paths = {"first": True}, [*paths, f"{key}.first"]
        elif get_origin(annotation) is dict and (value_model := _model_in(get_args(annotation)[1])) is not None:
            inner, inner_paths = _booleans_everywhere(value_model)
            if inner:
                data[key], paths = {"first": inner}, [*paths, *(f"{key}.first.{p}" for p in inner_paths)]
        elif (sub := _model_in(annotation)) is not None:
            inner, inner_paths = _booleans_everywhere(sub)
            if inner:
                is_list = get_origin(annotation) is list
                data[key] = [inner] if is_list else inner
                paths += [f"{key}[0].{p}" if is_list else f"{key}.{p}" for p in inner_paths]
    return data, paths


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: _merge(base[k], v) if k in base else v for k, v in over.items()}}
    if isinstance(base, list) and isinstance(over, list):
        return [_merge(base[0], over[0]), *base[1:]]
    return over


def test_booleans_are_refused_for_every_number_field(run_cli, write_spec) -> None:
    """Found by walking the spec models, so number fields added later are covered too."""
    data, paths = _booleans_everywhere(PipelineSpec)
    assert {"stages[0].retries", "stages[0].memory_mb", "stages[0].timeout_s", "stream.partitions",
            "stages[0].trigger.stream.batch_size", "workload.records_per_second", "workload.stages.first.ms_per_record",
            "workload.http.rows_per_request", "storage.uploads_days"} <= set(paths)
    spec = write_spec(yaml.safe_dump(_merge(yaml.safe_load(MINIMAL), data), sort_keys=False))
    result = run_cli("validate", spec)
    for path in paths:
        line = located(result, spec, path)
        assert re.search(r"expected a (whole )?number, got the boolean true$", line), line


@pytest.mark.parametrize("value", ["true", "false", "True", "FALSE"])
def test_boolean_retries_is_refused(run_cli, write_spec, value: str) -> None:
    spec = write_spec(MINIMAL + f"    retries: {value}\n")
    line = located(run_cli("validate", spec), spec, "stages[0].retries")
    assert line == f"{spec}:7:14: stages[0].retries: expected a whole number, got the boolean {value.lower()}"


def test_booleans_stay_valid_where_a_boolean_is_expected(run_cli, write_spec) -> None:
    result = run_cli("validate", write_spec(MINIMAL + "stream: {archive: false}\n"))
    assert result.returncode == 0, result.stderr
