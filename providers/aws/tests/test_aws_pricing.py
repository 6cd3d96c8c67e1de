"""The AWS cost model and limits: published pricing examples, hand-computed cases, the example spec.

Published examples are reproduced with our own formulas (and, where the example's month fits our
730-hour month, with a small spec run through the whole estimate). Where a page bills a 30- or
31-day month we feed the formula that period, because the unit arithmetic is what is checked.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from pipeline_aws import pricing, sizing
from pipeline_aws.backend import AwsBackend
from pipeline_aws.limits import limits

from pipeline.backend import backend_class
from pipeline.cost import GB, HOURS_PER_MONTH, SECONDS_PER_MONTH, CostEstimate
from pipeline.errors import PipelineError
from pipeline.planner import plan
from pipeline.spec.load import load_spec
from pipeline.spec.model import PipelineSpec

EXAMPLE = Path(__file__).parents[3] / "stacks" / "transactions" / "pipeline.yaml"
US = pricing.price_sheet("us-east-1")
LAMBDA_X86 = US["lambda-gb-second-x86"].usd
LAMBDA_REQUEST = US["lambda-request"].usd


def make_spec(**overrides: Any) -> PipelineSpec:
    """A one-stage stream spec (no archive) that tests reshape; handler files are not checked here."""
    body: dict[str, Any] = {
        "name": "price-test",
        "stream": {"archive": False},
        "stages": [{"name": "work", "handler": "h.py:handle", "trigger": {"stream": {"batch_size": 1, "max_batching_window_s": 0}},
                    "memory_mb": 128}],
        "workload": {"records_per_second": 1, "record_bytes": 100, "stages": {"work": {"ms_per_record": 0, "ms_per_invocation": 200}}},
    }
    for key, value in overrides.items():
        body[key] = {**body[key], **value} if isinstance(body.get(key), dict) and isinstance(value, dict) else value
    return PipelineSpec.model_validate(body)


def backend(spec: PipelineSpec, stack: str = "test") -> AwsBackend:
    return AwsBackend(spec, stack, EXAMPLE.parent)


def lines(est: CostEstimate, role: str) -> dict[str, Any]:
    return {line.item: line for line in est.lines if line.role == role}


# ---- published examples -----------------------------------------------------------------------


def test_lambda_pricing_page_example_1_mobile_backend() -> None:
    """https://aws.amazon.com/lambda/pricing/ Example 1 (x86, US East, free tier applied):
    3 M requests, 120 ms, 1536 MB -> 540,000 GB-s - 400,000 free = 140,000 x $0.0000166667 = $2.33;
    (3 M - 1 M free) x $0.20/M = $0.40; total $2.73.

    Our plan runs arm64, so the estimate's GB-s quantity and free share are re-priced at the x86 rate
    the example uses; the request line is the same price on both architectures.
    """
    assert pricing.lambda_gb_seconds(1536, 120, 3_000_000) == pytest.approx(540_000)
    # The same workload through a spec: 3 M single-record invocations in our 730-hour month.
    spec = make_spec(stages=[{"name": "work", "handler": "h.py:handle", "memory_mb": 1536,
                              "trigger": {"stream": {"batch_size": 1, "max_batching_window_s": 0}}}],
                     workload={"records_per_second": 3_000_000 / SECONDS_PER_MONTH, "record_bytes": 100,
                               "stages": {"work": {"ms_per_record": 0, "ms_per_invocation": 120}}})
    est = backend(spec).estimate_cost(free_tier=True)
    fn = lines(est, "work-function")
    assert fn["Lambda requests"].quantity == pytest.approx(3_000_000)
    assert fn["Lambda requests"].monthly_usd == pytest.approx(0.40)
    gb_s = fn["Lambda duration (arm64)"].quantity
    assert gb_s == pytest.approx(540_000)
    assert round((gb_s - pricing.LAMBDA_FREE_GB_SECONDS) * LAMBDA_X86, 2) == 2.33
    assert round(0.40 + (gb_s - pricing.LAMBDA_FREE_GB_SECONDS) * LAMBDA_X86, 2) == 2.73


def test_lambda_pricing_page_example_2_streaming_telemetry() -> None:
    """https://aws.amazon.com/lambda/pricing/ Example 2 (x86, no free tier in the example):
    10,000 vehicles x 24 x 31 = 7,440,000 requests x $0.20/M = $1.49; 2 s at 1024 MB =
    14.88 M GB-s x $0.0000166667 = $248.00; total $249.49."""
    requests = 10_000 * 24 * 31
    gb_s = pricing.lambda_gb_seconds(1024, 2000, requests)
    assert requests == 7_440_000
    assert gb_s == pytest.approx(14_880_000)
    assert round(requests * LAMBDA_REQUEST, 2) == 1.49
    assert round(gb_s * LAMBDA_X86, 2) == 248.00
    assert round(requests * LAMBDA_REQUEST + gb_s * LAMBDA_X86, 2) == 249.49


def test_lambda_pricing_page_example_3_nlp_inference() -> None:
    """https://aws.amazon.com/lambda/pricing/ Example 3 (x86, free tier applied):
    6 M x 280 ms x 4096 MB = 6,720,000 GB-s; - 400,000 free = 6,320,000 x $0.0000166667 = $105.33;
    (6 M - 1 M) x $0.20/M = $1.00."""
    gb_s = pricing.lambda_gb_seconds(4096, 280, 6_000_000)
    assert gb_s == pytest.approx(6_720_000)
    assert round((gb_s - 400_000) * LAMBDA_X86, 2) == 105.33
    assert round((6_000_000 - 1_000_000) * LAMBDA_REQUEST, 2) == 1.00


def test_kinesis_provisioned_pricing_example() -> None:
    """The Kinesis Data Streams pricing example (provisioned: shard hours + PUT payload units),
    http://aws.amazon.com/kinesis/pricing/ (now https://aws.amazon.com/kinesis/data-streams/pricing/):
    producers put 100 records/s of 35 KB (3.4 MB/s) -> 4 shards; one shard is $0.015/h = $0.36/day,
    four are $1.44/day, $44.64 for a 31-day month; a 35 KB record is 2 PUT payload units, so
    535,680,000 units a month x $0.014/M = $7.50; about $52.14 a month.

    The page's four shards carry no headroom (our sizing would add 25 %), so the spec fixes them.
    """
    hours_31_days = 31 * 24
    records_31_days = 100 * 86_400 * 31
    k = pricing.kinesis_provisioned(4, hours_31_days, records_31_days, 35 * 1024, retention_hours=24)
    assert pricing.put_payload_units(35 * 1024) == 2
    assert k.put_payload_units == 535_680_000
    assert round(k.shard_hours * US["kinesis-shard-hour"].usd, 2) == 44.64
    assert round(k.put_payload_units * US["kinesis-put-payload-unit"].usd, 2) == 7.50
    assert round(k.shard_hours * US["kinesis-shard-hour"].usd + k.put_payload_units * US["kinesis-put-payload-unit"].usd, 2) == 52.14
    assert k.extended_retention_shard_hours == 0
    # The page's unit examples: 5 KB -> 1 unit, 45 KB -> 2, 1 MB -> 40 (decimal KB, or 1 MB would be 41 units).
    assert [pricing.put_payload_units(n) for n in (5_000, 45_000, 1_000_000)] == [1, 2, 40]

    spec = make_spec(stream={"archive": False, "partitions": 4}, workload={"records_per_second": 100, "record_bytes": 35 * 1024})
    stream = lines(backend(spec).estimate_cost(free_tier=False), "stream")
    assert stream["Kinesis shard-hours"].monthly_usd / (HOURS_PER_MONTH / 24) == pytest.approx(1.44)  # $1.44 a day
    assert stream["Kinesis PUT payload units (25 KB)"].quantity == pytest.approx(2 * 100 * SECONDS_PER_MONTH)


def test_firehose_pricing_example() -> None:
    """The Amazon Data Firehose pricing example, https://aws.amazon.com/firehose/pricing/:
    100 records/s of 3 KB, each rounded up to 5 KB; (100 x 5 KB) / 1,048,576 KB/GB x 86,400 s x 30 days
    = 1,235.96 GB x $0.029 = $35.84 a month."""
    gb = pricing.firehose_gb(100 * 86_400 * 30, 3 * 1024)
    assert round(gb, 2) == 1235.96
    assert round(gb * US["firehose-gb-ingested"].usd, 2) == 35.84
    # The page's rounding examples: 3 KB bills as 5 KB, 12 KB as 15 KB.
    assert pricing.firehose_gb(1, 3 * 1024) * GB == 5 * 1024
    assert pricing.firehose_gb(1, 12 * 1024) * GB == 15 * 1024
    # Through the archive comparison at a tenth of the rate (the plan prices Firehose this way whichever it builds).
    spec = make_spec(stream={"archive": True}, workload={"records_per_second": 10, "record_bytes": 3 * 1024})
    stream_sizing = backend(spec).sizing().stream
    assert stream_sizing is not None
    costs = pricing.archive_costs(spec, sizing.size_archiver(spec, stream_sizing), US)
    assert costs.firehose_billed_gb == pytest.approx(123.596 * 730 / 720, rel=1e-5)
    assert costs.firehose_ingestion == pytest.approx(costs.firehose_billed_gb * 0.029)


def test_kinesis_on_demand_rounds_each_record_up_to_1_kb() -> None:
    """https://aws.amazon.com/kinesis/data-streams/pricing/ (on-demand Data-In): 'if your data records
    are 4.5 KB each, Kinesis Data Streams will count each record as 5 KB'."""
    k = pricing.kinesis_on_demand(1, 1, int(4.5 * 1024), consumers=1, retention_hours=24)
    assert k.gb_in * GB == 5 * 1024


