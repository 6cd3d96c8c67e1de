"""GCP cost model and limits: formulas checked against Google's published pricing examples and hand arithmetic.

Google's examples use a 30-day month where they say so; our estimates use 730 hours (the calculators'
convention), so where a whole estimate is compared with a published figure the month length is scaled back.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pipeline_gcp import pricing
from pipeline_gcp.backend import GcpBackend
from pipeline_gcp.limits import limits

from pipeline.cost import GB, SECONDS_PER_MONTH, TB, CostEstimate, load_price_sheet
from pipeline.errors import PipelineError
from pipeline.planner import plan
from pipeline.spec.load import load_spec
from pipeline.spec.model import PipelineSpec

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "stacks" / "transactions" / "pipeline.yaml"
MIB = 2**20
THIRTY_DAYS_S = 30 * 86_400


def make_spec(tmp_path: Path, stages: list[dict[str, Any]], *, rps: float, record_bytes: int, archive: bool = True,
              region: str = "us-central1", durations: dict[str, int] | None = None, **extra: Any) -> PipelineSpec:
    """A small spec whose workload matches a published example; handlers are stubs written to tmp_path."""
    (tmp_path / "h.py").write_text("def handle(records, context):\n    return []\n", encoding="utf-8")
    data: dict[str, Any] = {
        "name": "price-test",
        "stream": {"archive": archive},
        "stages": [{"handler": "h.py:handle", **stage} for stage in stages],
        "workload": {"records_per_second": rps, "record_bytes": record_bytes, "stage_duration_ms": durations or {}},
        "clouds": {"gcp": {"project": "demo-project-1", "region": region}},
        **extra,
    }
    return PipelineSpec.model_validate(data, context={"base_dir": tmp_path})


def estimate(spec: PipelineSpec, free_tier: bool = False) -> CostEstimate:
    return GcpBackend(spec, "dev", Path(".")).estimate_cost(free_tier)


def line(est: CostEstimate, role: str, item: str) -> float:
    found = [x.monthly_usd for x in est.lines if x.role == role and x.item.startswith(item)]
    assert len(found) == 1, (role, item, [(x.role, x.item) for x in est.lines])
    return found[0]


def quantity(est: CostEstimate, role: str, item: str) -> float:
    return next(x.quantity for x in est.lines if x.role == role and x.item.startswith(item))


def by_service(est: CostEstimate, word: str) -> float:
    return sum(x.monthly_usd for x in est.lines if x.item.startswith(word))


# ---- Pub/Sub ----------------------------------------------------------------------------


def test_pubsub_minimum_billable_volume_example() -> None:
    """https://cloud.google.com/pubsub/pricing ("Minimum billable volume"): 100 publish requests each with one
    500-byte message have 50 KB of data but bill 1 KB/request x 100 = 100 KB; one request with all 100 bills 50 KB."""
    assert pricing.pubsub_billable_bytes(100, 500) == 100_000
    assert pricing.pubsub_billable_bytes(100, 500, messages_per_request=100) == 50_000
    # Above the minimum a message bills its own size: 1,500 B x 100 = 150 KB either way.
    assert pricing.pubsub_billable_bytes(100, 1500) == 150_000


def test_pubsub_message_size_rule() -> None:
    """https://cloud.google.com/pubsub/pricing ("message volume calculation"): body + attributes + 20 B timestamp +
    message_id. We assume a 16-character message_id: 700 + 0 + 20 + 16 = 736 B."""
    assert pricing.pubsub_message_bytes(700) == 736
    assert pricing.pubsub_message_bytes(700, attribute_bytes=64) == 800


@pytest.mark.parametrize(("mib_per_s", "subscriptions", "published_usd"), [(1, 1, 200), (1, 2, 300), (100, 1, 19_760), (100, 2, 29_640)])
def test_pubsub_pricing_examples_table(tmp_path: Path, mib_per_s: int, subscriptions: int, published_usd: float) -> None:
    """https://cloud.google.com/pubsub/pricing ("Pricing examples" table comparing Pub/Sub with Lite):
    1 MiB/s published = 2.5 TiB/month, received once -> $200 total Pub/Sub cost, received twice (5 TiB) -> $300;
    100 MiB/s = 247 TiB/month -> $19,760 and $29,640. Throughput is (published + received x subscriptions) x $40/TiB.

    Our estimate of a spec with 1 MiB records at `mib_per_s` records/s, one push subscription per stream stage
    (`subscriptions` stream stages) and no archive, reproduces these: its throughput lines scaled from 730 h to
    the table's 30-day month (247 TiB = 100 MiB/s x 30 days) agree within 0.1 % at 100 MiB/s and 1.2 % at 1 MiB/s,
    where the table rounds 2.47 TiB up to 2.5. (Our message size adds 36 B of timestamp and message_id to the body.)"""
    stages = [{"name": f"s{i}", "trigger": {"stream": {}}} for i in range(subscriptions)]
    est = estimate(make_spec(tmp_path, stages, rps=mib_per_s, record_bytes=MIB, archive=False))
    throughput = by_service(est, "Pub/Sub publish") + by_service(est, "Pub/Sub push")
    assert throughput * THIRTY_DAYS_S / SECONDS_PER_MONTH == pytest.approx(published_usd, rel=0.012 if mib_per_s == 1 else 0.001)
    # And the published quantities priced with our sheet give the published dollars exactly.
    price = load_price_sheet(pricing.PRICE_FILE, "GCP", "us-central1")["pubsub_throughput"].usd
    tib = {1: 2.5, 100: 247.0}[mib_per_s]
    assert tib * (1 + subscriptions) * price == pytest.approx(published_usd)
    # 247 TiB is 100 MiB/s for 30 days: 100 x 2^20 x 2,592,000 / 2^40 = 247.2
    tib_in_30_days = 100 * MIB * THIRTY_DAYS_S / TB
    assert tib_in_30_days == pytest.approx(247.2, abs=0.05)


def test_pubsub_free_tier_is_10_gib_shared(tmp_path: Path) -> None:
    """10 GiB a month of Message Delivery Basic are free per billing account, shared by publish and deliveries.

    0.5 records/s x 2,628,000 s = 1,314,000 records; each publish and each push bills 1000 B (the minimum):
    1.314 GB publish + 1.314 GB push = 2.45 GiB < 10 GiB -> $0 with the free tier, 2.628e9 B / 2^40 x $40 = $0.0956 without."""
    spec = make_spec(tmp_path, [{"name": "pre", "trigger": {"stream": {}}}], rps=0.5, record_bytes=200)
    paid, free = estimate(spec), estimate(spec, free_tier=True)
    assert by_service(paid, "Pub/Sub publish") + by_service(paid, "Pub/Sub push") == pytest.approx(2 * 1_314_000 * 1000 / TB * 40)
    assert by_service(free, "Pub/Sub publish") + by_service(free, "Pub/Sub push") == 0
    assert "GiB of the 10 GiB free tier" in next(x.note for x in free.lines if x.item == "Pub/Sub publish throughput")


# ---- Cloud Run functions ---------------------------------------------------------------


def test_cloud_run_published_units() -> None:
    """https://cloud.google.com/run/pricing: "A GiB-second means for example running a 1 gibibyte instance for
    1 second, or running a 256 mebibyte instance for 4 seconds"; charges are "rounded up to the nearest 100
    millisecond" (the 1st-gen page's example, https://cloud.google.com/functions/pricing-1stgen: 260 ms is billed as 300 ms)."""
    assert pricing.run_usage(1, 1000, 1024, 1.0) == (1.0, 1.0)
    assert pricing.run_usage(1, 4000, 256, 0.167)[1] == 1.0
    assert pricing.run_billable_seconds(260) == pytest.approx(0.3)
    assert pricing.run_billable_seconds(300) == pytest.approx(0.3)
    assert pricing.run_billable_seconds(1) == pytest.approx(0.1)


