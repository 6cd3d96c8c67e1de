"""The spec's windowed HTTP stages (`http: {from: ...}`), schedule time zones and outside producers:
what loads, what each means for the wiring, and located errors for what is wrong."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.errors import SpecError
from pipeline.spec.load import load_spec
from pipeline.wiring import bucket_plan, has_bucket, stage_env

BASE = """\
name: demo
stream: {}
uploads: {}
stages:
  - name: prep
    handler: handlers/h.py:handle
    trigger: {stream: {}}
"""


def _stage(name: str, trigger: str) -> str:
    return f"  - name: {name}\n    handler: handlers/h.py:handle\n    trigger: {trigger}\n"


def _problems(write_spec: Callable[..., Path], text: str) -> list[tuple[str, int | None, str]]:
    with pytest.raises(SpecError) as info:
        load_spec(write_spec(text))
    return [(p.path, p.line, f"{p.message} ({p.hint})") for p in info.value.problems]


def test_http_stage_over_accumulated_outputs_is_windowed(write_spec: Callable[..., Path]) -> None:
    spec = load_spec(write_spec(BASE + _stage("score-api", "{http: {from: prep}}"))).spec
    stage = spec.stage("score-api")
    assert stage.trigger.kind == "http" and stage.trigger.window_source == "prep" and stage.trigger.source == "prep"
    # it always writes its run's output (too many rows for an answer), and keeps its watermark and lease in its own bucket
    assert stage.writes_objects and has_bucket(stage)
    assert "score-api" in {b.key for b in bucket_plan(spec)}
    env = stage_env(spec, "dev", stage, lambda key: f"bucket-{key}")
    assert env["PIPELINE_INPUT_BUCKET"] == "bucket-prep" and env["PIPELINE_STATE_BUCKET"] == "bucket-score-api"
    assert env["PIPELINE_STATE_PREFIX"] == "_state/score-api/" and env["PIPELINE_OUTPUT_PREFIX"] == "score-api/"
    # a later stage may read what it writes
    assert load_spec(write_spec(BASE + _stage("score-api", "{http: {from: prep}}") + _stage("after", "{objects: {from: score-api}}")))


def test_plain_http_stage_is_not_windowed(write_spec: Callable[..., Path]) -> None:
    stage = load_spec(write_spec(BASE + _stage("api", "{http: {}}"))).spec.stage("api")
    assert stage.trigger.window_source is None and not stage.writes_objects and not has_bucket(stage)


def test_http_from_an_unknown_source_is_located(write_spec: Callable[..., Path]) -> None:
    [(path, line, text)] = _problems(write_spec, BASE + _stage("api", "{http: {from: nowhere}}"))
    assert path == "stages[1].trigger.http.from" and line == 10
    assert "'nowhere'" in text and "can read: uploads, prep" in text


@pytest.mark.parametrize("zone", ["Europe/Paris", "UTC", "America/Argentina/Buenos_Aires"])
def test_schedule_time_zone(write_spec: Callable[..., Path], zone: str) -> None:
    spec = load_spec(write_spec(BASE + _stage("daily", f"{{schedule: '0 6 * * *', timezone: {zone}}}"))).spec
    assert spec.stage("daily").trigger.timezone == zone


@pytest.mark.parametrize(("trigger", "words"), [
    ("{schedule: '0 6 * * *', timezone: Europe/Pariss}", ["not a known time zone", "did you mean Europe/Paris"]),
    ("{schedule: '0 6 * * *', timezone: ../../etc/passwd}", ["not a time zone name", "IANA"]),
    ("{http: {}, timezone: UTC}", ["'timezone' only goes with 'schedule'"]),
])
def test_bad_time_zone_is_located(write_spec: Callable[..., Path], trigger: str, words: list[str]) -> None:
    [(path, line, text)] = _problems(write_spec, BASE + _stage("daily", trigger))
    assert path.startswith("stages[1].trigger") and line == 10
    for word in words:
        assert word in text


PRODUCERS = """\
clouds:
  aws:
    producers:
      - {principal: "arn:aws:iam::111122223333:role/partner-uploader", external_id: partner-7f3a, sources: [uploads]}
      - {principal: "444455556666"}
  gcp:
    producers: [{member: "serviceAccount:uploader@partner.iam.gserviceaccount.com", sources: [stream, uploads]}]
  azure:
    producers:
      - {principal: "sp:8c2b6b2e-1111-4a3c-9a8e-123456789abc"}
      - {federated: {issuer: "https://token.actions.githubusercontent.com", subject: "repo:o/r:ref:refs/heads/main"}, sources: [stream]}
"""


def test_outside_producers_load(write_spec: Callable[..., Path]) -> None:
    clouds = load_spec(write_spec(BASE + PRODUCERS)).spec.clouds
    assert [p.feeds("uploads") for p in clouds.aws.producers] == [True, True]
    assert [p.feeds("stream") for p in clouds.aws.producers] == [False, True]
    assert clouds.azure.producers[1].federated is not None and clouds.azure.producers[1].federated.audience == "api://AzureADTokenExchange"


@pytest.mark.parametrize(("edit", "path", "words"), [
    (("role/partner-uploader", "policy/partner"), "clouds.aws.producers[0].principal", ["not an AWS account or IAM principal", "12-digit"]),
    (("serviceAccount:uploader@", "allUsers:uploader@"), "clouds.gcp.producers[0].member", ["not a GCP IAM member", "never allUsers"]),
    (("sp:8c2b6b2e", "robot:8c2b6b2e"), "clouds.azure.producers[0].principal", ["not an Entra ID principal", "'sp:<id>'"]),
    (("sources: [uploads]", "sources: [upload]"), "clouds.aws.producers[0].sources[0]", ["'upload' is not a source", "sources: stream, uploads"]),
    (('{principal: "sp:8c2b6b2e-1111-4a3c-9a8e-123456789abc"}', "{sources: [stream]}"), "clouds.azure.producers[0]",
     ["exactly one of 'principal'"]),
])
def test_bad_producer_is_located(write_spec: Callable[..., Path], edit: tuple[str, str], path: str, words: list[str]) -> None:
    problems = _problems(write_spec, BASE + PRODUCERS.replace(*edit))
    found = [text for where, _line, text in problems if where == path]
    assert found, problems
    for word in words:
        assert word in found[0]


def test_an_http_stage_has_its_own_request_rate(write_spec: Callable[..., Path]) -> None:
    """A window stage called now and then next to an API called often: each is sized and priced at its own rate."""
    from pipeline.sizing import demand

    text = (BASE + _stage("api", "{http: {}}") + _stage("now", "{http: {from: prep}}")
            + "workload:\n  http: {requests_per_second: 2}\n  stages:\n    now: {requests_per_second: 0.01}\n")
    spec = load_spec(write_spec(text)).spec
    assert spec.workload.http_requests_per_second("api") == 2 and spec.workload.http_requests_per_second("now") == 0.01
    assert demand(spec, spec.stage("api"), {}).events_per_second == 2


def test_a_request_rate_on_a_stage_without_requests_is_located(write_spec: Callable[..., Path]) -> None:
    text = BASE + "workload:\n  stages:\n    prep: {requests_per_second: 1}\n"
    [(path, line, message)] = _problems(write_spec, text)
    assert path == "workload.stages.prep.requests_per_second" and line == 10
    assert "not an HTTP stage" in message and "leave requests_per_second out" in message
