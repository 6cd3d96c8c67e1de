"""Step 3 of deploying a stage's code (see `functions`): One Deploy of the uploaded package, an ARM deployment of
the `onedeploy` site extension, made once per app by whichever role comes last (a trigger, or the archiver) so
the app starts with everything it reads already in place."""

from __future__ import annotations

import pulumi
from pulumi_azure_native import resources, storage, web

from pipeline.roles import Handle, RoleContext
from pipeline_azure.platform import Platform

ONEDEPLOY_API_VERSION = "2024-04-01"


def release(function: Handle[web.WebApp], after: list[pulumi.Resource]) -> resources.Deployment:
    """One Deploy of the uploaded package (an ARM deployment of the `onedeploy` site extension)."""
    if function.extra["released"] is not None:
        done: resources.Deployment = function.extra["released"]
        return done
    role: RoleContext = function.extra["role"]
    platform: Platform = function.extra["platform"]
    blob: storage.Blob = function.extra["package"]
    template = {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {"packageUri": {"type": "string"}, "site": {"type": "string"}},
        "variables": {"packageSha256": function.extra["sha256"]},
        "resources": [{
            "type": "Microsoft.Web/sites/extensions",
            "apiVersion": ONEDEPLOY_API_VERSION,
            "name": "[concat(parameters('site'), '/onedeploy')]",
            "properties": {"packageUri": "[parameters('packageUri')]", "remoteBuild": False},
        }],
    }
    properties = resources.DeploymentPropertiesArgs(
        mode=resources.DeploymentMode.INCREMENTAL, template=template,
        parameters={"packageUri": resources.DeploymentParameterArgs(value=blob.url),
                    "site": resources.DeploymentParameterArgs(value=function.extra["app_name"])})
    deployment = resources.Deployment(
        role.name("release"),
        deployment_name=f"{role.pipeline}-{role.stack}-{role.key}"[:64],
        resource_group_name=platform.rg_name,
        properties=properties,
        opts=role.opts(depends_on=[function.resource, blob, *after]),
    )
    function.extra["released"] = deployment
    return deployment