def test_cloud_run_free_tier_value() -> None:
    """https://cloud.google.com/run/pricing: free per month 180,000 vCPU-s, 360,000 GiB-s, 2 million requests, at Tier 1
    prices $0.000024/vCPU-s, $0.0000025/GiB-s, $0.40/million: 180,000 x 0.000024 + 360,000 x 0.0000025 = $4.32 + $0.90 = $5.22 + $0.80 of requests."""
    sheet = load_price_sheet(pricing.PRICE_FILE, "GCP", "us-central1")
    compute = pricing.RUN_FREE_VCPU_S * sheet["run_vcpu_second"].usd + pricing.RUN_FREE_GIB_S * sheet["run_gib_second"].usd
    assert compute == pytest.approx(5.22)
    assert pricing.RUN_FREE_MILLION_REQUESTS * sheet["run_requests"].usd == pytest.approx(0.80)


def test_cloud_run_hand_computed(tmp_path: Path) -> None:
    """10 million invocations a month of a 512 MiB stage (0.333 vCPU, the gen2 tier functions.py configures) running 150 ms.

    billed time: 150 ms -> 0.2 s; 10,000,000 x 0.2 s = 2,000,000 s
    CPU:      2,000,000 x 0.333 = 666,000 vCPU-s x $0.000024 = $15.984; free tier: (666,000 - 180,000) x 0.000024 = $11.664
    memory:   2,000,000 x 0.5 GiB = 1,000,000 GiB-s x $0.0000025 = $2.50; free tier: 640,000 x 0.0000025 = $1.60
    requests: 10 million x $0.40 = $4.00; free tier: 8 x 0.40 = $3.20
    A push subscription delivers one record per request, so 10 M records are 10 M invocations (batch_size 500 ignored)."""
    rps = 10_000_000 / SECONDS_PER_MONTH
    spec = make_spec(tmp_path, [{"name": "pre", "trigger": {"stream": {"batch_size": 500}}, "memory_mb": 512}], rps=rps, record_bytes=100,
                     durations={"pre": 150})
    paid, free = estimate(spec), estimate(spec, free_tier=True)
    assert quantity(paid, "pre-function", "Cloud Run functions requests") == pytest.approx(10.0)
    assert line(paid, "pre-function", "Cloud Run functions CPU") == pytest.approx(15.984)
    assert line(paid, "pre-function", "Cloud Run functions memory") == pytest.approx(2.50)
    assert line(paid, "pre-function", "Cloud Run functions requests") == pytest.approx(4.00)
    assert line(free, "pre-function", "Cloud Run functions CPU") == pytest.approx(11.664)
    assert line(free, "pre-function", "Cloud Run functions memory") == pytest.approx(1.60)
    assert line(free, "pre-function", "Cloud Run functions requests") == pytest.approx(3.20)


