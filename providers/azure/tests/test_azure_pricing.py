"""The Azure cost model and limits: published pricing examples, hand-computed cases, free tier, regions."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest
from pipeline_azure import pricing, sizing
from pipeline_azure.backend import AzureBackend

from pipeline.cost import CostEstimate, load_price_sheet
from pipeline.errors import PipelineError
from pipeline.spec.load import load_spec
from pipeline.spec.model import PipelineSpec

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "stacks" / "transactions" / "pipeline.yaml"
EASTUS = load_price_sheet(pricing.PRICES, "Azure", "eastus")


def spec_of(tmp_path: Path, body: str) -> PipelineSpec:
    (tmp_path / "h.py").write_text("def handle(records, context):\n    return records\n")
    path = tmp_path / "pipeline.yaml"
    path.write_text(textwrap.dedent(body))
    return load_spec(str(path)).spec


def backend(spec: PipelineSpec, base: Path) -> AzureBackend:
    return AzureBackend(spec, "dev", base)


def line(est: CostEstimate, role: str, item_start: str) -> float:
    found = [x for x in est.lines if x.role == role and x.item.startswith(item_start)]
    assert len(found) == 1, (role, item_start, [(x.role, x.item) for x in est.lines])
    return found[0].monthly_usd


STREAM_ONLY = """
    name: tiny
    stream: {archive: false}
    stages:
      - name: clean
        handler: h.py:handle
        trigger: {stream: {batch_size: 100, max_batching_window_s: 5}}
        memory_mb: 512
    workload: {records_per_second: 100, record_bytes: 1024}
    storage: {final_days: 365}
