"""Deterministic zip archives, written without compressing the same bytes twice.

A function package is mostly its vendored wheels (tens of MB for Azure), identical from stage to
stage and from run to run; deflating them at level 9 is most of a package's build time. So each
member is deflated once per content (`deflated`, remembered by the SHA-256 of its bytes) and
archives are assembled from those pieces. Members can also be taken over from an archive this
module wrote before (`remember_members`, `read_members`), which is how the package cache saves
the deflating across runs.

The bytes are exactly what `zipfile` writes for the same members (sorted names, fixed time
1980-01-01, mode 0644 from a Unix host, deflate level 9, no extra fields), so package hashes do
not change with this module; a test holds it to that.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterator, Mapping

FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold
FILE_MODE = 0o644 << 16
LEVEL = 9
_VERSION = 20  # "made by" and "needed to extract": 2.0, deflate
_UNIX = 3
_DEFLATED = 8
_UTF8_NAME = 0x800
_LIMIT = (1 << 31) - 1  # zipfile switches to ZIP64 beyond this; these archives never need it
_DOS_DATE = (FIXED_TIME[0] - 1980) << 9 | FIXED_TIME[1] << 5 | FIXED_TIME[2]
_DOS_TIME = FIXED_TIME[3] << 11 | FIXED_TIME[4] << 5 | FIXED_TIME[5] // 2
_LOCAL = struct.Struct("<4s2B4HL2L2H")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_END = struct.Struct("<4s4H2LH")

# SHA-256 of a member's bytes -> (CRC-32, raw deflate stream)
_deflated: dict[bytes, tuple[int, bytes]] = {}


class ZipTooLargeError(ValueError):
    """An archive or member beyond what a zip without ZIP64 holds (no function package is that big)."""


def deflated(data: bytes) -> tuple[int, bytes]:
    """CRC-32 and level-9 raw deflate stream of `data`, computed once per content in this process."""
    key = hashlib.sha256(data).digest()
    found = _deflated.get(key)
    if found is None:
        compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -15)
        found = (zlib.crc32(data), compressor.compress(data) + compressor.flush())
        _deflated[key] = found
    return found


def _name(name: str) -> tuple[bytes, int]:
    try:
        return name.encode("ascii"), 0
    except UnicodeEncodeError:
        return name.encode("utf-8"), _UTF8_NAME


def zip_bytes(entries: Mapping[str, bytes]) -> bytes:
    """The archive of `entries` (name -> bytes), names sorted, as bytes."""
    body, central = bytearray(), bytearray()
    for name in sorted(entries):
        data = entries[name]
        crc, stream = deflated(data)
        encoded, flags = _name(name)
        offset = len(body)
        if len(data) * 1.05 > _LIMIT or len(stream) > _LIMIT or offset > _LIMIT:
            raise ZipTooLargeError(f"{name} makes the archive larger than 2 GiB")
        body += _LOCAL.pack(b"PK\x03\x04", _VERSION, 0, flags, _DEFLATED, _DOS_TIME, _DOS_DATE, crc, len(stream), len(data), len(encoded), 0)
        body += encoded
        body += stream
        central += _CENTRAL.pack(b"PK\x01\x02", _VERSION, _UNIX, _VERSION, 0, flags, _DEFLATED, _DOS_TIME, _DOS_DATE, crc, len(stream),
                                 len(data), len(encoded), 0, 0, 0, 0, FILE_MODE, offset)
        central += encoded
    count = len(entries)
    if count > 0xFFFF or len(body) > _LIMIT:
        raise ZipTooLargeError("the archive has more members or bytes than a zip without ZIP64 holds")
    return bytes(body + central + _END.pack(b"PK\x05\x06", 0, 0, count, count, len(central), len(body), 0))


def _members(archive: bytes) -> Iterator[tuple[str, int, int, bytes]]:
    """(name, CRC-32, size, raw deflate stream) of each member of an archive `zip_bytes` wrote;
    ValueError for anything else."""
    if len(archive) < _END.size:
        raise ValueError("not a zip archive")
    signature, _, _, count, _, size, start, _ = _END.unpack_from(archive, len(archive) - _END.size)
    if signature != b"PK\x05\x06" or start + size != len(archive) - _END.size:
        raise ValueError("not an archive of this module")
    position = start
    for _ in range(count):
        fields = _CENTRAL.unpack_from(archive, position)
        if fields[0] != b"PK\x01\x02" or fields[6] != _DEFLATED:
            raise ValueError("an unexpected member")
        flags, crc, compressed, length, name_length, offset = fields[5], fields[9], fields[10], fields[11], fields[12], fields[18]
        name = archive[position + _CENTRAL.size: position + _CENTRAL.size + name_length].decode("utf-8" if flags & _UTF8_NAME else "ascii")
        position += _CENTRAL.size + name_length + fields[13] + fields[14]
        local = _LOCAL.unpack_from(archive, offset)
        if local[0] != b"PK\x03\x04" or local[10] != name_length or local[11] != 0:
            raise ValueError("a member's header does not match the directory")
        data_at = offset + _LOCAL.size + name_length
        yield name, crc, length, archive[data_at: data_at + compressed]


def read_members(archive: bytes) -> dict[str, bytes]:
    """Every member's bytes, each checked against its CRC and size and remembered deflated."""
    entries = {}
    for name, crc, length, stream in _members(archive):
        data = zlib.decompress(stream, -15)
        if len(data) != length or zlib.crc32(data) != crc:
            raise ValueError(f"{name}: damaged")
        _deflated[hashlib.sha256(data).digest()] = (crc, stream)
        entries[name] = data
    return entries


def remember_members(archive: bytes, entries: Mapping[str, bytes]) -> int:
    """Take over the deflated members of `archive` that inflate to exactly `entries`' bytes of the same
    name (inflating is a small fraction of deflating), so they need not be deflated again; how many."""
    matched = 0
    for name, crc, length, stream in _members(archive):
        data = entries.get(name)
        if data is not None and len(data) == length and zlib.decompress(stream, -15) == data:
            _deflated.setdefault(hashlib.sha256(data).digest(), (crc, stream))
            matched += 1
    return matched
