"""`pipeline dlq` and `pipeline status` on GCP against emulators, through the console script with `--outputs`: Cloud
Storage on gcp-storage-emulator (STORAGE_EMULATOR_HOST) and Pub/Sub on Google's own Pub/Sub emulator (gcloud's
pubsub-emulator, over its REST API, PUBSUB_EMULATOR_HOST). The runtime dead letters are written by the real
Cloud Functions entry points; the dead-lettered push is published the way Pub/Sub forwards one (its original data
and attributes plus the CloudPubSubDeadLetterSource* attributes).

The emulator does not push to HTTPS endpoints here, so the stage's push subscription is a pull subscription on the same
topic: what is checked is that the redrive republishes the original message to the topic that subscription reads,
and that the real entry point, given that message as Pub/Sub would push it, writes no row twice.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from dlq_project import TOKEN, answer, cli, fix, ids, jsonl, line, make_project, set_stage, write_outputs

pytest_plugins = ["conftest_emulators"]

PROJECT = "daytwo-test"
EMULATOR = Path("/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def pubsub_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Google's Pub/Sub emulator (Java), in memory, on a free port."""
    binary = EMULATOR if EMULATOR.exists() else None
    if binary is None or shutil.which("java") is None:
        pytest.skip("the Pub/Sub emulator (gcloud component pubsub-emulator) or Java is not installed")
    port = _free_port()
    log = tmp_path_factory.mktemp("pubsub") / "emulator.log"
    process = subprocess.Popen([str(binary), "--host=127.0.0.1", f"--port={port}"], stdout=log.open("wb"), stderr=subprocess.STDOUT,
                               start_new_session=True)
    host = f"127.0.0.1:{port}"
    try:
        while True:  # the JVM takes a few seconds; a dead emulator ends the wait with its log
            if process.poll() is not None:
                pytest.fail(f"the Pub/Sub emulator exited: {log.read_text(errors='replace')[-2000:]}")
            try:
                requests.get(f"http://{host}/v1/projects/{PROJECT}/topics", timeout=1)
                break
            except (requests.ConnectionError, requests.Timeout):  # not listening yet, or a busy machine's slow JVM
                time.sleep(0.2)
        yield host
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


class Pubsub:
    def __init__(self, host: str) -> None:
        self.base = f"http://{host}/v1/projects/{PROJECT}"

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = requests.request(method, f"{self.base}/{path}", json=body, timeout=30)
        assert response.status_code < 400, response.text
        return dict(response.json())

    def topic(self, name: str) -> None:
        self.call("PUT", f"topics/{name}")

    def subscription(self, name: str, topic: str) -> None:
        self.call("PUT", f"subscriptions/{name}", {"topic": f"projects/{PROJECT}/topics/{topic}", "ackDeadlineSeconds": 600})

    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> None:
        self.call("POST", f"topics/{topic}:publish", {"messages": [{"data": base64.b64encode(data).decode(), "attributes": attributes}]})

    def pull(self, subscription: str, ack: bool = False) -> list[dict[str, Any]]:
        got = self.call("POST", f"subscriptions/{subscription}:pull", {"maxMessages": 100, "returnImmediately": True}).get("receivedMessages") or []
        ack_ids = [m["ackId"] for m in got]
        if ack_ids:
            self.call("POST", f"subscriptions/{subscription}:{'acknowledge' if ack else 'modifyAckDeadline'}",
                      {"ackIds": ack_ids} if ack else {"ackIds": ack_ids, "ackDeadlineSeconds": 0})
        return [m["message"] for m in got]


@pytest.fixture
def gcp(gcs_endpoint: str, pubsub_host: str, monkeypatch: pytest.MonkeyPatch, cli_env_vars: dict[str, str]) -> dict[str, str]:
    values = {"STORAGE_EMULATOR_HOST": gcs_endpoint, "PUBSUB_EMULATOR_HOST": pubsub_host, "GOOGLE_CLOUD_PROJECT": PROJECT}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return {**cli_env_vars, **values}


def notification(bucket: str, name: str) -> tuple[bytes, dict[str, str]]:
    """A Cloud Storage Pub/Sub notification (JSON_API_V1): the object resource, and the attributes Cloud Storage sets."""
    data = json.dumps({"kind": "storage#object", "bucket": bucket, "name": name, "generation": "1762000000000001", "size": "100"}).encode()
    return data, {"eventType": "OBJECT_FINALIZE", "bucketId": bucket, "objectId": name, "objectGeneration": "1762000000000001",
                  "payloadFormat": "JSON_API_V1", "notificationConfig": f"projects/_/buckets/{bucket}/notificationConfigs/1"}


