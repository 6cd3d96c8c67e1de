"""The deploy preflight for reserved concurrency: ask the account before a reservation fails half-way through a deploy.

A stage the user caps (`clouds.aws.reserved_concurrency`) gets `PutFunctionConcurrency`, which fails when it would
leave the account fewer than 100 unreserved concurrent executions (or, on an account whose quota is below 100, any
fewer than the whole quota): "Specified ReservedConcurrentExecutions for function decreases account's
UnreservedConcurrentExecution below its minimum value". New accounts start with a low quota, so the check reads the
real account with `GetAccountSettings` (its quota and what is unreserved now) and `GetFunctionConcurrency` for the
pipeline's own functions (a redeploy already holds their reservations), and refuses with the quota to request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.spec.model import PipelineSpec
from pipeline_aws.concurrency import QUOTA_HINT, UNRESERVED_MINIMUM, unreserved_minimum
from pipeline_aws.functions import physical_name

API = "https://docs.aws.amazon.com/lambda/latest/api/API_GetAccountSettings.html"


@dataclass(frozen=True)
class Account:
    """What GetAccountSettings says about one region, plus what the pipeline's own functions reserve already."""

    quota: int  # AccountLimit.ConcurrentExecutions
    unreserved: int  # AccountLimit.UnreservedConcurrentExecutions
    held: int  # reserved now by the functions the spec caps (0 on a first deploy)


def shortfall(account: Account, asked: Mapping[str, int]) -> int:
    """Executions the reservations lack: 0 when `asked` fits, else how far below Lambda's unreserved minimum they go."""
    left = account.unreserved + account.held - sum(asked.values())
    return max(0, unreserved_minimum(account.quota) - left)


def quota_to_request(account: Account, asked: Mapping[str, int]) -> int:
    """The smallest quota that takes the reservations and still leaves 100 unreserved."""
    others = account.quota - account.unreserved - account.held  # reserved by functions outside this pipeline
    return others + sum(asked.values()) + UNRESERVED_MINIMUM


def message(spec: PipelineSpec, account: Account) -> str | None:
    """The refusal, or None when the account can take the reservations."""
    asked = spec.clouds.aws.reserved_concurrency
    if shortfall(account, asked) == 0:
        return None
    listed = ", ".join(f"{stage} {count:,}" for stage, count in asked.items())
    held = f", {account.held:,} of it held by this pipeline's functions already" if account.held else ""
    return (f"clouds.aws.reserved_concurrency reserves {sum(asked.values()):,} concurrent Lambda executions ({listed}), but this account's "
            f"quota in {spec.clouds.aws.region} is {account.quota:,} with {account.unreserved:,} unreserved{held}, and Lambda must keep "
            f"{unreserved_minimum(account.quota):,} unreserved, so PutFunctionConcurrency would fail mid-deploy. Request a Concurrent "
            f"executions quota of at least {quota_to_request(account, asked):,} ({QUOTA_HINT}), or lower or remove the reservations")


def read_account(spec: PipelineSpec, stack: str) -> Account:
    """GetAccountSettings, and GetFunctionConcurrency for each capped stage's function (missing on a first deploy)."""
    import boto3
    import botocore.exceptions

    client = boto3.client("lambda", region_name=spec.clouds.aws.region)
    limit = client.get_account_settings()["AccountLimit"]
    held = 0
    for stage in spec.clouds.aws.reserved_concurrency:
        try:
            found = client.get_function_concurrency(FunctionName=physical_name(spec.name, stack, stage))
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                continue
            raise
        held += int(found.get("ReservedConcurrentExecutions") or 0)
    return Account(int(limit["ConcurrentExecutions"]), int(limit["UnreservedConcurrentExecutions"]), held)


def reservation_problem(spec: PipelineSpec, stack: str) -> str | None:
    """None when nothing is reserved or the account can take it; otherwise one sentence saying what to do."""
    if not spec.clouds.aws.reserved_concurrency:
        return None
    try:
        import botocore.exceptions
    except ImportError:
        return ("clouds.aws.reserved_concurrency needs boto3 to check the account's Lambda concurrency quota before deploying; "
                "install it (pip install boto3) or remove the reservations")
    try:
        account = read_account(spec, stack)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, KeyError, TypeError, ValueError) as exc:
        return (f"could not read this account's Lambda concurrency in {spec.clouds.aws.region} to check clouds.aws.reserved_concurrency "
                f"(lambda:GetAccountSettings and lambda:GetFunctionConcurrency, {API}): {exc}")
    return message(spec, account)
