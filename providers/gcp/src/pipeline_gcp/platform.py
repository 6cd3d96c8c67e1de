"""The provider, enabled APIs, the project's service agents and the build identity: what every later role builds on."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp
import pulumi_random as random

from pipeline.roles import RoleContext
from pipeline.spec.model import PipelineSpec
from pipeline_gcp import naming
from pipeline_gcp.env import Env

# Cloud Functions gen2 builds with Cloud Build into Artifact Registry and runs on Cloud Run
# (https://cloud.google.com/functions/docs/tutorials/pubsub, "Enable the APIs"); Monitoring holds the alert
# policies, Logging the log-based metrics. IAM for the service accounts and the custom role we create.
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
    # Project IAM members (setIamPolicy) go through Cloud Resource Manager, which a new project may not have enabled;
    # callers and producers that impersonate our service accounts mint tokens through IAM Credentials.
    "cloudresourcemanager.googleapis.com",
    "iamcredentials.googleapis.com",
)
SCHEDULER_API = "cloudscheduler.googleapis.com"
# What a function build needs, and nothing else (https://cloud.google.com/functions/docs/securing/build-custom-sa):
# write build logs, push the image to Artifact Registry (GCF creates its `gcf-artifacts` repository itself, so the
# grant is project-level), and read the source archive (a bucket-level grant on the sources bucket, in storage.py).
BUILD_PROJECT_ROLES = ("roles/logging.logWriter", "roles/artifactregistry.writer")
# Cloud Functions copies a function's source into its own `gcf-v2-sources-<project number>-<region>` bucket and the
# build reads it from there (https://cloud.google.com/run/docs/configuring/services/build-service-account: the build
# account "retrieves the function source from the Cloud Storage bucket"). That bucket is Google's, created on the first
# deploy, so the grant is project-level, narrowed by a condition to those buckets and to reading.
GCF_SOURCES_BUCKETS = "projects/_/buckets/gcf-v2-sources-"


def labels(spec: PipelineSpec, stack: str) -> dict[str, str]:
    return {**spec.tags, "pipeline": naming.label_value(spec.name), "stack": naming.label_value(stack), "managed-by": "pipeline-deployer"}


def notified(spec: PipelineSpec) -> bool:
    """Whether any bucket sends object notifications: every stream and object stage is fed by them."""
    return any(s.trigger.stream or s.trigger.objects for s in spec.stages)


def platform(role: RoleContext, spec: PipelineSpec, stack: str, delete_data: bool) -> Env:
    project = spec.clouds.gcp.project
    assert project is not None, "check() reports a missing project before any role runs"
    region = spec.clouds.gcp.region
    provider = gcp.Provider(role.name("gcp"), project=project, region=region, default_labels=labels(spec, stack), opts=role.opts())
    apis_needed = list(BASE_APIS)
    if any(s.trigger.schedule for s in spec.stages):
        apis_needed.append(SCHEDULER_API)
    apis: list[pulumi.Resource] = [
        # disable_on_destroy=False: other workloads in the project may use the same APIs.
        gcp.projects.Service(role.name(f"api-{api.split('.')[0]}"), project=project, service=api, disable_on_destroy=False,
                             opts=role.opts(provider=provider))
        for api in apis_needed
    ]
    # A resource (not an invoke): creates the Pub/Sub service agent if the project has none yet, and its
    # email carries the project number, from which the monitoring agent's documented email follows.
    pubsub = gcp.projects.ServiceIdentity(role.name("pubsub-agent"), project=project, service="pubsub.googleapis.com",
                                          opts=role.opts(provider=provider, depends_on=apis))
    number = pubsub.email.apply(naming.project_number_from_agent)
    # Globally unique names (buckets) end in a random suffix drawn once per stack and kept in its state, so names fit
    # their limits whatever the pipeline and stage are called, stacks and projects never collide, and no one can
    # create a bucket with our name first. Its own provider: the random provider needs no configuration.
    randomness = random.Provider(role.name("random"), opts=role.opts())
    suffix = random.RandomId(role.name("suffix"), byte_length=naming.SUFFIX_BYTES, opts=role.opts(provider=randomness)).hex
    env = Env(project=project, region=region, provider=provider, apis=apis, pubsub_agent=pubsub.email, project_number=number,
              suffix=suffix, pipeline=spec.name, stack=stack, delete_data=delete_data)
    if notified(spec):
        env.gcs_agent = _gcs_agent(env)
    build_identity(role, env)
    if any(s.trigger.window_source for s in spec.stages):  # schedules and HTTP stages with `from`
        env.lister_role = _lister_role(role, env, spec, stack)
    return env


def _gcs_agent(env: Env) -> pulumi.Output[str]:
    """The Cloud Storage service agent, which publishes object notifications.

    It only exists once something asks for it: `storage.get_project_service_account` (the JSON API's
    projects.serviceAccount.get) creates it on a fresh project, so a binding to it never precedes it
    (https://cloud.google.com/storage/docs/projects#service-agents).
    """
    result = gcp.storage.get_project_service_account_output(
        project=env.project, opts=pulumi.InvokeOutputOptions(provider=env.provider, depends_on=env.apis))
    return result.email_address


def build_identity(role: RoleContext, env: Env) -> None:
    """The account every function of this stack is built as (`build_config.service_account`)."""
    from pipeline_gcp import iam

    sa = iam.service_account(role, env, "build-sa", naming.service_account_id(role.pipeline, role.stack, "build"),
                             f"{role.pipeline} builds ({role.stack})",
                             f"Builds the functions of {role.pipeline} ({role.stack}): logs, images, sources; nothing at run time")
    env.builder = sa
    env.build_bindings = [
        gcp.projects.IAMMember(role.name(f"build-{grant.split('.')[-1].lower()}"), project=env.project, role=grant,
                               member=sa.extra["member"], opts=env.opts(role))
        for grant in BUILD_PROJECT_ROLES
    ]
    env.build_bindings.append(gcp.projects.IAMMember(
        role.name("build-gcf-sources-reader"), project=env.project, role="roles/storage.objectViewer", member=sa.extra["member"],
        condition=gcp.projects.IAMMemberConditionArgs(
            title="Cloud Functions source copies", description="read the gcf-v2-sources buckets Cloud Functions builds from",
            expression=f'resource.name.startsWith("{GCF_SOURCES_BUCKETS}")'),
        opts=env.opts(role)))


LISTER_PERMISSIONS = ("storage.objects.list",)


def _lister_role(role: RoleContext, env: Env, spec: PipelineSpec, stack: str) -> pulumi.Output[str]:
    """A custom role with `storage.objects.list` only, for schedules that read what a source wrote since their last run.

    Cloud Storage checks a list request against the bucket, not an object (the request names no object), so
    an IAM condition on an object prefix (`resource.name.startsWith(".../objects/<prefix>")`) never matches it;
    `storage.objectViewer` without one would also grant reading every object. The narrowest grant is this role
    on the source bucket alone, which holds only that source's outputs. Bound in iam.grant.
    """
    custom = gcp.projects.IAMCustomRole(
        role.name("object-lister"), project=env.project, role_id=env.suffix.apply(lambda suffix: naming.custom_role_id(spec.name, stack, "lister", suffix)),
        title=f"{spec.name} ({stack}) object lister"[:100],
        description="List object names in one bucket (bound per bucket); no object reads", permissions=list(LISTER_PERMISSIONS),
        stage="GA", opts=env.opts(role),
    )
    return custom.name
