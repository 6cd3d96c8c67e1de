"""The neutral runtime on its own: per-record isolation, whole-batch failures, keys, the local store, logs."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.runtime import keys
from pipeline.runtime.context import Context
from pipeline.runtime.errors import BatchFailedError, RetryBatch
from pipeline.runtime.invoke import Settings, StageRunner
from pipeline.runtime.logs import JsonLogger
from pipeline.runtime.records import Record
from pipeline.runtime.store import LocalStore

SETTINGS = Settings("s", "stream", "h.py:f", "out", "s/", "dead", "s/")


def runner(handler: Any, tmp_path: Path) -> StageRunner:
    context = Context("s", logger=JsonLogger(io.StringIO()), env={})
    return StageRunner(SETTINGS, handler, LocalStore(tmp_path, durable=False), context)


def batch(*values: Any) -> list[Record]:
    return [Record(json.dumps(v).encode(), record_id=str(i), sequence=str(i)) for i, v in enumerate(values)]


def read(tmp_path: Path, bucket: str, key: str) -> list[Any]:
    return [json.loads(line) for line in (tmp_path / bucket / key).read_text().splitlines()]


def gen_handler(records: Iterable[Record], context: Context) -> Iterator[dict[str, Any]]:
    for record in records:
        value = record.json()
        if value < 0:
            raise ValueError(f"negative {value}")
        if value % 2:
            continue  # filtered
        yield {"v": value}


def list_handler(records: Iterable[Record], context: Context) -> list[dict[str, Any]]:
    return [{"v": 1 / r.json()} for r in records]


def many_rows(records: Iterable[Record], context: Context) -> Iterator[int]:
    for record in records:
        value = record.json()
        yield value
        if value == 3:
            raise ValueError("fails after its first row")
        yield value * 10


@pytest.mark.parametrize(("handler", "values", "rows", "poisoned"), [
    (gen_handler, [2, -1, 4, 3, -5, 6], [{"v": 2}, {"v": 4}, {"v": 6}], [1, 4]),
    (list_handler, [1, 0, 4, 0], [{"v": 1.0}, {"v": 0.25}], [1, 3]),
    (many_rows, [1, 3, 5], [1, 10, 5, 50], [1]),  # rows of the failing record are dropped
])
def test_one_bad_record_is_dead_lettered_and_the_rest_carry_on(tmp_path: Path, handler: Any, values: list[Any], rows: list[Any],
                                                               poisoned: list[int]) -> None:
    records = batch(*values)
    result = runner(handler, tmp_path).run_stream(records, "p/0-9")
    assert read(tmp_path, "out", "s/p/0-9.jsonl") == rows
    assert result.poisoned == poisoned and result.rows == len(rows)
    dead = read(tmp_path, "dead", "s/p/0-9.jsonl")
    assert [d["index"] for d in dead] == poisoned
    assert [base64.b64decode(d["data_base64"]) for d in dead] == [records[i].data for i in poisoned]
    assert all(d["error"]["traceback"] and "invoke.py" not in " ".join(d["error"]["traceback"]) for d in dead)


def test_errors_outside_a_record_or_transient_fail_the_whole_batch(tmp_path: Path) -> None:
    def setup_fails(records: Iterable[Record], context: Context) -> list[Any]:
        raise FileNotFoundError("model missing")

    def after_last(records: Iterable[Record], context: Context) -> Iterator[Any]:
        rows = [r.json() for r in records]
        raise ValueError(f"aggregate of {len(rows)} failed")
        yield

    def transient(records: Iterable[Record], context: Context) -> Iterator[Any]:
        for record in records:
            if record.json() == 2:
                raise RetryBatch("throttled")
            yield record.json()

    for handler in (setup_fails, after_last, transient):
        with pytest.raises(BatchFailedError):
            runner(handler, tmp_path).run_stream(batch(1, 2, 3), "b/1")
    assert not (tmp_path / "out").exists() and not (tmp_path / "dead").exists()

    # Partial mode (Kinesis): the done prefix is written under its own key, the rest is redelivered.
    result = runner(transient, tmp_path).run_stream(batch(1, 5, 2, 3), "b/0-3", partial=True, batch_id_for=lambda cut: f"b/0-{cut - 1}")
    assert result.retry_from == 2 and result.output_key == "s/b/0-1.jsonl"
    assert read(tmp_path, "out", "s/b/0-1.jsonl") == [1, 5]


def test_object_input_with_a_broken_line(tmp_path: Path) -> None:
    store = LocalStore(tmp_path, durable=False)
    store.put("src", "up/a/1-2.jsonl", b'{"v": 1}\nnot json\n{"v": 2}\n')
    settings = Settings("s", "objects", "h.py:f", "out", "s/", "dead", "s/", "src", "up/")
    stage = StageRunner(settings, lambda rows, ctx: ({"w": r["v"] * 2} for r in rows), store, Context("s", logger=JsonLogger(io.StringIO()), env={}))
    result = stage.run_object("src", "up/a/1-2.jsonl", generation="7")
    assert result.output_key == "s/a/1-2.jsonl" and read(tmp_path, "out", "s/a/1-2.jsonl") == [{"w": 2}, {"w": 4}]
    [dead] = read(tmp_path, "dead", "s/a/1-2.jsonl")
    assert dead["reason"] == "not JSON" and dead["input"]["line"] == 1 and base64.b64decode(dead["data_base64"]) == b"not json"


def test_keys_are_deterministic_and_portable() -> None:
    assert keys.stream_batch("shardId-000000000001", "4959", "4960") == "shardId-000000000001/4959-4960"
    assert keys.stream_batch("3", 7, 12) == "3/00000000000000000007-00000000000000000012"
    assert keys.message_batch("a/b c") == "msg/a=2Fb=20c"
    assert keys.object_batch("preprocess/x/1-2.jsonl", "preprocess/") == "x/1-2"
    assert keys.schedule_batch("20261102T060000Z") == "tick/20261102T060000Z"
    assert keys.safe("ü=") != keys.safe("u=") and all(c.isalnum() or c in "/_.=-" for c in keys.safe("weird key/ü?&"))


def test_local_store_replaces_atomically_and_lists(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("b", "k/1.jsonl", b"old")
    store.put("b", "k/1.jsonl", b"new")
    (tmp_path / "b" / "k" / "2.jsonl.123.tmp").write_bytes(b"torn")  # a writer killed mid-write
    assert store.get("b", "k/1.jsonl") == b"new" and list(store.keys("b")) == ["k/1.jsonl"]
    with pytest.raises(ValueError):
        store.put("b", "../escape", b"x")


def test_logs_are_one_json_object_per_line() -> None:
    stream = io.StringIO()
    logger = JsonLogger(stream, stage="s").bind(batch="b1")
    logger.info("scored %d rows", 3, rows=3)
    try:
        raise KeyError("x")
    except KeyError:
        logger.exception("failed")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "scored 3 rows" and first["severity"] == "INFO" and first["batch"] == "b1" and first["rows"] == 3
    assert second["level"] == "ERROR" and second["error"] == "KeyError: 'x'" and "Traceback" in second["traceback"]


def test_shim_imports_only_the_standard_library() -> None:
    import subprocess
    import sys

    code = ("import sys; import pipeline_aws.runtime, pipeline_gcp.runtime, pipeline_azure.runtime; "
            "heavy = ('boto3', 'botocore', 'google.cloud.storage', 'google.auth', 'azure.storage', 'azure.identity', 'azure.functions', "
            "'pydantic', 'pulumi', 'yaml', 'rich', 'typer', 'dataclasses', 'inspect'); "
            "bad = sorted(m for m in sys.modules if m.startswith(heavy)); "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


# ---- HTTP stages, uploads and schedules over accumulated outputs -----------------------------------


def rows_handler(rows: Iterable[Any], context: Context) -> Iterator[dict[str, Any]]:
    for row in rows:
        if row.get("bad"):
            raise ValueError("bad row")
        yield {"x2": row["x"] * 2}


def test_http_request_rows_in_rows_out_with_per_row_failures(tmp_path: Path) -> None:
    settings = Settings("api", "http", "h.py:f", "", "api/", "dead", "api/")
    stage = StageRunner(settings, rows_handler, LocalStore(tmp_path, durable=False), Context("api", logger=JsonLogger(io.StringIO()), env={}))
    status, body = stage.run_http(json.dumps([{"x": 1}, {"bad": True}, {"x": 3}]).encode())
    assert status == 200 and body["rows"] == [{"x2": 2}, {"x2": 6}] and body["output"] is None  # not persisted
    assert [f["index"] for f in body["failed"]] == [1] and body["failed"][0]["type"] == "ValueError"
    assert body["dead_letters"] and read(tmp_path, "dead", body["dead_letters"])[0]["index"] == 1
    lines_status, lines_body = stage.run_http(b'{"x": 5}\n{"x": 6}\n', "application/x-ndjson")
    assert lines_status == 200 and lines_body["rows"] == [{"x2": 10}, {"x2": 12}]
    assert stage.run_http(b"{not json")[0] == 400 and stage.run_http(b"")[0] == 400 and stage.run_http(b'{"x": 1}')[0] == 200


def test_http_request_persisted_under_its_content_hash(tmp_path: Path) -> None:
    settings = Settings("api", "http", "h.py:f", "out", "api/", "dead", "api/")
    stage = StageRunner(settings, rows_handler, LocalStore(tmp_path, durable=False), Context("api", logger=JsonLogger(io.StringIO()), env={}))
    body = json.dumps([{"x": 1}]).encode()
    first, second = stage.run_http(body)[1], stage.run_http(body)[1]
    assert first["output"] == second["output"] and first["output"].startswith("api/req/")
    assert read(tmp_path, "out", first["output"]) == [{"x2": 2}]


def test_uploads_are_gzip_or_plain_json_lines_and_keys_drop_the_suffixes(tmp_path: Path) -> None:
    import gzip

    store = LocalStore(tmp_path, durable=False)
    store.put("in", "uploads/day1.jsonl.gz", gzip.compress(b'{"x": 1}\n{"x": 2}\nnot json\n'))
    settings = Settings("p", "objects", "h.py:f", "out", "p/", "dead", "p/", "in", "uploads/")
    stage = StageRunner(settings, rows_handler, store, Context("p", logger=JsonLogger(io.StringIO()), env={}))
    result = stage.run_object("in", "uploads/day1.jsonl.gz")
    assert result.output_key == "p/day1.jsonl" and read(tmp_path, "out", "p/day1.jsonl") == [{"x2": 2}, {"x2": 4}]
    assert result.dead_letters == 1
