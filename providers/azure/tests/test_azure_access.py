"""Who may feed and call an Azure pipeline (issue 18 items 2, 10, 11, 17): typed principals, create-only producers,
outside producers (principals and federated workloads), Entra ID authentication of HTTP stages."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from pipeline_azure import iam, naming, principals
from test_azure_plan import SUB, assignments, container_id, plan_of, role_def, write_spec

from pipeline.errors import SpecError
from pipeline.plan import Plan

RA = "azure-native:authorization:RoleAssignment"
FIC = "azure-native:managedidentity:FederatedIdentityCredential"
USER, SP, GROUP, BARE = ("1a1a1a1a-1111-4111-8111-111111111111", "2b2b2b2b-2222-4222-8222-222222222222",
                         "3c3c3c3c-3333-4333-8333-333333333333", "4d4d4d4d-4444-4444-8444-444444444444")
GITHUB = "https://token.actions.githubusercontent.com"

OUTSIDE = f"""
    name: partner-feeds
    stream: {{archive: false}}
    uploads: {{}}
    stages:
      - {{name: clean, handler: "h.py:handle", trigger: {{stream: {{}}}}}}
      - {{name: ingest, handler: "h.py:handle", trigger: {{objects: {{from: uploads}}}}}}
      - {{name: lookup, handler: "h.py:handle", trigger: {{http: {{}}}}, timeout_s: 30}}
    clouds:
      azure:
        http_invokers: ["user:{USER}", {BARE}]
        producers:
          - {{principal: "sp:{SP}", sources: [uploads]}}
          - {{principal: {BARE}, sources: [stream]}}
          - {{principal: "group:{GROUP}"}}
          - {{federated: {{issuer: "{GITHUB}", subject: "repo:partner/feed:ref:refs/heads/main"}}}}
          - {{federated: {{issuer: "{GITHUB}", subject: "repo:partner/other:environment:prod"}}, sources: [uploads]}}
