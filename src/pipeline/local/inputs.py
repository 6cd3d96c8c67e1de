"""The inputs of a local run: uploaded files (checked, named, digested) and the stream's input, a file or standard input."""

from __future__ import annotations

import tempfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pipeline.local.errors import LocalUsageError
from pipeline.local.lines import file_chunks, pipe_chunks
from pipeline.local.stages import LocalRunError
from pipeline.runtime.store import LocalStore


def digest_of(data: bytes) -> str:
    """Enough to notice a different input under the same journal (CRC-32 runs at memory speed)."""
    return f"{zlib.crc32(data):08x}-{len(data)}"


@dataclass(frozen=True)
class Upload:
    """A file for the landing bucket: the name it lands under (`<uploads>/<name>`) and where its bytes are."""

    name: str
    path: Path
    digest: str

    @classmethod
    def of(cls, path: Path, name: str | None = None) -> Upload:
        """A file to upload, checked: it must be a readable regular file with a name an object key can have."""
        name = path.name if name is None else name
        check_upload_name(name)
        try:
            if not path.is_file():
                raise LocalUsageError(f"upload {path} is not a file")
            crc, size = 0, 0
            with path.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    crc, size = zlib.crc32(chunk, crc), size + len(chunk)
        except OSError as exc:
            raise LocalUsageError(f"cannot read upload {path}: {exc.strerror or exc}") from None
        return cls(name, path, f"{crc:08x}-{size}")

    def read(self) -> bytes:
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise LocalUsageError(f"cannot read upload {self.path}: {exc.strerror or exc}") from None
        if digest_of(data) != self.digest:
            raise LocalUsageError(f"upload {self.path} changed while the run was going on; run the same command again")
        return data


def check_upload_name(name: str) -> None:
    """A file name that is one object key on every cloud and one file locally (no folders, nothing hidden)."""
    if (not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith(".") or len(name.encode()) > 255
            or any(ord(c) < 32 or ord(c) == 127 for c in name)):
        raise LocalUsageError(f"{name!r} cannot be an upload's name: use a plain file name (no folders, not hidden, "
                              "no control characters, at most 255 bytes), e.g. claims-2026-11-01.jsonl.gz")
    if name.endswith(LocalStore.TMP_SUFFIX):
        raise LocalUsageError(f"{name!r} cannot be an upload's name: the local store keeps its temporary files as *{LocalStore.TMP_SUFFIX}")


def check_uploads(uploads: Sequence[Upload]) -> None:
    seen: dict[str, Path] = {}
    for upload in uploads:
        if upload.name in seen:
            raise LocalUsageError(f"{seen[upload.name]} and {upload.path} would both land as {upload.name!r}; "
                                  "an upload is known by its file name: rename one")
        seen[upload.name] = upload.path


class FileInput:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.arrival: float | None = path.stat().st_mtime

    def chunks(self) -> Iterator[list[bytes] | None]:
        with self.path.open("rb") as handle:
            yield from file_chunks(handle)

    def again(self) -> FileInput:
        return self


class StdinInput:
    """Standard input, read as it arrives. While a run resumes a journal, what was read is also
    spooled to a temporary file, so if the input turns out to differ the new run can start at its
    first line (a pipe cannot be read twice)."""

    arrival = None

    def __init__(self, fd: int, tick_s: float, spool: bool) -> None:
        self.live = pipe_chunks(fd, tick_s)
        self.spool: IO[bytes] | None = tempfile.TemporaryFile() if spool else None  # noqa: SIM115 - closed when replayed
        self.replay = False

    def chunks(self) -> Iterator[list[bytes] | None]:
        if self.replay and self.spool is not None:
            spool, self.spool = self.spool, None
            spool.seek(0)
            yield from file_chunks(spool)
            spool.close()
        try:
            for chunk in self.live:
                if self.spool is not None and chunk:
                    self.spool.write(b"".join(chunk))
                yield chunk
        except OSError as exc:
            raise LocalRunError(f"reading standard input failed: {exc.strerror or exc}; pipe the records in, or pass --input FILE") from exc

    def again(self) -> StdinInput:
        self.replay = True
        return self

    def stop_spooling(self) -> None:
        if self.spool is not None and not self.replay:
            self.spool.close()
            self.spool = None
