"""One Cloud Functions gen2 function per stage: an HTTP function running as the stage's own service account,
built by the pipeline's own build service account.

Every stage is an HTTP function: stream and object stages are called by our own push subscriptions
(dead-letter policy, bounded retries), schedules by Cloud Scheduler, HTTP stages by authenticated callers.
No Eventarc trigger: its managed subscription takes no dead-letter topic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pulumi_gcp as gcp

from pipeline.packaging import Package, Recipe
from pipeline.roles import Handle, RoleContext
from pipeline.sizing import StageSizing
from pipeline.spec.model import PipelineSpec, StageSpec
from pipeline_gcp import batching, naming, storage
from pipeline_gcp.env import Env

RUNTIME = "python312"
# A push subscription's ack deadline is its request timeout, at most 600 s; a function must finish well inside
# it or Pub/Sub redelivers mid-run (https://cloud.google.com/pubsub/docs/push). 540 s is also the gen2
# event-driven maximum (https://cloud.google.com/functions/docs/configuring/timeout).
PUSH_MAX_TIMEOUT_S = 540
HTTP_MAX_TIMEOUT_S = 3600  # gen2 HTTP functions (same page)
MAX_MEMORY_MB = 32 * 1024
# (memory MiB, vCPU) tiers of gen2 (https://cloud.google.com/functions/docs/configuring/memory): the CPU Google
# pairs with each memory size. Set explicitly so a non-tier memory size gets the CPU of the next tier up.
CPU_TIERS = ((128, "0.083"), (256, "0.167"), (512, "0.333"), (1024, "0.583"), (2048, "1"), (4096, "2"), (8192, "2"),
             (16384, "4"), (32768, "8"))
# Cloud Run's default ceiling on max instances per service (https://cloud.google.com/run/quotas: "Maximum number of
# instances", raisable by quota request); gen2 functions are Cloud Run services.
MAX_INSTANCES = 1000
# What the runtime shim needs beyond the standard library; the remote build installs it.
RUNTIME_REQUIREMENTS = ("functions-framework>=3.5,<4", "google-cloud-storage>=2.14,<4")
PACKAGE_LIMIT_ZIPPED = 100 * 1024 * 1024  # source upload (https://cloud.google.com/functions/quotas#resource_limits)
PACKAGE_LIMIT_UNZIPPED = 500 * 1024 * 1024
ENTRY_POINT = "http"


def cpu_for(memory_mb: int) -> str:
    return next(cpu for limit, cpu in CPU_TIERS if memory_mb <= limit)


def requests_per_instance(memory_mb: int) -> int:
    """Requests one instance serves at once: one per whole vCPU, each in its own worker process.

    Handlers are plain, CPU-bound Python: threads would queue behind the GIL, so a second request on the
    same vCPU only waits. functions-framework runs WORKERS gunicorn processes (THREADS each), so
    concurrency N = N processes = N vCPUs of parallel work. Below 1 vCPU, Cloud Run allows only 1
    (https://cloud.google.com/run/docs/about-concurrency; reference gcp.md §4).
    """
    return max(1, math.floor(float(cpu_for(memory_mb))))


def recipe() -> Recipe:
    """Cloud Functions builds remotely from requirements.txt, so the package carries sources only."""
    return Recipe("gcp", ("pipeline.runtime", "pipeline_gcp.runtime", "pipeline_gcp.avro"), RUNTIME_REQUIREMENTS,
                  {"main.py": b"from pipeline_gcp.runtime import cloud_event, http  # noqa: F401  (functions-framework targets)\n"},
                  limit_bytes=PACKAGE_LIMIT_ZIPPED, limit_unpacked=PACKAGE_LIMIT_UNZIPPED)


def function(role: RoleContext, env: Env, spec: PipelineSpec, stage: StageSpec, identity: Handle[gcp.serviceaccount.Account],
             package: Package, env_vars: Mapping[str, Any], sized: StageSizing) -> Handle[gcp.cloudfunctionsv2.Function]:
    name = naming.function_name(role.pipeline, role.stack, stage.name)
    source = storage.source_object(role, env, stage.name, package)
    per_instance = int(sized.settings["max_instance_request_concurrency"])
    variables = dict(env_vars)
    # Read by the runtime shim (pipeline_gcp.runtime): when to give up on an input and dead-letter it itself.
    variables["PIPELINE_RETRIES"] = str(stage.retries)
    variables["PIPELINE_MAX_EVENT_AGE_S"] = str(stage.max_event_age_s)
    if stage.trigger.stream:
        variables["PIPELINE_BATCH_PREFIX"] = batching.sources(spec)[stage.name].prefix  # raw/ or the group's <stage>/
    # functions-framework's gunicorn: one worker process per request the instance takes, one thread each.
    variables["WORKERS"] = str(per_instance)
    variables["THREADS"] = "1"
    assert env.builder is not None
    fn = gcp.cloudfunctionsv2.Function(
        role.name(),
        name=name,
        location=env.region,
        description=f"Stage {stage.name} of pipeline {role.pipeline} ({role.stack}), {stage.trigger.kind} trigger",
        build_config=gcp.cloudfunctionsv2.FunctionBuildConfigArgs(
            runtime=RUNTIME,
            entry_point=ENTRY_POINT,  # main.py re-exports the runtime shim's targets; the shim loads the handler from PIPELINE_HANDLER
            source=gcp.cloudfunctionsv2.FunctionBuildConfigSourceArgs(
                storage_source=gcp.cloudfunctionsv2.FunctionBuildConfigSourceStorageSourceArgs(bucket=source.bucket, object=source.name)),
            # Since 2024 new projects build as a default account the default org policy leaves without build rights:
            # our own build account, with only what a build needs (platform.build_identity).
            service_account=env.builder.resource.name,
        ),
        service_config=gcp.cloudfunctionsv2.FunctionServiceConfigArgs(
            service_account_email=identity.extra["email"],
            available_memory=f"{stage.memory_mb}Mi",
            available_cpu=cpu_for(stage.memory_mb),
            timeout_seconds=stage.timeout_s,
            max_instance_count=int(sized.settings["max_instance_count"]),
            min_instance_count=0,  # scale to zero: reserve nothing
            max_instance_request_concurrency=per_instance,
            environment_variables=variables,
            # HTTP stages serve authenticated callers from anywhere (IAM, not the network, keeps them out: see
            # triggers.http_trigger); every other stage is called by Pub/Sub push or Cloud Scheduler of this project,
            # which count as internal traffic (https://cloud.google.com/functions/docs/networking/network-settings).
            ingress_settings="ALLOW_ALL" if stage.trigger.http else "ALLOW_INTERNAL_ONLY",
            all_traffic_on_latest_revision=True,
        ),
        opts=env.opts(role, *identity.extra["bindings"], *env.build_bindings),
    )
    service_config = fn.service_config
    uri = service_config.apply(lambda c: c.uri if c else None)
    service = service_config.apply(lambda c: c.service if c else None)
    return Handle(fn, fn.name, {"uri": uri, "service": service, "function": fn, "url": fn.url})