def test_cloud_run_free_tier_is_shared_across_functions(tmp_path: Path) -> None:
    """The free vCPU-seconds are per billing account: the first function uses them up, the second pays in full.

    Each stage: 10 M x 0.2 s x 0.333 = 666,000 vCPU-s. First: (666,000 - 180,000) x 0.000024 = $11.664; second: $15.984."""
    rps = 10_000_000 / SECONDS_PER_MONTH
    spec = make_spec(tmp_path, [{"name": "aa", "trigger": {"stream": {}}}, {"name": "bb", "trigger": {"stream": {}}}], rps=rps,
                     record_bytes=100, durations={"aa": 150, "bb": 150})
    est = estimate(spec, free_tier=True)
    assert line(est, "aa-function", "Cloud Run functions CPU") == pytest.approx(11.664)
    assert line(est, "bb-function", "Cloud Run functions CPU") == pytest.approx(15.984)


# ---- Cloud Storage ----------------------------------------------------------------------


def test_cloud_storage_simple_example() -> None:
    """https://cloud.google.com/storage/pricing-examples ("Simple example", no always-free discounts):
    50 GB Standard x $0.020 = $1.00; 10,000 Class A x $0.005/1,000 = $0.05; 50,000 Class B x $0.0004/1,000 = $0.02
    (the example's bucket is in us-east1, which has us-central1's prices)."""
    sheet = load_price_sheet(pricing.PRICE_FILE, "GCP", "us-central1")
    est = CostEstimate("gcp", "us-central1", free_tier=False)
    est.add("b", "storage", 50, sheet["gcs_standard_storage"])
    est.add("b", "class A", 10_000 / 1000, sheet["gcs_class_a"])
    est.add("b", "class B", 50_000 / 1000, sheet["gcs_class_b"])
    assert [round(x.monthly_usd, 2) for x in est.lines] == [1.00, 0.05, 0.02]
    assert round(est.total, 2) == 1.07


