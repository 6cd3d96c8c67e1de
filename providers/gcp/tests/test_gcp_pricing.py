"""GCP cost model and limits: formulas checked against Google's published pricing examples and hand arithmetic,
and the per-record model (batching keeps invocations, objects and logs from scaling per record)."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
from pipeline_gcp import batching, pricing, sizing
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


def make_spec(tmp_path: Path, stages: list[dict[str, Any]], *, rps: float, record_bytes: int, archive: bool = True,
              region: str = "us-central1", work: dict[str, Any] | None = None, **extra: Any) -> PipelineSpec:
    """A small spec; handlers are stubs written to tmp_path."""
    (tmp_path / "h.py").write_text("def handle(records, context):\n    return []\n", encoding="utf-8")
    data: dict[str, Any] = {
        "name": "price-test",
        "stream": {"archive": archive},
        "stages": [{"handler": "h.py:handle", **stage} for stage in stages],
        "workload": {"records_per_second": rps, "record_bytes": record_bytes, "stages": work or {}},
        "clouds": {"gcp": {"project": "demo-project-1", "region": region}},
        **extra,
    }
    return PipelineSpec.model_validate(data, context={"base_dir": tmp_path})


def backend(spec: PipelineSpec) -> GcpBackend:
    return GcpBackend(spec, "dev", Path("."))


def estimate(spec: PipelineSpec, free_tier: bool = False) -> CostEstimate:
    return backend(spec).estimate_cost(free_tier)


def line(est: CostEstimate, role: str, item: str) -> float:
    found = [x.monthly_usd for x in est.lines if x.role == role and x.item.startswith(item)]
    assert len(found) == 1, (role, item, [(x.role, x.item) for x in est.lines])
    return found[0]


def quantity(est: CostEstimate, role: str, item: str) -> float:
    return next(x.quantity for x in est.lines if x.role == role and x.item.startswith(item))


# ---- Pub/Sub ----------------------------------------------------------------------------


def test_pubsub_minimum_billable_volume_example() -> None:
    """https://cloud.google.com/pubsub/pricing ("Minimum billable volume"): 100 publish requests each with one
    500-byte message have 50 KB of data but bill 1 KB/request x 100 = 100 KB; one request with all 100 bills 50 KB."""
    assert pricing.pubsub_billable_bytes(100, 500) == 100_000
    assert pricing.pubsub_billable_bytes(100, 500, messages_per_request=100) == 50_000
    assert pricing.pubsub_billable_bytes(100, 1500) == 150_000


def test_pubsub_message_size_rule() -> None:
    """https://cloud.google.com/pubsub/pricing ("message volume calculation"): body + attributes + 20 B timestamp +
    message_id. We assume a 16-character message_id: 700 + 0 + 20 + 16 = 736 B."""
    assert pricing.pubsub_message_bytes(700) == 736
    assert pricing.pubsub_message_bytes(700, attribute_bytes=64) == 800


@pytest.mark.parametrize(("tib", "subscriptions", "published_usd"), [(2.5, 1, 200), (2.5, 2, 300), (247.0, 1, 19_760), (247.0, 2, 29_640)])
def test_pubsub_pricing_examples_table(tib: float, subscriptions: int, published_usd: float) -> None:
    """https://cloud.google.com/pubsub/pricing ("Pricing examples"): 1 MiB/s = 2.5 TiB/month published, received once
    -> $200, twice -> $300; 100 MiB/s = 247 TiB -> $19,760 and $29,640: (published + received x subscriptions) x $40/TiB."""
    price = load_price_sheet(pricing.PRICE_FILE, "GCP", "us-central1")["pubsub_throughput"].usd
    assert tib * (1 + subscriptions) * price == pytest.approx(published_usd)


def test_stream_lines_hand_computed(tmp_path: Path) -> None:
    """10 records/s of 200 B, one stream stage (batch_size 100, window 10 s), raw archive on.

    records: 10 x 2,628,000 = 26,280,000 a month; message: 200 + 20 + 16 = 236 B
    publish (client batches, above the 1000 B minimum): 26,280,000 x 236 = 6.202e9 B / 2^40 x $40 = $0.2256
    ONE Cloud Storage subscription (the archive's files are the stage's batches): 6.202e9 / 2^40 x $50 = $0.2820
    files: 10 rec/s fill 100 records in 9.9 s (< the 10 s window): 262,800 files -> 262.8 x $0.005 = $1.314 Class A on the
      raw bucket, one read each 262.8 x $0.0004 = $0.1051 Class B; notifications: 262,800 x 2 x 1200 B / 2^40 x $40 = $0.02295
    function: 262,800 invocations, not 26,280,000."""
    spec = make_spec(tmp_path, [{"name": "pre", "trigger": {"stream": {"batch_size": 100, "max_batching_window_s": 10}}}], rps=10, record_bytes=200)
    est = estimate(spec)
    assert line(est, "stream", "Pub/Sub publish") == pytest.approx(26_280_000 * 236 / TB * 40)
    assert line(est, "raw-archive", "Pub/Sub Cloud Storage subscription") == pytest.approx(26_280_000 * 236 / TB * 50)
    assert not [x for x in est.lines if x.role == "pre-trigger" and "subscription throughput" in x.item]  # the old design paid twice
    assert line(est, "raw-bucket", "Cloud Storage Class A operations (object writes)") == pytest.approx(262.8 * 0.005)
    assert line(est, "pre-trigger", "Cloud Storage Class B operations (batch") == pytest.approx(262.8 * 0.0004)
    assert line(est, "pre-trigger", "Pub/Sub object notifications") == pytest.approx(262_800 * 2 * 1200 / TB * 40)
    assert quantity(est, "pre-function", "Cloud Run functions requests") == pytest.approx(0.2628)
    assert not [x for x in est.lines if "topic retention" in x.item]  # with archive on, replay comes from the archive


def test_archive_off_bills_the_stage_s_own_subscription(tmp_path: Path) -> None:
    """Without the archive the stage's own subscription writes its batch files: throughput, storage and writes there."""
    spec = make_spec(tmp_path, [{"name": "pre", "trigger": {"stream": {"batch_size": 100, "max_batching_window_s": 10}}}], rps=10,
                     record_bytes=200, archive=False)
    est = estimate(spec)
    assert line(est, "pre-trigger", "Pub/Sub Cloud Storage subscription") == pytest.approx(26_280_000 * 236 / TB * 50)
    assert line(est, "pre-trigger", "Cloud Storage Class A operations (batch file writes)") == pytest.approx(262.8 * 0.005)
    assert not [x for x in est.lines if x.role == "raw-archive"]


