"""`json.loads` for one record or line, minus its per-call overhead, for the runtime's hot paths.

`json.loads` spends about as long on bookkeeping as on parsing a short record: it checks the
argument's type, guesses the encoding of bytes, and skips whitespace with two regular-expression
matches around the parse. Most records are UTF-8 text that starts with `{` and ends with `}`:
those go straight to the C scanner; anything else (leading or trailing whitespace, a byte-order
mark, UTF-16, an error) goes to `json.loads` itself, so results and error messages are the same.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json.scanner import make_scanner  # the C scanner when the accelerator is built (CPython always)
from typing import Any, cast

# (typeshed types make_scanner as a class of its own; it takes a decoder and returns scan_once)
_scan = cast(Callable[[str, int], tuple[Any, int]], make_scanner(cast(Any, json.JSONDecoder())))


def loads(data: bytes | str) -> Any:
    """The same value as `json.loads(data)`, or the same exception."""
    if isinstance(data, bytes):
        # json.loads(bytes) decodes as UTF-8 (with surrogatepass) exactly when the first byte is ASCII
        # other than NUL (no byte-order mark starts so) and the second is not NUL (not UTF-16/32).
        if not data or not 0 < data[0] < 0x80 or (len(data) > 1 and not data[1]):
            return json.loads(data)
        text = data.decode("utf-8", "surrogatepass")
    else:
        text = data
    try:
        value, end = _scan(text, 0)
    except (StopIteration, ValueError):  # leading whitespace or a BOM (the scanner skips none), or not JSON
        return json.loads(data)
    if end != len(text):  # trailing whitespace, or extra data
        return json.loads(data)
    return value
