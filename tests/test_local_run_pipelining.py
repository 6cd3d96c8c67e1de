"""The fast paths of `pipeline run` keep its semantics: batches pipelined through the workers, objects
staged by workers and landed by the runner's writer, json.loads without its per-call overhead, a
worker's output parsed as one array."""

from __future__ import annotations

import base64
import codecs
import gzip
import json
import os
from pathlib import Path
from typing import Any

import pytest
from local_project import dead_letters, project, rows, run, store_of

from pipeline.local.journal import QueuedWriter
from pipeline.local.stages import LocalRunError
from pipeline.runtime import fastjson
from pipeline.runtime.invoke import StageRunner, encode_row
from pipeline.runtime.store import LocalStore, Staged

HANDLERS = """\
    import os

    def parse(records, context):
        for record in records:
            yield record.json()

    def enrich(rows, context):
        for row in rows:
            if row["n"] == 14:
                os._exit(3)  # kills the reader's worker while the stream stage already computes the next batch
            yield dict(row, doubled=row["n"] * 2)
"""
STAGES = """\
  - name: parse
    handler: handlers/h.py:parse
    trigger: {stream: {batch_size: 10, max_batching_window_s: 1}}
  - name: enrich
    handler: handlers/h.py:enrich
    retries: 1
    trigger: {objects: {from: parse}}
"""


def test_a_reader_that_dies_is_retried_then_dead_lettered_with_the_object_it_read(tmp_path: Path, pipeline_exe: str,
                                                                                   cli_env_vars: dict[str, str]) -> None:
    records: list[Any] = [{"n": n} for n in range(45)]
    spec, data = project(tmp_path, HANDLERS, STAGES, records)
    with data.open("a", encoding="utf-8") as out:
        out.write("not json\n")  # line 46: a poison record of the stream stage
    result = run(cli_env_vars, pipeline_exe, spec, "--input", data)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "internal error" not in result.stderr and "ProcessExited" in result.stderr  # shown as it happened

    # The stream stage's output is complete and in order; its reader lost exactly the batch holding n == 14.
    assert [row["n"] for row in rows(spec, "parse")] == list(range(45))
    assert [row["n"] for row in rows(spec, "enrich")] == [*range(10), *range(20, 45)]
    enrich_dead = dead_letters(spec, "enrich")
    assert [json.loads(base64.b64decode(d["data_base64"]))["n"] for d in enrich_dead] == list(range(10, 20))
    assert {d["reason"] for d in enrich_dead} == {"retries exhausted"}
    assert enrich_dead[0]["input"]["key"] == "parse/local/000000000011-000000000020.jsonl"

    # The poison record's dead letter names it, with the time it arrived (a number, as on every cloud).
    [poison] = dead_letters(spec, "parse")
    assert base64.b64decode(poison["data_base64"]) == b"not json"
    assert poison["input"]["sequence"] == "46" and isinstance(poison["input"]["arrival_time"], float)

    # Nothing staged was left behind: every temporary file was landed or removed.
    assert not [p for p in store_of(spec).rglob("*") if p.name.endswith(LocalStore.TMP_SUFFIX)]


@pytest.mark.parametrize("data", [
    b'{"a": 1}', b'  {"a": 1}  ', b'{"a": 1}\n', b"[1, 2.5, null, true]", b'"text"', b"12345678901234567890", b"NaN",
    b'{"a": "\\ud800"}', codecs.BOM_UTF8 + b'{"a": 1}', '{"a": "é"}'.encode("utf-16"), '{"a": 1}'.encode("utf-16-le"),
    '{"a": 1}'.encode("utf-32"), b"", b" ", b"{", b'{"a": 1} x', b'{"a": 1}{"b": 2}', b"\xff\xfe", b'{"a": "\xff"}', b"1",
    '{"é": "ü"}'.encode(), "\ufeff{}", '{"a": 1}', " [] ", "",
])
def test_fastjson_gives_what_json_loads_gives(data: bytes | str) -> None:
    try:
        expected: Any = json.loads(data)
    except Exception as exc:  # the same exception, with the same message
        with pytest.raises(type(exc)) as raised:
            fastjson.loads(data)
        assert str(raised.value) == str(exc)
    else:
        got = fastjson.loads(data)
        assert got == expected or (got != got and expected != expected)  # NaN
        assert type(got) is type(expected)


def _parsed(data: bytes, encoded_rows: bool) -> tuple[list[Any], list[bytes], dict[int, str]]:
    parsed, raws, bad = StageRunner.parse_object(data, encoded_rows)
    return parsed, raws, {i: f"{type(exc).__name__}: {exc}" for i, exc in bad.items()}