def test_the_window_is_honoured_at_the_workload(tmp_path: Path) -> None:
    """10 rec/s, batch_size 1000, window 5 s: max_bytes holds the window's 50 records, so a file closes after ~5 s, not the
    60 s max_duration floor (the old design: 600 records a minute, ~30 s typical wait)."""
    spec = make_spec(tmp_path, [{"name": "pre", "trigger": {"stream": {"batch_size": 1000, "max_batching_window_s": 5}}}], rps=10,
                     record_bytes=200)
    sized = backend(spec).sizing().stages["pre"]
    assert sized.records_per_invocation == 50
    assert sized.latency_max_s == pytest.approx(49 / 10 + sizing.NOTIFY_MAX_S)
    assert batching.sources(spec)["pre"].files.max_bytes == 50 * (200 + batching.AVRO_METADATA_BYTES)


def test_low_rates_close_files_on_max_duration(tmp_path: Path) -> None:
    """0.1 records/s: the 5 s window holds 1 record, below max_bytes' 1 KB minimum, which holds 3 records of 320 B: a file closes
    with its third record, 20 s after its first (and a slower stream waits for max_duration)."""
    spec = make_spec(tmp_path, [{"name": "pre", "trigger": {"stream": {"batch_size": 500, "max_batching_window_s": 5}}}], rps=0.1,
                     record_bytes=200)
    files = batching.sources(spec)["pre"].files
    assert files.max_bytes == batching.MIN_BYTES and files.limit == "bytes floor"
    sized = backend(spec).sizing().stages["pre"]
    assert sized.records_per_invocation == pytest.approx(min(3, 1 + 0.1 * 60))
    assert sized.latency_max_s == pytest.approx((3 - 1) / 0.1 + sizing.NOTIFY_MAX_S)
    slow = make_spec(tmp_path, [{"name": "pre", "trigger": {"stream": {"batch_size": 500, "max_batching_window_s": 300}}}], rps=0.5,
                     record_bytes=200)
    sized = backend(slow).sizing().stages["pre"]
    # 150 records (the 300 s window's at 0.5 rec/s) fill in 298 s, just inside max_duration
    assert sized.records_per_invocation == 150 and sized.latency_max_s == pytest.approx(149 / 0.5 + sizing.NOTIFY_MAX_S)