# ---- hand-computed cases ----------------------------------------------------------------------


def test_on_demand_stream_hand_computed() -> None:
    """10 records/s of 1,500 bytes, on-demand, one stream stage + the archive = 2 consumers:
    stream-hours 730 x $0.04 = $29.20; records = 10 x 2,628,000 = 26,280,000;
    GB in = 26,280,000 x 2 KB (1,500 B rounds up to 2 KB) / 1024^3 = 50.125 GB x $0.08 = $4.01;
    GB out = 26,280,000 x 1,500 / 1024^3 x 2 = 73.42 GB x $0.04 = $2.94;
    retention 48 h: 24 extra hours of (26,280,000 x 2 KB / 2,628,000 s) = 20,480 B/s -> 1.6479 GB-months x $0.10."""
    spec = make_spec(stream={"archive": True, "retention_hours": 48}, workload={"records_per_second": 10, "record_bytes": 1500},
                     clouds={"aws": {"stream_mode": "on_demand"}})
    stream = lines(backend(spec).estimate_cost(free_tier=False), "stream")
    assert stream["Kinesis on-demand stream-hours"].monthly_usd == pytest.approx(29.20)
    assert stream["Kinesis on-demand data in (1 KB rounding per record)"].quantity == pytest.approx(26_280_000 * 2048 / GB)
    assert round(stream["Kinesis on-demand data in (1 KB rounding per record)"].monthly_usd, 2) == 4.01
    assert stream["Kinesis on-demand data out"].quantity == pytest.approx(26_280_000 * 1500 / GB * 2)
    assert round(stream["Kinesis on-demand data out"].monthly_usd, 2) == 2.94
    assert stream["Kinesis on-demand extended retention"].quantity == pytest.approx(20_480 * 24 * 3600 / GB)


