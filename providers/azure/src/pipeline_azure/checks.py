"""What the spec asks for that Azure cannot deliver as written, reported before planning.

Nothing is silently dropped or rounded down: memory is rounded *up* to a Flex instance size (shown
in the plan as the app's `memory-mb` tag and instance_memory_mb), everything else that does not fit
is an error with a hint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.spec.model import PipelineSpec
from pipeline_azure import functions, limits, naming, ncrontab, principals, sizing
from pipeline_azure.archiver_resources import SLOT as ARCHIVER_SLOT
from pipeline_azure.limits import MAX_CONSUMER_GROUPS_STANDARD, MAX_EVENT_BYTES_STANDARD, MAX_RETENTION_HOURS_STANDARD

Problem = tuple[tuple[str | int, ...], str, str]
# Azure public-cloud regions (`az account list-locations`, physical regions). A name outside this list is
# a typo; a listed region without a price sheet plans fine and says "cost unknown". Flex Consumption is
# not offered everywhere: `az functionapp list-flexconsumption-locations` tells at deploy time.
REGIONS = frozenset({
    "australiacentral", "australiacentral2", "australiaeast", "australiasoutheast", "austriaeast", "belgiumcentral",
    "brazilsouth", "brazilsoutheast", "canadacentral", "canadaeast", "centralindia", "centralus", "chilecentral",
    "eastasia", "eastus", "eastus2", "francecentral", "francesouth", "germanynorth", "germanywestcentral",
    "indonesiacentral", "israelcentral", "italynorth", "japaneast", "japanwest", "jioindiacentral", "jioindiawest",
    "koreacentral", "koreasouth", "malaysiawest", "mexicocentral", "newzealandnorth", "northcentralus", "northeurope",
    "norwayeast", "norwaywest", "polandcentral", "qatarcentral", "southafricanorth", "southafricawest",
    "southcentralus", "southeastasia", "southindia", "spaincentral", "swedencentral", "switzerlandnorth",
    "switzerlandwest", "uaecentral", "uaenorth", "uksouth", "ukwest", "westcentralus", "westeurope", "westindia",
    "westus", "westus2", "westus3",
})


def _stream_problems(spec: PipelineSpec, previous_outputs: Mapping[str, Any]) -> list[Problem]:
    found: list[Problem] = []
    stream = spec.stream
    if stream is None:
        return found
    if stream.retention_hours > MAX_RETENTION_HOURS_STANDARD:
        found.append((("stream", "retention_hours"), f"Event Hubs Standard keeps events at most {MAX_RETENTION_HOURS_STANDARD} hours (7 days)",
                      "set retention_hours to 168 or less"))
    if isinstance(stream.partitions, int) and stream.partitions > sizing.MAX_PARTITIONS_STANDARD:
        found.append((("stream", "partitions"), f"an Event Hubs Standard event hub has at most {sizing.MAX_PARTITIONS_STANDARD} partitions",
                      f"set partitions to {sizing.MAX_PARTITIONS_STANDARD} or less, or 'auto'"))
    before = sizing.previous_partitions(previous_outputs)
    if isinstance(stream.partitions, int) and before is not None and stream.partitions != before:
        found.append((("stream", "partitions"),
                      f"this stack's event hub has {before} partitions; a Standard event hub cannot change its partition count, "
                      f"so {stream.partitions} would replace the hub and lose the events it holds",
                      f"set partitions to {before} (or 'auto', which keeps it), or destroy the stream first"))
    units, _ = sizing.needed_units(spec)
    if units > sizing.MAX_TU_STANDARD:
        found.append((("workload", "records_per_second"),
                      f"the workload needs {units} throughput units; an Event Hubs Standard namespace allows {sizing.MAX_TU_STANDARD}. "
                      "Event Hubs Premium (processing units) or Dedicated would carry it, but this backend neither plans nor prices them, "
                      "so Azure gets no estimate rather than a guess: a processing unit has no fixed throughput (\"~5-10 MB/s ingress and "
                      "10-20 MB/s egress per processing unit\", depending on the load, https://learn.microsoft.com/azure/event-hubs/event-hubs-faq) "
                      "and its list price could not be read from Microsoft's pricing page",
                      "lower the workload or split the stream over several namespaces"))
    if spec.workload.record_bytes > MAX_EVENT_BYTES_STANDARD:
        found.append((("workload", "record_bytes"), "Event Hubs Standard accepts events of at most 1 MB", "send smaller records"))
    stream_stages = [s for s in spec.stages if s.trigger.stream]
    if len(stream_stages) > MAX_CONSUMER_GROUPS_STANDARD - 1:
        found.append((("stages",), f"{len(stream_stages)} stream stages need as many consumer groups; Event Hubs Standard allows "
                      f"{MAX_CONSUMER_GROUPS_STANDARD} per event hub including $Default", "chain stages with object triggers instead"))
    return found


def _principal_problems(spec: PipelineSpec) -> list[Problem]:
    """Invokers and producers ARM or App Service Authentication would refuse, or that could never work."""
    found: list[Problem] = []
    settings = spec.clouds.azure
    seen: dict[str, int] = {}
    for index, entry in enumerate(settings.http_invokers):
        who = principals.parse(entry)
        if who.is_group:
            found.append((("clouds", "azure", "http_invokers", index),
                          f"{entry!r}: HTTP stages admit callers by the object id (oid) in their Entra ID token, and a group never "
                          "appears there (a token names its groups only for an app registration that asks for them)",
                          "list the group's members instead: 'user:<id>' for people, 'sp:<id>' for service principals and managed identities"))
        if who.object_id in seen:
            found.append((("clouds", "azure", "http_invokers", index), f"{entry!r} is listed twice (also at http_invokers[{seen[who.object_id]}]); "
                          "Azure refuses a second identical role assignment", "list each principal once"))
        seen.setdefault(who.object_id, index)
    principals_seen: dict[str, int] = {}
    credentials_seen: dict[str, int] = {}
    for index, producer in enumerate(settings.producers):
        at: tuple[str | int, ...] = ("clouds", "azure", "producers", index)
        if producer.principal is not None:
            oid = principals.parse(producer.principal).object_id
            if oid in principals_seen:
                found.append(((*at, "principal"), f"principal {oid} is also producers[{principals_seen[oid]}]; Azure refuses a second "
                              "identical role assignment", "list each principal once, with every source it feeds in 'sources'"))
            principals_seen.setdefault(oid, index)
        elif producer.federated is not None:
            name = principals.credential_name(producer.federated)
            if name in credentials_seen:
                found.append(((*at, "federated"), f"the same issuer, subject and audience as producers[{credentials_seen[name]}]; an "
                              "identity holds one federated credential per issuer and subject", "list each outside workload once"))
            credentials_seen.setdefault(name, index)
    return found


def _name_problems(spec: PipelineSpec, stack: str) -> list[Problem]:
    """Two apps whose generated names are equal: Azure names storage accounts and function apps globally (a second
    one of a name fails to deploy, or two stages would share one host account and its object queue) and Flex plans
    per resource group. The names end in the stack's random suffix, the same for every name of the stack, so they
    are compared with a stand-in suffix. Hashes make this rare (see naming.host_account_name); never silent."""
    suffix = "0" * naming.SUFFIX_CHARS
    slots: list[tuple[tuple[str | int, ...], str, str]] = [
        (("stages", index, "name"), f"stage {stage.name!r}", stage.name) for index, stage in enumerate(spec.stages)]
    if spec.stream is not None and spec.stream.archive:  # the archiver's app, when the sizing picks it over Capture
        slots.append((("stream", "archive"), "the raw archiver", ARCHIVER_SLOT))
    taken: dict[tuple[str, str], str] = {("storage account", naming.storage_account_name(spec.name, kind, suffix)): f"the {what} account"
                                         for kind, what in (("dat", "data"), ("art", "artifacts"))}
    found: list[Problem] = []
    for at, who, slot in slots:
        for kind, name in (("storage account", naming.host_account_name(spec.name, slot, suffix)),
                           ("function app", naming.function_app_name(spec.name, stack, slot, suffix)),
                           ("Flex plan", naming.plan_name(spec.name, stack, slot))):
            other = taken.setdefault((kind, name), who)
            if other != who:
                shown = name.removesuffix(suffix) + ("<suffix>" if kind != "Flex plan" else "")
                found.append((at, f"the {kind} of {who} would be named {shown!r}, like the one of {other} (names are hashed "
                              f"to fit Azure's limits and these two hashes agree); Azure refuses a second {kind} of one name",
                              f"rename {who} (any other name gives it its own {kind})"))
    return found


def problems(spec: PipelineSpec, stack: str, previous_outputs: Mapping[str, Any] | None = None) -> list[Problem]:
    found: list[Problem] = []
    settings = spec.clouds.azure
    if settings.location not in REGIONS:
        found.append((("clouds", "azure", "location"), f"{settings.location!r} is not an Azure region",
                      f"use one of: {', '.join(sorted(REGIONS))}"))
    found += _principal_problems(spec)
    found += _name_problems(spec, stack)
    found += _stream_problems(spec, previous_outputs or {})
    for index, stage in enumerate(spec.stages):
        if functions.flex_memory(stage.memory_mb) is None:
            found.append((("stages", index, "memory_mb"), f"{stage.memory_mb} MB is more than the largest Flex Consumption instance "
                          f"({functions.FLEX_MEMORY_MB[-1]} MB)", f"use at most {functions.FLEX_MEMORY_MB[-1]} MB"))
        if stage.trigger.http and stage.timeout_s > limits.HTTP_TIMEOUT_S:
            found.append((("stages", index, "timeout_s"), f"an HTTP-triggered function must answer within {limits.HTTP_TIMEOUT_S} s "
                          "(the Azure load balancer's idle timeout), whatever its functionTimeout",
                          f"set timeout_s to {limits.HTTP_TIMEOUT_S} or less, or move the work to an object or schedule stage"))
        if stage.trigger.schedule:
            for name, message, hint in ncrontab.schedule_problems(stage.trigger.parsed_schedule, stage.trigger.timezone):
                found.append((("stages", index, "trigger", name), message, hint))
    return found


# Flex Consumption's default regional quota: "250 cores (equivalent to 512,000 MB) for all Flex Consumption app instances
# combined" per subscription and region, shared by every Flex app there; beyond it "scaling is throttled"
# (https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#regional-subscription-memory-quotas).
FLEX_DEFAULT_QUOTA_CORES = 250


def quota_problems(spec: PipelineSpec, stages: Mapping[str, Any], archiver: Any | None) -> list[Problem]:
    """The cores the plan's apps run at the workload (`instances` x the instance size's vCPUs) against the default quota."""
    cores = 0.0
    for stage in spec.stages:
        memory = functions.flex_memory(stage.memory_mb) or functions.FLEX_MEMORY_MB[-1]
        cores += stages[stage.name].settings.get("instances", 1) * sizing.FLEX_VCPUS[memory]
    if archiver is not None:
        cores += archiver.partitions * sizing.FLEX_VCPUS[archiver.memory_mb]
    if cores <= FLEX_DEFAULT_QUOTA_CORES:
        return []
    return [(("workload",), f"at this workload the plan's Flex Consumption apps run {cores:,.0f} cores at once; a subscription has "
             f"{FLEX_DEFAULT_QUOTA_CORES} per region by default, shared by all its Flex apps, and scaling stops there",
             "request a larger Flex Consumption quota for the region (a support ticket), lower the workload, or use smaller instances")]