def test_batch_files_fit_the_stage_s_memory(tmp_path: Path) -> None:
    """500 records of 200 KB in a 512 MB function: the old design wrote 100 MB files the runtime (~6x a file) cannot hold.
    max_bytes is bounded to 512 MiB x 0.8 / 6 = 71,582,788 B: 357 records of 200,120 B (with metadata) a file."""
    spec = make_spec(tmp_path, [{"name": "pre", "trigger": {"stream": {"batch_size": 500, "max_batching_window_s": 60}}, "memory_mb": 512}],
                     rps=100, record_bytes=200_000, work={"pre": {"ms_per_record": 0.2, "ms_per_invocation": 80}})
    files = batching.sources(spec)["pre"].files
    assert files.limit == "memory" and files.max_bytes == int(512 * MIB * 0.8 / 6)
    per_file = files.max_bytes // (200_000 + batching.AVRO_METADATA_BYTES)
    assert per_file == 357 and files.max_bytes * batching.RUNTIME_FILE_FACTOR <= 512 * MIB
    sized = backend(spec).sizing().stages["pre"]
    assert sized.records_per_invocation == per_file
    assert quantity(estimate(spec), "pre-function", "Cloud Run functions requests") == pytest.approx(100 * SECONDS_PER_MONTH / per_file / 1e6)


def test_topic_retention_is_billed_only_without_an_archive(tmp_path: Path) -> None:
    """No archive: the topic keeps 24 h: 10 x 236 B x 86,400 s = 0.1899 GiB x $0.27."""
    spec = make_spec(tmp_path, [{"name": "pre", "trigger": {"stream": {}}}], rps=10, record_bytes=200, archive=False)
    assert line(estimate(spec), "stream", "Pub/Sub topic retention") == pytest.approx(10 * 236 * 86_400 / GB * 0.27)


# ---- the per-record model ------------------------------------------------------------------------


@pytest.mark.parametrize("rps", [1, 150, 1_500, 50_000])
def test_invocations_objects_and_logs_do_not_scale_per_record(tmp_path: Path, rps: float) -> None:
    """With batch_size 500, a stream stage and the object stage after it run once per batch, not per record."""
    spec = make_spec(tmp_path, [{"name": "pre", "trigger": {"stream": {"batch_size": 500}}},
                                {"name": "post", "trigger": {"objects": {"from": "pre"}}}], rps=rps, record_bytes=700,
                     work={"pre": {"ms_per_record": 0.2, "ms_per_invocation": 80}, "post": {"ms_per_record": 0.5, "ms_per_invocation": 150}})
    b = backend(spec)
    est = b.estimate_cost(False)
    records = rps * SECONDS_PER_MONTH
    per_file = batching.sources(spec)["pre"].files.records_per_file
    for stage in ("pre", "post"):
        assert b.sizing().stages[stage].invocations_per_month == pytest.approx(records / per_file)
        # at most one invocation per window's worth of records (5 s at the workload), never one per record
        assert quantity(est, f"{stage}-function", "Cloud Run functions requests") * 1e6 <= records / min(500, rps * 5) + 1
    assert quantity(est, "pre-bucket", "Cloud Storage Class A operations (object writes)") * 1000 == pytest.approx(records / per_file)
    log_bytes = quantity(est, "observability", "Cloud Logging ingestion") * GB
    assert log_bytes == pytest.approx(2 * records / per_file * (pricing.REQUEST_LOG_BYTES + pricing.RUNTIME_LOG_BYTES))
    for name, sized in b.sizing().stages.items():
        assert sized.capacity_records_per_second >= sized.demand_records_per_second, name