def test_raw_archive_and_outputs_hand_computed(tmp_path: Path) -> None:
    """10 records/s of 200 B, one stream stage pre (then an object stage post reading pre's objects), raw kept 30 days.

    records = 10 x 2,628,000 = 26,280,000 a month
    raw archive: uncompressed text, 201 B a line -> 5,282,280,000 B = 4.9195 GiB a month; kept 30 of 30.4167 days
      -> 4.9195 x 30 / 30.4167 = 4.8521 GB-months x $0.020 = $0.0970
    archive files: max(2,628,000 s / 300 s, 5.28e9 B / 64 MiB = 78.7) = 8,760 objects -> 8.76 x $0.005 = $0.0438
    Cloud Storage subscription: 26,280,000 x 236 B (body + 20 + 16) = 6.20e9 B / 2^40 = 0.0056 TiB x $50 = $0.2821
    pre's bucket: 26,280,000 objects (one per invocation) -> 26,280 x $0.005 = $131.40 Class A;
      post reads each once -> 26,280 x $0.0004 = $10.512 Class B
    storage events into post: 26,280,000 x 2 requests x 1,500 B = 7.884e10 B / 2^40 x $40 = $2.868"""
    spec = make_spec(tmp_path, [{"name": "pre", "trigger": {"stream": {}}}, {"name": "post", "trigger": {"objects": {"from": "pre"}}}],
                     rps=10, record_bytes=200, storage={"raw_days": 30})
    est = estimate(spec)
    raw_bytes = 26_280_000 * 201
    assert quantity(est, "raw-bucket", "Cloud Storage Standard storage") == pytest.approx(raw_bytes / GB * 30 / (730 / 24))
    assert line(est, "raw-bucket", "Cloud Storage Standard storage") == pytest.approx(raw_bytes / GB * 30 / (730 / 24) * 0.020)
    assert quantity(est, "raw-bucket", "Cloud Storage Class A") == pytest.approx(8.76)
    assert line(est, "raw-bucket", "Cloud Storage Class A") == pytest.approx(0.0438)
    assert line(est, "raw-archive", "Pub/Sub Cloud Storage subscription") == pytest.approx(26_280_000 * 236 / TB * 50)
    assert line(est, "pre-bucket", "Cloud Storage Class A") == pytest.approx(131.40)
    assert line(est, "pre-bucket", "Cloud Storage Class B") == pytest.approx(10.512)
    assert line(est, "post-trigger", "Pub/Sub transport") == pytest.approx(26_280_000 * 2 * 1500 / TB * 40)
    assert line(est, "post-trigger", "Eventarc events") == 0


def test_archive_objects_follow_duration_or_size() -> None:
    """A Cloud Storage subscription closes a file after max_duration (300 s) or max_bytes (64 MiB), whichever comes first."""
    assert pricing.archive_objects(0) == SECONDS_PER_MONTH / 300  # quiet stream: one file per 5 minutes
    assert pricing.archive_objects(64 * MIB * 100_000) == 100_000  # busy stream: size-bound


