"""Lines of a local input (a JSON-lines file or a pipe) and the record each one becomes.

Shared by the local runner, which reads the input, and its worker processes, which rebuild the
records a handler sees. Standard library only.
"""

from __future__ import annotations

import io
import os
import select
import zlib
from collections.abc import Iterator
from typing import IO

from pipeline.runtime.records import Record

PARTITION = "local"  # one local "shard": records keep input order
LINE_WIDTH = 12  # zero-padded line numbers in keys and record ids
READ_SIZE = 1 << 20


class LineRecord(Record):
    """A record read from line `line` of the local input. Its id (line + CRC-32 of the bytes) and
    sequence are computed only when asked for (dead letters, logs), not for every record."""

    __slots__ = ("line",)
    key = None
    partition = PARTITION

    def __init__(self, data: bytes, line: int, arrival_time: float | None) -> None:
        self.data = data
        self.line = line
        self.arrival_time = arrival_time

    @property
    def record_id(self) -> str:  # type: ignore[override]
        return f"{self.line:0{LINE_WIDTH}d}-{zlib.crc32(self.data):08x}"

    @property
    def sequence(self) -> str:  # type: ignore[override]
        return str(self.line)


class LineSplitter:
    """Bytes in any pieces -> whole lines (with their newline), each byte looked at once.

    A line longer than a read (a 50 MB record) arrives in many pieces; they are kept in a list and
    joined once when its newline comes, so the work is linear in the input, not in the line length
    squared (appending to one bytes buffer and re-splitting it on every read would be).
    """

    def __init__(self) -> None:
        self._pieces: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        end = chunk.rfind(b"\n") + 1
        if end == 0:
            if chunk:
                self._pieces.append(chunk)
            return []
        head = chunk[:end]
        if self._pieces:
            self._pieces.append(head)
            head = b"".join(self._pieces)
            self._pieces = []
        if end < len(chunk):
            self._pieces.append(chunk[end:])
        return io.BytesIO(head).readlines()  # splits on b"\n" only, like reading a file

    def finish(self) -> list[bytes]:
        """The last line when the input does not end with a newline."""
        tail, self._pieces = b"".join(self._pieces), []
        return [tail] if tail else []


def file_chunks(handle: IO[bytes]) -> Iterator[list[bytes] | None]:
    """About 1 MiB of whole lines at a time: per-line work stays in tight loops."""
    while True:
        chunk = handle.readlines(READ_SIZE)
        if not chunk:
            return
        yield chunk


def pipe_chunks(fd: int, tick_s: float) -> Iterator[list[bytes] | None]:
    """Whole lines as they arrive; None after `tick_s` of silence, so batching windows can expire."""
    splitter = LineSplitter()
    while True:
        ready, _, _ = select.select([fd], [], [], tick_s)
        if not ready:
            yield None
            continue
        chunk = os.read(fd, READ_SIZE)
        if not chunk:
            tail = splitter.finish()
            if tail:
                yield tail
            return
        lines = splitter.feed(chunk)
        if lines:
            yield lines