# ---- Cloud Run functions ---------------------------------------------------------------


def test_cloud_run_published_units() -> None:
    """https://cloud.google.com/run/pricing: "A GiB-second means for example running a 1 gibibyte instance for
    1 second, or running a 256 mebibyte instance for 4 seconds"; charges are "rounded up to the nearest 100
    millisecond" (the 1st-gen page's example, https://cloud.google.com/functions/pricing-1stgen: 260 ms -> 300 ms)."""
    assert pricing.run_usage(1, 1000, 1024, 1.0) == (1.0, 1.0)
    assert pricing.run_usage(1, 4000, 256, 0.167)[1] == 1.0
    assert pricing.run_billable_seconds(260) == pytest.approx(0.3)
    assert pricing.run_billable_seconds(1) == pytest.approx(0.1)


def test_cloud_run_free_tier_value() -> None:
    """https://cloud.google.com/run/pricing: 180,000 vCPU-s x $0.000024 + 360,000 GiB-s x $0.0000025 = $5.22; 2 M requests = $0.80."""
    sheet = load_price_sheet(pricing.PRICE_FILE, "GCP", "us-central1")
    assert pricing.RUN_FREE_VCPU_S * sheet["run_vcpu_second"].usd + pricing.RUN_FREE_GIB_S * sheet["run_gib_second"].usd == pytest.approx(5.22)
    assert pricing.RUN_FREE_MILLION_REQUESTS * sheet["run_requests"].usd == pytest.approx(0.80)


def test_cloud_run_hand_computed(tmp_path: Path) -> None:
    """A 512 MiB stream stage (0.333 vCPU) at 1,000 rec/s, batch_size 500: 2 files/s = 5,256,000 invocations a month,
    each 80 + 500 x 0.2 = 180 ms -> billed 0.2 s: 1,051,200 s x 0.333 = 350,049.6 vCPU-s x $0.000024 = $8.4012;
    1,051,200 x 0.5 GiB x $0.0000025 = $1.314; 5.256 M requests x $0.40 = $2.1024."""
    spec = make_spec(tmp_path, [{"name": "pre", "trigger": {"stream": {"batch_size": 500}}, "memory_mb": 512}], rps=1000, record_bytes=100,
                     work={"pre": {"ms_per_record": 0.2, "ms_per_invocation": 80}})
    est = estimate(spec)
    assert quantity(est, "pre-function", "Cloud Run functions requests") == pytest.approx(5.256)
    assert line(est, "pre-function", "Cloud Run functions CPU") == pytest.approx(350_049.6 * 0.000024)
    assert line(est, "pre-function", "Cloud Run functions memory") == pytest.approx(1_051_200 * 0.5 * 0.0000025)
    assert line(est, "pre-function", "Cloud Run functions requests") == pytest.approx(5.256 * 0.40)