class Stack:
    def __init__(self, folder: Path, storage: Any, pubsub: Pubsub) -> None:
        suffix = uuid.uuid4().hex[:7]
        self.folder, self.storage, self.pubsub = folder, storage, pubsub
        self.spec = make_project(folder, clouds=f"clouds:\n  gcp: {{project: {PROJECT}, region: us-central1}}\n")
        self.buckets = {key: f"dt-{key}-{suffix}" for key in ("parse", "enrich", "total", "dead-letter")}
        for name in self.buckets.values():
            storage.create_bucket(name)
        self.dead_topics = {stage: f"daytwo-{stage}-dead-letter-{suffix}" for stage in ("parse", "enrich")}
        self.holds = {stage: f"daytwo-{stage}-dead-letter-hold-{suffix}" for stage in ("parse", "enrich")}
        for stage, topic in self.dead_topics.items():
            pubsub.topic(topic)
            pubsub.subscription(self.holds[stage], topic)
        self.events_topic, self.push = f"daytwo-enrich-trigger-events-{suffix}", f"daytwo-enrich-trigger-{suffix}"
        pubsub.topic(self.events_topic)
        pubsub.subscription(self.push, self.events_topic)  # stands in for the push subscription (see the module doc)
        self.outputs = write_outputs(folder, {"buckets": self.buckets, "functions": {s: f"daytwo-{s}-{suffix}" for s in ("parse", "enrich", "total")},
                                              "dead_letters": {**self.dead_topics, "total": f"gs://{self.buckets['dead-letter']}/total/"},
                                              "stream": f"daytwo-stream-{suffix}", "producers": {}})

    def names(self, key: str, prefix: str = "") -> list[str]:
        return sorted(b.name for b in self.storage.list_blobs(self.buckets[key], prefix=prefix))

    def read(self, key: str, name: str) -> bytes:
        data: bytes = self.storage.bucket(self.buckets[key]).blob(name).download_as_bytes()
        return data

    def put(self, key: str, name: str, data: bytes) -> None:
        self.storage.bucket(self.buckets[key]).blob(name).upload_from_string(data)


