"""The cloud-neutral pieces of `pipeline dlq` / `pipeline status`: masking, durations, grouping by cause, cloud times,
replay keys no input can forge, and the outputs a cloud target needs (named both ways when they cannot be read)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.operations.mask import MASK, Masker, secret_name
from pipeline.operations.model import RECORD, DeadLetter, epoch, group, normalized, parse_duration
from pipeline.operations.replay import depth, replay_batch
from pipeline.runtime import keys


@pytest.mark.parametrize("name", ["password", "Password", "api_key", "apiKey", "x-api-key", "Authorization", "clientSecret", "access_token",
                                  "key", "SECRET_KEY", "privateKey", "session_id", "db_passwd", "Cookie"])
def test_secret_looking_names(name: str) -> None:
    assert secret_name(name)


@pytest.mark.parametrize("name", ["txn_id", "amount", "keyboard", "monkey", "key_id", "partition", "currency", "turkey_count", "tokenizer_model"])
def test_ordinary_names(name: str) -> None:
    assert not secret_name(name)


def test_masker_scrubs_the_spec_secrets_and_masks_secret_fields_of_records() -> None:
    masker = Masker([("CURRENCY", "USD"), ("DB_PASSWORD", "pw9"), ("ENDPOINT", "https://internal.example/api")], "https://hooks.example.com/T000/B000")
    text = "USD failed at https://internal.example/api with pw9; alert https://hooks.example.com/T000/B000"
    assert masker.text(text) == f"USD failed at {MASK} with {MASK}; alert {MASK}"  # a short ordinary value stays readable
    shape, value = masker.record(json.dumps({"card": {"number": "4111", "cvv_token": "t-1"}, "password": "", "note": "pw9"}).encode())
    assert shape == "json" and value == {"card": {"number": "4111", "cvv_token": MASK}, "password": "", "note": MASK}
    assert masker.record(b"\xff\x00") == ("base64", "/wA=")
    assert masker.scrub({"key": "parse/x.jsonl", "note": "pw9"}) == {"key": "parse/x.jsonl", "note": MASK}  # platform fields stay


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800), ("1h30m", 5400), ("2d", 172_800), ("45s", 45), ("1w", 604_800), ("1.5h", 5400)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5 parsecs", "30", "m", "0m", "-1h", "1h and then"])
def test_bad_durations_say_what_is_valid(text: str) -> None:
    with pytest.raises(ValueError, match=r"30m|positive"):
        parse_duration(text)


def _letter(stage: str, kind: str, message: str, when: float) -> DeadLetter:
    return DeadLetter(stage, RECORD, "handler raised", kind, message, "bucket", f"obj {when}", when, 1)


def test_letters_group_by_cause_whatever_their_varying_parts() -> None:
    letters = [_letter("parse", "ValueError", "record 3 is bad ('x')", 30.0), _letter("parse", "ValueError", "record 15 is bad ('yy')", 10.0),
               _letter("parse", "KeyError", "'amount'", 20.0), _letter("score", "ValueError", "record 3 is bad ('x')", 5.0)]
    groups = group(letters)
    assert [(g.stage, g.error_type, g.count) for g in groups] == [("parse", "ValueError", 2), ("parse", "KeyError", 1), ("score", "ValueError", 1)]
    assert groups[0].first == 10.0 and groups[0].last == 30.0 and groups[0].error_message == "record 15 is bad ('yy')"  # the earliest one's
    assert normalized("batch 1f3a9c2e77d0 failed after 3 tries") == normalized("batch 00aa11bb22cc failed after 5 tries")


def test_cloud_times_with_nanoseconds_and_offsets() -> None:
    assert epoch("2026-11-02T10:00:05.7654321Z") == pytest.approx(1793613605.7654321)  # Event Grid writes 7 digits
    assert epoch("2026-11-01T18:44:00.021Z") == pytest.approx(1793558640.021)
    assert epoch("2026-11-01T19:44:00+01:00") == pytest.approx(1793558640.0)
    assert epoch("yesterday") is None and epoch(None) is None


@pytest.mark.parametrize("source", ["replay=enrich/local/1-2.jsonl", "replay=enrich/x", "replay%3Denrich/x.jsonl.gz", "enrich/replay=enrich/y.jsonl"])
def test_no_input_key_lands_on_a_replay_key(source: str) -> None:
    """An uploaded file, or an earlier stage's output (a replay's too), names its readers' outputs; never a replay's."""
    for prefix in ("", "uploads/", "parse/"):
        batch = keys.object_batch(prefix + source, prefix)
        assert not batch.startswith("replay=enrich/"), batch
    assert replay_batch("enrich", "local/1-2") == "replay=enrich/local/1-2"
    assert depth(replay_batch("enrich", replay_batch("enrich", "b"))) == 2 and depth("b") == 0


def test_without_pulumi_the_outputs_are_named_both_ways(tmp_path: Path, cli_env_vars: dict[str, str], pipeline_exe: str) -> None:
    import subprocess

    spec = tmp_path / "pipeline.yaml"
    (tmp_path / "handlers").mkdir()
    (tmp_path / "handlers" / "h.py").write_text("def h(records, context):\n    return []\n", encoding="utf-8")
    spec.write_text("name: nopulumi\nstages:\n  - name: parse\n    handler: handlers/h.py:h\n    trigger: {stream: {}}\n", encoding="utf-8")
    env = {**cli_env_vars, "PATH": str(Path(pipeline_exe).parent) + ":/usr/bin:/bin", "HOME": str(tmp_path), "PULUMI_HOME": str(tmp_path / ".pulumi")}
    result = subprocess.run([pipeline_exe, "dlq", "list", str(spec), "--cloud", "aws", "--format", "json"], env=env, capture_output=True, text=True,
                            timeout=120, check=False, stdin=subprocess.DEVNULL)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    message = json.loads(result.stdout)["error"]["message"]
    assert "Pulumi CLI" in message and "--outputs outputs.json" in message and "pipeline outputs pipeline.yaml --cloud aws --json" in message