def test_http_requests_are_priced_per_request(tmp_path: Path) -> None:
    """20 requests/s of 10 rows to a 256 MiB HTTP stage: 52,560,000 requests x $0.40/M = $21.024."""
    spec = make_spec(tmp_path, [{"name": "api", "trigger": {"http": {}}, "memory_mb": 256}], rps=1, record_bytes=100,
                     **{"uploads": {}})
    spec = spec.model_copy(update={"workload": spec.workload.model_copy(update={"http": spec.workload.http.model_copy(update={"requests_per_second": 20})})})
    est = estimate(spec)
    assert line(est, "api-function", "Cloud Run functions requests") == pytest.approx(52.56 * 0.40)
    assert not [x for x in est.lines if x.role == "api-bucket"]  # no persist: no output objects


def test_uploads_are_priced_per_file(tmp_path: Path) -> None:
    """60 files/hour of 10,000 records of 700 B: 43,800 uploads (Class A) and as many notifications and reads for the object stage."""
    (tmp_path / "h.py").write_text("def handle(rows, context):\n    return []\n", encoding="utf-8")
    spec = PipelineSpec.model_validate({
        "name": "up-test", "uploads": {}, "stages": [{"name": "load", "handler": "h.py:handle", "trigger": {"objects": {"from": "uploads"}}}],
        "workload": {"record_bytes": 700}, "clouds": {"gcp": {"project": "demo-project-1"}}}, context={"base_dir": tmp_path})
    est = estimate(spec)
    assert quantity(est, "uploads-bucket", "Cloud Storage Class A operations (uploads)") == pytest.approx(43.8)
    assert line(est, "load-trigger", "Pub/Sub object notifications") == pytest.approx(43_800 * 2 * 1200 / TB * 40)
    assert quantity(est, "load-trigger", "Cloud Storage Class B") == pytest.approx(43.8)


# ---- Cloud Storage, Monitoring, soft delete -------------------------------------------------------


def test_cloud_storage_simple_example() -> None:
    """https://cloud.google.com/storage/pricing-examples ("Simple example"): 50 GB x $0.020 = $1.00; 10,000 Class A x
    $0.005/1,000 = $0.05; 50,000 Class B x $0.0004/1,000 = $0.02 (the example's bucket is in us-east1)."""
    sheet = load_price_sheet(pricing.PRICE_FILE, "GCP", "us-east1")
    est = CostEstimate("gcp", "us-east1", free_tier=False)
    est.add("b", "storage", 50, sheet["gcs_standard_storage"])
    est.add("b", "class A", 10, sheet["gcs_class_a"])
    est.add("b", "class B", 50, sheet["gcs_class_b"])
    assert [round(x.monthly_usd, 2) for x in est.lines] == [1.00, 0.05, 0.02]


def test_soft_delete_adds_seven_days_of_storage(tmp_path: Path) -> None:
    """Soft delete keeps expired objects 7 more days: the raw bucket (30 days) bills 7/30 of its storage again."""
    spec = make_spec(tmp_path, [{"name": "pre", "trigger": {"stream": {}}}], rps=10, record_bytes=200)
    est = estimate(spec)
    assert quantity(est, "raw-bucket", "Cloud Storage soft-deleted") == pytest.approx(quantity(est, "raw-bucket", "Cloud Storage Standard") * 7 / 30)
    assert not [x for x in est.lines if x.role == "pre-trigger" and "soft-deleted" in x.item]  # batch files: soft delete off


def test_monitoring_alerting_example() -> None:
    """https://cloud.google.com/monitoring/alerts/cost-control (2025 copy, Example 1): one condition returning 100 series every
    30 s, 86,400 periods a month -> 8.64 million x $0.35/million = $3.02, plus $1.50 per condition = $4.52."""
    sheet = load_price_sheet(pricing.PRICE_FILE, "GCP", "us-central1")
    points = pricing.alert_points_millions(1, 100, seconds=30 * 86_400)
    assert round(points * sheet["monitoring_alert_time_series"].usd, 2) == 3.02
    assert round(points * sheet["monitoring_alert_time_series"].usd + sheet["monitoring_alert_condition"].usd, 2) == 4.52


# ---- regions ---------------------------------------------------------------------------------------


