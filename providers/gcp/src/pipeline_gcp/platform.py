"""The provider, enabled APIs and the project's service agents: what every later role builds on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_gcp as gcp

from pipeline.backend import Handle, RoleContext
from pipeline.spec.model import PipelineSpec
from pipeline_gcp import naming

# Cloud Functions gen2 builds with Cloud Build into Artifact Registry and runs on Cloud Run
# (https://cloud.google.com/functions/docs/tutorials/pubsub, "Enable the APIs"); Eventarc carries storage
# events; Monitoring holds the alert policies. IAM for the service accounts we create.
BASE_APIS = (
    "pubsub.googleapis.com",
    "storage.googleapis.com",
    "cloudfunctions.googleapis.com",
    "run.googleapis.com",
    "cloudbuild.googleapis.com",
    "artifactregistry.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "iam.googleapis.com",
)
EVENTARC_API = "eventarc.googleapis.com"
SCHEDULER_API = "cloudscheduler.googleapis.com"


@dataclass
class Env:
    """Project-wide values each role module needs; built by `platform` and kept on the backend."""

    project: str
    region: str
    provider: gcp.Provider
    apis: list[pulumi.Resource]
    pubsub_agent: pulumi.Output[str]  # service-N@gcp-sa-pubsub.iam.gserviceaccount.com
    project_number: pulumi.Output[str]
    gcs_publisher: pulumi.Resource | None = None  # roles/pubsub.publisher for the GCS agent (object stages only)
    sources: Handle[Any] | None = None  # bucket that holds function source packages
    buckets: dict[str, Handle[Any]] = field(default_factory=dict)  # by BucketSpec.key
    dead_letters: dict[str, Handle[Any]] = field(default_factory=dict)  # by stage name
    push_subscriptions: dict[str, pulumi.Output[str]] = field(default_factory=dict)  # by stage name
    scheduler_jobs: dict[str, pulumi.Output[str]] = field(default_factory=dict)  # by stage name

    def opts(self, role: RoleContext, *after: Any, **kwargs: Any) -> pulumi.ResourceOptions:
        """Parent to the role, and wait for the APIs (plus `after`) so first deploys don't race API enablement."""
        opts: pulumi.ResourceOptions = role.opts(provider=self.provider, depends_on=[*self.apis, *after], **kwargs)
        return opts


def labels(spec: PipelineSpec, stack: str) -> dict[str, str]:
    return {**spec.tags, "pipeline": naming.label_value(spec.name), "stack": naming.label_value(stack), "managed-by": "pipeline-deployer"}


def platform(role: RoleContext, spec: PipelineSpec, stack: str) -> Env:
    project = spec.clouds.gcp.project
    assert project is not None, "check() reports a missing project before any role runs"
    region = spec.clouds.gcp.region
    provider = gcp.Provider(role.name("gcp"), project=project, region=region, default_labels=labels(spec, stack), opts=role.opts())
    apis_needed = list(BASE_APIS)
    if any(s.trigger.objects for s in spec.stages):
        apis_needed.append(EVENTARC_API)
    if any(s.trigger.schedule for s in spec.stages):
        apis_needed.append(SCHEDULER_API)
    apis: list[pulumi.Resource] = [
        # disable_on_destroy=False: other workloads in the project may use the same APIs.
        gcp.projects.Service(role.name(f"api-{api.split('.')[0]}"), project=project, service=api, disable_on_destroy=False,
                             opts=role.opts(provider=provider))
        for api in apis_needed
    ]
    # A resource (not an invoke): creates the Pub/Sub service agent if the project has none yet, and its
    # email carries the project number, from which the other agents' documented emails follow.
    pubsub = gcp.projects.ServiceIdentity(role.name("pubsub-agent"), project=project, service="pubsub.googleapis.com",
                                          opts=role.opts(provider=provider, depends_on=apis))
    number = pubsub.email.apply(naming.project_number_from_agent)
    env = Env(project=project, region=region, provider=provider, apis=apis, pubsub_agent=pubsub.email, project_number=number)
    if any(s.trigger.objects for s in spec.stages):
        env.gcs_publisher = _gcs_agent_publisher(role, env)
    return env


def _gcs_agent_publisher(role: RoleContext, env: Env) -> pulumi.Resource:
    """Cloud Storage direct events: the GCS service agent publishes to Eventarc's Pub/Sub transport topic.

    Project-level on purpose: Eventarc creates (and names) that topic itself, so there is no narrower
    resource to bind to (https://cloud.google.com/eventarc/docs/run/create-trigger-storage-gcloud,
    reference gcp.md §2). The agent's email is the documented `service-N@gs-project-accounts...` format;
    `gcp.storage.get_project_service_account` would also create the agent on a project that never used
    it, but the offline planner's mock engine cannot serve invokes yet (see GcpBackend.mock_call).
    """
    email = env.project_number.apply(lambda n: naming.service_agent(n, "storage"))
    return gcp.projects.IAMMember(
        role.name("gcs-agent-publisher"), project=env.project, role="roles/pubsub.publisher",
        member=pulumi.Output.concat("serviceAccount:", email), opts=env.opts(role),
    )
