"""GCP day two: a deployed stack's dead letters and windows, read and redriven as the operator (Application Default
Credentials: `gcloud auth application-default login`, a service account key or workload identity).

What this pipeline keeps on GCP (see triggers.py):

* the dead-letter bucket (`buckets.dead-letter`, `<stage>/...`): records the runtime dead-lettered, including every
  record of a batch file or an object (a pointer to it) once Pub/Sub's delivery attempts ran out; read, replayed and
  removed by the core through `store()` (the runtime's GCS store plus delete);
* for each stage fed by our push subscriptions (stream and object stages), its dead-letter topic (`dead_letters.<stage>`)
  and the subscription holding what Pub/Sub forwarded there: pushes the function never acknowledged (a crash, a
  timeout, a cold start past the ack deadline). Pub/Sub keeps the original message and adds the
  `CloudPubSubDeadLetterSource*` attributes (https://cloud.google.com/pubsub/docs/handling-failures). Pub/Sub has no
  peek: list and show pull the messages and give them straight back (modifyAckDeadline 0; the holding subscription has
  no dead-letter policy, so that counts nothing). Redriven by republishing the original message (data and attributes)
  to the topic of the subscription it came from, which pushes it to the function again; the dead-lettered copy is
  acknowledged only after the publish succeeded. The stages reading one (bucket, prefix) share its notification topic
  (triggers.event_source: Cloud Storage allows 10 notifications per bucket and event type), so the redrive names every
  other subscription it finds reading the topic: those stages run on the object again (their outputs are named after
  the input, runtime.keys.output_key, so a second run rewrites the same key: nothing lands twice).

Non-HTTP functions take internal traffic only (ingress ALLOW_INTERNAL_ONLY), so nothing here calls a function: queued
events go back through Pub/Sub, and records from the dead-letter bucket are replayed by the core with this checkout's
handler. Pub/Sub is called through its REST API with google-auth (no Pub/Sub client library is needed);
PUBSUB_EMULATOR_HOST and STORAGE_EMULATOR_HOST point both at emulators.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.errors import PipelineError
from pipeline.operations.model import EVENT, DeadLetter, epoch
from pipeline.operations.protocol import Operations, OperationsStore, OutputsError, Redriven
from pipeline.spec.model import StageSpec
from pipeline_gcp.runtime import GcsStore

PUBSUB = "https://pubsub.googleapis.com/v1/"
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
EMULATOR_ENV = "PUBSUB_EMULATOR_HOST"
DEAD_LETTER_ATTRIBUTE = "CloudPubSubDeadLetter"
PULL_BATCH = 1000  # the most one pull returns
MAX_MESSAGES = 10_000
READ_ROLES = ("roles/storage.objectViewer on the dead-letter bucket, roles/pubsub.subscriber on the dead-letter subscriptions "
              "(to pull and give back) and roles/pubsub.viewer (to find them)")
REPLAY_ROLES = "roles/storage.objectAdmin on the dead-letter and output buckets, roles/pubsub.publisher on the stages' event topics"


class GcsOperationsStore(GcsStore):
    """The runtime's GCS store, plus delete (one already gone is fine)."""

    def delete(self, bucket: str, key: str) -> None:
        from google.api_core.exceptions import NotFound

        with contextlib.suppress(NotFound):
            self.client.bucket(bucket).blob(key).delete()


