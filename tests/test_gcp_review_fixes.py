"""Deploy-breakers and data loss an expert review found in the GCP backend, each proven on a plan from Pulumi's mock
engine (the resources and inputs `pulumi up` would send)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from pipeline_gcp import naming

from pipeline.compare import compare
from pipeline.plan import Plan, PlannedResource
from pipeline.planner import plan
from pipeline.spec.load import load_spec

HANDLER = "def handle(rows, context):\n    return rows\n"


def gcp_plan(tmp_path: Path, body: str) -> Plan:
    (tmp_path / "h.py").write_text(HANDLER)
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(textwrap.dedent(body) + "clouds: {gcp: {project: review-demo-1}}\n")
    return plan(load_spec(spec), "gcp")


def of_type(result: Plan, kind: str) -> list[PlannedResource]:
    return [r for r in result.cloud_resources if r.type == kind]


def bucket(result: Plan, role: str) -> dict[str, Any]:
    [found] = [r for r in of_type(result, "gcp:storage/bucket:Bucket") if r.role == role]
    return found.inputs


def deletes(inputs: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule["condition"] for rule in inputs["lifecycleRules"] if rule["action"]["type"] == "Delete"]


def test_a_window_stage_bucket_expires_its_outputs_not_its_watermark(tmp_path: Path) -> None:
    """`_state/<stage>/` (watermark, lease) must survive a source quieter than the retention: only `<stage>/` expires."""
    result = gcp_plan(tmp_path, """
        name: windows
        stream: {}
        stages:
          - {name: prep, handler: "h.py:handle", trigger: {stream: {}}}
          - {name: now, handler: "h.py:handle", trigger: {schedule: "rate(5 minutes)", from: prep}, memory_mb: 2048}
    """)
    [window] = deletes(bucket(result, "now-bucket"))
    assert window["matchesPrefixes"] == ["now/"] and window["age"] >= 1
    # a bucket with no state still expires everything it holds
    [plain] = deletes(bucket(result, "prep-bucket"))
    assert "matchesPrefixes" not in plain


def fan_out(readers: int) -> str:
    stages = "".join(f'  - {{name: s{n:02}, handler: "h.py:handle", trigger: {{objects: {{from: uploads}}}}}}\n' for n in range(readers))
    return f"name: fanout\nuploads: {{}}\nstages:\n{stages}"


def test_eleven_readers_of_one_bucket_share_one_notification(tmp_path: Path) -> None:
    """Cloud Storage allows 10 notification configurations per bucket and event type: 11 readers get one notification
    and one topic, each its own push subscription (and dead-letter policy) on it; the publish is billed once."""
    result = gcp_plan(tmp_path, fan_out(11))
    [notification] = of_type(result, "gcp:storage/notification:Notification")
    topics = {r.physical_name: r for r in of_type(result, "gcp:pubsub/topic:Topic") if r.name.endswith("-events")}
    assert len(topics) == 1 and notification.inputs["objectNamePrefix"] == "uploads/"
    pushes = [r for r in of_type(result, "gcp:pubsub/subscription:Subscription") if "pushConfig" in r.inputs]
    assert len(pushes) == 11
    assert {p.inputs["topic"] for p in pushes} == {notification.inputs["topic"]}
    assert len({p.inputs["deadLetterPolicy"]["deadLetterTopic"] for p in pushes}) == 11
    lines = compare(load_spec(tmp_path / "pipeline.yaml"), ["gcp"]).to_dict()["clouds"]["gcp"]["cost"]["lines"]
    notes = [line for line in lines if line["item"].startswith("Pub/Sub object notifications")]
    assert [line["item"] for line in notes].count("Pub/Sub object notifications (publish + push)") == 1
    assert [line["item"] for line in notes].count("Pub/Sub object notifications (push)") == 10


def test_a_stream_group_shares_its_batch_files_notification(tmp_path: Path) -> None:
    stages = "".join(f'  - {{name: r{n:02}, handler: "h.py:handle", trigger: {{stream: {{}}}}}}\n' for n in range(11))
    result = gcp_plan(tmp_path, f"name: streams\nstream: {{}}\nstages:\n{stages}")
    [notification] = of_type(result, "gcp:storage/notification:Notification")
    pushes = [r for r in of_type(result, "gcp:pubsub/subscription:Subscription") if "pushConfig" in r.inputs]
    assert len(pushes) == 11 and {p.inputs["topic"] for p in pushes} == {notification.inputs["topic"]}


def test_alert_filters_stay_within_2048_characters_whatever_the_number_of_stages(tmp_path: Path) -> None:
    """42 object stages with 20-character names (and a 20-character pipeline name): every condition's filter is at most
    2,048 characters, every stage is still watched, no policy has more than 6 conditions, and the price counts the
    conditions as built."""
    names = [f"stage-number-{n:07}" for n in range(42)]
    assert all(len(name) == 20 for name in names)
    stages = "".join(f'  - {{name: {name}, handler: "h.py:handle", trigger: {{objects: {{from: {prev}}}}}}}\n'
                     for name, prev in zip(names, ["uploads", *names[:-1]], strict=True))
    result = gcp_plan(tmp_path, f"name: abcdefghijklmnopqrst\nuploads: {{}}\nstages:\n{stages}")
    policies = of_type(result, "gcp:monitoring/alertPolicy:AlertPolicy")
    conditions = [c for p in policies for c in p.inputs["conditions"]]
    filters = [c["conditionThreshold"]["filter"] for c in conditions if "conditionThreshold" in c]
    assert max(len(f) for f in filters) <= 2048
    assert all(len(p.inputs["conditions"]) <= 6 for p in policies)
    errors = [f for f in filters if "run.googleapis.com/request_count" in f]
    holds = [f for f in filters if "num_undelivered_messages" in f]
    backlog = [f for f in filters if "oldest_unacked_message_age" in f]
    assert len(errors) > 1 and len(holds) > 1 and len(backlog) > 1  # the names did not fit one filter
    for name in names:
        assert sum(f'"{naming.function_name("abcdefghijklmnopqrst", result.stack, name)}"' in f for f in errors) == 1
        assert sum(f'"abcdefghijklmnopqrst-{name}-dead-letter-hold-' in f for f in holds) == 1
        assert sum(f'"abcdefghijklmnopqrst-{name}-trigger-' in f for f in backlog) == 1
    lines = compare(load_spec(tmp_path / "pipeline.yaml"), ["gcp"]).to_dict()["clouds"]["gcp"]["cost"]["lines"]
    [priced] = [line for line in lines if line["item"] == "Cloud Monitoring alert conditions"]
    assert priced["quantity"] == len(conditions)


def test_the_monitoring_agents_publisher_grant_waits_for_the_pubsub_channel(tmp_path: Path) -> None:
    """Monitoring's notification agent exists only once the first Pub/Sub channel does: on a fresh project a grant to
    it made in parallel fails with "service account does not exist"."""
    result = gcp_plan(tmp_path, fan_out(1))
    [channel] = [r for r in of_type(result, "gcp:monitoring/notificationChannel:NotificationChannel") if r.inputs["type"] == "pubsub"]
    [grant] = [r for r in of_type(result, "gcp:pubsub/topicIAMMember:TopicIAMMember") if r.name.endswith("-alerts-publisher")]
    assert "gcp-sa-monitoring-notification" in grant.inputs["member"]
    assert channel.urn in grant.dependencies


def test_a_push_subscription_keeps_an_event_past_its_last_delivery_attempt(tmp_path: Path) -> None:
    """timeout_s 540, retries 10: 11 deliveries of up to 570 s each with up to 600 s of backoff between them end past
    the default max_event_age_s + 1 h; an event the function never answers must reach the dead-letter topic, not expire."""
    result = gcp_plan(tmp_path, """
        name: slowjobs
        uploads: {}
        stages:
          - {name: heavy, handler: "h.py:handle", trigger: {objects: {from: uploads}}, memory_mb: 2048, timeout_s: 540, retries: 10}
    """)
    [push] = [r for r in of_type(result, "gcp:pubsub/subscription:Subscription") if "pushConfig" in r.inputs]
    attempts, ack = push.inputs["deadLetterPolicy"]["maxDeliveryAttempts"], push.inputs["ackDeadlineSeconds"]
    backoff = int(push.inputs["retryPolicy"]["maximumBackoff"].rstrip("s"))
    assert (attempts, ack, backoff) == (11, 570, 600)
    retention = int(push.inputs["messageRetentionDuration"].rstrip("s"))
    assert attempts * (ack + backoff) < retention <= 31 * 86_400


def test_batch_files_outlive_the_dead_letters_that_point_at_them(tmp_path: Path) -> None:
    """A dead-lettered batch event is a pointer to its batch file, kept storage.dead_letter_days in the hold
    subscription: the file must be kept as long (and its storage is priced so)."""
    result = gcp_plan(tmp_path, """
        name: batches
        stream: {archive: false}
        stages:
          - {name: pre, handler: "h.py:handle", trigger: {stream: {}}}
        storage: {dead_letter_days: 12}
    """)
    [hold] = [r for r in of_type(result, "gcp:pubsub/subscription:Subscription") if r.name.endswith("-hold")]
    assert hold.inputs["messageRetentionDuration"] == f"{12 * 86_400}s"
    [files] = deletes(bucket(result, "pre-trigger"))
    assert files["age"] == 12
    lines = compare(load_spec(tmp_path / "pipeline.yaml"), ["gcp"]).to_dict()["clouds"]["gcp"]["cost"]["lines"]
    [stored] = [line for line in lines if line["role"] == "pre-trigger" and line["item"] == "Cloud Storage Standard storage"]
    assert "kept 12 days" in stored["note"]


def test_a_stage_reading_an_archive_kept_shorter_than_its_dead_letters_is_told(tmp_path: Path) -> None:
    """The raw archive's files are kept raw_days (the user's choice): when that is shorter than dead_letter_days the plan
    says which dead letters cannot be replayed and what setting fixes it."""
    result = gcp_plan(tmp_path, """
        name: archived
        stream: {}
        stages:
          - {name: pre, handler: "h.py:handle", trigger: {stream: {}}}
        storage: {raw_days: 7}
    """)
    reasoning = " ".join(result.sizing["stream"]["reasoning"])
    assert "pre: reads the raw archive's files, kept storage.raw_days 7 days" in reasoning
    assert "set storage.raw_days to at least 14" in reasoning
