"""Issue 18 on AWS: what a fresh account needs for a plan to deploy and work, on specs combining every new part
(uploads, outside producers, HTTP stages plain and over accumulated outputs, schedules in a time zone, long names).

Each test reads the offline plan (Pulumi's mock engine) or the sizing the comparison shows, and fails on the design
before this change (reserved concurrency everywhere, no throttle alarms, a Scheduler role any schedule could use,
UTC only, managed policies only for producers, ...)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pipeline_aws import producers, quota
from pipeline_aws.backend import AwsBackend
from pipeline_aws.concurrency import ACCOUNT_CONCURRENCY

from pipeline.errors import SpecError
from pipeline.plan import Plan, PlannedResource
from pipeline.planner import plan
from pipeline.sizing import erlang_b
from pipeline.spec.load import load_spec

ACCOUNT = "123456789012"
PARTNER_ROLE = "arn:aws:iam::111122223333:role/partner-uploader"

# 20-character pipeline and stage names, a 16-character stack: every physical name must still fit its service.
LONG = """
    name: abcdefghij-klmnopqrs
    stream: {archive: true, retention_hours: 48}
    uploads: {name: partner-landing-zone}
    stages:
      - {name: stream-stage-numbr-1, handler: h.py:handle, trigger: {stream: {batch_size: 500}}}
      - {name: stream-stage-numbr-2, handler: h.py:handle, trigger: {stream: {batch_size: 100}}}
      - {name: files-processing-stg, handler: h.py:handle, trigger: {objects: {from: partner-landing-zone}}}
      - {name: hourly-window-paris1, handler: h.py:handle, timeout_s: 900, memory_mb: 4096,
         trigger: {schedule: "*/15 * * * *", timezone: Europe/Paris, from: stream-stage-numbr-1}}
      - {name: on-demand-window-api, handler: h.py:handle, timeout_s: 300, trigger: {http: {from: files-processing-stg}}}
      - {name: plain-scoring-api-xx, handler: h.py:handle, trigger: {http: {}}}
      - {name: report-from-windowxx, handler: h.py:handle, timeout_s: 900, memory_mb: 2048, trigger: {objects: {from: hourly-window-paris1}}}
      - {name: audit-from-windowxxx, handler: h.py:handle, timeout_s: 900, memory_mb: 2048, trigger: {objects: {from: hourly-window-paris1}}}
    workload:
      records_per_second: 200
      record_bytes: 800
      http: {requests_per_second: 0.5, rows_per_request: 20}
      uploads: {files_per_hour: 30, records_per_file: 5000}
      stages:
        hourly-window-paris1: {ms_per_record: 0.01}
        report-from-windowxx: {ms_per_record: 0.01}
        audit-from-windowxxx: {ms_per_record: 0.01}
    clouds:
      aws:
        http_invokers: ["arn:aws:iam::210987654321:role/caller"]
        reserved_concurrency: {plain-scoring-api-xx: 3}
        producers:
          - {principal: "PARTNER", external_id: partner-7f3a, sources: [partner-landing-zone]}
          - {principal: "444455556666"}