# ---- Scheduler, Logging, Monitoring -------------------------------------------------------


def test_monitoring_alerting_example() -> None:
    """https://cloud.google.com/monitoring/alerts/cost-control (Example 1): one condition returning 100 time series per
    30-second period, 86,400 periods a month -> 8.64 million series x $0.35/million = $3.02, plus $1.50 per condition = $4.52."""
    sheet = load_price_sheet(pricing.PRICE_FILE, "GCP", "us-central1")
    series = pricing.alert_time_series_millions(1, seconds=THIRTY_DAYS_S, period_s=30, series_per_condition=100)
    assert series == pytest.approx(8.64)
    assert round(series * sheet["monitoring_alert_time_series"].usd, 2) == 3.02
    assert round(series * sheet["monitoring_alert_time_series"].usd + sheet["monitoring_alert_condition"].usd, 2) == 4.52


def test_scheduler_logging_and_alerts_hand_computed(tmp_path: Path) -> None:
    """One scheduled stage (every hour) and one stream stage at 1 record/s.

    Scheduler: 1 job x $0.10 = $0.10; free tier: 3 jobs free -> $0
    Logging: invocations = 2,628,000 (stream) + 730 (hourly) = 2,628,730 x 2,000 B = 4.896 GiB x $0.50 = $2.448; free: 50 GiB -> $0
    Alerts: stream stage 3 conditions (dead letters, errors, lag) + schedule stage 3 (dead letters, errors, failures) = 6 x $1.50 = $9"""
    spec = make_spec(tmp_path, [{"name": "pre", "trigger": {"stream": {}}}, {"name": "tick", "trigger": {"schedule": "rate(1 hour)"}}],
                     rps=1, record_bytes=100)
    paid, free = estimate(spec), estimate(spec, free_tier=True)
    assert line(paid, "tick-trigger", "Cloud Scheduler job") == pytest.approx(0.10)
    assert line(free, "tick-trigger", "Cloud Scheduler job") == 0
    assert line(paid, "observability", "Cloud Logging") == pytest.approx(2_628_730 * 2000 / GB * 0.50)
    assert line(free, "observability", "Cloud Logging") == 0
    assert quantity(paid, "observability", "Cloud Monitoring alert conditions") == 6
    assert line(paid, "observability", "Cloud Monitoring alert conditions") == pytest.approx(9.0)


# ---- free tier, regions, the example ---------------------------------------------------------


def test_free_tier_lowers_only_lines_with_allowances(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, [{"name": "pre", "trigger": {"stream": {}}, "memory_mb": 256}], rps=0.5, record_bytes=200)
    paid, free = estimate(spec), estimate(spec, free_tier=True)
    assert free.free_tier and not paid.free_tier
    assert 0 < free.total < paid.total
    for item in ("Cloud Run functions", "Pub/Sub publish", "Pub/Sub push", "Cloud Logging"):
        assert by_service(paid, item) > 0
        assert by_service(free, item) == 0, item
    # Lines without a free allowance cost the same either way.
    for item in ("Pub/Sub Cloud Storage subscription", "Pub/Sub topic retention", "Cloud Monitoring"):
        assert by_service(paid, item) > 0
        assert by_service(free, item) == pytest.approx(by_service(paid, item))


def test_europe_west1_has_prices_but_no_free_storage(tmp_path: Path) -> None:
    """Cloud Storage's Always Free 5 GB-months apply to US regions only."""
    spec = make_spec(tmp_path, [{"name": "pre", "trigger": {"stream": {}}}], rps=5, record_bytes=500, region="europe-west1")
    est = estimate(spec, free_tier=True)
    assert est.region == "europe-west1" and est.total > 0
    storage = next(x for x in est.lines if x.role == "raw-bucket" and x.item == "Cloud Storage Standard storage")
    assert "free" not in storage.note and storage.monthly_usd == pytest.approx(storage.quantity * 0.020)


