"""A small reader for Avro object container files, standard library only.

Why it exists: a stream stage on GCP is fed by a Cloud Storage subscription that writes each batch of
Pub/Sub messages as one Avro file (`avro_config.write_metadata`), so every record keeps its
`message_id` (a record id that is stable across redeliveries), `publish_time`, ordering key and
attributes. The function must read those files without pulling an Avro library into every package.

What it supports is what such a file can contain: the container format (magic, metadata map, sync
markers, blocks), the `null` and `deflate` codecs, and every schema type (primitives, record, enum,
array, map, union, fixed). Spec: https://avro.apache.org/docs/1.11.1/specification/#object-container-files
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Callable, Iterator
from typing import Any

MAGIC = b"Obj\x01"
SYNC_BYTES = 16
CODECS = ("null", "deflate")


class AvroError(ValueError):
    """The bytes are not an Avro object container file this reader supports."""


class _Reader:
    """Binary decoding primitives over one buffer (Avro's zig-zag varints, length-prefixed bytes)."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def read(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise AvroError(f"truncated Avro data: wanted {n} bytes at offset {self.pos} of {len(self.data)}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def long(self) -> int:
        shift = result = 0
        while True:
            if self.pos >= len(self.data):
                raise AvroError("truncated Avro varint")
            byte = self.data[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return (result >> 1) ^ -(result & 1)
            shift += 7
            if shift > 63:
                raise AvroError("Avro varint longer than 64 bits")

    def bytes_(self) -> bytes:
        return self.read(self.long())

    def string(self) -> str:
        return self.bytes_().decode("utf-8")

    def done(self) -> bool:
        return self.pos >= len(self.data)


Decoder = Callable[[_Reader], Any]


def _named(schema: dict[str, Any], namespace: str | None) -> str:
    name = str(schema["name"])
    space = schema.get("namespace", namespace)
    return name if "." in name or not space else f"{space}.{name}"


def compile_schema(schema: Any, names: dict[str, Decoder] | None = None, namespace: str | None = None) -> Decoder:
    """A function that decodes one datum of `schema` (parsed JSON) from a reader."""
    names = {} if names is None else names
    if isinstance(schema, str):
        primitive = _PRIMITIVES.get(schema)
        if primitive is not None:
            return primitive
        full = schema if "." in schema or not namespace else f"{namespace}.{schema}"
        for candidate in (full, schema):
            if candidate in names:
                return _by_name(names, candidate)
        raise AvroError(f"unknown Avro type {schema!r}")
    if isinstance(schema, list):
        branches = [compile_schema(branch, names, namespace) for branch in schema]

        def union(r: _Reader) -> Any:
            index = r.long()
            if not 0 <= index < len(branches):
                raise AvroError(f"union branch {index} out of range")
            return branches[index](r)
        return union
    if not isinstance(schema, dict):
        raise AvroError(f"not an Avro schema: {schema!r}")
    kind = schema.get("type")
    if kind == "record" or kind == "error":
        full = _named(schema, namespace)
        space = full.rsplit(".", 1)[0] if "." in full else None
        fields: list[tuple[str, Decoder]] = []

        def record(r: _Reader) -> dict[str, Any]:
            return {name: decode(r) for name, decode in fields}
        names[full] = record
        fields.extend((f["name"], compile_schema(f["type"], names, space)) for f in schema["fields"])
        return record
    if kind == "enum":
        symbols = list(schema["symbols"])
        names[_named(schema, namespace)] = decoder = lambda r: symbols[r.long()]
        return decoder
    if kind == "fixed":
        size = int(schema["size"])
        names[_named(schema, namespace)] = decoder = lambda r: r.read(size)
        return decoder
    if kind == "array":
        item = compile_schema(schema["items"], names, namespace)
        return lambda r: [item(r) for _ in _block_items(r)]
    if kind == "map":
        value = compile_schema(schema["values"], names, namespace)
        return lambda r: {r.string(): value(r) for _ in _block_items(r)}
    if isinstance(kind, (str, list, dict)):
        return compile_schema(kind, names, namespace)  # {"type": "long", "logicalType": ...} and friends
    raise AvroError(f"unsupported Avro schema {schema!r}")


def _by_name(names: dict[str, Decoder], name: str) -> Decoder:
    """A named type referenced before its definition finished compiling (recursive records): look it up at decode time."""
    def decode(r: _Reader) -> Any:
        return names[name](r)
    return decode


def _block_items(r: _Reader) -> Iterator[None]:
    """Arrays and maps come in blocks: a count (negative: followed by the block's byte size), then items, until 0."""
    while True:
        count = r.long()
        if count == 0:
            return
        if count < 0:
            count = -count
            r.long()
        for _ in range(count):
            yield None


_PRIMITIVES: dict[str, Decoder] = {
    "null": lambda r: None,
    "boolean": lambda r: r.read(1) != b"\x00",
    "int": _Reader.long,
    "long": _Reader.long,
    "float": lambda r: struct.unpack("<f", r.read(4))[0],
    "double": lambda r: struct.unpack("<d", r.read(8))[0],
    "bytes": _Reader.bytes_,
    "string": _Reader.string,
}


class ContainerFile:
    """An Avro object container file: its writer schema and its records, block by block."""

    def __init__(self, data: bytes) -> None:
        reader = _Reader(data)
        if reader.read(4) != MAGIC:
            raise AvroError("not an Avro object container file (bad magic)")
        meta = {reader.string(): reader.bytes_() for _ in _block_items(reader)}
        self.codec = meta.get("avro.codec", b"null").decode() or "null"
        if self.codec not in CODECS:
            raise AvroError(f"Avro codec {self.codec!r} is not supported (supported: {', '.join(CODECS)})")
        try:
            self.schema: Any = json.loads(meta["avro.schema"])
        except (KeyError, ValueError) as exc:
            raise AvroError(f"Avro file without a readable schema: {exc}") from None
        self.metadata = meta
        self.sync = reader.read(SYNC_BYTES)
        self._reader = reader
        self._decode = compile_schema(self.schema)

    def __iter__(self) -> Iterator[Any]:
        reader = self._reader
        while not reader.done():
            count = reader.long()
            block = reader.read(reader.long())
            if reader.read(SYNC_BYTES) != self.sync:
                raise AvroError("Avro block does not end with the file's sync marker (corrupt file)")
            if self.codec == "deflate":
                try:
                    block = zlib.decompress(block, -15)  # raw deflate, RFC 1951
                except zlib.error as exc:
                    raise AvroError(f"corrupt deflate block: {exc}") from None
            inner = _Reader(block)
            for _ in range(count):
                yield self._decode(inner)


def records(data: bytes | io.BufferedIOBase) -> list[Any]:
    """Every record of an Avro container file, in order."""
    raw = data if isinstance(data, bytes) else data.read()
    return list(ContainerFile(raw))


def field_logical_type(schema: Any, field: str) -> str:
    """The logicalType of a record field (e.g. publish_time's `timestamp-micros`), or ""."""
    if not isinstance(schema, dict):
        return ""
    for f in schema.get("fields", []):
        if f.get("name") == field:
            kind = f.get("type")
            branches = kind if isinstance(kind, list) else [kind]
            for branch in branches:
                if isinstance(branch, dict) and branch.get("logicalType"):
                    return str(branch["logicalType"])
    return ""