def test_extended_retention_adds_shard_hours_only_above_24_hours() -> None:
    """Prod keeps 168 h: 2 shards x 730 h x $0.020 = $29.20 on top of 2 x 730 x $0.015 = $21.90."""
    prod = backend(load_spec(EXAMPLE, "prod").spec, "prod").estimate_cost(free_tier=False)
    stream = lines(prod, "stream")
    assert stream["Kinesis shard-hours"].monthly_usd == pytest.approx(21.90)
    assert stream["Kinesis extended retention shard-hours"].monthly_usd == pytest.approx(29.20)
    dev = backend(load_spec(EXAMPLE, "dev").spec, "dev").estimate_cost(free_tier=False)
    assert "Kinesis extended retention shard-hours" not in lines(dev, "stream")


def test_records_per_batch_fills_at_rate_times_window() -> None:
    """Prod: 1,500 records/s over 2 shards = 750/s per shard x 5 s window = 3,750 >= batch_size 500 -> 500.
    A quiet stream: 2 records/s on 1 shard x 5 s = 10 records per invocation, below batch_size.
    No window still waits for the 1 s poll: 2/s -> 2. The 6 MB invocation payload holds each record base64-encoded
    plus its ~600-byte envelope: 700 B -> 4 x 234 + 600 = 1,536 B, so 6,291,456 / 1,536 = 4,096 records at most;
    1 MiB records -> 1,398,104 + 600 B each, so 4 fit (not 6: the payload is the event, not the raw bytes)."""
    assert sizing.records_per_batch(500, 5, 750, 700) == 500
    assert sizing.records_per_batch(500, 5, 2, 700) == 10
    assert sizing.records_per_batch(500, 0, 2, 700) == 2
    assert sizing.records_per_batch(100, 5, 0.01, 700) == 1
    assert sizing.event_record_bytes(700) == 1_536
    assert sizing.records_per_batch(10_000, 300, 1000, 700) == 4_096
    assert sizing.records_per_batch(10_000, 300, 1000, 1024 * 1024) == 4


def test_example_dev_quantities_hand_computed() -> None:
    """Dev: 150 records/s x 2,628,000 s = 394,200,000 records; 1 shard, 150/s x 5 s = 750 -> batch 500;
    preprocess invocations = 394,200,000 / 500 = 788,400 of 80 + 500 x 0.2 = 180 ms; score runs once per
    preprocess object (475 rows: output_ratio 0.95) for 150 + 475 x 0.5 = 387.5 ms.
    preprocess GB-s = 0.5 GB x 0.18 s x 788,400 = 70,956; score (dev: 512 MB) 0.5 x 0.3875 x 788,400 = 152,752.5.
    Raw archive: 394,200,000 x 700 B / 4 (gzip) = 64.2 GiB a month, kept 7 (+ 7 as noncurrent versions) of 30.4167 days.
    The Lambda archiver (Firehose would bill each record as 5 KB): 150/s x 300 s = 45,000 records, capped at the
    4,096 a 6 MB payload holds -> 394,200,000 / 4,096 = 96,240.2 batches = as many objects (PUTs)."""
    est = backend(load_spec(EXAMPLE, "dev").spec, "dev").estimate_cost(free_tier=False)
    assert lines(est, "preprocess-function")["Lambda requests"].quantity == pytest.approx(788_400)
    assert lines(est, "score-function")["Lambda requests"].quantity == pytest.approx(788_400)
    assert lines(est, "preprocess-function")["Lambda duration (arm64)"].quantity == pytest.approx(70_956)
    assert lines(est, "score-function")["Lambda duration (arm64)"].quantity == pytest.approx(152_752.5)
    raw = lines(est, "raw-bucket")
    assert raw["S3 Standard storage"].quantity == pytest.approx(394_200_000 * 700 / 4 / GB * 14 / (730 / 24))
    assert raw["S3 PUT requests"].quantity == pytest.approx(394_200_000 / 4_096)
    # S3: PUT $0.005 per 1,000 and GET $0.0004 per 1,000 -> 788,400 PUTs = $3.942, 788,400 GETs = $0.31536.
    assert lines(est, "preprocess-bucket")["S3 PUT requests"].monthly_usd == pytest.approx(3.942)
    assert lines(est, "preprocess-bucket")["S3 GET requests (score)"].monthly_usd == pytest.approx(0.31536)
    # Versioned outputs stay 7 more days: 394,200,000 x 0.95 rows x 700 B kept 7 + 7 days.
    stored = 394_200_000 * 0.95 * 700 / GB * 14 / (730 / 24)
    assert lines(est, "preprocess-bucket")["S3 Standard storage"].quantity == pytest.approx(stored)
    # Only score reads the preprocess bucket: S3 notifies it directly, free (EventBridge billed 3 x 788,400 x $1.00/M = $2.37).
    assert not [line for line in est.lines if "EventBridge S3" in line.item]
    # SQS: 0.1 % of 788,400 invocations x 3 requests = 2,365.2 requests x $0.40/M.
    assert lines(est, "preprocess-dead-letter")["SQS requests"].quantity == 0  # a healthy pipeline, as on every cloud
    # Alarms: SQS dead letters, runtime dead letters, errors, throttles for 3 stages + lag for the stream stage = 13, and
    # the archiver's failed batches, errors, throttles and lag = 17 x $0.10.
    obs = lines(est, "observability")
    assert obs["CloudWatch standard alarms"].monthly_usd == pytest.approx(1.70)
    assert obs["CloudWatch custom metrics (dead letters from logs)"].monthly_usd == pytest.approx(0.90)
    assert obs["KMS customer-managed key (alarm topic)"].monthly_usd == pytest.approx(1.00)
    # Logs: 788,400 x 1 KiB = 0.7519 GB x $0.50, under the observability role like every cloud.
    assert obs["CloudWatch Logs ingestion (preprocess)"].quantity == pytest.approx(788_400 * 1024 / GB)
    assert not [line for line in est.lines if line.role.endswith("-function") and "Logs" in line.item]