def test_six_regions_are_priced_with_sources_and_dates() -> None:
    data = json.loads(pricing.PRICE_FILE.read_text())
    assert len(data["regions"]) >= 6
    for region in data["regions"]:
        sheet = load_price_sheet(pricing.PRICE_FILE, "GCP", region)
        for name, price in sheet.prices.items():
            assert price.source.startswith("https://cloud.google.com/"), name
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", price.retrieved), name
            assert not price.verify or price.note, name  # a figure marked verify says why


def test_known_region_without_prices_says_cost_unknown(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, [{"name": "pre", "trigger": {"stream": {}}}], rps=1, record_bytes=100, region="asia-northeast1")
    assert backend(spec).check() == []
    with pytest.raises(PipelineError, match=r"price sheets exist for: .*us-central1"):
        estimate(spec)


def test_unknown_region_is_a_located_error(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, [{"name": "pre", "trigger": {"stream": {}}}], rps=1, record_bytes=100, region="us-east7")
    [(path, message, hint)] = backend(spec).check()
    assert path == ("clouds", "gcp", "region") and "us-east7" in message and "us-central1" in hint


# ---- the example and its limits -------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_example_estimate_is_batched_and_complete(stack: str) -> None:
    loaded = load_spec(EXAMPLE, stack)
    est = backend(loaded.spec).estimate_cost(False)
    roles = {x.role for x in est.lines}
    assert {"stream", "raw-archive", "preprocess-function", "preprocess-trigger", "score-function", "score-trigger", "observability"} <= roles
    assert est.unpriced and est.assumptions
    records = loaded.spec.workload.records_per_second * SECONDS_PER_MONTH
    assert quantity(est, "preprocess-function", "Cloud Run functions requests") * 1e6 == pytest.approx(records / 500)
    assert plan(loaded, "gcp").sizing["stages"]["preprocess"]["records_per_invocation"] == 500


def test_limits_of_the_example() -> None:
    got = limits(load_spec(EXAMPLE, "dev").spec)
    assert got.max_stage_timeout_s == 540  # stream/object stages behind push (the schedule allows 1,800 s)
    assert got.max_record_bytes == 10_000_000
    assert got.http_max_request_bytes is None


def test_http_limits(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, [{"name": "api", "trigger": {"http": {}}}], rps=1, record_bytes=100, **{"uploads": {}})
    got = limits(spec)
    assert (got.http_max_request_bytes, got.http_max_response_bytes, got.http_max_timeout_s) == (32 * MIB, 32 * MIB, 3600)
    assert got.max_stage_timeout_s == 3600


def test_batch_bucket_outlives_the_event_age() -> None:
    assert batching.retention_days(3600) == 2
    assert batching.retention_days(86_400) == 2


# ---- totals never decrease when only the load grows ------------------------------------------------------------------

GRID_RPS = [1, 3, 10, 30, 100, 300, 1_000, 3_000, 10_000, 20_000]
GRID_BYTES = [100, 300, 1_000, 3_000, 10_000, 30_000]


def _grid_spec(tmp_path: Path, rps: float, record_bytes: int, files_per_hour: float = 60, http_rps: float = 2) -> PipelineSpec:
    (tmp_path / "h.py").write_text("def handle(records, context):\n    return []\n", encoding="utf-8")
    return PipelineSpec.model_validate({
        "name": "grid", "stream": {"archive": True}, "uploads": {},
        "stages": [
            {"name": "pre", "handler": "h.py:handle", "trigger": {"stream": {"batch_size": 500, "max_batching_window_s": 5}}},
            {"name": "raw2", "handler": "h.py:handle", "trigger": {"stream": {"batch_size": 100, "max_batching_window_s": 30}}},
            {"name": "post", "handler": "h.py:handle", "trigger": {"objects": {"from": "pre"}}},
            {"name": "files", "handler": "h.py:handle", "trigger": {"objects": {"from": "uploads"}}},
            {"name": "hourly", "handler": "h.py:handle", "trigger": {"schedule": "rate(1 hour)", "from": "post"}},
            {"name": "api", "handler": "h.py:handle", "trigger": {"http": {"persist": True}}},
            {"name": "pull", "handler": "h.py:handle", "trigger": {"http": {"from": "files"}}},
        ],
        "workload": {"records_per_second": rps, "record_bytes": record_bytes,
                     "uploads": {"files_per_hour": files_per_hour, "records_per_file": 1000}, "http": {"requests_per_second": http_rps}},
        "clouds": {"gcp": {"project": "demo-project-1"}},
    }, context={"base_dir": tmp_path})


