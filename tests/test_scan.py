"""The plan -> scanner-format conversion (pipeline.scan and each backend's scan mapping), without a scanner.

tests/test_checkov.py runs checkov on the result; these tests pin the translation itself: every
planned type is mapped (or explicitly unscanned), an unmapped type fails loudly, and the Terraform
and ARM shapes are the ones the formats define.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from bundled import bundled_plans, bundled_stacks

from pipeline.backend import backend_names
from pipeline.errors import PipelineError
from pipeline.plan import Plan, PlannedResource
from pipeline.scan import ArmMapping, TerraformMapping, UnmappedResourceError, scan_document, scan_documents, scan_mapping, snake

CLOUDS = backend_names()
STACKS = sorted(bundled_stacks())


def resource(type_: str, name: str, inputs: dict[str, Any], physical: str = "", dependencies: tuple[PlannedResource, ...] = ()) -> PlannedResource:
    return PlannedResource(urn=f"urn:pulumi:dev::p::{type_}::{name}", type=type_, name=name, custom=True, parent="", role="r", role_kind="Bucket",
                           physical_name=physical or name, inputs=inputs, dependencies=[d.urn for d in dependencies])


def plan_of(cloud: str, *resources: PlannedResource, stack: str = "dev") -> Plan:
    return Plan(cloud=cloud, pipeline="p", stack=stack, location="x", sizing={}, resources=list(resources))


# ---- every planned type is mapped ---------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("cloud", CLOUDS)
def test_every_bundled_resource_is_converted_or_explicitly_unscanned(stack: str, cloud: str) -> None:
    plans = bundled_plans(stack, cloud)
    converted: list[tuple[str, str]] = []
    unscanned: list[tuple[str, str]] = []
    for document in scan_documents(plans):
        converted += [(o.stack, o.urn) for o in document.origins.values()]  # one scanner id per resource: none collide
        unscanned += [(o.stack, o.urn) for o, reason in document.unscanned if reason]
    planned = {(p.stack, r.urn) for p in plans for r in p.cloud_resources}
    assert len(converted) + len(unscanned) == len(planned)
    assert set(converted) | set(unscanned) == planned


def test_an_unmapped_type_fails_loudly() -> None:
    widget = resource("aws:fake/widget:Widget", "w", {})
    bucket = resource("aws:s3/bucket:Bucket", "b", {})
    with pytest.raises(UnmappedResourceError, match=r"aws: no Terraform mapping for aws:fake/widget:Widget; add each to the aws backend's scan mapping"):
        scan_document([plan_of("aws", bucket, widget)])


def test_an_unmapped_azure_type_fails_loudly() -> None:
    thing = resource("azure-native:fake:Thing", "t", {})
    with pytest.raises(UnmappedResourceError, match="azure: no ARM mapping for azure-native:fake:Thing"):
        scan_document([plan_of("azure", thing)])


def test_each_backend_supplies_its_mapping() -> None:
    kinds = {cloud: type(scan_mapping(cloud)) for cloud in CLOUDS}
    assert kinds == {"aws": TerraformMapping, "gcp": TerraformMapping, "azure": ArmMapping}


def test_a_backend_without_a_mapping_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    class Bare:
        title = "Bare"

    monkeypatch.setattr("pipeline.scan.backend_class", lambda name: Bare)
    with pytest.raises(PipelineError, match="the Bare backend cannot describe its plans for a scanner"):
        scan_mapping("bare")


def test_one_document_holds_one_cloud() -> None:
    with pytest.raises(ValueError, match="exactly one cloud"):
        scan_document([plan_of("aws"), plan_of("gcp")])


def test_arm_templates_hold_one_plan_each() -> None:
    """ARM names are real names, and stacks (in their own resource groups) may repeat them."""
    dev, prod = plan_of("azure", stack="dev"), plan_of("azure", stack="prod")
    with pytest.raises(ValueError, match="use scan_documents"):
        scan_document([dev, prod])
    assert [d.framework for d in scan_documents([dev, prod])] == ["arm", "arm"]
    assert len(scan_documents([plan_of("aws", stack="dev"), plan_of("aws", stack="prod")])) == 1


# ---- Terraform plan JSON ------------------------------------------------------------------------


def test_snake_case_undoes_pulumi_camel_case() -> None:
    assert snake("extendedS3Configuration") == "extended_s3_configuration"
    assert snake("sqsManagedSseEnabled") == "sqs_managed_sse_enabled"
    assert snake("bucket") == "bucket"
    assert snake("already_snake") == "already_snake"


def terraform_sample() -> dict[str, Any]:
    bucket = resource("aws:s3/bucket:Bucket", "data", {"bucketPrefix": "p-data-", "forceDestroy": False}, physical="p-data-123")
    sse = resource("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", "data-sse",
                   {"bucket": "p-data-123", "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]},
                   physical="p-data-123", dependencies=(bucket,))
    role = resource("aws:iam/role:Role", "fn-role", {"assumeRolePolicy": "{}"}, physical="fn-role-1")
    function = resource("aws:lambda/function:Function", "fn", {
        "role": "arn:aws:iam::123456789012:role/fn-role-1",
        "code": {"archive": "/build/fn.zip"},
        "environment": {"variables": {"OUTPUT_BUCKET": "p-data-123", "camelKey": "kept"}},
        "loggingConfig": {"logFormat": "JSON"},
        "architectures": ["arm64"],
    }, dependencies=(role, bucket))
    return scan_document([plan_of("aws", bucket, sse, role, function)]).content


def by_address(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["address"]: item for item in items}


def test_terraform_plan_has_the_fields_checkov_reads() -> None:
    content = terraform_sample()
    assert content["format_version"] and content["terraform_version"]
    planned = by_address(content["planned_values"]["root_module"]["resources"])
    assert set(planned) == {"aws_s3_bucket.data", "aws_s3_bucket_server_side_encryption_configuration.data-sse".replace("-", "_"),
                            "aws_iam_role.fn_role", "aws_lambda_function.fn"}
    bucket = planned["aws_s3_bucket.data"]
    assert bucket["mode"] == "managed" and bucket["type"] == "aws_s3_bucket" and bucket["name"] == "data"
    assert bucket["provider_name"] == "registry.terraform.io/hashicorp/aws"
    assert bucket["values"] == {"bucket_prefix": "p-data-", "force_destroy": False}
    changes = by_address(content["resource_changes"])
    assert changes["aws_s3_bucket.data"]["change"]["actions"] == ["create"]
    assert set(by_address(content["configuration"]["root_module"]["resources"])) == set(planned)


def test_terraform_values_rename_fields_nest_blocks_and_keep_maps() -> None:
    planned = by_address(terraform_sample()["planned_values"]["root_module"]["resources"])
    sse = planned["aws_s3_bucket_server_side_encryption_configuration.data_sse"]["values"]
    # Pulumi's `rules` is Terraform's repeated `rule` block; a one-item block is a one-item list, as in state.
    assert sse == {"rule": [{"apply_server_side_encryption_by_default": [{"sse_algorithm": "AES256"}]}]}
    function = planned["aws_lambda_function.fn"]["values"]
    assert function["filename"] == "/build/fn.zip"
    assert function["logging_config"] == [{"log_format": "JSON"}]
    # A map's keys are data: kept verbatim, not snake_cased, and its values stay literal.
    assert function["environment"] == [{"variables": {"OUTPUT_BUCKET": "p-data-123", "camelKey": "kept"}}]
    assert function["architectures"] == ["arm64"]


def test_terraform_references_connect_resources_to_their_sources() -> None:
    content = terraform_sample()
    configured = by_address(content["configuration"]["root_module"]["resources"])
    planned = by_address(content["planned_values"]["root_module"]["resources"])
    changes = by_address(content["resource_changes"])
    sse = "aws_s3_bucket_server_side_encryption_configuration.data_sse"
    # The bucket name came from the bucket: unknown at plan time, a reference in the configuration.
    assert configured[sse]["expressions"]["bucket"] == {"references": ["aws_s3_bucket.data.id", "aws_s3_bucket.data"]}
    assert "bucket" not in planned[sse]["values"]
    assert changes[sse]["change"]["after_unknown"] == {"bucket": True}
    # An ARN ending in a dependency's name is a reference to its arn.
    assert configured["aws_lambda_function.fn"]["expressions"]["role"] == {"references": ["aws_iam_role.fn_role.arn", "aws_iam_role.fn_role"]}


def test_a_value_two_dependencies_hold_comes_from_the_one_that_does_not_consume_it() -> None:
    """A bucket policy depends on the bucket and on its public access block; both have the bucket's name as
    their physical name, but only the bucket is its source (the block depends on the bucket)."""
    bucket = resource("aws:s3/bucket:Bucket", "b", {}, physical="name-1")
    block = resource("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "b-block", {"bucket": "name-1"}, physical="name-1", dependencies=(bucket,))
    policy = resource("aws:s3/bucketPolicy:BucketPolicy", "b-policy", {"bucket": "name-1", "policy": "{}"}, physical="name-1", dependencies=(bucket, block))
    configured = by_address(scan_document([plan_of("aws", bucket, block, policy)]).content["configuration"]["root_module"]["resources"])
    assert configured["aws_s3_bucket_policy.b_policy"]["expressions"]["bucket"]["references"][0] == "aws_s3_bucket.b.id"


def test_an_explicit_name_is_a_reference_to_the_resource_it_names() -> None:
    log_group = resource("aws:cloudwatch/logGroup:LogGroup", "logs", {"name": "/aws/lambda/fn"}, physical="/aws/lambda/fn")
    function = resource("aws:lambda/function:Function", "fn", {"loggingConfig": {"logGroup": "/aws/lambda/fn"}}, dependencies=(log_group,))
    configured = by_address(scan_document([plan_of("aws", log_group, function)]).content["configuration"]["root_module"]["resources"])
    assert configured["aws_lambda_function.fn"]["expressions"]["logging_config"] == [
        {"log_group": {"references": ["aws_cloudwatch_log_group.logs.id", "aws_cloudwatch_log_group.logs"]}}]


def test_values_from_non_dependencies_stay_literal() -> None:
    bucket = resource("aws:s3/bucket:Bucket", "b", {}, physical="name-1")
    block = resource("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "b-block", {"bucket": "name-1"})
    document = scan_document([plan_of("aws", bucket, block)])
    planned = by_address(document.content["planned_values"]["root_module"]["resources"])
    assert planned["aws_s3_bucket_public_access_block.b_block"]["values"]["bucket"] == "name-1"


def test_several_plans_get_addresses_per_stack_and_namespace() -> None:
    dev, prod = plan_of("aws", resource("aws:sqs/queue:Queue", "q", {}), stack="dev"), plan_of("aws", resource("aws:sqs/queue:Queue", "q", {}), stack="prod")
    document = scan_document([dev, prod], namespace="shop")
    assert set(document.origins) == {"aws_sqs_queue.shop_dev_q", "aws_sqs_queue.shop_prod_q"}
    assert {o.stack for o in document.origins.values()} == {"dev", "prod"}


# ---- ARM template -------------------------------------------------------------------------------


def arm_sample() -> dict[str, dict[str, Any]]:
    account = resource("azure-native:storage:StorageAccount", "data", {
        "accountName": "pdata1", "resourceGroupName": "rg-p", "location": "eastus", "kind": "StorageV2", "sku": {"name": "Standard_LRS"},
        "enableHttpsTrafficOnly": True, "minimumTlsVersion": "TLS1_2", "tags": {"team": "x"},
    }, physical="pdata1")
    container = resource("azure-native:storage:BlobContainer", "raw", {"accountName": "pdata1", "resourceGroupName": "rg-p", "containerName": "raw",
                                                                        "publicAccess": "None"}, dependencies=(account,))
    workspace = resource("azure-native:operationalinsights:Workspace", "logs", {"workspaceName": "log-p", "resourceGroupName": "rg-p",
                                                                               "location": "eastus", "sku": {"name": "PerGB2018"}, "retentionInDays": 30})
    app = resource("azure-native:web:WebApp", "fn", {"name": "func-p", "resourceGroupName": "rg-p", "kind": "functionapp,linux", "httpsOnly": True,
                                                     "identity": {"type": "UserAssigned", "userAssignedIdentities": ["/subscriptions/s/id-1"]},
                                                     "siteConfig": {"minTlsVersion": "1.2"}})
    autonamed = resource("azure-native:managedidentity:UserAssignedIdentity", "id", {"resourceGroupName": "rg-p", "location": "eastus"}, physical="id-auto")
    template = scan_document([plan_of("azure", account, container, workspace, app, autonamed)]).content
    assert template["$schema"].endswith("deploymentTemplate.json#") and template["contentVersion"] == "1.0.0.0"
    return {f"{r['type']}.{r['name']}": r for r in template["resources"]}


def test_arm_resources_nest_properties_and_keep_top_level_fields() -> None:
    account = arm_sample()["Microsoft.Storage/storageAccounts.pdata1"]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}(-preview)?", account["apiVersion"])
    assert {k: account[k] for k in ("location", "kind", "sku", "tags")} == {
        "location": "eastus", "kind": "StorageV2", "sku": {"name": "Standard_LRS"}, "tags": {"team": "x"}}
    # azure-native's enableHttpsTrafficOnly is ARM's supportsHttpsTrafficOnly; names of the resource and its group are not properties.
    assert account["properties"] == {"supportsHttpsTrafficOnly": True, "minimumTlsVersion": "TLS1_2"}


def test_arm_sub_resources_are_named_parent_first() -> None:
    resources = arm_sample()
    container = resources["Microsoft.Storage/storageAccounts/blobServices/containers.pdata1/default/raw"]
    assert container["properties"] == {"publicAccess": "None"}
    assert container["dependsOn"] == ["[resourceId('Microsoft.Storage/storageAccounts', 'pdata1')]"]
    assert "Microsoft.ManagedIdentity/userAssignedIdentities.id-auto" in resources  # autonamed: the physical name


def test_arm_quirks_of_azure_native_are_undone() -> None:
    resources = arm_sample()
    workspace = resources["Microsoft.OperationalInsights/workspaces.log-p"]
    assert "sku" not in workspace and workspace["properties"]["sku"] == {"name": "PerGB2018"}
    app = resources["Microsoft.Web/sites.func-p"]
    assert app["identity"] == {"type": "UserAssigned", "userAssignedIdentities": {"/subscriptions/s/id-1": {}}}
    assert app["properties"] == {"httpsOnly": True, "siteConfig": {"minTlsVersion": "1.2"}}


# ---- what the engine receives uses the providers' wire names ----------------------------------------

_MAP_INPUTS = {"tags", "labels", "variables", "environmentVariables", "metadata", "userLabels", "dimensions", "headers", "template"}


def snake_case_keys(value: Any, path: str = "") -> set[str]:
    """Keys with '_' outside maps: a dict given to a union-typed input reaches the engine untranslated."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if "_" in key:
                found.add(f"{path}.{key}")
            if key not in _MAP_INPUTS:
                found |= snake_case_keys(item, f"{path}.{key}")
    elif isinstance(value, list):
        for item in value:
            found |= snake_case_keys(item, path)
    return found


@pytest.mark.parametrize("cloud", CLOUDS)
def test_planned_inputs_use_wire_names(cloud: str) -> None:
    """Checked here because the conversion would otherwise hide it (snake_case is what Terraform wants anyway)."""
    found = {f"{r.type}{key}" for stack in STACKS for p in bundled_plans(stack, cloud) for r in p.cloud_resources for key in snake_case_keys(r.inputs)}
    assert not found, f"inputs the engine gets with snake_case keys (a dict in a union-typed input is not translated): {sorted(found)}"


# ---- the command ---------------------------------------------------------------------------------


def test_plan_command_writes_the_scanner_format(run_cli: Any, example_spec: Any, tmp_path: Any) -> None:
    target = tmp_path / "plan.json"
    result = run_cli("plan", example_spec, "--stack", "dev", "--cloud", "aws", "--format", "scan", "--output", target)
    assert result.returncode == 0, result.stderr
    content = json.loads(target.read_text(encoding="utf-8"))
    types = {r["type"] for r in content["planned_values"]["root_module"]["resources"]}
    assert {"aws_s3_bucket", "aws_lambda_function", "aws_kinesis_stream"} <= types
    assert f"checkov -f {target} --framework terraform_plan" in result.stderr