@pytest.mark.parametrize("rate", [1, 150, 1500, 50_000])
def test_invocations_objects_and_logs_follow_batches_not_records(rate: int) -> None:
    """A stream stage batching 500 records in a 5 s window: invocations (hence object writes, downstream
    events and log volume) are records / batch, where the batch is what a shard collects in the window."""
    spec = make_spec(stream={"archive": False},
                     stages=[{"name": "work", "handler": "h.py:handle", "trigger": {"stream": {"batch_size": 500, "max_batching_window_s": 5}}},
                             {"name": "next", "handler": "h.py:handle", "trigger": {"objects": {"from": "work"}}}],
                     workload={"records_per_second": rate, "record_bytes": 700,
                               "stages": {"work": {"ms_per_record": 0.2, "ms_per_invocation": 80}}})
    aws = backend(spec)
    sized = aws.sizing()
    shards = sized.stream.units if sized.stream else 1
    batch = min(500, rate / shards / sized.stages["work"].settings["parallelization_factor"] * 5)
    records = rate * SECONDS_PER_MONTH
    est = aws.estimate_cost(free_tier=False)
    invocations = lines(est, "work-function")["Lambda requests"].quantity
    assert invocations == pytest.approx(records / batch)
    assert lines(est, "work-bucket")["S3 PUT requests"].quantity == pytest.approx(invocations)
    assert lines(est, "next-function")["Lambda requests"].quantity == pytest.approx(invocations)
    assert lines(est, "observability")["CloudWatch Logs ingestion (work)"].quantity == pytest.approx(invocations * 1024 / GB)
    if rate >= 150:
        assert invocations <= records / 500 * 1.0001  # full batches once a shard fills one in the window


# ---- free tier ---------------------------------------------------------------------------------


def test_lambda_free_tier_is_applied_once_across_functions() -> None:
    """Prod: 2 x 7,884,000 + 30.4 requests; the 1 M free requests are shared, not given per function,
    so the free tier saves exactly 1 M x $0.20/M = $0.20 on requests and 400,000 GB-s x $0.0000133334 on duration."""
    spec = load_spec(EXAMPLE, "prod").spec
    on, off = backend(spec).estimate_cost(free_tier=True), backend(spec).estimate_cost(free_tier=False)

    def total(est: CostEstimate, item: str) -> float:
        return sum(line.monthly_usd for line in est.lines if line.item == item)

    assert total(off, "Lambda requests") - total(on, "Lambda requests") == pytest.approx(1_000_000 * 0.0000002)
    assert total(off, "Lambda duration (arm64)") - total(on, "Lambda duration (arm64)") == pytest.approx(400_000 * 0.0000133334)
    assert on.total < off.total
    assert all(line.monthly_usd == pytest.approx(line.quantity * line.unit_usd) for line in off.lines)
    assert any("free" in line.note for line in on.lines)
    assert any("free tier on" in a for a in on.assumptions) and any("free tier off" in a for a in off.assumptions)


def test_free_tier_covers_a_small_pipeline_lambda_entirely() -> None:
    """1 record/s single-record invocations: 2,628,000 requests (> 1 M, so 1,628,000 billable = $0.3256),
    128 MB x 200 ms x 2,628,000 = 65,700 GB-s (< 400,000, so $0)."""
    est = backend(make_spec()).estimate_cost(free_tier=True)
    fn = lines(est, "work-function")
    assert fn["Lambda requests"].monthly_usd == pytest.approx(1_628_000 * 0.0000002)
    assert fn["Lambda duration (arm64)"].quantity == pytest.approx(65_700)
    assert fn["Lambda duration (arm64)"].monthly_usd == 0


def test_shared_free_splits_in_proportion_and_never_exceeds_use() -> None:
    assert pricing.shared_free(100, {"a": 300, "b": 100}) == {"a": 75, "b": 25}
    assert pricing.shared_free(1000, {"a": 30, "b": 10}) == {"a": 30, "b": 10}
    assert pricing.shared_free(10, {"a": 0}) == {"a": 0}


# ---- regions and price sheet --------------------------------------------------------------------


def test_known_region_without_prices_says_cost_unknown_and_lists_priced_regions() -> None:
    spec = make_spec(clouds={"aws": {"region": "ap-south-1"}})
    assert backend(spec).check() == []  # a real region: it plans
    with pytest.raises(PipelineError, match=r"no aws price sheet for region 'ap-south-1'.*ap-northeast-1, eu-central-1, eu-west-1, "
                                            r"us-east-1, us-east-2, us-west-2"):
        backend(spec).estimate_cost(free_tier=True)