"""


# ---- published examples -------------------------------------------------------------------------


def test_gb_seconds_reproduce_the_functions_cost_page() -> None:
    """https://learn.microsoft.com/azure/azure-functions/functions-consumption-costs: "your function consumed
    0.5 GB for 3 seconds. Then the execution cost is 0.5GB * 3s = 1.5 GB-seconds", and 1,110,000,000
    Function Execution Units (MB-ms) "/ 1024000 = 1083.98 GB-seconds"."""
    assert pricing.gb_seconds(512, 3) == 1.5
    assert round(pricing.gb_seconds(1, 1_110_000_000 / 1000), 2) == 1083.98


def test_flex_minimum_billable_period() -> None:
    """https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#billing: "The minimum billable
    execution period ... is 1,000 ms. Past that, the billable activity period is rounded up to the nearest 100 ms."
    One daily 2,000 ms run: 30.4 runs x 2.0 s; one daily 120 ms run: 30.4 x 1 s; 1,250 ms -> 1.3 s."""
    runs = 730 / 24
    assert pricing.flex_billed_seconds(runs, 2.0) == pytest.approx(runs * 2.0)
    assert pricing.flex_billed_seconds(runs, 0.12) == pytest.approx(runs * 1.0)
    assert pricing.flex_billed_seconds(runs, 1.25) == pytest.approx(runs * 1.3)
    # A busy stage is one long activity period: 10/s x 0.5 s = 5 instance-s per s (several instances) -> execution time.
    busy = 10 * pricing.SECONDS_PER_MONTH
    assert pricing.flex_billed_seconds(busy, 0.5) == pytest.approx(busy * 0.5)


def test_event_grid_reproduces_pricing_example_1() -> None:
    """https://azure.microsoft.com/pricing/details/event-grid/ example 1: an Azure Function processes images
    through Event Grid when 5 million images are created in Blob storage: 5 million published events +
    5 million delivery attempts - 100,000 free = 9.9 million operations, at $0.60 per million = $5.94."""
    est = CostEstimate("azure", "eastus", free_tier=True)
    ops = pricing.event_grid_operations(5_000_000, 5_000_000)
    est.add("x", "ops", ops, pricing.per_unit(EASTUS["eventgrid_operations"], 1e6, "operation"), free=pricing.EVENT_GRID_FREE_OPERATIONS)
    assert ops - pricing.EVENT_GRID_FREE_OPERATIONS == 9_900_000
    assert est.total == pytest.approx(5.94)


def test_event_hubs_ingress_events_count_per_64_kb() -> None:
    """Event Hubs pricing FAQ (https://azure.microsoft.com/pricing/details/event-hubs/): "An ingress event is a
    unit of data 64 KB or less"; larger events are billed in multiples of 64 KB (Microsoft support article
    "Troubleshoot data export and pricing problems in Azure Event Hubs"). So 8 KB -> 1, 64 KB -> 1,
    96 KB -> 2, 1 MB -> 16 billable events."""
    assert pricing.billable_events(1, 8 * 1024) == 1
    assert pricing.billable_events(1, 64 * 1024) == 1
    assert pricing.billable_events(1, 96 * 1024) == 2
    assert pricing.billable_events(1, 1024 * 1024) == 16


# ---- hand-computed -----------------------------------------------------------------------------


def test_hand_computed_stream_stage(tmp_path: Path) -> None:
    """100 records/s of 1 KB, one stream stage (batch 100, window 5 s), no archive, 512 MB, default work (100 ms + 1 ms/record).

    Records a month: 100 x 2,628,000 s = 262,800,000. Sizing: 1 TU, 2 partitions -> 50 records/s per
    partition x 5 s = 250 >= 100, so batches are full (100 records, 200 ms): 2,628,000 invocations (1 per second).
    """
    spec = spec_of(tmp_path, STREAM_ONLY)
    est = backend(spec, tmp_path).estimate_cost(free_tier=False)
    assert line(est, "stream", "Event Hubs Standard throughput units") == pytest.approx(1 * 730 * 0.03)  # $21.90
    assert line(est, "stream", "Event Hubs ingress events") == pytest.approx(262.8 * 0.028)  # $7.3584
    # Invocations 2,628,000 x 0.2 s = 525,600 s busy; 1/s with 1 s minimum periods -> min(2,628,000 s, one
    # instance-month 2,628,000 s) = 2,628,000 instance-s x 0.5 GB = 1,314,000 GB-s x $0.000026 = $34.164.
    assert line(est, "clean-function", "Flex Consumption on-demand execution time") == pytest.approx(1_314_000 * 0.000026)
    assert line(est, "clean-function", "Flex Consumption on-demand executions") == pytest.approx(2.628 * 0.40)  # $1.0512
    assert line(est, "clean-bucket", "Blob write operations") == pytest.approx(262.8 * 0.0625)  # 2,628,000 / 10,000 x $0.0625 (ZRS)
    # Outputs: 262,800,000 x 1,024 B = 250.63 GiB a month, kept 365 days -> x 365 / (730/24) = x 12 GB-months, Hot ZRS.
    gib = 262_800_000 * 1024 / 1024**3
    assert line(est, "clean-bucket", "Blob Hot ZRS storage (stage outputs)") == pytest.approx(gib * 12 * 0.026)
    # ... and each expired blob stays soft-deleted 7 more days: 250.63 x 7 / 30.42 GB-months.
    assert line(est, "clean-bucket", "Blob Hot ZRS storage (soft-deleted") == pytest.approx(gib * 7 / (730 / 24) * 0.026)
    # Host storage: 2,628,000 checkpoints + 2 partitions x 0.1 lease renewals/s x 2,628,000 s = 3,153,600 ops x $0.004/10k.
    assert line(est, "clean-trigger", "Host storage operations") == pytest.approx(315.36 * 0.004)
    # Telemetry with host.json's logging (telemetry.py): an AppRequests row + the runtime's line, 1,500 B per invocation
    # (was 3 KiB, untuned): 2,628,000 x 1,500 B = 3.67 GiB x $2.30.
    assert line(est, "observability", "Log Analytics ingestion") == pytest.approx(2_628_000 * 1500 / 1024**3 * 2.30)
    # Alerts: errors + dead-letters (log, 5 min), one rule each over every app = 2 x $1.50; stream throttling metric = 1 series x $0.10.
    assert line(est, "observability", "Log search alert rules") == 3.0
    assert line(est, "observability", "Metric alert time series") == pytest.approx(0.10)
    assert not [x for x in est.lines if x.role in ("raw-archive", "raw-bucket", "platform")]  # no Capture, no Event Grid
    assert any("730 hours" in a for a in est.assumptions)
    assert est.unpriced and any("egress" in u for u in est.unpriced)


def test_free_tier_takes_each_grant_once(tmp_path: Path) -> None:
    """Free grants: 100,000 GB-s x $0.000026 = $2.60, 250,000 executions x $0.0000004 = $0.10, and all of the 3.67 GB
    of logs (under the 5 GB grant) x $2.30 = $8.44 -> the free-tier estimate is $11.14 lower. Nothing else changes."""
    spec = spec_of(tmp_path, STREAM_ONLY)
    paid, free = (backend(spec, tmp_path).estimate_cost(free_tier=f) for f in (False, True))
    assert paid.total - free.total == pytest.approx(2.60 + 0.10 + 2_628_000 * 1500 / 1024**3 * 2.30)
    assert "100,000 GB-s free" in next(x.note for x in free.lines if x.item.endswith("execution time"))
    assert all(x.monthly_usd >= 0 for x in free.lines)


def test_free_grant_is_shared_between_stages(tmp_path: Path) -> None:
    """Two tiny stages: the 250,000 free executions are per subscription, so together they get 250,000, not 500,000."""
    spec = spec_of(tmp_path, STREAM_ONLY.replace("""    workload:""", """      - name: again
        handler: h.py:handle
        trigger: {schedule: "rate(1 minute)"}
    workload:"""))
    est = backend(spec, tmp_path).estimate_cost(free_tier=True)
    executions = [x for x in est.lines if x.item == "Flex Consumption on-demand executions"]
    assert len(executions) == 2
    billed = sum(x.monthly_usd for x in executions) / 0.0000004
    assert billed == pytest.approx(sum(x.quantity for x in executions) - 250_000)


def test_stream_batches_explained(tmp_path: Path) -> None:
    """Dev example: 150 records/s over 2 partitions = 75/s; a 5 s window gathers 375 < 500 -> batches of 375,
    so 150 x 2,628,000 / 375 = 1,051,200 invocations; prod (1,500/s over 2 partitions) fills 500 -> 7,884,000."""
    for stack, invocations in (("dev", 1_051_200), ("prod", 7_884_000)):
        loaded = load_spec(str(EXAMPLE), stack)
        est = AzureBackend(loaded.spec, stack, loaded.base_dir).estimate_cost(free_tier=False)
        execs = next(x for x in est.lines if x.role == "preprocess-function" and x.item.endswith("executions"))
        assert execs.quantity == pytest.approx(invocations)
        assert "events per batch" in execs.note


@pytest.mark.parametrize("rate", [1, 150, 1_500, 50_000])
def test_invocations_objects_and_logs_do_not_scale_per_record(tmp_path: Path, rate: float) -> None:
    """Per-record model: with batch_size 500 and a 5 s window, a stream stage's invocations (and so its output
    objects and telemetry) are records / batch, never one per record; object stages run once per object."""
    body = f"""
        name: scale
        stream: {{archive: false, partitions: 32}}
        stages:
          - {{name: clean, handler: h.py:handle, trigger: {{stream: {{batch_size: 500, max_batching_window_s: 5}}}}}}
          - {{name: score, handler: h.py:handle, trigger: {{objects: {{from: clean}}}}}}
        workload:
          records_per_second: {rate}
          record_bytes: 200
          stages: {{clean: {{ms_per_record: 0.05, ms_per_invocation: 50}}, score: {{ms_per_record: 0.05, ms_per_invocation: 50}}}}
    """
    spec = spec_of(tmp_path, body)
    b = backend(spec, tmp_path)
    sized = b.sizing().stages
    per_partition = rate / 32
    expected_batch = min(500.0, max(1.0, per_partition * 5))
    assert sized["clean"].records_per_invocation == pytest.approx(expected_batch)
    est = b.estimate_cost(free_tier=False)
    records = rate * 2_628_000
    invocations = next(x for x in est.lines if x.role == "clean-function" and x.item.endswith("executions")).quantity
    assert invocations == pytest.approx(records / expected_batch)
    if per_partition * 5 >= 500:
        assert invocations == pytest.approx(records / 500)  # full batches
    writes = next(x for x in est.lines if x.role == "clean-bucket" and x.item.startswith("Blob write")).quantity
    assert writes == pytest.approx(invocations)
    score = next(x for x in est.lines if x.role == "score-function" and x.item.endswith("executions")).quantity
    assert score == pytest.approx(invocations)  # one per object, not per row
    logs = next(x for x in est.lines if x.item == "Log Analytics ingestion (telemetry of clean)").quantity
    assert logs == pytest.approx(invocations * pricing.TELEMETRY_BYTES_PER_INVOCATION / 1024**3)


def test_uploads_http_and_accumulating_schedule_are_priced(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, """
        name: feeds
        uploads: {}
        stages:
          - {name: ingest, handler: h.py:handle, trigger: {objects: {from: uploads}}}
          - {name: daily, handler: h.py:handle, trigger: {schedule: "0 6 * * *", from: ingest}, timeout_s: 900}
          - {name: lookup, handler: h.py:handle, trigger: {http: {}}}
        workload:
          record_bytes: 500
          uploads: {files_per_hour: 10, records_per_file: 1000}
          http: {requests_per_second: 2, rows_per_request: 10}
          stages: {daily: {ms_per_record: 0.01}}
    """)
    b = backend(spec, tmp_path)
    est = b.estimate_cost(free_tier=False)
    runs = b.sizing().stages["daily"].invocations_per_month
    files = 10 * 730
    assert next(x for x in est.lines if x.role == "uploads-bucket" and x.item.startswith("Blob write")).quantity == files
    assert next(x for x in est.lines if x.role == "uploads-bucket" and x.item.startswith("Blob read")).quantity == files
    assert next(x for x in est.lines if x.role == "ingest-function" and x.item.endswith("executions")).quantity == pytest.approx(files)
    # Event Grid: every upload and every output object is published; uploads are delivered to ingest.
    published = next(x for x in est.lines if x.role == "platform" and x.item.startswith("Event Grid")).quantity
    # uploads + ingest outputs + daily's output, its lease taken and released and its watermark (runtime windows: 3 PUTs a run)
    assert published == pytest.approx(files + files + 4 * runs)
    # HTTP: one execution per request, the per-request price.
    requests = 2 * 2_628_000
    http = next(x for x in est.lines if x.role == "lookup-function" and x.item.endswith("executions"))
    assert http.quantity == pytest.approx(requests) and http.unit_usd == pytest.approx(0.40 / 1e6)
    assert not [x for x in est.lines if x.role == "lookup-bucket"]  # no persist: no objects
    # The daily run lists ingest's prefix (7 days of objects, 5,000 per page) and reads each new object once.
    kept = 10 / 3600 * 7 * 86_400
    lists = next(x for x in est.lines if x.role == "ingest-bucket" and x.item.startswith("Blob list"))
    assert lists.quantity == pytest.approx(runs * math.ceil(kept / 5000))


def test_object_stage_event_grid_counts_every_blob_created(tmp_path: Path) -> None:
    """The system topic publishes every blob created in the data account (the raw archive's blobs, under
    raw-archive, and every stage's outputs); only the object stage's source objects are delivered."""
    loaded = load_spec(str(EXAMPLE), "dev")
    est = AzureBackend(loaded.spec, "dev", loaded.base_dir).estimate_cost(free_tier=False)
    published = [x for x in est.lines if x.role in ("platform", "raw-archive") and x.item.startswith("Event Grid")]
    delivered = next(x for x in est.lines if x.role == "score-trigger" and x.item.startswith("Event Grid"))
    writes = sum(x.quantity for x in est.lines if x.item.startswith("Blob write operations"))
    assert len(published) == 2 and sum(x.quantity for x in published) == pytest.approx(writes)
    assert delivered.quantity == pytest.approx(1_051_200)


# ---- regions, example, limits, types --------------------------------------------------------------


def test_region_without_prices_is_a_clear_error(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, STREAM_ONLY + "    clouds: {azure: {location: japaneast}}\n")
    with pytest.raises(PipelineError, match=r"no Azure price sheet for region 'japaneast'.*eastus, eastus2, northeurope"):
        backend(spec, tmp_path).estimate_cost(free_tier=False)


def test_every_price_has_source_and_date_and_says_why_it_needs_verifying() -> None:
    regions = ("eastus", "eastus2", "westus2", "westeurope", "northeurope", "southeastasia", "uksouth")
    for region in regions:
        sheet = load_price_sheet(pricing.PRICES, "Azure", region)
        for name, price in sheet.prices.items():
            assert price.usd > 0 and price.unit, name
            assert price.source.startswith("https://"), name
            assert len(price.retrieved) == 10 and price.retrieved[4] == "-", name
            if price.verify:
                assert price.note, (region, name)
            # issue 21 item 7: vendor sources only (pricing pages, the Retail Prices API, Microsoft Learn), never a repository
            assert price.source.startswith(("https://azure.microsoft.com/", "https://prices.azure.com/", "https://learn.microsoft.com/")), (region, name)
    east = load_price_sheet(pricing.PRICES, "Azure", "eastus")
    # figures only seen in third-party captures of the vendor's meters stay marked to verify
    assert sorted(n for n, p in east.prices.items() if p.verify) == [
        "blob_hot_zrs_list_ops", "eventhubs_standard_capture", "eventhubs_standard_ingress", "eventhubs_standard_tu", "log_analytics_ingestion",
        "monitor_log_alert_5min", "monitor_metric_alert_series", "queue_operations"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_example_has_a_line_for_every_costly_role(stack: str) -> None:
    loaded = load_spec(str(EXAMPLE), stack)
    est = AzureBackend(loaded.spec, stack, loaded.base_dir).estimate_cost(free_tier=True)
    roles = est.by_role()
    for role in ("stream", "raw-archive", "raw-bucket", "preprocess-function", "score-function", "preprocess-bucket",
                 "score-bucket", "preprocess-trigger", "score-trigger", "platform", "observability"):
        assert roles.get(role, 0) > 0, role
    assert "calibrate-function" in roles  # present, within the free grant
    assert est.total > 0
    assert est.to_dict()["total_usd"] == round(est.total, 2)


def test_memory_is_the_flex_instance_size() -> None:
    """Prod score asks 1,024 MB; Flex runs it on a 2,048 MB instance, and that is what is billed."""
    loaded = load_spec(str(EXAMPLE), "prod")
    est = AzureBackend(loaded.spec, "prod", loaded.base_dir).estimate_cost(free_tier=False)
    gbs = next(x for x in est.lines if x.role == "score-function" and x.item.endswith("execution time"))
    assert "2048 MB instance size" in gbs.note
    sized = AzureBackend(loaded.spec, "prod", loaded.base_dir).sizing().stages["score"]
    # 7,884,000 objects of 475 rows (500 x 0.95) a month, each 150 ms + 475 x 0.5 ms = 387.5 ms, on 2 GB. 3 objects/s each
    # starting a 1 s minimum period, over the 2 instances the sizing runs: billed min(7,884,000 x 1 s, 2 instance-months)
    # = 5,256,000 s (it was capped at one instance-month, 3,055,050 s: $114.45 too little at $0.000026 x 2 GB).
    assert sized.invocation_ms == pytest.approx(387.5) and sized.invocations_per_month == pytest.approx(7_884_000)
    assert sized.settings["instances"] == 2
    assert gbs.quantity == pytest.approx(2 * 2_628_000 * 2) and "2 instance(s) the workload runs" in gbs.note
    assert gbs.monthly_usd - 7_884_000 * 0.3875 * 2 * 0.000026 == pytest.approx(114.45, abs=0.01)


def test_limits() -> None:
    loaded = load_spec(str(EXAMPLE), "dev")
    limits = AzureBackend(loaded.spec, "dev", loaded.base_dir).limits()
    assert limits.max_record_bytes == 1_048_576
    assert limits.max_retention_hours == 168
    # stream, objects (queue trigger: the message stays invisible while the run goes on) and schedule: the Flex
    # 60-minute scale-in grace (functionTimeout is unbounded); nothing in the example is capped at Event Grid's 30 s any more
    assert limits.max_stage_timeout_s == 3600
    assert limits.http_max_request_bytes is None and limits.http_max_timeout_s is None
    assert limits.delivery.startswith("at least once") and "30 s" not in limits.delivery and "Storage queue" in limits.delivery
    assert limits.ordering.startswith("per partition")
    assert "dead-letter" in limits.poison_records
    assert all(s.startswith("https://learn.microsoft.com/") for s in limits.sources)


def test_identity_and_grant_types_match_planned_resources() -> None:
    from pipeline.planner import plan

    p = plan(load_spec(str(EXAMPLE), "dev"), "azure")
    (identity_type,) = AzureBackend.identity_types
    (grant_type,) = AzureBackend.grant_types
    assert len(p.of_type(identity_type)) == 3 + 1 + 1  # one per stage, the stream producer and the raw archiver
    assert p.of_type(grant_type)
    assert sizing.MAX_TU_STANDARD == 40


def test_http_limits_and_the_smallest_trigger_maximum(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, """
        name: api
        uploads: {}
        stages:
          - {name: lookup, handler: h.py:handle, trigger: {http: {}}, timeout_s: 30}
          - {name: nightly, handler: h.py:handle, trigger: {schedule: "0 2 * * *"}, timeout_s: 900}
    """)
    limits = backend(spec, tmp_path).limits()
    assert limits.http_max_request_bytes == 104_857_600 and limits.http_max_timeout_s == 230
    assert limits.max_stage_timeout_s == 230  # HTTP answers within 230 s; the timer could run 3,600 s
    only_timer = spec.model_copy(update={"stages": spec.stages[1:]})
    assert backend(only_timer, tmp_path).limits().max_stage_timeout_s == 3600


def test_object_stages_price_their_queue_and_event_grid_per_object() -> None:
    """Per object: one Event Grid delivery and three queue operations (put, get, delete); plus the estimated queue reads."""
    loaded = load_spec(str(EXAMPLE), "prod")
    backend_ = AzureBackend(loaded.spec, "prod", loaded.base_dir)
    est = backend_.estimate_cost(free_tier=False)
    objects = backend_.sizing().stages["score"].invocations_per_month
    lines = {x.item: x for x in est.lines if x.role == "score-trigger"}
    assert lines["Event Grid operations (deliveries to the stage's queue)"].quantity == pytest.approx(objects)
    per_object = lines["Storage queue operations (per object)"]
    assert per_object.quantity == pytest.approx(objects * 3) and per_object.unit_usd == pytest.approx(0.004 / 1e4)
    probes = lines["Storage queue operations (polling and queue-length reads, estimate)"]
    assert probes.quantity == pytest.approx(2_628_000 / 10)
    assert per_object.verify and probes.verify  # the queue meter is marked for verification
    # a run longer than 5 minutes renews its message's visibility once per 5 minutes
    assert pricing.QUEUE_OPS_PER_OBJECT + 900 // pricing.QUEUE_RENEWAL_S == 6


def test_object_stage_sizing_pulls_from_its_queue() -> None:
    loaded = load_spec(str(EXAMPLE), "prod")
    sized = AzureBackend(loaded.spec, "prod", loaded.base_dir).sizing().stages["score"]
    assert sized.settings["batchSize"] == 1 and sized.settings["newBatchThreshold"] == 0 and sized.settings["maxDequeueCount"] == 4
    # instances for demand x 1.25 headroom, each message taking its run + the trigger's 100 ms pause: 3 objects/s x 1.25 x 0.4875 s
    assert sized.settings["instances"] == 2
    # the cap is the lowest Flex accepts in East US (40); the plan can run that many, so that is its capacity
    assert sized.concurrency == sized.settings["maximumInstanceCount"] == 40
    assert sized.capacity_records_per_second >= sized.demand_records_per_second
    # Event Grid (~1 s) + half of the 2 s polling interval; at worst + the full interval and a cold start
    assert sized.latency_s == pytest.approx(2.0) and sized.latency_max_s == pytest.approx(8.0)