def test_region_without_prices_is_a_clear_error(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, [{"name": "pre", "trigger": {"stream": {}}}], rps=1, record_bytes=100, region="asia-east1")
    with pytest.raises(PipelineError) as caught:
        estimate(spec)
    message = str(caught.value)
    assert "asia-east1" in message and "europe-west1, us-central1" in message


def test_price_sheet_entries_have_sources_and_dates() -> None:
    data = json.loads(pricing.PRICE_FILE.read_text(encoding="utf-8"))
    entries = [*data["global"].values(), *(e for region in data["regions"].values() for e in region.values())]
    assert entries
    for entry in entries:
        assert entry["source"].startswith("https://cloud.google.com/"), entry
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", entry["retrieved"]), entry
        assert entry["unit"] and entry["usd"] >= 0
    assert set(data["regions"]) == {"us-central1", "europe-west1"}
    assert set(data["regions"]["us-central1"]) == set(data["regions"]["europe-west1"])


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_example_estimate_covers_every_costly_role(stack: str) -> None:
    loaded = load_spec(EXAMPLE, stack)
    backend = GcpBackend(loaded.spec, stack, EXAMPLE.parent)
    for free_tier in (False, True):
        est = backend.estimate_cost(free_tier)
        costly = {"stream", "raw-archive", "raw-bucket", "preprocess-function", "preprocess-trigger", "preprocess-bucket",
                  "score-function", "score-trigger", "score-bucket", "calibrate-trigger", "observability"}
        roles = est.by_role()
        missing = costly - {role for role, usd in roles.items() if usd > 0 or (free_tier and role == "calibrate-trigger")}
        assert not missing
        assert {line.role for line in est.lines} >= costly | {"calibrate-function", "calibrate-bucket"}
        assert est.total > 0
        assert all(line.source.startswith("https://") for line in est.lines)
        assert any("730 hours" in a for a in est.assumptions)
        assert any("one message per request" in a for a in est.assumptions)
    # Stream invocations are records, not batches: 1500 or 150 records/s x 2,628,000 s.
    records = loaded.spec.workload.records_per_second * SECONDS_PER_MONTH
    assert quantity(backend.estimate_cost(False), "preprocess-function", "Cloud Run functions requests") == pytest.approx(records / 1e6)


# ---- limits and resource types -----------------------------------------------------------------


def test_limits_of_the_example() -> None:
    spec = load_spec(EXAMPLE, "dev").spec
    got = GcpBackend(spec, "dev", EXAMPLE.parent).limits()
    assert got.max_record_bytes == 10_000_000
    assert got.max_stage_timeout_s == 540  # stream and object stages are in use
    assert got.max_retention_hours == 744
    assert got.delivery == "at least once"
    assert got.ordering == "none unless ordering keys are used (not enabled)"
    assert "dead-letter topic after 5 delivery attempts" in got.poison_records
    assert "single failing records" in got.poison_records
    assert all(s.startswith("https://cloud.google.com/") for s in got.sources)


def test_schedule_only_timeout_is_the_scheduler_deadline(tmp_path: Path) -> None:
    """A scheduled stage is an HTTP function (60 min), but Cloud Scheduler's HTTP attempt deadline is at most 30 min."""
    spec = make_spec(tmp_path, [{"name": "tick", "trigger": {"schedule": "rate(1 hour)"}}], rps=1, record_bytes=100)
    assert limits(spec).max_stage_timeout_s == 1800


def test_identity_and_grant_types_match_the_plan() -> None:
    planned = plan(load_spec(EXAMPLE, "dev"), "gcp")
    types = {r.type for r in planned.cloud_resources}
    iam_members = {t for t in types if t.lower().endswith("iammember")}
    assert iam_members == GcpBackend.grant_types & types
    assert GcpBackend.grant_types >= iam_members
    assert GcpBackend.identity_types == {"gcp:serviceaccount/account:Account"} and GcpBackend.identity_types <= types
