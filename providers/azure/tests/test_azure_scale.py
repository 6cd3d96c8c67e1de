"""Scale limits, HTTP sizing and what Flex bills (issue 18 items 4, 8, 16; issue 20 items 2, 4, 6, 8)."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import pytest
from pipeline_azure import archiver_resources, functions, pricing, sizing, telemetry
from pipeline_azure.backend import AzureBackend
from test_azure_plan import plan_of, write_spec
from test_azure_pricing import EXAMPLE, backend, line, spec_of

from pipeline.errors import SpecError
from pipeline.sizing import HEADROOM, SECONDS_PER_MONTH, erlang_b, servers_for_blocking
from pipeline.spec.load import load_spec
from pipeline.spec.model import PipelineSpec

MIXED = """
    name: mixed
    stream: {archive: false}
    uploads: {}
    stages:
      - {name: clean, handler: h.py:handle, trigger: {stream: {}}}
      - {name: ingest, handler: h.py:handle, trigger: {objects: {from: uploads}}}
      - {name: nightly, handler: h.py:handle, trigger: {schedule: "*/5 * * * *", from: clean}, timeout_s: 900, memory_mb: 2048}
      - {name: lookup, handler: h.py:handle, trigger: {http: {}}, timeout_s: 30}
      - {name: on-demand, handler: h.py:handle, trigger: {http: {from: ingest}}, timeout_s: 200, memory_mb: 2048}
    workload:
      records_per_second: 50
      record_bytes: 400
      uploads: {files_per_hour: 30, records_per_file: 2000}
      http: {requests_per_second: 4, rows_per_request: 10}
      stages: {lookup: {ms_per_invocation: 40, ms_per_record: 1}, on-demand: {ms_per_invocation: 200, ms_per_record: 0.01}}
