"""The raw archive on Azure: Event Hubs Capture, or an archiver function where Capture costs more than a little.

Capture is billed per throughput unit-hour whatever the volume ("Standard Capture", $0.10 per TU-hour in East
US: $73 per TU a month, on top of the TU's own $21.90), so a namespace of one TU archiving a few GB a month pays
$73 for it; at a TU's full 1 MB/s it is still ~$0.03 per GB. An Event Hubs-triggered function that reads the
hub on a consumer group of its own and writes one gzip JSON-lines blob per batch (`pipeline_azure.archive`)
pays for its executions, its CPU time, one blob write per batch, its host storage's checkpoints and leases,
its telemetry and alerts, and any TUs its reads add to the namespace's egress (Capture reads none).

The plan prices both ways for the workload (`pricing.archive_costs`, the very lines the estimate bills) and
keeps Capture - managed, zero code - unless the function saves more than CAPTURE_TOLERANCE_USD a month and
more than CAPTURE_TOLERANCE_SHARE of Capture's bill; Capture is also kept when the function cannot run
(its reads would need more TUs than a Standard namespace has, no consumer group is left, or one instance per
partition could not keep up). The stream sizing's reasoning and the estimate's assumptions state the
comparison either way, e.g. "Capture bills $73.14 a month ...; an archiver function ... bills $4.80".
"""

from __future__ import annotations

from pipeline.cost import PriceSheet, load_price_sheet
from pipeline.errors import PipelineError
from pipeline.spec.model import PipelineSpec
from pipeline_azure import pricing
from pipeline_azure import sizing as azure_sizing
from pipeline_azure.limits import MAX_CONSUMER_GROUPS_STANDARD
from pipeline_azure.sizing import ArchiverSizing, RawArchive

CAPTURE_TOLERANCE_USD = 10.0  # a month: a saving below this is not worth giving up the managed service
CAPTURE_TOLERANCE_SHARE = 0.2  # nor a saving of at most this share of Capture's bill ("costs about the same")
REFERENCE_LOCATION = "eastus"  # prices the choice where the location has no price sheet
CONSUMER_GROUP = "raw_archive"  # stage names have no '_', so no stage's consumer group is called this


def _prices(location: str) -> tuple[PriceSheet, str]:
    try:
        return load_price_sheet(pricing.PRICES, "Azure", location), ""
    except PipelineError:
        return load_price_sheet(pricing.PRICES, "Azure", REFERENCE_LOCATION), f" ({REFERENCE_LOCATION} prices: {location} has no price sheet)"


def blocked(spec: PipelineSpec, archiver: ArchiverSizing, archiver_units: int) -> str:
    """Why the archiver function cannot carry this stream ("" when it can)."""
    stream_stages = sum(1 for stage in spec.stages if stage.trigger.stream)
    if archiver_units > azure_sizing.MAX_TU_STANDARD:
        return (f"its consumer group would need {archiver_units} TU of egress, more than the {azure_sizing.MAX_TU_STANDARD} a Standard "
                "namespace allows (Capture reads no egress)")
    if stream_stages + 1 > MAX_CONSUMER_GROUPS_STANDARD - 1:
        return f"the {stream_stages} stream stages use every consumer group a Standard event hub has besides $Default"
    if archiver.needed > archiver.partitions:
        return (f"it would need {archiver.needed} concurrent batches at {archiver.memory_mb} MB, more than the hub's {archiver.partitions} "
                "partitions allow (one batch per partition at a time)")
    return ""


def plan_archive(spec: PipelineSpec, partitions: int) -> RawArchive:
    """Capture or the archiver function for this workload, with the comparison that decided it."""
    archiver = azure_sizing.size_archiver(spec, partitions)
    capture_units, _ = azure_sizing.needed_units(spec)
    archiver_units, _ = azure_sizing.needed_units(spec, archiver=True)
    candidate = RawArchive("capture", archiver, capture_units, archiver_units)
    sheet, priced = _prices(str(spec.clouds.azure.location))
    costs = pricing.archive_costs(spec, candidate, partitions, sheet)
    capture, function = costs["capture"], costs["function"]
    extra = archiver_units - capture_units
    lines = [f"raw archive: Event Hubs Capture bills {capture_units} TU x 730 h, ${capture:,.2f} a month with its Avro files; an archiver "
             f"function ({archiver.describe()}" + (f", +{extra} TU for its reads" if extra else "") + f") bills ${function:,.2f}{priced}"]
    reason = blocked(spec, archiver, archiver_units)
    saving = capture - function
    if reason:
        lines.append(f"=> Capture: the archiver function cannot run here: {reason}")
    elif saving <= 0:
        lines.append("=> Capture: an archiver function would not cost less")
    elif saving <= CAPTURE_TOLERANCE_USD or saving <= CAPTURE_TOLERANCE_SHARE * capture:
        lines.append(f"=> Capture: the function would save ${saving:,.2f} a month ({saving / capture:.0%}), too little to give up "
                     "the managed, zero-code service")
    else:
        lines.append(f"=> archiver function: Capture would cost ${saving:,.2f} a month more ({saving / capture:.0%} of its bill)")
        lines.append(f"archiver: consumer group {CONSUMER_GROUP}, one batch per partition at a time on up to {partitions} instance(s) "
                     f"of {archiver.memory_mb} MB ({archiver.needed} needed), one gzip blob per batch under raw/, "
                     f"capacity {archiver.capacity_records_per_second:,.0f} rec/s")
        return RawArchive("function", archiver, capture_units, archiver_units, lines)
    return RawArchive("capture", archiver, capture_units, archiver_units, lines)