""".replace("PARTNER", PARTNER_ROLE)
LONG_STACK = "abcdefghijklmnop"


def write(tmp_path: Path, body: str, stack: str | None = None) -> Path:
    (tmp_path / "h.py").write_text("def handle(records, context):\n    return []\n")
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(textwrap.dedent(body))
    if stack:
        (tmp_path / "stacks").mkdir(exist_ok=True)
        (tmp_path / "stacks" / f"{stack}.yaml").write_text("tags: {env: test}\n")
    return spec


@pytest.fixture(scope="module")
def long_plan(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    return plan(load_spec(write(tmp_path_factory.mktemp("long"), LONG, LONG_STACK), LONG_STACK), "aws")


def one(p: Plan, type_: str, role: str) -> PlannedResource:
    return p.one(type_, role)


def statements(resource: PlannedResource, key: str = "policy") -> list[dict[str, Any]]:
    return list(json.loads(resource.inputs[key])["Statement"])


# ---- names ----------------------------------------------------------------------------------------------

# The longest physical name each service takes (IAM, Lambda, SQS, EventBridge, Scheduler, S3, CloudWatch quotas).
NAME_LIMITS = {
    "aws:iam/role:Role": 64, "aws:iam/policy:Policy": 128, "aws:iam/rolePolicy:RolePolicy": 128,
    "aws:lambda/function:Function": 64, "aws:lambda/permission:Permission": 100, "aws:sqs/queue:Queue": 80,
    "aws:cloudwatch/eventRule:EventRule": 64, "aws:scheduler/schedule:Schedule": 64, "aws:scheduler/scheduleGroup:ScheduleGroup": 64,
    "aws:s3/bucket:Bucket": 63, "aws:kinesis/stream:Stream": 128, "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream": 64,
    "aws:cloudwatch/metricAlarm:MetricAlarm": 255, "aws:cloudwatch/logGroup:LogGroup": 512, "aws:sns/topic:Topic": 256,
}


def test_every_physical_name_fits_with_20_character_names_and_a_16_character_stack(long_plan: Plan) -> None:
    """Pulumi refuses to autoname past a service's limit ("plus 7 random chars is longer than maximum length"), and explicit
    names past it fail the deploy: every name the longest spec produces fits."""
    checked = 0
    for resource in long_plan.cloud_resources:
        limit = NAME_LIMITS.get(resource.type)
        if limit is not None:
            checked += 1
            assert len(resource.physical_name) <= limit, (resource.type, resource.physical_name)
    assert checked > 60


# ---- item 1: reserved concurrency ------------------------------------------------------------------------


def test_only_the_stage_the_user_caps_reserves_concurrency(long_plan: Plan) -> None:
    reserved = {fn.role: fn.inputs["reservedConcurrentExecutions"] for fn in long_plan.of_type("aws:lambda/function:Function")}
    assert reserved.pop("plain-scoring-api-xx-function") == 3
    assert set(reserved.values()) == {-1}  # every other function, the raw archiver's too
    sized = long_plan.sizing["stages"]["plain-scoring-api-xx"]
    assert sized["settings"]["reserved_concurrency"] == 3 and sized["concurrency"] == 3
    assert any("reserved concurrency 3 (clouds.aws.reserved_concurrency)" in line for line in sized["reasoning"])


def test_unreserved_stages_say_what_carries_them(long_plan: Plan) -> None:
    """The account's unreserved pool carries every other stage: the default quota less the reservation and the other
    functions' peaks, with the quota a new account may start with and where to check it."""
    sized = long_plan.sizing["stages"]["files-processing-stg"]
    others = sum(s["settings"]["peak_concurrency"] for name, s in long_plan.sizing["stages"].items()
                 if name not in {"files-processing-stg", "plain-scoring-api-xx"})
    archiver = 1  # 1 shard x ParallelizationFactor 1
    assert sized["concurrency"] == ACCOUNT_CONCURRENCY - 3 - others - archiver
    [line] = [line for line in sized["reasoning"] if line.startswith("not reserved")]
    assert "default quota of 1,000" in line and "3 reserved" in line and "new accounts may start with 10" in line and "L-B99A9384" in line
    # Windowed stages run one at a time under the runtime's lease, not a reservation of 1.
    for name in ("hourly-window-paris1", "on-demand-window-api"):
        assert long_plan.sizing["stages"][name]["concurrency"] == 1
        assert "reserved_concurrency" not in long_plan.sizing["stages"][name]["settings"]
        assert any("lease" in line for line in long_plan.sizing["stages"][name]["reasoning"])