"""


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    return plan_of(write_spec(tmp_path_factory.mktemp("outside"), OUTSIDE))


def by_principal(p: Plan, role: str) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for g in assignments(p, role):
        found.setdefault(g["principalId"], []).append(g)
    return found


def test_principal_forms_map_to_arm_types() -> None:
    assert principals.parse(f"user:{USER}") == (USER, "User")
    assert principals.parse(f"group:{GROUP}") == (GROUP, "Group")
    assert principals.parse(f"sp:{SP}") == (SP, "ServicePrincipal")
    assert principals.parse(BARE) == (BARE, None)  # untyped: the assignment leaves the type to ARM


# ---- item 10: producers may create files, never read, replace or delete them -------------------------
def test_uploads_producer_identity_may_only_create_blobs_under_the_landing_prefix(outside: Plan) -> None:
    landing = container_id(outside, "in-uploads")
    creator = outside.one("azure-native:authorization:RoleDefinition", "uploads-producer").inputs
    assert creator["permissions"] == [{"dataActions": ["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action"]}]
    assert creator["assignableScopes"] == [f"/subscriptions/{SUB}/resourceGroups/rg-partner-feeds-default"]
    identity = outside.one("azure-native:managedidentity:UserAssignedIdentity", "uploads-producer")
    own = by_principal(outside, "uploads-producer")[naming.mock_uuid(identity.name, "principal")]
    assert [(g["scope"], g["principalType"]) for g in own] == [(landing, "ServicePrincipal")]
    assert own[0]["condition"] == ("((!(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action'})) OR "
                                   "(@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path] StringStartsWith 'uploads/'))")
    # no producer anywhere holds a role that could read, overwrite or delete (Storage Blob Data Contributor did all three)
    producer_roles = {g.inputs["roleDefinitionId"] for g in outside.of_type(RA) if g.role.endswith("-producer")}
    assert role_def(iam.STORAGE_BLOB_DATA_CONTRIBUTOR) not in producer_roles and role_def(iam.STORAGE_BLOB_DATA_READER) not in producer_roles


# ---- item 17 and item 2: outside producers, each on exactly its sources, typed as written -------------
def test_outside_principals_get_the_write_roles_of_exactly_their_sources(outside: Plan) -> None:
    uploads, stream = by_principal(outside, "uploads-producer"), by_principal(outside, "stream-producer")
    landing = container_id(outside, "in-uploads")
    hub = outside.one("azure-native:eventhub:EventHub").inputs
    hub_id = (f"/subscriptions/{SUB}/resourceGroups/rg-partner-feeds-default/providers/Microsoft.EventHub/namespaces/"
              f"{hub['namespaceName']}/eventhubs/records")
    # sp: feeds uploads only, the bare id the stream only, the group (no `sources`) both
    assert set(uploads) >= {SP, GROUP} and BARE not in uploads
    assert set(stream) >= {BARE, GROUP} and SP not in stream
    assert [(g["scope"], g["principalType"]) for g in uploads[SP]] == [(landing, "ServicePrincipal")]
    assert [(g["scope"], g["principalType"]) for g in uploads[GROUP]] == [(landing, "Group")]
    assert [g["scope"] for g in stream[BARE]] == [hub_id] and "principalType" not in stream[BARE][0]
    assert stream[BARE][0]["roleDefinitionId"] == role_def(iam.EVENT_HUBS_DATA_SENDER)
    assert stream[GROUP][0]["principalType"] == "Group"
    # the outside principals' uploads right is the same create-only role with the same path condition
    assert uploads[SP][0]["condition"] == uploads[GROUP][0]["condition"] == iam.path_condition(iam.BLOB_CREATE_ACTIONS, "StringStartsWith", "uploads/")


def test_federated_producers_get_credentials_on_the_producer_identity_one_at_a_time(outside: Plan) -> None:
    for source, subjects in (("stream", ["repo:partner/feed:ref:refs/heads/main"]),
                             ("uploads", ["repo:partner/feed:ref:refs/heads/main", "repo:partner/other:environment:prod"])):
        identity = outside.one("azure-native:managedidentity:UserAssignedIdentity", f"{source}-producer")
        credentials = [r for r in outside.of_type(FIC) if r.role == f"{source}-producer"]
        urns = {c.urn for c in credentials}
        credentials.sort(key=lambda c: sum(d in urns for d in c.dependencies))  # in creation order
        assert [c.inputs["subject"] for c in credentials] == subjects
        for credential in credentials:
            assert credential.inputs["resourceName"] == identity.inputs["resourceName"]
            assert credential.inputs["issuer"] == GITHUB and credential.inputs["audiences"] == ["api://AzureADTokenExchange"]
            assert 3 <= len(credential.inputs["federatedIdentityCredentialResourceName"]) <= 120
        # Azure refuses concurrent credential writes on one identity: each waits for the one before
        for before, after in itertools.pairwise(credentials):
            assert before.urn in after.dependencies


def test_duplicate_producers_and_group_invokers_are_refused(tmp_path: Path) -> None:
    body = OUTSIDE.replace(f'- {{principal: {BARE}, sources: [stream]}}', f'- {{principal: "user:{SP}", sources: [stream]}}')
    body = body.replace(f'http_invokers: ["user:{USER}", {BARE}]', f'http_invokers: ["group:{GROUP}", "user:{USER}", {USER}]')
    body = body.replace("repo:partner/other:environment:prod", "repo:partner/feed:ref:refs/heads/main")
    with pytest.raises(SpecError) as err:
        plan_of(write_spec(tmp_path, body))
    text = str(err.value)
    assert "producers[1].principal" in text and "also producers[0]" in text
    assert "producers[4].federated" in text and "same issuer, subject and audience" in text
    assert "http_invokers[0]" in text and "group never appears" in text and "http_invokers[2]" in text and "listed twice" in text


# ---- item 11: an Entra ID token on every request ---------------------------------------------------
def test_http_stage_requires_an_entra_token_of_an_allowed_principal(outside: Plan) -> None:
    auth = outside.one("azure-native:web:WebAppAuthSettingsV2", "lookup-trigger")
    app = outside.one("azure-native:web:WebApp", "lookup-function")
    identity = outside.one("azure-native:managedidentity:UserAssignedIdentity", "lookup-identity")
    caller = outside.one("azure-native:managedidentity:UserAssignedIdentity", "lookup-trigger")
    i = auth.inputs
    assert i["name"] == app.inputs["name"] and i["platform"] == {"enabled": True, "runtimeVersion": "~1"}
    assert i["globalValidation"] == {"requireAuthentication": True, "unauthenticatedClientAction": "Return401"}
    aad = i["identityProviders"]["azureActiveDirectory"]
    audience = naming.mock_uuid(identity.name, "client")  # the stage's own identity: a service principal unique to this stage
    assert aad["registration"] == {"clientId": audience, "openIdIssuer": f"https://sts.windows.net/{naming.MOCK_TENANT}/"}
    assert aad["validation"]["allowedAudiences"] == [audience]
    assert aad["validation"]["defaultAuthorizationPolicy"]["allowedPrincipals"]["identities"] == [
        naming.mock_uuid(caller.name, "principal"), USER, BARE]
    assert i["login"] == {"tokenStore": {"enabled": False}} and i["httpSettings"] == {"requireHttps": True}
    # the code goes live only once authentication is configured
    release = outside.one("azure-native:resources:Deployment", "lookup-function")
    assert auth.urn in release.dependencies


def test_no_stage_without_http_has_authentication_settings(outside: Plan) -> None:
    assert [r.role for r in outside.of_type("azure-native:web:WebAppAuthSettingsV2")] == ["lookup-trigger"]
