"""Helpers shared by the runtime tests: the example's data, event-shaped inputs, a flaky handler file.

The emulator fixtures are in conftest_emulators.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

EXAMPLE = REPO / "stacks" / "transactions"
MODEL = EXAMPLE / "models" / "fraud-model.json"
MODEL_KEY = "models/0123456789abcdef/fraud-model.json"

FLAKY_HANDLERS = '''\
import json
import os


class Unavailable(Exception):
    retryable = True


def passthrough(records, context):
    fail_at = os.environ.get("FAIL_AT_TXN")
    for record in records:
        row = record.json()
        if row.get("txn_id") == fail_at:
            raise ConnectionError("downstream is down")
        if row.get("poison"):
            raise ValueError("poison record")
        yield row


def broken_setup(records, context):
    raise Unavailable("model store unreachable")
    yield  # a generator


def copy_rows(rows, context):
    return [dict(row, copied=True) for row in rows]
'''


MALFORMED = (b'{"txn_id": "t000000", "card_id": "c0166", "currency": "USD", "merchant_category": "7995", "country": "GB", '
             b'"timestamp": "2026-11-01T16:13:02Z", "card_present": false, "txns_last_hour": 6}')  # no amount: preprocess raises


def example_lines(count: int) -> list[bytes]:
    """`count` lines of the example data, the first one malformed (no amount), the rest as in its sample file."""
    with (EXAMPLE / "data" / "transactions.jsonl").open("rb") as handle:
        return [MALFORMED] + [handle.readline().rstrip(b"\n") for _ in range(count)][1:]


def write_flaky(folder: Path) -> Path:
    (folder / "handlers").mkdir(parents=True, exist_ok=True)
    (folder / "handlers" / "flaky.py").write_text(FLAKY_HANDLERS, encoding="utf-8")
    return folder


def read_jsonl(data: bytes) -> list[Any]:
    return [json.loads(line) for line in data.splitlines() if line.strip()]