def test_a_plan_needing_more_than_the_default_quota_is_refused_with_the_quota_to_request(tmp_path: Path) -> None:
    """800 requests/s of 1 s need ~1,040 executions at once (Erlang B), more than the default 1,000 with the stream stage's
    32 batches: the stage left without room says so, with the quota to request."""
    spec = write(tmp_path, """
        name: busy
        stages:
          - {name: ingest, handler: h.py:handle, trigger: {stream: {}}}
          - {name: api, handler: h.py:handle, trigger: {http: {}}}
        workload:
          records_per_second: 20000
          http: {requests_per_second: 800, rows_per_request: 1}
          stages: {api: {ms_per_invocation: 1000, ms_per_record: 0}}
    """)
    with pytest.raises(SpecError) as info:
        plan(load_spec(spec), "aws")
    [problem] = info.value.problems
    assert problem.path == "workload.records_per_second" and "stage 'ingest' can sustain 0 rec/s" in problem.message
    assert "this plan needs 1,075 concurrent executions at its peak, more than the default quota of 1,000: request more in " \
           "Service Quotas > AWS Lambda > Concurrent executions (L-B99A9384)" in problem.hint


def test_reserved_concurrency_for_an_unknown_stage_is_located(tmp_path: Path) -> None:
    spec = write(tmp_path, """
        name: capped
        stages: [{name: ingest, handler: h.py:handle, trigger: {stream: {}}}]
        clouds: {aws: {reserved_concurrency: {ingets: 5}}}
    """)
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    [problem] = info.value.problems
    assert problem.path == "clouds.aws.reserved_concurrency.ingets" and problem.line == 4
    assert "'ingets' is not a stage" in problem.message and "stages: ingest" in problem.hint


def test_every_function_has_a_throttle_alarm(long_plan: Plan) -> None:
    functions = {fn.physical_name for fn in long_plan.of_type("aws:lambda/function:Function")}
    throttles = {a.inputs["dimensions"]["FunctionName"] for a in long_plan.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
                 if a.inputs["metricName"] == "Throttles"}
    assert throttles == functions and len(functions) == 9  # 8 stages and the raw archiver


# ---- item 1 preflight: a cap is checked against the real account --------------------------------------------


def test_the_quota_arithmetic() -> None:
    caps = {"api": 110}
    fresh = quota.Account(quota=10, unreserved=10, held=0)
    assert quota.shortfall(fresh, {"api": 5}) == 5 and quota.quota_to_request(fresh, {"api": 5}) == 105
    big = quota.Account(quota=1000, unreserved=1000, held=0)
    assert quota.shortfall(big, caps) == 0
    busy = quota.Account(quota=1000, unreserved=200, held=5)  # 795 reserved elsewhere, 5 by this pipeline already
    assert quota.shortfall(busy, caps) == 5 and quota.quota_to_request(busy, caps) == 795 + 110 + 100
    assert quota.shortfall(busy, {"api": 105}) == 0