@pytest.fixture
def stack(tmp_path: Path, gcp: dict[str, str], gcs_client: Any, pubsub_host: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """A bad day on GCP: parse (one pushed message per record) dead-lettered record 3, enrich dead-lettered the row of record 5's
    output, and a push of that output's notification that Pub/Sub gave up on sits in enrich's dead-letter subscription."""
    from dlq_project import RECORDS
    from pipeline_gcp.runtime import pubsub_message, push, runner

    built = Stack(tmp_path, gcs_client, Pubsub(pubsub_host))
    with monkeypatch.context() as patch:
        set_stage(patch, built.spec, "parse", built.buckets)
        for record in RECORDS[:10]:
            pubsub_message(runner(), {"message": {"data": base64.b64encode(line(record)).decode(), "messageId": f"m{record['id']}",
                                                  "publishTime": "2026-11-01T10:00:00Z"}, "subscription": "projects/p/subscriptions/parse"}, None)
    output = "parse/msg/m5.jsonl"  # one pushed message, one output object: record 5's row
    assert output in built.names("parse", "parse/")
    built.output = output  # type: ignore[attr-defined]
    data, attributes = notification(built.buckets["parse"], output)
    with monkeypatch.context() as patch:
        set_stage(patch, built.spec, "enrich", built.buckets)
        status, _ = push(runner(), {"message": {"data": base64.b64encode(data).decode(), "attributes": attributes, "messageId": "n1",
                                                "publishTime": "2026-11-01T10:01:00Z"}, "subscription": built.push, "deliveryAttempt": 1})
        assert status == 200
    built.pubsub.publish(built.dead_topics["enrich"], data, {
        **attributes, "CloudPubSubDeadLetterSourceDeliveryCount": "5", "CloudPubSubDeadLetterSourceSubscription": built.push,
        "CloudPubSubDeadLetterSourceSubscriptionProject": PROJECT, "CloudPubSubDeadLetterSourceTopicPublishTime": "2026-11-01T10:01:00.123456789Z"})
    yield built


def test_list_show_status_read_the_bucket_and_give_the_pulled_messages_back(stack: Stack, gcp: dict[str, str], pipeline_exe: str) -> None:
    where = ["--cloud", "gcp", "--outputs", str(stack.outputs)]
    listed = answer(cli(gcp, pipeline_exe, stack.folder, "dlq", "list", *where, "--format", "json"))
    groups = {(g["stage"], g["kind"]): g for g in listed["groups"]}
    assert listed["total"] == 3
    assert groups[("parse", "record")]["kept"] == f"dead-letter bucket gs://{stack.buckets['dead-letter']}/parse/"
    assert groups[("enrich", "record")]["error"]["type"] == "KeyError"
    queued = groups[("enrich", "event")]
    assert queued["kept"] == f"dead-letter subscription projects/{PROJECT}/subscriptions/{stack.holds['enrich']}" and queued["reason"] == "Pub/Sub's delivery attempts ran out"

    letters = [json.loads(x) for x in cli(gcp, pipeline_exe, stack.folder, "dlq", "show", *where, "--format", "jsonl").stdout.splitlines()]
    event = next(x for x in letters if x["kind"] == "event")
    assert event["attempts"] == 5 and event["input"] == {"bucket": stack.buckets["parse"], "key": stack.output}  # type: ignore[attr-defined]
    assert event["event"]["data"]["name"] == stack.output  # type: ignore[attr-defined]
    assert next(x for x in letters if x["stage"] == "parse")["record"]["password"] == "***" and TOKEN not in json.dumps(letters)

    status = answer(cli(gcp, pipeline_exe, stack.folder, "status", *where, "--format", "json"))
    stages = {s["stage"]: s for s in status["stages"]}
    assert stages["enrich"]["dead_letters"]["queued_events"] == 1 and stages["total"]["dead_letters"]["queued_events"] is None
    assert stages["total"]["window"]["waiting"]["objects"] == 9  # every output of parse
    assert len(stack.pubsub.pull(stack.holds["enrich"])) == 1  # still there after list, show and status


def test_replay_republishes_to_the_push_topic_and_nothing_lands_twice(stack: Stack, gcp: dict[str, str], pipeline_exe: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline_gcp.runtime import push, runner

    fix(stack.folder)
    where = ["--cloud", "gcp", "--outputs", str(stack.outputs)]
    dry = answer(cli(gcp, pipeline_exe, stack.folder, "dlq", "replay", *where, "--dry-run", "--format", "json"))
    assert "the stage's push subscription is the only one reading it" in dry["redriven"][0]["action"]
    stack.pubsub.subscription(f"audit-{stack.push}", stack.events_topic)  # someone else reads the stage's events topic too
    dry = answer(cli(gcp, pipeline_exe, stack.folder, "dlq", "replay", *where, "--dry-run", "--format", "json"))
    assert f"also read by projects/{PROJECT}/subscriptions/audit-{stack.push}, which receive it again too" in dry["redriven"][0]["action"]
    result = cli(gcp, pipeline_exe, stack.folder, "dlq", "replay", *where, "--yes", "--format", "json")
    body = json.loads(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [r["ok"] for r in body["redriven"]] == [True] and f"republished to projects/{PROJECT}/topics/{stack.events_topic}" in body["redriven"][0]["action"]
    assert stack.names("dead-letter") == [] and stack.pubsub.pull(stack.holds["enrich"]) == []
    [again] = stack.pubsub.pull(stack.push, ack=True)
    assert not any(k.startswith("CloudPubSubDeadLetter") for k in again["attributes"]) and again["attributes"]["objectId"] == stack.output  # type: ignore[attr-defined]

    with monkeypatch.context() as patch:  # Pub/Sub pushes it to the function again
        set_stage(patch, stack.spec, "enrich", stack.buckets)
        status, _ = push(runner(), {"message": again, "subscription": stack.push, "deliveryAttempt": 1})
    assert status == 200
    assert stack.names("enrich", "enrich/") == ["enrich/msg/m5.jsonl"]  # the object's own key: the replay, then the push, wrote it
    assert ids([r for n in stack.names("enrich", "enrich/") for r in jsonl(stack.read("enrich", n))]) == {5: 1}
    assert ids([r for n in stack.names("parse", "parse/") for r in jsonl(stack.read("parse", n))]) == {i: 1 for i in range(10)}