class PubSubError(Exception):
    """A Pub/Sub REST call that failed: its HTTP status and Google's error status and message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message


class PubSub:
    """The few Pub/Sub REST calls day two makes (https://cloud.google.com/pubsub/docs/reference/rest)."""

    def __init__(self, project: str) -> None:
        self.project = project
        emulator = os.environ.get(EMULATOR_ENV)
        if emulator:
            import requests

            self.base, self.session = f"http://{emulator}/v1/", requests.Session()
        else:
            import google.auth
            from google.auth.transport.requests import AuthorizedSession

            credentials, _ = google.auth.default(scopes=SCOPES)
            self.base, self.session = PUBSUB, AuthorizedSession(credentials)  # type: ignore[no-untyped-call]

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.session.request(method, self.base + path, json=body, timeout=60)
        if response.status_code >= 400:
            try:
                error = response.json().get("error") or {}
            except ValueError:
                error = {}
            raise PubSubError(response.status_code, str(error.get("status") or response.reason), str(error.get("message") or response.text[:300]))
        try:
            found = response.json()
        except ValueError:
            found = {}
        return found if isinstance(found, dict) else {}

    def name(self, kind: str, short: str) -> str:
        return short if short.startswith("projects/") else f"projects/{self.project}/{kind}/{short}"

    def subscriptions_of(self, topic: str) -> list[str]:
        names: list[str] = []
        token = ""
        while True:
            page = self.call("GET", f"{self.name('topics', topic)}/subscriptions" + (f"?pageToken={token}" if token else ""))
            names += [str(n) for n in page.get("subscriptions") or []]
            token = str(page.get("nextPageToken") or "")
            if not token:
                return names

    def topic_of(self, subscription: str) -> str:
        return str(self.call("GET", self.name("subscriptions", subscription)).get("topic") or "")

    def pull(self, subscription: str) -> list[dict[str, Any]]:
        """Every message of the subscription, leased (each stays leased until acknowledged or given back)."""
        found: dict[str, dict[str, Any]] = {}
        while len(found) < MAX_MESSAGES:
            got = self.call("POST", f"{self.name('subscriptions', subscription)}:pull", {"maxMessages": PULL_BATCH, "returnImmediately": True})
            fresh = [m for m in got.get("receivedMessages") or [] if m["message"]["messageId"] not in found]
            found.update((m["message"]["messageId"], m) for m in got.get("receivedMessages") or [])
            if not fresh:
                break
        return list(found.values())

    def give_back(self, subscription: str, ack_ids: Sequence[str]) -> None:
        for start in range(0, len(ack_ids), PULL_BATCH):
            self.call("POST", f"{self.name('subscriptions', subscription)}:modifyAckDeadline",
                      {"ackIds": list(ack_ids[start:start + PULL_BATCH]), "ackDeadlineSeconds": 0})

    def acknowledge(self, subscription: str, ack_ids: Sequence[str]) -> None:
        self.call("POST", f"{self.name('subscriptions', subscription)}:acknowledge", {"ackIds": list(ack_ids)})

    def publish(self, topic: str, data: str, attributes: dict[str, str]) -> str:
        answer = self.call("POST", f"{self.name('topics', topic)}:publish", {"messages": [{"data": data, "attributes": attributes}]})
        return str((answer.get("messageIds") or [""])[0])


@dataclass(frozen=True)
class QueuedRef:
    subscription: str  # the holding subscription of the stage's dead-letter topic
    message_id: str


class GcpOperations(Operations):
    name = "gcp"
    title = "GCP"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.project = self.spec.clouds.gcp.project or os.environ.get("GOOGLE_CLOUD_PROJECT", "")
        self._store: GcsOperationsStore | None = None
        self._pubsub: PubSub | None = None
        self._holds: dict[str, str | None] = {}

    def store(self) -> OperationsStore:
        if self._store is None:
            from google.cloud import storage

            with self.guarded("connecting to Cloud Storage"):
                self._store = GcsOperationsStore(storage.Client(project=self.project or None))
        return self._store

    def pubsub(self) -> PubSub:
        if self._pubsub is None:
            with self.guarded("connecting to Pub/Sub"):
                self._pubsub = PubSub(self.project)
        return self._pubsub

    def location(self, bucket: str, key: str = "") -> str:
        return f"gs://{bucket}/{key}"

    # -- the dead-letter subscriptions ---------------------------------------------------------------

    def dead_letter_topic(self, stage: StageSpec) -> str | None:
        """The stage's dead-letter topic (push-fed stages only; the others' outputs name a gs:// prefix instead)."""
        value = (self.outputs.get("dead_letters") or {}).get(stage.name)
        if not (stage.trigger.stream or stage.trigger.objects):
            return None
        if not isinstance(value, str) or not value or value.startswith("gs://"):
            raise OutputsError(f"the stack's outputs name no dead-letter topic for stage {stage.name} (under \"dead_letters\")")
        return value

    def hold(self, stage: StageSpec) -> str | None:
        """The subscription that holds the dead-letter topic's messages: the topic's only one, or the one named `...-hold`."""
        if stage.name not in self._holds:
            topic = self.dead_letter_topic(stage)
            if topic is None:
                self._holds[stage.name] = None
                return None
            with self.guarded(f"finding the subscriptions of the dead-letter topic {topic}"):
                found = self.pubsub().subscriptions_of(topic)
            holding = [name for name in found if "-hold" in name.rsplit("/", 1)[-1]] or found
            if len(holding) != 1:
                raise OutputsError(f"the dead-letter topic {topic} has {len(found)} subscriptions ({', '.join(found) or 'none'}); "
                                   "day two reads the one the deploy made to hold its messages")
            self._holds[stage.name] = holding[0]
        return self._holds[stage.name]

    def queued(self, stage: StageSpec, earliest: float | None) -> Iterator[DeadLetter]:
        hold = self.hold(stage)
        if hold is None:
            return
        pubsub = self.pubsub()
        with self.guarded(f"pulling the dead-letter subscription {hold} (and giving the messages back)"):
            received = pubsub.pull(hold)
            pubsub.give_back(hold, [m["ackId"] for m in received])
        for item in received:
            yield letter_of(stage, hold, item["message"])

    def queued_count(self, stage: StageSpec) -> int | None:
        hold = self.hold(stage)
        if hold is None:
            return None
        pubsub = self.pubsub()
        with self.guarded(f"counting the dead-letter subscription {hold}"):
            received = pubsub.pull(hold)
            pubsub.give_back(hold, [m["ackId"] for m in received])
        return len(received)

    # -- redrive --------------------------------------------------------------------------------------

    def redrive(self, letters: Sequence[DeadLetter], dry_run: bool) -> Iterator[Redriven]:
        holds = dict.fromkeys(letter.ref.subscription for letter in letters if isinstance(letter.ref, QueuedRef))
        for hold in holds:
            wanted = [letter for letter in letters if isinstance(letter.ref, QueuedRef) and letter.ref.subscription == hold]
            yield from self._redrive(hold, wanted, dry_run)

    def _target(self, source: str) -> tuple[str, list[str]]:
        """The topic the failed push subscription reads, and the other subscriptions reading it (they get a republish too)."""
        pubsub = self.pubsub()
        topic = pubsub.topic_of(source)
        others = [name for name in pubsub.subscriptions_of(topic) if name != source]
        return topic, others

    def _redrive(self, hold: str, wanted: list[DeadLetter], dry_run: bool) -> Iterator[Redriven]:
        pubsub = self.pubsub()
        targets: dict[str, tuple[str, list[str]]] = {}
        if dry_run:
            for letter in wanted:
                source = _source((letter.event or {}).get("attributes") or {}, self.project)
                with self.guarded(f"finding the topic of subscription {source}"):
                    topic, others = targets.setdefault(source, self._target(source))
                yield Redriven(letter, True, f"would republish it to {topic}{_others(others)}")
            return
        by_id = {letter.ref.message_id: letter for letter in wanted}
        with self.guarded(f"pulling the dead-letter subscription {hold}"):
            received = pubsub.pull(hold)
        give_back: list[str] = []
        try:
            for item in received:
                message = item["message"]
                found = by_id.pop(message["messageId"], None)
                if found is None:
                    give_back.append(item["ackId"])  # arrived since it was listed: the next replay takes it
                    continue
                letter = found
                attributes = {k: v for k, v in (message.get("attributes") or {}).items() if not k.startswith(DEAD_LETTER_ATTRIBUTE)}
                source = _source(message.get("attributes") or {}, self.project)
                try:
                    if not source:
                        raise PipelineError("the message does not say which subscription it came from (no CloudPubSubDeadLetterSourceSubscription)")
                    topic, others = targets.setdefault(source, self._target(source))
                    published = pubsub.publish(topic, str(message.get("data") or ""), attributes)
                except Exception as exc:
                    give_back.append(item["ackId"])
                    said = str(exc) if isinstance(exc, PipelineError) else self.explain(exc, "republishing it")
                    yield Redriven(letter, False, "republish it to the topic it came from", said or f"{type(exc).__name__}: {exc}")
                    continue
                with self.guarded(f"acknowledging message {message['messageId']} on {hold}"):
                    pubsub.acknowledge(hold, [item["ackId"]])
                yield Redriven(letter, True, f"republished to {topic} as message {published}{_others(others)}; "
                                             "acknowledged on the dead-letter subscription")
        finally:
            if give_back:
                pubsub.give_back(hold, give_back)
        for letter in by_id.values():
            yield Redriven(letter, True, "already gone from the dead-letter subscription (redriven or expired since it was listed)")

    # -- errors --------------------------------------------------------------------------------------

    def explain(self, exc: BaseException, doing: str) -> str | None:
        if isinstance(exc, PubSubError):
            if exc.status in (401, 403):
                return f"{doing}: GCP denied it ({exc.reason}: {exc.message}); grant {READ_ROLES} (to replay also {REPLAY_ROLES})"
            if exc.status == 404:
                return f"{doing}: it does not exist ({exc.message}); was the stack destroyed, or deployed in another project than {self.project!r}?"
            return f"{doing}: Pub/Sub answered {exc}"
        try:
            from google.api_core import exceptions as api
            from google.auth import exceptions as auth
        except ImportError:
            return None
        if isinstance(exc, auth.DefaultCredentialsError):
            return f"{doing}: no Application Default Credentials; run `gcloud auth application-default login` (or set GOOGLE_APPLICATION_CREDENTIALS)"
        if isinstance(exc, auth.RefreshError):
            return f"{doing}: the Google credentials could not be refreshed ({exc}); sign in again with `gcloud auth application-default login`"
        if isinstance(exc, api.Forbidden | api.Unauthorized):
            return f"{doing}: GCP denied it ({exc.message}); grant {READ_ROLES} (to replay also {REPLAY_ROLES})"
        if isinstance(exc, api.NotFound):
            return f"{doing}: it does not exist ({exc.message}); was the stack destroyed, or deployed under other names than these outputs say?"
        if isinstance(exc, api.GoogleAPIError):
            return f"{doing}: GCP answered {exc}"
        try:
            import requests
        except ImportError:  # pragma: no cover - google-auth's transport needs it
            return None
        if isinstance(exc, requests.ConnectionError | requests.Timeout):
            return f"{doing}: cannot reach GCP ({str(exc).splitlines()[0][:200]}); check the network (and PUBSUB_EMULATOR_HOST / STORAGE_EMULATOR_HOST)"
        return None


def _source(attributes: dict[str, Any], project: str) -> str:
    """The subscription a dead-lettered message came from, in full (Pub/Sub names it and its project in two attributes)."""
    name = str(attributes.get("CloudPubSubDeadLetterSourceSubscription") or "")
    if not name or name.startswith("projects/"):
        return name
    return f"projects/{attributes.get('CloudPubSubDeadLetterSourceSubscriptionProject') or project}/subscriptions/{name}"


def _others(others: list[str]) -> str:
    if not others:
        return " (the stage's push subscription is the only one reading it)"
    return f" (also read by {', '.join(others)}, which receive it again too)"


def letter_of(stage: StageSpec, hold: str, message: dict[str, Any]) -> DeadLetter:
    """A message Pub/Sub forwarded to the dead-letter topic: the push it gave up on, and how often it tried."""
    attributes = dict(message.get("attributes") or {})
    raw = str(message.get("data") or "")
    try:
        decoded: Any = base64.b64decode(raw).decode("utf-8")
        with contextlib.suppress(ValueError):
            decoded = json.loads(decoded)
    except (ValueError, UnicodeDecodeError):
        decoded = raw
    count = attributes.get("CloudPubSubDeadLetterSourceDeliveryCount")
    source = attributes.get("CloudPubSubDeadLetterSourceSubscription", "?")
    obj = {"bucket": attributes.get("bucketId") or (decoded.get("bucket") if isinstance(decoded, dict) else None),
           "key": attributes.get("objectId") or (decoded.get("name") if isinstance(decoded, dict) else None)}
    return DeadLetter(
        stage.name, EVENT, "Pub/Sub's delivery attempts ran out", "",
        f"the push to the function from {source} was never acknowledged (an error answer, a crash or a timeout; its logs say which)",
        f"dead-letter subscription {hold}", f"{hold} message {message.get('messageId')}",
        epoch(message.get("publishTime")), int(str(count)) if str(count or "").isdigit() else None,
        event={"attributes": attributes, "data": decoded}, input={k: v for k, v in obj.items() if v}, ref=QueuedRef(hold, str(message.get("messageId"))),
    )