@pytest.mark.parametrize("region", ["us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-central-1", "ap-northeast-1"])
def test_six_regions_are_priced(region: str) -> None:
    spec = load_spec(EXAMPLE, "dev").spec.model_copy(update={"clouds": make_spec(clouds={"aws": {"region": region}}).clouds})
    est = backend(spec).estimate_cost(free_tier=True)
    assert est.region == region and est.total > 0
    verified = [line for line in est.lines if not line.verify]
    assert verified, "every region has confirmed figures"


def test_unverified_prices_say_why() -> None:
    data = json.loads(pricing.PRICES_FILE.read_text())
    entries = [e for region in data["regions"].values() for e in region.values()] + list(data["global"].values())
    assert all(e["note"] for e in entries if e.get("verify"))
    us = data["regions"]["us-east-1"]
    # us-east-1: confirmed by the vendor's pages (or their worked examples), except what no vendor text could be read for.
    assert sorted(key for key, e in us.items() if e.get("verify")) == ["kinesis-extended-retention-shard-hour", "kinesis-on-demand-gb-out"]


def test_every_price_has_a_source_and_a_retrieval_date() -> None:
    data = json.loads(pricing.PRICES_FILE.read_text())
    assert all(set(data["regions"]["us-east-1"]) == set(prices) for prices in data["regions"].values())
    entries = [e for region in data["regions"].values() for e in region.values()] + list(data["global"].values())
    for entry in entries:
        assert entry["usd"] > 0
        assert entry["unit"]
        # Issue 21 item 7: the vendor's own pricing pages, documentation or Price List API; no repositories, notes or samples.
        assert re.match(r"https://(aws\.amazon\.com|docs\.aws\.amazon\.com|pricing\.us-east-1\.amazonaws\.com)/", entry["source"]), entry["source"]
        assert not re.search(r"github|infracost|/work/|reference/aws\.md", entry.get("note", "")), entry["note"]
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", entry["retrieved"])


# ---- the example spec ----------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_example_estimate_covers_every_costing_role(stack: str) -> None:
    spec = load_spec(EXAMPLE, stack).spec
    est = backend(spec, stack).estimate_cost(free_tier=False)
    expected = {"stream", "raw-archive", "raw-bucket", "dead-letter-bucket", "observability"}
    for s in spec.stages:
        expected |= {f"{s.name}-function", f"{s.name}-bucket", f"{s.name}-dead-letter"}
    expected |= {"calibrate-trigger"}  # Scheduler invocations
    assert expected <= set(est.by_role())
    assert "score-trigger" not in est.by_role()  # S3 notifies the only stage reading preprocess's bucket, at no charge
    assert est.total > 0
    assert all(line.source for line in est.lines)
    assert any("730 hours" in a for a in est.assumptions)
    assert math.isclose(est.to_dict()["total_usd"], round(est.total, 2))


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_cost_and_plan_use_the_same_sizing(stack: str) -> None:
    loaded = load_spec(EXAMPLE, stack)
    planned = plan(loaded, "aws")
    est = backend_class("aws")(loaded.spec, stack, loaded.base_dir).estimate_cost(free_tier=True)
    shard_hours = lines(est, "stream")["Kinesis shard-hours"].quantity
    assert shard_hours / HOURS_PER_MONTH == planned.sizing["stream"]["units"]
    assert planned.one("aws:kinesis/stream:Stream", "stream").inputs["shardCount"] == planned.sizing["stream"]["units"]


# ---- limits and resource classes -------------------------------------------------------------------


def test_limits() -> None:
    spec = load_spec(EXAMPLE, "dev").spec
    aws = backend(spec)
    lim = aws.limits()
    assert lim == limits(spec, aws.sizing())
    assert lim.max_record_bytes == 1024 * 1024
    assert lim.max_stage_timeout_s == 900
    assert lim.max_retention_hours == 8760
    assert lim.delivery == "at least once"
    assert lim.ordering == "per partition key within a shard"
    assert "bisect" in lim.poison_records and "SQS" in lim.poison_records and "(3)" in lim.poison_records
    assert all(src.startswith("https://docs.aws.amazon.com/") for src in lim.sources)
    assert max(s.timeout_s for s in spec.stages) <= lim.max_stage_timeout_s
    assert lim.http_max_request_bytes is None and lim.http_max_timeout_s is None  # no HTTP stage


def test_http_limits_are_the_function_urls() -> None:
    spec = make_spec(stages=[{"name": "api", "handler": "h.py:handle", "trigger": {"http": {}}}])
    lim = backend(spec).limits()
    assert lim.http_max_request_bytes == lim.http_max_response_bytes == 6 * 1024 * 1024
    assert lim.http_max_timeout_s == 900


def test_identity_and_grant_types_exist_in_the_plan(tmp_path: Path) -> None:
    """Every type named is one the plans really create (the example, and a bucket two stages read through EventBridge,
    whose dead letters need a queue policy), so comparisons count real resources."""
    (tmp_path / "h.py").write_text("def handle(records, context):\n    return []\n")
    (tmp_path / "pipeline.yaml").write_text(
        "name: fanout\nstages:\n  - {name: aa, handler: h.py:handle, trigger: {stream: {}}}\n"
        "  - {name: bb, handler: h.py:handle, trigger: {objects: {from: aa}}}\n  - {name: cc, handler: h.py:handle, trigger: {objects: {from: aa}}}\n")
    planned = [plan(load_spec(EXAMPLE, "dev"), "aws"), plan(load_spec(tmp_path / "pipeline.yaml"), "aws")]
    for type_ in AwsBackend.identity_types | AwsBackend.grant_types:
        assert any(p.of_type(type_) for p in planned), type_
    assert "aws:s3/bucketPolicy:BucketPolicy" not in AwsBackend.grant_types  # deny-only TLS policy grants nothing