@pytest.mark.parametrize("data", [
    b"".join(encode_row({"n": n, "s": "é\u2028", "f": n / 3}) + b"\n" for n in range(20)),
    encode_row([1, 2]) + b"\n" + encode_row({"a": None}),  # no final newline
    b"",
    b'{"a": 1}\n\n{"b": 2}\n',  # a blank line
    b'{"a": 1}\n   \n{"b": 2}\n',  # a line of spaces
    b'{"a": 1}\nnot json\n{"b": 2}\n',
    b"[1\n2]\n",  # not one value per line: parsed as an array it would be one row
    b'[1\n2],[3\n4]\n',  # ... or two rows from four lines
    b'1,2\n3\n',
    b'{"a": "\xff"}\n',  # not UTF-8
    gzip.compress(b'{"a": 1}\n{"b": 2}\n', mtime=0),
])
def test_a_worker_written_object_parses_the_same_in_one_call(data: bytes) -> None:
    assert _parsed(data, encoded_rows=True) == _parsed(data, encoded_rows=False)


class _FullDisk(LocalStore):
    """A store whose disk fills up after `room` objects."""

    def __init__(self, root: Path, room: int) -> None:
        super().__init__(root, durable=True)
        self.room = room

    def write_temp(self, bucket: str, key: str, data: bytes) -> Staged:
        if self.room == 0:
            raise OSError(28, "No space left on device", self.path(bucket, key))
        self.room -= 1
        return super().write_temp(bucket, key, data)


def test_the_writer_lands_in_order_and_nothing_after_a_failure(tmp_path: Path) -> None:
    store = _FullDisk(tmp_path / "store", room=2)
    journal: list[str] = []
    writer = QueuedWriter(store)
    worker_store = LocalStore(tmp_path / "store", durable=False)  # what a worker writes is staged by another process
    staged = worker_store.write_temp("b", "k/staged.jsonl", b"from a worker\n")
    writer.submit(journal.append, "plan 1")
    writer.put("b", "k/1.jsonl", b"one\n")
    writer.put_file("b", "k/staged.jsonl", staged.tmp)
    writer.submit(journal.append, "done 1")
    writer.drain()
    assert journal == ["plan 1", "done 1"]
    assert store.get("b", "k/1.jsonl") == b"one\n" and store.get("b", "k/staged.jsonl") == b"from a worker\n"

    writer.submit(journal.append, "plan 2")
    writer.put("b", "k/2.jsonl", b"two\n")
    writer.put("b", "k/3.jsonl", b"three\n")  # the disk is full: this one and everything after it is not landed
    writer.submit(journal.append, "done 2")
    writer.put("b", "k/4.jsonl", b"four\n")
    with pytest.raises(LocalRunError, match="no space left on the device"):
        writer.drain()
    writer.close()
    assert journal == ["plan 1", "done 1", "plan 2"]  # what was asked before the failure landed, in order
    assert store.get("b", "k/2.jsonl") == b"two\n"
    assert not store.exists("b", "k/3.jsonl") and not store.exists("b", "k/4.jsonl")
    assert sorted(os.listdir(tmp_path / "store" / "b" / "k")) == ["1.jsonl", "2.jsonl", "staged.jsonl"]  # no temporary file left


def test_a_staged_object_is_read_where_it_is_or_where_it_landed(tmp_path: Path) -> None:
    store = LocalStore(tmp_path, durable=True)
    worker = LocalStore(tmp_path, durable=False)
    staged = worker.write_temp("out", "a/b.jsonl", b"rows\n")
    assert staged.fd == -1 and staged.tmp.endswith(LocalStore.TMP_SUFFIX) and os.path.dirname(staged.tmp) == str(tmp_path / "out" / "a")
    assert store.read_staged("out", "a/b.jsonl", staged.tmp) == b"rows\n"
    store.put_file("out", "a/b.jsonl", staged.tmp)
    assert not os.path.exists(staged.tmp) and store.read_staged("out", "a/b.jsonl", staged.tmp) == b"rows\n"
    with pytest.raises(ValueError, match="not a temporary file"):
        store.staged("out", "a/b.jsonl", str(tmp_path / "elsewhere.tmp"))
    with pytest.raises(ValueError, match="not a temporary file"):
        store.staged("out", "a/b.jsonl", str(tmp_path / "out" / "a" / "b.jsonl"))
