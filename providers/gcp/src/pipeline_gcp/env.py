"""The project-wide values every GCP role module builds on (provider, agents, buckets so far): one object that
`platform` makes and the backend keeps, in a module of its own so every role module (IAM among them) can use it
without depending on the code that builds the platform."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_gcp as gcp

from pipeline.roles import Handle, RoleContext
from pipeline_gcp import naming


@dataclass
class Env:
    """Project-wide values each role module needs; built by `platform` and kept on the backend."""

    project: str
    region: str
    provider: gcp.Provider
    apis: list[pulumi.Resource]
    pubsub_agent: pulumi.Output[str]  # service-N@gcp-sa-pubsub.iam.gserviceaccount.com
    project_number: pulumi.Output[str]
    suffix: pulumi.Output[str]  # the stack's random name suffix (8 hex), drawn once and kept in the state
    pipeline: str = ""
    stack: str = ""
    gcs_agent: pulumi.Output[str] | None = None  # service-N@gs-project-accounts... (object notifications only)
    builder: Handle[Any] | None = None  # the build service account of every function
    build_bindings: list[pulumi.Resource] = field(default_factory=list)
    lister_role: pulumi.Output[str] | None = None  # custom role with storage.objects.list only (schedules with `from`)
    delete_data: bool = False  # data buckets deletable with their objects (`pipeline destroy --delete-data`)
    sources: Handle[Any] | None = None  # bucket that holds function source packages
    buckets: dict[str, Handle[Any]] = field(default_factory=dict)  # by BucketSpec.key
    dead_letters: dict[str, Handle[Any]] = field(default_factory=dict)  # by stage name
    event_subscriptions: dict[str, pulumi.Output[str]] = field(default_factory=dict)  # push subscriptions, by stage
    batch_subscriptions: dict[str, pulumi.Output[str]] = field(default_factory=dict)  # Cloud Storage subscriptions, by batching.Source key
    batch_buckets: dict[str, Handle[Any]] = field(default_factory=dict)  # batch buckets, by batching.Source key
    event_topics: dict[tuple[str, str], gcp.pubsub.Topic] = field(default_factory=dict)  # notification topics, by (bucket key, prefix)
    scheduler_jobs: dict[str, pulumi.Output[str]] = field(default_factory=dict)  # by stage name

    def opts(self, role: RoleContext, *after: Any, **kwargs: Any) -> pulumi.ResourceOptions:
        """Parent to the role, and wait for the APIs (plus `after`) so first deploys don't race API enablement."""
        opts: pulumi.ResourceOptions = role.opts(provider=self.provider, depends_on=[*self.apis, *after], **kwargs)
        return opts

    def bucket_name(self, key: str) -> pulumi.Output[str]:
        """The bucket for `key` (a BucketSpec key, "<stage>-batches", "sources"): valid and unique whatever the names."""
        return self.suffix.apply(lambda suffix: naming.bucket_name(self.pipeline, self.stack, key, suffix))

    def pubsub_name(self, logical: str) -> pulumi.Output[str] | None:
        """None (Pulumi autonames `<logical>-<random>`) unless the logical name starts with "goog", which Pub/Sub refuses:
        then an explicit id from the stack's suffix."""
        if not logical.startswith("goog"):
            return None
        return self.suffix.apply(lambda suffix: naming.pubsub_name(logical, suffix))