# ---- the raw archive: Firehose or a Lambda archiver -----------------------------------------------


def archive_spec(rate: float, record_bytes: int, **stream: Any) -> PipelineSpec:
    return make_spec(stream={"archive": True, **stream}, workload={"records_per_second": rate, "record_bytes": record_bytes})


@pytest.mark.parametrize(("rate", "record_bytes", "kind"), [
    (1500, 700, "lambda"),  # 700 B bills as 5 KB: $470 of Firehose's $545 a month is rounding
    (1500, 6_000, "lambda"),  # 6,000 B bills as 10 KB: 41 % of the bill is rounding
    (40, 700, "lambda"),  # the 30 -> 40 rec/s step: the cheaper archiver at both rates, so the bill cannot fall
    (1500, 5_000, "lambda"),  # 5,000 B bills as 5,120 B (2 % rounding), yet Firehose's per-GB price costs ~$470 more
    (1500, 30_000, "lambda"),  # 30,000 B: Firehose ~$2,850 more
    (0.5, 700, "firehose"),  # a trickle: Firehose's pennies are below the archiver's alarms alone
])
def test_the_archive_is_the_cheaper_design(rate: float, record_bytes: int, kind: str) -> None:
    """Firehose or the archiver, whichever costs less (Firehose on a tie): no tolerance for the managed service, which
    would make the bill step down where the choice flips as the load grows."""
    aws = backend(archive_spec(rate, record_bytes))
    assert aws.raw_archive().kind == kind
    reasoning = aws.sizing().stream.reasoning  # type: ignore[union-attr]
    assert any(line.startswith("raw archive: Firehose would bill ") and "a Lambda archiver" in line for line in reasoning)
    assert any(line.startswith("=> Firehose" if kind == "firehose" else "=> Lambda archiver") for line in reasoning)
    est = aws.estimate_cost(free_tier=False)
    items = set(lines(est, "raw-archive"))
    if kind == "firehose":
        assert items == {"Firehose ingestion (5 KB rounding per record)"}
    else:
        assert items == {"Lambda requests", "Lambda duration (arm64)", "SQS requests (failed batches)"}
        assert {"CloudWatch Logs ingestion (raw archiver)", "CloudWatch Logs storage (raw archiver)"} <= set(lines(est, "observability"))


def test_the_comparison_prices_each_archive_exactly_as_the_estimate_does() -> None:
    """The figures in the reasoning are the estimate's own lines (list prices): storage aside, which is the same."""
    alarm = US["cloudwatch-alarm-month"].usd
    for spec, kind in ((load_spec(EXAMPLE, "dev").spec, "lambda"), (archive_spec(0.5, 700), "firehose")):
        aws = backend(spec, "dev")
        chosen = aws.raw_archive()
        assert chosen.kind == kind
        costs = pricing.archive_costs(spec, chosen.archiver, US)
        est = aws.estimate_cost(free_tier=False)
        archive_lines = [*lines(est, "raw-archive").values(), lines(est, "raw-bucket")["S3 PUT requests"],
                         *(line for line in est.lines if line.item.endswith("(raw archiver)"))]
        billed = sum(line.monthly_usd for line in archive_lines)
        if kind == "lambda":
            assert billed + 4 * alarm == pytest.approx(costs.archiver)
            assert costs.archiver < costs.firehose
        else:
            assert billed == pytest.approx(costs.firehose)


def test_example_dev_archiver_hand_computed() -> None:
    """Dev: 150 records/s of 700 B on 1 shard. Firehose: 394,200,000 x 5 KiB = 1,879.69 GiB x $0.029 = $54.51 (+ 8,760
    flushes x $0.000005 = $0.04), of which 86 % (4,420 of 5,120 bytes a record) is rounding: $47.06.
    The archiver: batches of 4,096 (the 6 MB payload) -> 96,240.2 invocations of 150 ms + 4,096 x 700/1,024 KiB x 100 us
    / (256/1,769 of a vCPU) = 2,084.8 ms at 256 MB = 50,161 GB-s x $0.0000133334 = $0.669; requests $0.019; PUTs
    96,240.2 x $0.000005 = $0.481; logs 96,240.2 KiB = 0.0918 GB ($0.046 ingested, $0.003 stored); 4 alarms $0.40."""
    spec = load_spec(EXAMPLE, "dev").spec
    archive = backend(spec, "dev").raw_archive()
    archiver = archive.archiver
    assert archiver.records_per_invocation == 4_096 and archiver.concurrency == 1
    assert archiver.invocations_per_month == pytest.approx(394_200_000 / 4_096)
    ms = 150 + 4_096 * 700 / 1024 * 100 / 1000 / (256 / 1769)
    assert archiver.invocation_ms == pytest.approx(ms)
    assert archiver.gb_seconds_per_month == pytest.approx(0.25 * ms / 1000 * 394_200_000 / 4_096)
    costs = pricing.archive_costs(spec, archiver, US)
    assert costs.firehose_ingestion == pytest.approx(394_200_000 * 5 * 1024 / GB * 0.029)
    assert costs.firehose_rounding == pytest.approx(costs.firehose_ingestion * 4_420 / 5_120)
    assert round(costs.firehose, 2) == 54.55
    assert round(costs.archiver, 2) == 1.62
    assert archive.reasoning[0] == ("raw archive: Firehose would bill 2.0 TB a month (5 KB per 700-byte record) = $54.55; "
                                    "a Lambda archiver (4,096 records a batch, 96,240 invocations) bills $1.62")