def _total(spec: PipelineSpec) -> float:
    return sum(x.monthly_usd for x in estimate(spec).lines)


def test_totals_never_decrease_when_only_the_load_grows(tmp_path: Path) -> None:
    """records_per_second 1..20,000 x record_bytes 100..30,000: every row and every column is non-decreasing."""
    totals = {(rps, size): _total(_grid_spec(tmp_path, rps, size)) for rps in GRID_RPS for size in GRID_BYTES}
    for size in GRID_BYTES:
        row = [totals[(rps, size)] for rps in GRID_RPS]
        assert all(b >= a - 1e-9 for a, b in itertools.pairwise(row)), (size, row)
    for rps in GRID_RPS:
        column = [totals[(rps, size)] for size in GRID_BYTES]
        assert all(b >= a - 1e-9 for a, b in itertools.pairwise(column)), (rps, column)


@pytest.mark.parametrize("knob", ["files_per_hour", "http_rps"])
def test_totals_grow_with_uploads_and_requests(tmp_path: Path, knob: str) -> None:
    values = [0.1, 1, 10, 100, 1_000, 10_000]
    totals = [_total(_grid_spec(tmp_path, 100, 700, **{knob: value})) for value in values]
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(totals)), totals


def test_stream_scoring_dev_worked_example() -> None:
    """stacks/stream-scoring, dev: 10 records/s of 300 B; preprocess batch_size 1000, window 10 s; score-batch every 15 min
    over preprocess's outputs (kept 7 days); score-api at 0.2 requests/s.

    batch files: the window's 100 records (max_bytes 100 x 420 B = 42,000): 26,280,000 / 100 = 262,800 files a month,
      written by the raw archive's subscription (262.8 x $0.005 = $1.314 Class A on raw-bucket), read once each
    score-batch: 2,920 runs; preprocess keeps 262,800 / 2,628,000 x 604,800 s = 60,480 objects -> 61 list pages a run:
      178,120 lists x $0.005/1000 = $0.8906; 8,760 lease/watermark writes = $0.0438; 262,800 + 5,840 reads = $0.10746
    logs: (262,800 + 2,920 + 525,600) invocations x 1,400 B = 1.0318 GiB x $0.50 = $0.5159"""
    est = backend(load_spec(REPO / "stacks" / "stream-scoring" / "pipeline.yaml", "dev").spec).estimate_cost(False)
    assert line(est, "raw-bucket", "Cloud Storage Class A operations (object writes)") == pytest.approx(1.314, rel=0.01)
    assert quantity(est, "preprocess-function", "Cloud Run functions requests") == pytest.approx(0.2628, rel=0.01)
    # listing and reading bill the source's bucket, the window's own state the stage's bucket (as on every cloud)
    assert line(est, "preprocess-bucket", "Cloud Storage Class A operations (list, score-batch)") == pytest.approx(0.8906, rel=0.01)
    assert line(est, "score-batch-bucket", "Cloud Storage Class A operations (window lease") == pytest.approx(0.0438, rel=0.01)
    assert (line(est, "preprocess-bucket", "Cloud Storage Class B operations (object reads, score-batch)")
            + line(est, "score-batch-bucket", "Cloud Storage Class B operations (window lease")) == pytest.approx(0.10746, rel=0.01)
    assert line(est, "observability", "Cloud Logging ingestion") == pytest.approx(0.5159, rel=0.01)
