"""Who may call an HTTP stage: an Entra ID token on every request (App Service Authentication), and the function key.

**Entra ID on every request.** App Service Authentication ("Easy Auth", `config/authsettingsV2`) runs in front of
the Functions host: `requireAuthentication` with `Return401` answers 401 to any request without a valid bearer
token, and the Microsoft provider's default authorization policy then admits only the listed principals (the
token's `oid`): the stage's caller identity and the `clouds.azure.http_invokers`; anyone else gets 403. No
session, no login redirect, no token store: an API validates bearer tokens only. The Flex Consumption
considerations no longer list Easy Auth as unsupported (the preview's "unauthenticated callers aren't blocked" note
is gone from https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#considerations, 2026-01).

**The audience without an app registration.** A token must be minted *for this app*, or a token a caller got for
any other service could be replayed here (a token for https://management.azure.com would be). Entra app
registrations are not Azure resources (azure-native cannot create one, and pulumi-azuread is not used), so the
audience is a service principal the plan does create: the stage's own user-assigned identity, whose application
(client) id is unique to this stage. Callers ask for a token for that id (`az account get-access-token --resource
<client id>`, MSAL scope `<client id>/.default`, a managed identity's endpoint with `resource=<client id>`); Entra
issues v1 tokens for it (the identity's service principal declares no token version), so the issuer is
`https://sts.windows.net/<tenant>/` and the audience the bare client id. `registration.clientId` is that id too;
no client secret is configured because nothing signs users in. What this asks of the user: nothing to create.
What could not be checked offline: that Entra mints tokens for a managed identity's application id in every tenant
(tenants may restrict token issuance for service principals without app roles); `pipeline deploy`'s test hint
prints the exact commands, and the README says how to verify it.

**Groups cannot be invokers.** The policy compares the token's `oid` (users, service principals, managed
identities); a group appears only in a `groups` claim, which Entra emits for resources whose app registration asks
for it - a managed identity has none - so a `group:` invoker could never pass, and `checks` refuses it.

**The function key stays a second factor.** The runtime's HTTP trigger keeps authLevel FUNCTION, so a request also
needs the key, which only callers may read (a custom role with `functions/listkeys/action` on this app).
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
from pulumi_azure_native import web

from pipeline.roles import Handle, RoleContext
from pipeline_azure.platform import Platform

RUNTIME_VERSION = "~1"  # the App Service Authentication module's version channel


def issuer(tenant_id: pulumi.Input[str]) -> pulumi.Output[str]:
    """The v1 token issuer of the tenant: what `iss` says in tokens for a resource without a token version."""
    return pulumi.Output.concat("https://sts.windows.net/", tenant_id, "/")


def easy_auth(role: RoleContext, platform: Platform, function: Handle[web.WebApp], audience: pulumi.Input[str], tenant_id: pulumi.Input[str],
              principals: Sequence[pulumi.Input[str]]) -> web.WebAppAuthSettingsV2:
    """Require an Entra ID bearer token for `audience` from one of `principals` (object ids) on every request."""
    return web.WebAppAuthSettingsV2(
        role.name("entra-auth"),
        name=function.extra["app_name"],
        resource_group_name=platform.rg_name,
        platform=web.AuthPlatformArgs(enabled=True, runtime_version=RUNTIME_VERSION),
        global_validation=web.GlobalValidationArgs(
            require_authentication=True, unauthenticated_client_action=web.UnauthenticatedClientActionV2.RETURN401),
        identity_providers=web.IdentityProvidersArgs(azure_active_directory=web.AzureActiveDirectoryArgs(
            enabled=True,
            registration=web.AzureActiveDirectoryRegistrationArgs(client_id=audience, open_id_issuer=issuer(tenant_id)),
            validation=web.AzureActiveDirectoryValidationArgs(
                allowed_audiences=[audience],
                default_authorization_policy=web.DefaultAuthorizationPolicyArgs(
                    allowed_principals=web.AllowedPrincipalsArgs(identities=list(principals))),
            ),
        )),
        login=web.LoginArgs(token_store=web.TokenStoreArgs(enabled=False)),
        http_settings=web.HttpSettingsArgs(require_https=True),
        opts=role.opts(depends_on=[function.resource]),
    )