@pytest.mark.parametrize("rate", [1, 150, 1500, 50_000])
def test_the_archive_writes_batches_not_records(rate: int) -> None:
    """Whichever archive is planned, its objects (and the archiver's invocations and logs) follow batches: the
    archiver's batch is what a shard collects in 300 s, up to the 4,096 700-byte records a 6 MB payload holds."""
    aws = backend(archive_spec(rate, 700))
    stream = aws.sizing().stream
    assert stream is not None
    archiver = aws.raw_archive().archiver
    per_shard = rate / sizing.stream_shards(stream)
    assert archiver.records_per_invocation == pytest.approx(min(4_096, max(1.0, per_shard * 300)))
    records = rate * SECONDS_PER_MONTH
    assert archiver.invocations_per_month == pytest.approx(records / archiver.records_per_invocation)
    est = aws.estimate_cost(free_tier=False)
    objects = lines(est, "raw-bucket")["S3 PUT requests"].quantity
    assert objects <= max(records / 4_096, SECONDS_PER_MONTH / 300) * 1.0001
    if aws.raw_archive().kind == "lambda":
        assert lines(est, "raw-archive")["Lambda requests"].quantity == pytest.approx(archiver.invocations_per_month)
        assert lines(est, "observability")["CloudWatch Logs ingestion (raw archiver)"].quantity == pytest.approx(
            archiver.invocations_per_month * 1024 / GB)


def test_s3_events_count_every_event_a_fanned_out_bucket_sends_including_a_windows_lease_and_watermark() -> None:
    """EventBridge bills S3's opt-in data events as the bus ingests them, matched or not, once however many rules match:
    each output object of the hourly schedule sends Object Created, the lifecycle's delete marker and the noncurrent
    version's deletion (3), and each of the 3 state PUTs the schedule makes in the same versioned bucket every run (the
    lease twice, the watermark once) sends 2 more (created, and the replaced version's deletion): 730 runs a month, one
    output object each -> 730 x 3 + 730 x 3 x 2 = 6,570 events. Two stages read the bucket, hence EventBridge."""
    spec = make_spec(stages=[{"name": "work", "handler": "h.py:handle", "trigger": {"stream": {}}},
                             {"name": "hourly", "handler": "h.py:handle", "trigger": {"schedule": "rate(1 hour)", "from": "work"}},
                             {"name": "report", "handler": "h.py:handle", "trigger": {"objects": {"from": "hourly"}}},
                             {"name": "audit", "handler": "h.py:handle", "trigger": {"objects": {"from": "hourly"}}}])
    est = backend(spec).estimate_cost(free_tier=False)
    events = lines(est, "report-trigger")["EventBridge S3 events"]
    assert events.quantity == pytest.approx(730 * 3 + 730 * 3 * 2)
    assert "lease and watermark" in events.note and "2 stages read hourly" in events.note
    assert "EventBridge S3 events" not in lines(est, "audit-trigger")


# ---- worked examples of the new designs (issue 20): each line reproduces a hand calculation within 1 % ----------


def test_worked_example_http_stage_is_lambda_pricing_example_1() -> None:
    """An HTTP stage is a function URL, which adds nothing to Lambda's bill (https://aws.amazon.com/lambda/pricing/: "no
    additional charge for function URLs"), so Lambda's Example 1 (a mobile backend: 3 M requests a month of 120 ms at
    1,536 MB; x86 in the example, free tier applied: 140,000 GB-s x $0.0000166667 = $2.33 + 2 M x $0.20/M = $0.40) is an
    HTTP stage at 3,000,000 / 2,628,000 requests/s of one row. Our arm64 duration is re-priced at the example's x86 rate."""
    spec = make_spec(stream=None, stages=[{"name": "api", "handler": "h.py:handle", "memory_mb": 1536, "trigger": {"http": {}}}],
                     workload={"records_per_second": 1, "record_bytes": 100, "http": {"requests_per_second": 3_000_000 / SECONDS_PER_MONTH,
                                                                                      "rows_per_request": 1},
                               "stages": {"api": {"ms_per_record": 0, "ms_per_invocation": 120}}})
    fn = lines(backend(spec).estimate_cost(free_tier=True), "api-function")
    assert fn["Lambda requests"].monthly_usd == pytest.approx(0.40, rel=0.01)
    gb_s = fn["Lambda duration (arm64)"].quantity
    assert (gb_s - pricing.LAMBDA_FREE_GB_SECONDS) * LAMBDA_X86 == pytest.approx(2.33, rel=0.01)
    assert not [line for line in backend(spec).estimate_cost(free_tier=True).lines if "URL" in line.item]