class FakeLambda(BaseHTTPRequestHandler):
    """The two Lambda API calls the preflight makes, answered like Lambda (REST JSON, errors typed by header)."""

    account: dict[str, int] = {}
    reserved: dict[str, int] = {}

    def do_GET(self) -> None:
        if self.path.startswith("/2016-08-19/account-settings"):
            self._send(200, {"AccountLimit": {**self.account, "CodeSizeUnzipped": 262144000, "CodeSizeZipped": 52428800, "TotalCodeSize": 80530636800},
                             "AccountUsage": {"FunctionCount": 0, "TotalCodeSize": 0}})
        elif self.path.startswith("/2019-09-30/functions/") and self.path.endswith("/concurrency"):
            name = self.path.split("/")[3]
            if name in self.reserved:
                self._send(200, {"ReservedConcurrentExecutions": self.reserved[name]})
            else:
                self._send(404, {"Type": "User", "Message": f"Function not found: {name}"}, "ResourceNotFoundException")
        else:
            self._send(404, {"Message": "unknown route"}, "ResourceNotFoundException")

    def _send(self, status: int, body: dict[str, Any], error: str | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        if error:
            self.send_header("x-amzn-ErrorType", error)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def fake_lambda(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[type[FakeLambda]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeLambda)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for name, value in {"AWS_ENDPOINT_URL_LAMBDA": f"http://127.0.0.1:{server.server_address[1]}", "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_CONFIG_FILE": str(tmp_path / "none"),
                        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    FakeLambda.account, FakeLambda.reserved = {}, {}
    yield FakeLambda
    server.shutdown()
    server.server_close()


CAPPED = """
    name: capped
    stages:
      - {name: ingest, handler: h.py:handle, trigger: {stream: {}}}
      - {name: api, handler: h.py:handle, trigger: {http: {}}}
    clouds: {aws: {reserved_concurrency: {api: 5}}}
"""


def test_a_new_account_refuses_a_cap_before_anything_is_deployed(tmp_path: Path, fake_lambda: type[FakeLambda]) -> None:
    """A new account (quota 10) cannot reserve 5: the preflight reads GetAccountSettings through boto3 and says which quota to
    request; an account with the default quota passes; a redeploy counts the reservation its function holds already."""
    loaded = load_spec(write(tmp_path, CAPPED, "dev"), "dev")
    backend = AwsBackend(loaded.spec, "dev", loaded.base_dir)
    fake_lambda.account = {"ConcurrentExecutions": 10, "UnreservedConcurrentExecutions": 10}
    problem = backend.deploy_problem()
    assert problem is not None
    assert "reserves 5 concurrent Lambda executions (api 5)" in problem and "quota in us-east-1 is 10 with 10 unreserved" in problem
    assert "Request a Concurrent executions quota of at least 105" in problem and "L-B99A9384" in problem
    fake_lambda.account = {"ConcurrentExecutions": 1000, "UnreservedConcurrentExecutions": 1000}
    assert backend.deploy_problem() is None
    fake_lambda.account = {"ConcurrentExecutions": 1000, "UnreservedConcurrentExecutions": 102}
    assert backend.deploy_problem() is not None  # 102 - 5 < 100
    fake_lambda.reserved = {"capped-dev-api": 5}  # the function exists and holds its 5 already
    assert backend.deploy_problem() is None


def test_an_unreadable_account_is_a_clear_problem_not_a_traceback(tmp_path: Path, fake_lambda: type[FakeLambda]) -> None:
    loaded = load_spec(write(tmp_path, CAPPED, "dev"), "dev")
    fake_lambda.account = {}  # a malformed answer
    problem = AwsBackend(loaded.spec, "dev", loaded.base_dir).deploy_problem()
    assert problem is not None and problem.startswith("could not read this account's Lambda concurrency in us-east-1")
    uncapped = load_spec(write(tmp_path, CAPPED.replace("reserved_concurrency: {api: 5}", "region: us-east-1"), "dev"), "dev")
    assert AwsBackend(uncapped.spec, "dev", uncapped.base_dir).deploy_problem() is None  # nothing reserved: no call at all


def test_the_deploy_command_lists_the_quota_problem_and_exits_1(tmp_path: Path, fake_lambda: type[FakeLambda]) -> None:
    """Through the console script: `deploy` stops before the engine with the quota to request among the problems."""


    spec = write(tmp_path, CAPPED)
    fake_lambda.account = {"ConcurrentExecutions": 10, "UnreservedConcurrentExecutions": 10}
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update({"NO_COLOR": "1", "COLUMNS": "200", "PULUMI_CONFIG_PASSPHRASE": "x", "PIPELINE_SERVER": "0"})
    result = subprocess.run([str(Path(sys.executable).parent / "pipeline"), "deploy", str(spec), "--cloud", "aws", "--yes"],
                            capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 1, result.stderr
    assert "deploy did not start" in result.stderr and "Request a Concurrent executions quota of at least 105" in result.stderr
    assert "Traceback" not in result.stderr


# ---- item 8: synchronous stages and Erlang B ---------------------------------------------------------------


def test_http_blocking_is_shown_and_a_small_cap_says_what_keeps_it_under_1_percent(tmp_path: Path) -> None:
    """The bundled stream-scoring prod load: 20 requests/s of 50 ms = 1 busy execution on average. Unreserved, the pool
    refuses nothing; a cap of 2 refuses Erlang B(2, 1) = 20 % at once (a function URL answers 429), and 5 keep it <= 1 %."""
    stack = Path(__file__).parents[3] / "stacks" / "stream-scoring" / "pipeline.yaml"
    sized = AwsBackend(load_spec(stack, "prod").spec, "prod", stack.parent).sizing().stages["score-api"]
    assert sized.blocking is not None and sized.blocking < 1e-12
    body = stack.read_text().replace("    region: us-east-1\n", "    region: us-east-1\n    reserved_concurrency: {score-api: 2}\n", 1)
    (tmp_path / "pipeline.yaml").write_text(body)
    for folder in ("handlers", "models", "stacks"):
        shutil.copytree(stack.parent / folder, tmp_path / folder)
    capped = AwsBackend(load_spec(tmp_path / "pipeline.yaml", "prod").spec, "prod", tmp_path).sizing().stages["score-api"]
    assert capped.blocking == pytest.approx(erlang_b(2, 20 * 0.05)) == pytest.approx(0.2)
    assert any(line.startswith("20.0% of requests would find all 2 execution(s) busy") and "5 keep it at or below 1%" in line
               for line in capped.reasoning)


# ---- item 6: multipart uploads can straddle a window's cut-off for at most a day ------------------------------


def test_every_bucket_aborts_incomplete_multipart_uploads_after_a_day(long_plan: Plan) -> None:
    buckets = {b.role for b in long_plan.of_type("aws:s3/bucket:Bucket")}
    for role in buckets:
        rules = one(long_plan, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", role).inputs["rules"]
        aborts = [r for r in rules if "abortIncompleteMultipartUpload" in r]
        assert aborts == [{"id": "abort-incomplete-uploads", "status": "Enabled", "filter": {},
                           "abortIncompleteMultipartUpload": {"daysAfterInitiation": 1}}], role
    env = one(long_plan, "aws:lambda/function:Function", "on-demand-window-api-function").inputs["environment"]["variables"]
    assert env["PIPELINE_WINDOW_LATENESS_S"] == str(60 + 300)  # its source's timeout + a margin: a single PUT


# ---- items 13 and 15: Scheduler ---------------------------------------------------------------------------


def test_a_schedule_runs_in_its_own_group_with_a_role_only_that_group_may_use(long_plan: Plan) -> None:
    group = one(long_plan, "aws:scheduler/scheduleGroup:ScheduleGroup", "hourly-window-paris1-trigger")
    assert group.physical_name == "abcdefghij-klmnopqrs-abcdefghijklmnop-hourly-window-paris1"
    schedule = one(long_plan, "aws:scheduler/schedule:Schedule", "hourly-window-paris1-trigger").inputs
    assert schedule["groupName"] == group.physical_name
    assert schedule["scheduleExpression"] == "cron(*/15 * * * ? *)" and schedule["scheduleExpressionTimezone"] == "Europe/Paris"
    role = one(long_plan, "aws:iam/role:Role", "hourly-window-paris1-trigger")
    [trust] = statements(role, "assumeRolePolicy")
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT},
                                  "ArnEquals": {"aws:SourceArn": f"arn:aws:scheduler:us-east-1:{ACCOUNT}:schedule-group/{group.physical_name}"}}


def test_a_schedule_without_a_time_zone_fires_in_utc() -> None:
    example = Path(__file__).parents[3] / "stacks" / "transactions" / "pipeline.yaml"
    p = plan(load_spec(example, "dev"), "aws")
    assert one(p, "aws:scheduler/schedule:Schedule", "calibrate-trigger").inputs["scheduleExpressionTimezone"] == "UTC"


# ---- item 16: an HTTP stage over accumulated outputs ------------------------------------------------------------


def test_an_http_stage_over_accumulated_outputs_is_an_iam_function_url_sized_like_a_window(long_plan: Plan) -> None:
    url = one(long_plan, "aws:lambda/functionUrl:FunctionUrl", "on-demand-window-api-trigger").inputs
    assert url["authorizationType"] == "AWS_IAM" and url["invokeMode"] == "BUFFERED"
    caller = one(long_plan, "aws:iam/policy:Policy", "on-demand-window-api-trigger")
    assert {a for s in statements(caller) for a in s["Action"]} == {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}
    sized = long_plan.sizing["stages"]["on-demand-window-api"]
    # one run per request (0.5/s), each over what files-processing-stg wrote since the last run: 30 files x 5,000 rows an hour
    assert sized["invocations_per_second"] == pytest.approx(0.5)
    assert sized["records_per_invocation"] == pytest.approx(30 * 5000 / 3600 / 0.5)
    assert sized["concurrency"] == 1 and sized["blocking"] == pytest.approx(erlang_b(1, 0.5 * sized["invocation_ms"] / 1000))
    fn = one(long_plan, "aws:lambda/function:Function", "on-demand-window-api-function").inputs
    assert fn["environment"]["variables"]["PIPELINE_STATE_PREFIX"] == "_state/on-demand-window-api/"


def test_a_windowed_http_stage_is_priced_like_a_window_with_its_list_and_state_calls(tmp_path: Path) -> None:
    loaded = load_spec(write(tmp_path, LONG, LONG_STACK), LONG_STACK)
    est = AwsBackend(loaded.spec, LONG_STACK, loaded.base_dir).estimate_cost(free_tier=False)
    lines = {(line.role, line.item): line for line in est.lines}
    runs = 0.5 * 730 * 3600
    kept = 30 * 730 * 7 * 24 / 730  # files-processing-stg writes 30 objects an hour, kept 7 days: 5,040 keys
    assert lines[("files-processing-stg-bucket", "S3 LIST requests (on-demand-window-api)")].quantity == pytest.approx(runs * 6)
    assert kept == pytest.approx(5040)
    assert lines[("on-demand-window-api-bucket", "S3 PUT requests (window lease and watermark)")].quantity == pytest.approx(runs * 3)
    assert lines[("on-demand-window-api-bucket", "S3 GET requests (window lease and watermark)")].quantity == pytest.approx(runs * 2)
    assert lines[("on-demand-window-api-function", "Lambda requests")].quantity == pytest.approx(runs)


# ---- item 17: outside producers ---------------------------------------------------------------------------------


def test_each_outside_producer_gets_a_role_trusting_exactly_its_principal(long_plan: Plan) -> None:
    roles = {r.physical_name: r for r in long_plan.of_type("aws:iam/role:Role") if r.role.endswith("-producer")}
    first, second = roles["abcdefghij-klmnopqrs-abcdefghijklmnop-producer-1"], roles["abcdefghij-klmnopqrs-abcdefghijklmnop-producer-2"]
    assert statements(first, "assumeRolePolicy") == [{"Sid": "OutsideProducer", "Effect": "Allow", "Principal": {"AWS": PARTNER_ROLE},
                                                      "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"sts:ExternalId": "partner-7f3a"}}}]
    assert statements(second, "assumeRolePolicy") == [{"Sid": "OutsideProducer", "Effect": "Allow",
                                                       "Principal": {"AWS": "arn:aws:iam::444455556666:root"}, "Action": "sts:AssumeRole"}]
    uploads = f"arn:aws:s3:::{one(long_plan, 'aws:s3/bucket:Bucket', 'partner-landing-zone-bucket').physical_name}"
    stream = f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/{one(long_plan, 'aws:kinesis/stream:Stream', 'stream').physical_name}"

    def allowed(role_name: str) -> set[tuple[str, str]]:
        return {(action, resource) for rp in long_plan.of_type("aws:iam/rolePolicy:RolePolicy") if rp.inputs["role"] == role_name
                for s in statements(rp) for action in s["Action"] for resource in s["Resource"]}

    landing = {("s3:PutObject", f"{uploads}/partner-landing-zone/*")}
    stream_put = {(a, stream) for a in ("kinesis:DescribeStreamSummary", "kinesis:ListShards", "kinesis:PutRecord", "kinesis:PutRecords")}
    assert allowed(first.physical_name) == landing  # its sources: the landing bucket only
    assert allowed(second.physical_name) == landing | stream_put  # every source
    # No KMS grant: the stream's AWS-managed key and the bucket's SSE-S3 need none for a role in this account.
    assert not [a for role in roles for a, _ in allowed(role) if a.startswith("kms:")]
    # The in-account managed policies stay for producers inside the account.
    assert {p.role for p in long_plan.of_type("aws:iam/policy:Policy")} >= {"stream-producer", "partner-landing-zone-producer"}


def test_outside_producer_roles_are_deploy_outputs_and_the_hint_says_how_to_use_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exported: dict[str, Any] = {}
    monkeypatch.setattr(producers.pulumi, "export", lambda name, value: exported.__setitem__(name, value))
    loaded = load_spec(write(tmp_path, LONG, LONG_STACK), LONG_STACK)
    plan(loaded, "aws")
    listed = exported[producers.OUTPUT]
    assert set(listed) == {PARTNER_ROLE, "444455556666"}
    assert listed[PARTNER_ROLE]["sources"] == ["partner-landing-zone"] and listed[PARTNER_ROLE]["external_id"] is True
    assert listed["444455556666"]["sources"] == ["stream", "partner-landing-zone"]
    outputs = {
        "stream": "the-stream", "buckets": {"partner-landing-zone": "the-landing-bucket"},
        "producers": {"stream": "arn:aws:iam::1:policy/s", "partner-landing-zone": "arn:aws:iam::1:policy/u"},
        producers.OUTPUT: {PARTNER_ROLE: {"role": f"arn:aws:iam::{ACCOUNT}:role/p-1", "sources": ["partner-landing-zone"], "external_id": True},
                           "444455556666": {"role": f"arn:aws:iam::{ACCOUNT}:role/p-2", "sources": ["stream", "partner-landing-zone"],
                                            "external_id": False}},
    }
    hint = AwsBackend(loaded.spec, LONG_STACK, loaded.base_dir).test_record_hint(outputs)
    partner = hint[hint.index(f"As the outside producer {PARTNER_ROLE}"):hint.index("As the outside producer 444455556666")]
    assert f"aws sts assume-role --role-arn arn:aws:iam::{ACCOUNT}:role/p-1 --role-session-name abcdefghij-klmnopqrs-producer --external-id 'partner-7f3a'" in partner
    assert "s3://the-landing-bucket/partner-landing-zone/test-" in partner and "kinesis put-record" not in partner
    rest = hint[hint.index("As the outside producer 444455556666"):]
    assert "--role-arn arn:aws:iam::123456789012:role/p-2 " in rest and "--external-id" not in rest.splitlines()[1]
    assert "kinesis put-record" in rest and "s3://the-landing-bucket/" in rest


def test_a_producer_listed_twice_is_located(tmp_path: Path) -> None:
    body = LONG.replace('{principal: "444455556666"}', '{principal: "444455556666"}, {principal: "444455556666", sources: [stream]}')
    body = body.replace('- {principal: "444455556666"}, {principal', '- {principal: "444455556666"}\n          - {principal')
    loaded = load_spec(write(tmp_path, body, LONG_STACK), LONG_STACK)
    problems = AwsBackend(loaded.spec, LONG_STACK, loaded.base_dir).check()
    assert (("clouds", "aws", "producers", 2, "principal"), "'444455556666' is listed twice",
            "list each outside producer once, with every source it feeds under `sources`") in problems