"""


def mixed(tmp_path: Path, location: str = "eastus") -> PipelineSpec:
    return spec_of(tmp_path, MIXED + f"    clouds: {{azure: {{location: {location}}}}}\n")


# ---- issue 18 item 4: maximumInstanceCount ------------------------------------------------------
def test_no_app_plans_a_maximum_below_40_where_flex_refuses_it(tmp_path: Path) -> None:
    """"The lowest maximum scale is currently 40" (flex-consumption-plan#considerations): a maximum costs nothing, so
    every app of a plan in East US gets at least 40, whatever its workload needs (the plans set 1-2 before)."""
    p = plan_of(write_spec(tmp_path, MIXED))
    caps = {r.role: r.inputs["functionAppConfig"]["scaleAndConcurrency"]["maximumInstanceCount"] for r in p.of_type("azure-native:web:WebApp")}
    assert caps == {f"{s}-function": 40 for s in ("clean", "ingest", "nightly", "lookup", "on-demand")}
    sized = p.sizing["stages"]
    assert sized["nightly"]["settings"]["instances"] == 1 and sized["clean"]["settings"]["instances"] == p.sizing["stream"]["partitions"]


def test_regions_known_to_accept_a_lower_maximum_get_the_sized_one(tmp_path: Path) -> None:
    sized = AzureBackend(mixed(tmp_path, "westeurope"), "dev", tmp_path).sizing().stages
    assert sized["nightly"].settings["maximumInstanceCount"] == 1  # a timer holds a singleton lock: one instance runs
    assert sized["clean"].settings["maximumInstanceCount"] == sized["clean"].settings["instances"]
    assert sizing.max_instance_count(mixed(tmp_path, "eastus"), 1) == 40 and sizing.max_instance_count(mixed(tmp_path, "eastus"), 900) == 900


# ---- issue 18 item 8: HTTP stages sized for at most 1 % refused requests ---------------------------
def test_http_stage_is_sized_with_erlang_b(tmp_path: Path) -> None:
    sized = AzureBackend(mixed(tmp_path), "dev", tmp_path).sizing().stages["lookup"]
    duration = (40 + 10 * 1) / 1000
    offered = 4 * duration  # 0.2 erlang
    assert sized.invocation_ms == pytest.approx(50)
    assert sized.settings["instances"] == servers_for_blocking(offered * HEADROOM) == 3
    assert sized.settings["perInstanceConcurrency"] == 1 and sized.concurrency == 40
    # what the plan refuses at the workload: every one of the 40 instances busy (Flex answers 429)
    assert sized.blocking == pytest.approx(erlang_b(40, offered)) and sized.blocking < 0.01
    # in a region where the cap may be the sized count, the refusals stay within the 1 % target
    west = AzureBackend(mixed(tmp_path, "westeurope"), "dev", tmp_path).sizing().stages["lookup"]
    assert west.settings["maximumInstanceCount"] == 3 and west.blocking == pytest.approx(erlang_b(3, offered)) and west.blocking <= 0.01


def test_http_billing_follows_the_instances_requests_find_free() -> None:
    """20 requests/s of 50 ms (1 erlang), one per instance: instance k takes 20 x (B(k-1) - B(k)) requests/s = 10, 6, 2.75,
    0.94, 0.25, ... Each request starts a period billed at least 1 s, so the first three are billed all month and the rest
    for 0.94, 0.25, 0.05, ... of it: ~4.24 instance-months (one instance-month, the old cap, was a quarter of that)."""
    months = pricing.http_billed_seconds(20, 0.05, 40) / SECONDS_PER_MONTH
    expected = sum(min(1.0, 20 * (erlang_b(k - 1, 1.0) - erlang_b(k, 1.0)) * 1.0) for k in range(1, 41))
    assert months == pytest.approx(expected) and 4.2 < months < 4.3
    # sparse: each request is its own 1 s period, billed once
    assert pricing.http_billed_seconds(0.01, 0.05, 40) == pytest.approx(0.01 * SECONDS_PER_MONTH * 1.0, rel=1e-3)
    # busy instances are billed their execution time at least
    assert pricing.http_billed_seconds(100, 2.0, 1000) >= 100 * 2.0 * SECONDS_PER_MONTH


# ---- issue 20 item 2: bill by the instances the plan runs ---------------------------------------
def test_sparse_object_stage_is_billed_over_the_instances_it_runs() -> None:
    loaded = load_spec(str(EXAMPLE), "prod")
    est = AzureBackend(loaded.spec, "prod", loaded.base_dir).estimate_cost(free_tier=False)
    gbs = next(x for x in est.lines if x.role == "score-function" and x.item.endswith("execution time"))
    assert gbs.quantity == pytest.approx(2 * SECONDS_PER_MONTH * 2)  # 2 instances x a month x 2 GB
    # the old figure: capped at one instance-month, so only the execution time (3,055,050 s) was billed
    assert pricing.flex_billed_seconds(7_884_000, 0.3875, 1) == pytest.approx(7_884_000 * 0.3875)


# ---- issue 18 item 16 / issue 20 item 8: HTTP over accumulated outputs, windowed runs' operations ----
def test_http_over_accumulated_outputs_runs_like_a_schedule_at_the_request_rate(tmp_path: Path) -> None:
    spec = mixed(tmp_path)
    sized = AzureBackend(spec, "dev", tmp_path).sizing().stages["on-demand"]
    rows = 30 / 3600 * 2000  # what ingest writes a second (output_ratio 1)
    assert sized.concurrency == 1 and sized.settings["instances"] == 1  # the runtime's lease: one run at a time
    assert sized.invocations_per_second == pytest.approx(4)
    assert sized.records_per_invocation == pytest.approx(rows / 4)
    assert sized.latency_max_s == pytest.approx(1 / 4) and sized.blocking is None
    assert sized.invocation_ms == pytest.approx(200 + rows / 4 * 0.01)


def test_every_windowed_run_is_priced_with_its_listing_lease_and_watermark(tmp_path: Path) -> None:
    spec = mixed(tmp_path)
    b = backend(spec, tmp_path)
    est = b.estimate_cost(free_tier=False)
    sized = b.sizing().stages
    runs = {name: sized[name].invocations_per_month for name in ("nightly", "on-demand")}
    # on-demand lists ingest/ (7 days of 30 files an hour... of ingest's outputs, 5,000 per page) on every request
    kept = sized["ingest"].output_objects_per_second * 7 * 86_400
    lists = next(x for x in est.lines if x.role == "ingest-bucket" and x.item.startswith("Blob list") and "on-demand" in x.item)
    assert lists.quantity == pytest.approx(runs["on-demand"] * math.ceil(kept / 5000))
    for name, run_count in runs.items():
        reads = next(x for x in est.lines if x.role == f"{name}-bucket" and "watermark and lease" in x.item)
        writes = next(x for x in est.lines if x.role == f"{name}-bucket" and "lease taken and released" in x.item)
        assert reads.quantity == pytest.approx(2 * run_count) and writes.quantity == pytest.approx(3 * run_count)


# ---- issue 20 items 4 and 6: telemetry and alerts ----------------------------------------------------
def test_host_logging_sends_one_request_row_and_the_runtimes_line(tmp_path: Path) -> None:
    p = plan_of(write_spec(tmp_path, MIXED))
    with zipfile.ZipFile(Path(p.one("azure-native:storage:Blob", "lookup-function").inputs["source"]["asset"])) as package:
        host = json.loads(package.read("host.json"))
    logging = host["logging"]
    assert logging["logLevel"] == {"default": "Warning", "Host.Results": "Information", "Function": "Warning", "Host.Aggregator": "Warning",
                                   f"Function.{functions.ENTRY_FUNCTION}.User": "Information"}
    assert logging["applicationInsights"] == {"samplingSettings": {"isEnabled": False}, "enableDependencyTracking": False,
                                              "enablePerformanceCountersCollection": False}
    assert json.loads(archiver_resources.host_json())["logging"]["logLevel"]["Function.archive.User"] == "Information"
    assert pricing.TELEMETRY_BYTES_PER_INVOCATION == telemetry.BYTES_PER_INVOCATION == 1500


def test_one_log_alert_rule_per_kind_whatever_the_number_of_apps(tmp_path: Path) -> None:
    est = backend(mixed(tmp_path), tmp_path).estimate_cost(free_tier=False)
    assert line(est, "observability", "Log search alert rules") == pytest.approx(3 * 1.50)  # errors, dead letters, poison


# ---- what a fresh subscription's defaults allow (issue 18) and what Azure does not price (issue 20 item 9) ----
def test_more_than_the_default_flex_quota_is_refused(tmp_path: Path) -> None:
    body = MIXED.replace("http: {requests_per_second: 4, rows_per_request: 10}", "http: {requests_per_second: 5000, rows_per_request: 10}")
    body = body.replace("lookup: {ms_per_invocation: 40, ms_per_record: 1}", "lookup: {ms_per_invocation: 90, ms_per_record: 1}")
    body = body.replace("trigger: {http: {}}, timeout_s: 30}", "trigger: {http: {}}, timeout_s: 30, memory_mb: 2048}")  # 1 core each
    body = body.replace(", on-demand: {ms_per_invocation: 200, ms_per_record: 0.01}", "").replace(
        "      - {name: on-demand, handler: h.py:handle, trigger: {http: {from: ingest}}, timeout_s: 200, memory_mb: 2048}\n", "")
    with pytest.raises(SpecError) as err:
        plan_of(write_spec(tmp_path, body))
    assert "cores at once" in str(err.value) and "250 per region by default" in str(err.value)


def test_beyond_standard_event_hubs_says_plainly_why_there_is_no_estimate(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        plan_of(write_spec(tmp_path, MIXED.replace("records_per_second: 50", "records_per_second: 60000")))
    text = str(err.value)
    assert "workload.records_per_second" in text and "neither plans nor prices them" in text and "no estimate rather than a guess" in text