def test_worked_example_a_schedule_over_accumulated_outputs() -> None:
    """`rate(15 minutes)` over a stream stage's outputs, no free tier: 2,920 runs a month.
    Scheduler: 2,920 x $1.00/M = $0.00292. The source writes one object per batch of 100 records at 10 records/s: 0.1 object/s,
    kept 7 days = 60,480 keys, so each run lists 61 pages: 2,920 x 61 = 178,120 LISTs x $0.005/1,000 = $0.8906. The lease
    and watermark: 3 PUTs and 2 GETs a run = 8,760 PUTs ($0.0438) and 5,840 GETs ($0.0023). Each run reads what arrived in
    15 minutes, 90 objects: 262,800 GETs ($0.1051)."""
    spec = make_spec(stages=[{"name": "work", "handler": "h.py:handle", "trigger": {"stream": {"batch_size": 100, "max_batching_window_s": 10}}},
                             {"name": "batch", "handler": "h.py:handle", "timeout_s": 900, "trigger": {"schedule": "rate(15 minutes)", "from": "work"}}],
                     workload={"records_per_second": 10, "record_bytes": 100})
    est = backend(spec).estimate_cost(free_tier=False)
    assert lines(est, "batch-trigger")["EventBridge Scheduler invocations"].monthly_usd == pytest.approx(0.00292, rel=0.01)
    work = lines(est, "work-bucket")
    assert work["S3 LIST requests (batch)"].monthly_usd == pytest.approx(0.8906, rel=0.01)
    assert work["S3 GET requests (batch)"].monthly_usd == pytest.approx(0.1051, rel=0.01)
    state = lines(est, "batch-bucket")
    assert state["S3 PUT requests (window lease and watermark)"].monthly_usd == pytest.approx(0.0438, rel=0.01)
    assert state["S3 GET requests (window lease and watermark)"].monthly_usd == pytest.approx(0.002336, rel=0.01)


def test_worked_example_uploads_the_bundled_upload_processing_prod() -> None:
    """40 files an hour of 50,000 lines of 900 B: 29,200 files = 1.314e12 bytes = 1,223.75 GB (of 2^30 bytes, as S3 bills)
    a month, no free tier. Landing bucket: kept 30 days + 7 as noncurrent versions = 1,223.75 x 37 / 30.4167 = 1,488.6
    GB-months x $0.023 = $34.24;
    29,200 PUTs x $0.005/1,000 = $0.146; 29,200 GETs x $0.0004/1,000 = $0.0117. S3 notifies `process` directly: no EventBridge.
    `process`: 29,200 invocations of 300 + 50,000 x 0.15 = 7,800 ms at 1,024 MB = 227,760 GB-s x $0.0000133334 = $3.0368.
    Its outputs (0.97 rows per line) kept 365 + 7 days: 1,187.04 GB x 372 / 30.4167 = 14,517.9 GB-months x $0.023 = $333.91."""
    spec = load_spec(EXAMPLE.parents[1] / "upload-processing" / "pipeline.yaml", "prod").spec
    est = backend(spec, "prod").estimate_cost(free_tier=False)
    landing = lines(est, "uploads-bucket")
    assert landing["S3 Standard storage"].monthly_usd == pytest.approx(34.24, rel=0.01)
    assert landing["S3 PUT requests"].monthly_usd == pytest.approx(0.146, rel=0.01)
    assert landing["S3 GET requests (process)"].monthly_usd == pytest.approx(0.01168, rel=0.01)
    assert lines(est, "process-function")["Lambda duration (arm64)"].monthly_usd == pytest.approx(3.0368, rel=0.01)
    assert lines(est, "process-bucket")["S3 Standard storage"].monthly_usd == pytest.approx(333.91, rel=0.01)
    assert "process-trigger" not in est.by_role()


def test_worked_example_firehose_where_it_is_built() -> None:
    """0.5 records/s of 700 B, where Firehose costs least: 1,314,000 records x 5,120 B = 6.2657 GB (2^30 bytes) x $0.029 = $0.1817 of
    ingestion, and one object per 300 s flush: 8,760 PUTs x $0.005/1,000 = $0.0438 (the archiver's 4 alarms alone are $0.40)."""
    spec = make_spec(stream={"archive": True}, workload={"records_per_second": 0.5, "record_bytes": 700})
    est = backend(spec).estimate_cost(free_tier=False)
    assert lines(est, "raw-archive")["Firehose ingestion (5 KB rounding per record)"].monthly_usd == pytest.approx(0.1817, rel=0.01)
    assert lines(est, "raw-bucket")["S3 PUT requests"].monthly_usd == pytest.approx(0.0438, rel=0.01)


def test_worked_example_logs_with_the_free_tier() -> None:
    """The example's dev stack: 788,400 invocations of preprocess and as many of score (1 KiB of logs each), 30.4 daily runs of
    calibrate and 96,240.2 archiver batches: 1,673,071 KiB = 1.5956 GB ingested a month, and 1.57 GB-months stored, all inside
    the 5 GB free allowance; without the free tier preprocess pays 0.75187 GB x $0.50 = $0.3759 and stores 0.75187 x 30 / 30.4167 =
    0.74157 GB-months x $0.03 = $0.02225."""
    spec = load_spec(EXAMPLE, "dev").spec
    paid = lines(backend(spec, "dev").estimate_cost(free_tier=False), "observability")
    assert paid["CloudWatch Logs ingestion (preprocess)"].monthly_usd == pytest.approx(0.3759, rel=0.01)
    assert paid["CloudWatch Logs storage (preprocess)"].monthly_usd == pytest.approx(0.02225, rel=0.01)
    free = lines(backend(spec, "dev").estimate_cost(free_tier=True), "observability")
    assert sum(line.monthly_usd for item, line in free.items() if item.startswith("CloudWatch Logs")) == pytest.approx(0.0, abs=1e-9)
