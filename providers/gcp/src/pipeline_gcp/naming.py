"""Physical names GCP accepts, and the ids/outputs GCP would assign (for the offline planner)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from pipeline.roles import autoname

# Plans are offline: the real project number is not known. Any 12-digit number looks right.
MOCK_PROJECT_NUMBER = "123456789012"

SA_MIN, SA_MAX = 6, 30  # service account ids: [a-z]([-a-z0-9]*[a-z0-9]), 6-30 characters
FUNCTION_MAX = 63  # Cloud Run service names (a gen2 function is one): 63 characters, [a-z]([-a-z0-9]*[a-z0-9])
# Bucket names (https://cloud.google.com/storage/docs/naming-buckets): 3-63 characters without dots, lowercase letters,
# digits, '-' and '_', starting and ending with a letter or digit, globally unique, never starting with "goog" nor
# containing "google" or a close misspelling. Ours: a readable prefix, then the stack's random suffix.
BUCKET_MAX = 63
# Pub/Sub topic and subscription ids (https://cloud.google.com/pubsub/docs/create-topic#resource_names): 3-255
# characters, starting with a letter, never with "goog".
PUBSUB_MAX = 255
# Custom role ids (https://cloud.google.com/iam/docs/reference/rest/v1/projects.roles/create): [a-zA-Z0-9_.], 3-64.
ROLE_ID_MAX = 64
SUFFIX_BYTES = 4  # the stack's random suffix (pulumi_random.RandomId): 8 hex characters
RANDOM_ID = "random:index/randomId:RandomId"
_SA_PATTERN = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])$")
# "goog", "g00g", "go0g", ...: Cloud Storage refuses names that begin with it or contain "google" or a misspelling.
_GOOG = re.compile(r"g[o0]{2}g")


def _digest(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _clean(text: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")


def fit(parts: list[str], limit: int, minimum: int = 1) -> str:
    """`a-b-c` if it fits `limit`, else a readable prefix plus a deterministic 6-character hash of the whole."""
    full = _clean("-".join(parts))
    if minimum <= len(full) <= limit and _SA_PATTERN.match(full):
        return full
    digest = _digest(full, 6)
    head = full[: limit - len(digest) - 1].rstrip("-")
    name = f"{head}-{digest}" if head else f"x{digest}"
    if not name[0].isalpha():
        name = "x" + name[: limit - 1]
    return name


def bucket_name(pipeline: str, stack: str, key: str, suffix: str) -> str:
    """`<pipeline>-<stack>-<key>-<suffix>`, shortened with a hash when long: always a valid, globally unique bucket name.

    The suffix is the stack's random id (drawn once per stack, kept in the state), so two stacks or two projects
    with the same pipeline name never collide, and nobody can guess a name to take it first."""
    head = fit([_GOOG.sub("gg", pipeline), stack, key], BUCKET_MAX - len(suffix) - 1)
    name = _GOOG.sub("gg", f"{head}-{suffix}")
    return name


def pubsub_name(logical: str, suffix: str) -> str:
    """An explicit topic or subscription id: the logical name (unique in the stack) plus the stack's suffix, valid
    whatever the pipeline is called (never starting with "goog", at most 255 characters)."""
    name = fit([logical, suffix], PUBSUB_MAX)
    return f"p-{name}" if name.startswith("goog") else name


def service_account_id(pipeline: str, stack: str, stage: str, purpose: str = "") -> str:
    """Project-unique id for a service account; includes the stack so stacks can share a project."""
    return fit([pipeline, stack, stage, purpose] if purpose else [pipeline, stack, stage], SA_MAX, SA_MIN)


def function_name(pipeline: str, stack: str, stage: str) -> str:
    """Explicit (not autonamed) so alert filters and the Cloud Run service name are known up front."""
    return fit([pipeline, stack, stage], FUNCTION_MAX)


def custom_role_id(pipeline: str, stack: str, purpose: str, suffix: str = "") -> str:
    """Project-unique custom role id: camelCase letters and digits, then `_<suffix>`, 3-64 characters, no '-' (IAM's rule).

    The stack's random suffix makes a redeploy after `pipeline destroy` use a new id: a deleted custom role's id cannot
    be reused for 7 to 37 days (pulumi-gcp IAMCustomRole docs). Anything longer than 64 keeps a hash of the whole, so
    two long names never shorten to the same id."""
    words = re.split(r"[^a-zA-Z0-9]+", f"{pipeline} {stack} {purpose}")
    text = words[0].lower() + "".join(w[:1].upper() + w[1:].lower() for w in words[1:] if w)
    if not text[:1].isalpha():
        text = "p" + text
    tail = f"_{suffix}" if suffix else ""
    if len(text) + len(tail) > ROLE_ID_MAX:
        digest = _digest(text, 6)
        text = text[: ROLE_ID_MAX - len(digest) - 1 - len(tail)] + "_" + digest
    return text + tail


def label_value(text: str) -> str:
    """GCP label values: up to 63 lowercase letters, digits, '_' or '-'."""
    return re.sub(r"[^a-z0-9_-]", "-", text.lower())[:63]


def service_agent(project_number: str, service: str) -> str:
    """Google-managed service agent emails (documented formats)."""
    domains = {
        "pubsub": "gcp-sa-pubsub.iam.gserviceaccount.com",
        "storage": "gs-project-accounts.iam.gserviceaccount.com",
        "monitoring": "gcp-sa-monitoring-notification.iam.gserviceaccount.com",
    }
    return f"service-{project_number}@{domains[service]}"


def project_number_from_agent(email: str) -> str:
    """`service-123@gcp-sa-pubsub...` -> `123`; the Pub/Sub agent's email carries the project number."""
    match = re.match(r"^service-(\d+)@", email or "")
    if not match:
        raise ValueError(f"not a service agent email: {email!r}")
    return match.group(1)


def _short_service(service: str) -> str:
    return service.split(".", 1)[0]


def mock_resource(type_: str, logical: str, inputs: Mapping[str, Any], project: str, region: str) -> tuple[str, dict[str, Any]]:
    """Id and outputs GCP would assign to a new resource of this type (types this backend creates)."""
    out: dict[str, Any] = dict(inputs)
    name = inputs.get("name") or autoname(logical)
    p = inputs.get("project") or project
    if type_.startswith("pulumi:providers:"):
        return f"{logical}-provider", out
    if type_ == RANDOM_ID:
        # Deterministic offline stand-in for the stack's random suffix (a real deploy draws it once and keeps it).
        digest = hashlib.sha256(logical.encode()).digest()[: int(inputs.get("byteLength", SUFFIX_BYTES))]
        out.update(hex=digest.hex(), dec=str(int.from_bytes(digest, "big")), b64Url=digest.hex(), b64Std=digest.hex())
        return f"{logical}-id", out
    if type_ == "gcp:projects/service:Service":
        return f"{p}/{inputs['service']}", out
    if type_ == "gcp:projects/serviceIdentity:ServiceIdentity":
        out["email"] = f"service-{MOCK_PROJECT_NUMBER}@gcp-sa-{_short_service(inputs['service'])}.iam.gserviceaccount.com"
        out["member"] = f"serviceAccount:{out['email']}"
        return f"projects/{p}/services/{inputs['service']}", out
    if type_ == "gcp:serviceaccount/account:Account":
        email = f"{inputs['accountId']}@{p}.iam.gserviceaccount.com"
        out.update(email=email, member=f"serviceAccount:{email}", name=f"projects/{p}/serviceAccounts/{email}",
                   uniqueId=str(int(_digest(email, 12), 16))[:21])
        return out["name"], out
    if type_ == "gcp:pubsub/topic:Topic":
        out["name"] = name
        return f"projects/{p}/topics/{name}", out
    if type_ == "gcp:pubsub/subscription:Subscription":
        out["name"] = name
        return f"projects/{p}/subscriptions/{name}", out
    if type_ == "gcp:storage/bucket:Bucket":
        out.update(name=name, url=f"gs://{name}", selfLink=f"https://www.googleapis.com/storage/v1/b/{name}", project=p)
        return name, out
    if type_ == "gcp:storage/bucketObject:BucketObject":
        bucket = inputs.get("bucket", "")
        out.update(name=name, outputName=name, mediaLink=f"https://storage.googleapis.com/download/storage/v1/b/{bucket}/o/{name}",
                   generation=1, md5hash=_digest(f"{bucket}/{name}", 24))
        return f"{bucket}-{name}", out
    if type_ == "gcp:cloudfunctionsv2/function:Function":
        location = inputs.get("location", region)
        out["name"] = name
        out["url"] = f"https://{location}-{p}.cloudfunctions.net/{name}"
        service = dict(inputs.get("serviceConfig") or {})
        service.update(uri=f"https://{name}-{MOCK_PROJECT_NUMBER}.{location}.run.app",
                       service=f"projects/{p}/locations/{location}/services/{name}")
        out["serviceConfig"] = service
        out["state"] = "ACTIVE"
        if inputs.get("eventTrigger"):
            trigger = dict(inputs["eventTrigger"])
            trigger["trigger"] = f"projects/{p}/locations/{location}/triggers/{name}-{_digest(name, 6)}"
            out["eventTrigger"] = trigger
        return f"projects/{p}/locations/{location}/functions/{name}", out
    if type_ == "gcp:cloudscheduler/job:Job":
        out["name"] = name
        return f"projects/{p}/locations/{inputs.get('region', region)}/jobs/{name}", out
    if type_ == "gcp:monitoring/alertPolicy:AlertPolicy":
        out["name"] = f"projects/{p}/alertPolicies/{int(_digest(logical, 12), 16)}"
        return out["name"], out
    if type_ == "gcp:monitoring/notificationChannel:NotificationChannel":
        out["name"] = f"projects/{p}/notificationChannels/{int(_digest(logical, 12), 16)}"
        return out["name"], out
    if type_ == "gcp:projects/iAMCustomRole:IAMCustomRole":
        out["name"] = f"projects/{p}/roles/{inputs['roleId']}"
        return out["name"], out
    if type_ == "gcp:storage/notification:Notification":
        notification_id = str(int(_digest(logical, 6), 16) % 1000)
        out.update(notificationId=notification_id, selfLink=f"https://www.googleapis.com/storage/v1/b/{inputs.get('bucket', '')}/notificationConfigs/{notification_id}")
        return f"{inputs.get('bucket', '')}/notificationConfigs/{notification_id}", out
    if type_ == "gcp:logging/metric:Metric":
        return inputs.get("name", logical), out
    if "IAMMember" in type_ or "IamMember" in type_:
        target = next((str(inputs[k]) for k in ("bucket", "topic", "subscription", "name", "serviceAccountId", "project") if k in inputs), "")
        out["etag"] = f"BwY{_digest(logical, 8)}="
        return f"{target}/{inputs.get('role', '')}/{inputs.get('member', '')}", out
    return f"{logical}-id", out


def mock_call(token: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """Results of the data sources (invokes) this backend calls."""
    if token == "gcp:storage/getProjectServiceAccount:getProjectServiceAccount":
        email = service_agent(MOCK_PROJECT_NUMBER, "storage")
        return {"emailAddress": email, "member": f"serviceAccount:{email}", "id": email, "project": args.get("project", "")}
    return {}
