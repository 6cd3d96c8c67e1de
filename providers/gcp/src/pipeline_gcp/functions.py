"""One Cloud Functions gen2 function per stage, running as the stage's own service account."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi_gcp as gcp

from pipeline.backend import Handle, RoleContext
from pipeline.packaging import Package, Recipe
from pipeline.sizing import StageSizing
from pipeline.spec.model import PipelineSpec, StageSpec
from pipeline_gcp import naming, storage
from pipeline_gcp.platform import Env

RUNTIME = "python312"
EVENT_DRIVEN_MAX_TIMEOUT_S = 540  # gen2 event-driven functions (https://cloud.google.com/functions/docs/configuring/timeout)
MAX_MEMORY_MB = 32 * 1024
# (memory MiB, vCPU) tiers of gen2 (https://cloud.google.com/functions/docs/configuring/memory): the CPU Google
# pairs with each memory size. Set explicitly so a non-tier memory size gets the CPU of the next tier up.
CPU_TIERS = ((128, "0.083"), (256, "0.167"), (512, "0.333"), (1024, "0.583"), (2048, "1"), (4096, "2"), (8192, "2"),
             (16384, "4"), (32768, "8"))
MAX_INSTANCES_CAP = 100  # gen2 default when unset; a runaway loop or a flood cannot scale past this
HEADROOM = 1.25
STORAGE_FINALIZED = "google.cloud.storage.object.v1.finalized"
# What the runtime shim needs beyond the standard library; the remote build installs it.
RUNTIME_REQUIREMENTS = ("functions-framework>=3.5,<4", "google-cloud-storage>=2.14,<4")
PACKAGE_LIMIT_ZIPPED = 100 * 1024 * 1024  # source upload (https://cloud.google.com/functions/quotas#resource_limits)
PACKAGE_LIMIT_UNZIPPED = 500 * 1024 * 1024


def cpu_for(memory_mb: int) -> str:
    return next(cpu for limit, cpu in CPU_TIERS if memory_mb <= limit)


def max_instances(stage: StageSpec, needed: int) -> int:
    """Concurrency 1 per instance, so instances = invocations in flight (`needed`, from the core's sizing),
    capped so a runaway loop or a flood cannot scale without bound; a schedule runs one invocation at a
    time (+1 so a retry can overlap a slow run)."""
    if stage.trigger.schedule:
        return 2
    return max(1, min(MAX_INSTANCES_CAP, needed))


def recipe() -> Recipe:
    """Cloud Functions builds remotely from requirements.txt, so the package carries sources only."""
    return Recipe("gcp", ("pipeline.runtime", "pipeline_gcp.runtime"), RUNTIME_REQUIREMENTS,
                  {"main.py": b"from pipeline_gcp.runtime import cloud_event, http  # noqa: F401  (functions-framework targets)\n"},
                  limit_bytes=PACKAGE_LIMIT_ZIPPED, limit_unpacked=PACKAGE_LIMIT_UNZIPPED)


def function(role: RoleContext, env: Env, spec: PipelineSpec, stage: StageSpec, identity: Handle[gcp.serviceaccount.Account],
             package: Package, env_vars: Mapping[str, Any], sized: StageSizing) -> Handle[gcp.cloudfunctionsv2.Function]:
    name = naming.function_name(role.pipeline, role.stack, stage.name)
    source = storage.source_object(role, env, stage.name, package)
    variables = dict(env_vars)
    dead_letter = env.dead_letters[stage.name]
    # Where the runtime shim sends events it gives up on when the platform cannot (see triggers.object_trigger).
    variables["PIPELINE_DEAD_LETTER_TOPIC"] = dead_letter.extra["id"]
    variables["PIPELINE_MAX_EVENT_AGE_S"] = str(stage.max_event_age_s)
    after: list[Any] = [*identity.extra["bindings"]]
    args: dict[str, Any] = {}
    if stage.trigger.objects:
        # The only event-driven (Eventarc) stages. Stream and schedule stages are HTTP functions invoked by our
        # own push subscription / Scheduler job, which give us dead-lettering and bounded retries.
        source_bucket = env.buckets[stage.trigger.objects.from_stage]
        trigger_sa = identity.extra["trigger_sa"]
        args["event_trigger"] = {
            "event_type": STORAGE_FINALIZED,
            # Buckets are per stage output, so the bucket alone selects the source stage's objects:
            # Eventarc storage triggers cannot filter on a prefix, and need not here.
            "event_filters": [{"attribute": "bucket", "value": source_bucket.name}],
            "retry_policy": "RETRY_POLICY_RETRY",  # off by default for the v2 API: failures would be dropped
            "service_account_email": trigger_sa.extra["email"],
            "trigger_region": env.region,  # = the bucket's location (storage triggers must match it)
        }
        after.extend(identity.extra["trigger_bindings"])
        if env.gcs_publisher is not None:
            after.append(env.gcs_publisher)  # trigger creation checks the GCS agent can publish
    fn = gcp.cloudfunctionsv2.Function(
        role.name(),
        name=name,
        location=env.region,
        description=f"Stage {stage.name} of pipeline {role.pipeline} ({role.stack}), {stage.trigger.kind} trigger",
        build_config={
            "runtime": RUNTIME,
            # main.py re-exports the runtime shim's targets; the shim loads the handler from PIPELINE_HANDLER.
            "entry_point": "cloud_event" if stage.trigger.objects else "http",
            "source": {"storage_source": {"bucket": source.bucket, "object": source.name}},
        },
        service_config={
            "service_account_email": identity.extra["email"],
            "available_memory": f"{stage.memory_mb}Mi",
            "available_cpu": cpu_for(stage.memory_mb),
            "timeout_seconds": stage.timeout_s,
            "max_instance_count": sized.concurrency,
            "min_instance_count": 0,
            "max_instance_request_concurrency": 1,  # handlers are plain functions; fractional CPUs require 1
            "environment_variables": variables,
            # Pub/Sub push, Eventarc and Cloud Scheduler in the same project count as internal traffic.
            "ingress_settings": "ALLOW_INTERNAL_ONLY",
            "all_traffic_on_latest_revision": True,
        },
        opts=env.opts(role, *after),
        **args,
    )
    service_config = fn.service_config
    uri = service_config.apply(lambda c: c.uri if c else None)
    service = service_config.apply(lambda c: c.service if c else None)
    return Handle(fn, fn.name, {"uri": uri, "service": service, "function": fn})

