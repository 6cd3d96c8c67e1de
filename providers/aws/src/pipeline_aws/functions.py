"""One Lambda function per stage, with its own log group and log permissions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_aws as aws

from pipeline.packaging import Package, Recipe
from pipeline.roles import Handle, RoleContext
from pipeline.spec.model import StageSpec
from pipeline_aws import iam

RUNTIME = "python3.12"
ARCHITECTURE = "arm64"  # Graviton: about 20 % cheaper per GB-second than x86_64
LOG_RETENTION_DAYS = 30
# "-1 removes any concurrency limitations" (the provider's default, set explicitly so a redeploy also removes a
# reservation an earlier plan made; the provider calls PutFunctionConcurrency only for values >= 0).
UNRESERVED = -1


def function_name(role: RoleContext, stage: StageSpec) -> str:
    """Explicit (not autonamed) so the log group can exist before the function does."""
    return physical_name(role.pipeline, role.stack, stage.name)


def physical_name(pipeline: str, stack: str, stage: str) -> str:
    """`<pipeline>-<stack>-<stage>`: at most 20 + 16 + 20 + 2 = 58 of Lambda's 64 characters."""
    return f"{pipeline}-{stack}-{stage}"


HANDLER = "pipeline_aws.runtime.handler"  # the runtime shim; it loads the stage's handler from PIPELINE_HANDLER
PACKAGE_LIMIT_ZIPPED = 50 * 1024 * 1024  # direct upload (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html)
PACKAGE_LIMIT_UNZIPPED = 250 * 1024 * 1024
VENDOR_PLATFORM = "manylinux2014_aarch64"  # wheels for Lambda's arm64 Amazon Linux, never the build machine's


def recipe() -> Recipe:
    """boto3 is in the Lambda runtime already; anything else the stage needs ships as arm64 wheels."""
    return Recipe("aws", ("pipeline.runtime", "pipeline_aws.runtime"), vendor_platform=VENDOR_PLATFORM,
                  vendor_python=RUNTIME.removeprefix("python"), limit_bytes=PACKAGE_LIMIT_ZIPPED, limit_unpacked=PACKAGE_LIMIT_UNZIPPED)


def function(role: RoleContext, stage: StageSpec, identity: Handle[aws.iam.Role], package: Package, env: Mapping[str, Any],
             reserved_concurrency: int | None) -> Handle[aws.lambda_.Function]:
    """The stage's function. It reserves concurrency only when the user caps the stage (`clouds.aws.reserved_concurrency`):
    a reservation fails the deploy on an account whose quota cannot leave 100 unreserved, as new accounts' cannot
    (pipeline_aws.concurrency); the deploy preflight checks a cap against the real account (pipeline_aws.quota).
    One entry point takes every event shape its trigger delivers (pipeline_aws.runtime)."""
    name = function_name(role, stage)
    # Created first so Lambda never auto-creates a group without retention.
    log_group = aws.cloudwatch.LogGroup(role.name("logs"), name=f"/aws/lambda/{name}", retention_in_days=LOG_RETENTION_DAYS, opts=role.opts())
    logs = iam.inline_policy(role, "logs", identity.resource, [
        iam.statement("WriteLogs", ["logs:CreateLogStream", "logs:PutLogEvents"], [pulumi.Output.concat(log_group.arn, ":*")]),
    ])
    fn = aws.lambda_.Function(
        role.name(),
        name=name,
        runtime=RUNTIME,
        architectures=[ARCHITECTURE],
        handler=HANDLER,
        role=identity.extra["arn"],
        code=pulumi.FileArchive(str(package.path)),
        memory_size=stage.memory_mb,
        timeout=stage.timeout_s,
        reserved_concurrent_executions=UNRESERVED if reserved_concurrency is None else reserved_concurrency,
        environment=aws.lambda_.FunctionEnvironmentArgs(variables=dict(env)),
        logging_config=aws.lambda_.FunctionLoggingConfigArgs(log_format="JSON", log_group=log_group.name,
                                                             application_log_level="INFO", system_log_level="WARN"),
        opts=role.opts(depends_on=[log_group, logs, *identity.extra["policies"]]),
    )
    return Handle(fn, fn.name, {"arn": fn.arn, "log_group": log_group})
