"""The storage the runtime needs: read an object, write an object with atomic overwrite, list the
objects under a prefix with their modification times, and, for stages that run over windows of
accumulated outputs (`window.py`), read an object with its version and write it only if it is still
that version (or, for a new one, only if it does not exist yet).

Every cloud entry point adapts its own client (S3, GCS, Blob) to these small protocols; the local
runner uses `LocalStore`, which lays buckets and keys out on disk the same way.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import re
import zlib
from collections.abc import Iterator
from typing import NamedTuple, NoReturn, Protocol


class ObjectStore(Protocol):
    """get/put by bucket and key. `put` replaces the whole object atomically (readers see old or new)."""

    def get(self, bucket: str, key: str) -> bytes: ...

    def put(self, bucket: str, key: str, data: bytes) -> None: ...


class ListingStore(ObjectStore, Protocol):
    """A store that can also list: (key, last-modified as epoch seconds) under a prefix, any order."""

    def list(self, bucket: str, prefix: str) -> Iterator[tuple[str, float]]: ...


class ConditionalStore(Protocol):
    """Optimistic concurrency on one object: S3 ETags (`If-Match` / `If-None-Match: *`), GCS generations
    (`ifGenerationMatch`), Azure ETags (`If-Match` / `If-None-Match: *`), a version token locally."""

    def read_versioned(self, bucket: str, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and a token naming this version of it; None when there is no such object."""

    def put_if(self, bucket: str, key: str, data: bytes, token: str | None) -> str:
        """Write the object only if it is still the version `token` names (None: only if it does not exist);
        returns the new version's token, or raises PreconditionFailed (another writer got there first)."""


class WindowStore(ListingStore, ConditionalStore, Protocol):
    """What a stage over windows of accumulated outputs needs: listing with sizes, and conditional writes."""

    def list_sized(self, bucket: str, prefix: str) -> Iterator[tuple[str, float, int]]:
        """(key, last-modified as epoch seconds, size in bytes) under `prefix`, any order."""


class PreconditionFailed(Exception):  # noqa: N818 - the clouds' own name for it (HTTP 412)
    """A conditional write lost: the object is not (or no longer) the version the writer read."""


class Staged(NamedTuple):
    """An object written to its temporary file, not yet in place (`LocalStore.write_temp`)."""

    tmp: str
    target: str
    fd: int  # still open for `sync` when the store is durable, else -1


class LocalStore:
    """Buckets as folders, keys as relative paths, under `root`.

    Writes go to a temporary file in the same folder, are flushed (and fsynced when `durable`),
    then `os.replace`d over the key: a process killed at any moment leaves either the old object or
    the new one, never a torn one, which the crash-safety of `pipeline run` relies on. `put` does
    the three steps at once; `write_temp`, `sync` and `publish` let the local runner's writer
    overlap the fsyncs of many objects.
    """

    TMP_SUFFIX = ".tmp"

    def __init__(self, root: str | os.PathLike[str], durable: bool = True) -> None:
        self.root = os.path.abspath(root)  # absolute: workers write its temporary files from the spec's folder, not ours
        self.durable = durable
        self._made: set[str] = set()
        self._serial = itertools.count()  # temporary names are unique: two writes of one key may be in progress

    def path(self, bucket: str, key: str) -> str:
        if not bucket or bucket.startswith((".", "_")) or "/" in bucket or ".." in key.split("/") or key.startswith("/"):
            raise ValueError(f"invalid bucket/key {bucket!r}/{key!r}")
        return os.path.join(self.root, bucket, *key.split("/"))

    def get(self, bucket: str, key: str) -> bytes:
        with open(self.path(bucket, key), "rb") as handle:
            return handle.read()

    def exists(self, bucket: str, key: str) -> bool:
        return os.path.isfile(self.path(bucket, key))

    def put(self, bucket: str, key: str, data: bytes) -> None:
        staged = self.write_temp(bucket, key, data)
        self.sync(staged)
        self.publish(staged)

    def put_file(self, bucket: str, key: str, tmp: str) -> None:
        """Land an object another process wrote to `tmp`, a temporary file next to the key (`write_temp`)."""
        staged = self.staged(bucket, key, tmp)
        self.sync(staged)
        self.publish(staged)

    def read_staged(self, bucket: str, key: str, tmp: str) -> bytes:
        """An object another process staged in `tmp`: read there or, once published (renamed), at its key.
        (A key is written once per input: what is there is what was staged.)"""
        try:
            with open(self.staged(bucket, key, tmp).tmp, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return self.get(bucket, key)

    def staged(self, bucket: str, key: str, tmp: str) -> Staged:
        """A temporary file written elsewhere, as a staged object of this store (checked to be next to its key)."""
        target = self.path(bucket, key)
        if not (tmp.startswith(target + ".") and tmp.endswith(self.TMP_SUFFIX) and os.sep not in tmp[len(target):]):
            raise ValueError(f"{tmp} is not a temporary file of {bucket}/{key}")
        return Staged(tmp, target, -1)

    def write_temp(self, bucket: str, key: str, data: bytes) -> Staged:
        """Step 1 of a put: the bytes in a temporary file next to the key (its modification time is now)."""
        target = self.path(bucket, key)
        folder = os.path.dirname(target)
        if folder not in self._made:
            os.makedirs(folder, exist_ok=True)
            self._made.add(folder)
        tmp = f"{target}.{os.getpid()}-{next(self._serial)}{self.TMP_SUFFIX}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        staged = Staged(tmp, target, fd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError as exc:
            os.close(fd)
            _failed(staged, exc)
        if self.durable:
            return staged
        os.close(fd)
        return staged._replace(fd=-1)

    def sync(self, staged: Staged) -> None:
        """Step 2 (when durable): the temporary file's bytes on the disk. Closes it either way."""
        if not self.durable:
            return
        try:
            fd = staged.fd if staged.fd >= 0 else os.open(staged.tmp, os.O_RDONLY)  # (written by another process)
        except OSError as exc:
            _failed(staged, exc)
        try:
            os.fsync(fd)
        except OSError as exc:
            _failed(staged, exc)
        finally:
            os.close(fd)

    def publish(self, staged: Staged) -> None:
        """Step 3: the temporary file replaces the key, atomically (readers see the old object or the new one)."""
        try:
            os.replace(staged.tmp, staged.target)
        except OSError as exc:
            _failed(staged, exc)

    @staticmethod
    def discard(staged: Staged) -> None:
        """A staged object that must not land (an earlier write failed): its temporary file goes."""
        with contextlib.suppress(OSError):
            os.unlink(staged.tmp)

    def remove_temporaries(self, skip: tuple[str, ...] = ()) -> int:
        """Delete the temporary files writers killed between `write_temp` and `publish` left behind (only
        files named as `write_temp` names them, outside the folders in `skip`); returns how many. Only for
        the store's owner, while nothing else writes to it: a live writer's temporary file would go too."""
        removed = 0
        for dirpath, dirs, files in os.walk(self.root):
            if dirpath == self.root:
                dirs[:] = [d for d in dirs if d not in skip]
            for name in files:
                if _TEMPORARY.search(name):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(dirpath, name))
                        removed += 1
        return removed

    def list(self, bucket: str, prefix: str) -> Iterator[tuple[str, float]]:
        """Keys under `prefix` with their modification times, like the clouds' list calls."""
        for key, modified, _ in self.list_sized(bucket, prefix):
            yield key, modified

    def list_sized(self, bucket: str, prefix: str) -> Iterator[tuple[str, float, int]]:
        """Keys under `prefix` with their modification times and sizes."""
        for key in self.keys(bucket, prefix):
            try:
                info = os.stat(self.path(bucket, key))
            except FileNotFoundError:  # replaced or removed since the walk
                continue
            yield key, info.st_mtime, info.st_size

    # -- conditional writes (a window's state and lease) -------------------------------------------------

    @staticmethod
    def _token(info: os.stat_result, data: bytes) -> str:
        """A version: the file (a write is a new file renamed over the key), its time, size and checksum."""
        return f"{info.st_ino}-{info.st_mtime_ns}-{info.st_size}-{zlib.crc32(data):08x}"

    def read_versioned(self, bucket: str, key: str) -> tuple[bytes, str] | None:
        try:
            with open(self.path(bucket, key), "rb") as handle:
                data = handle.read()
                return data, self._token(os.fstat(handle.fileno()), data)
        except FileNotFoundError:
            return None

    def put_if(self, bucket: str, key: str, data: bytes, token: str | None) -> str:
        """Compare and replace under an exclusive lock on the key's folder (held by this call only), so two
        processes writing the same key conditionally cannot both win; readers need no lock (replaces are atomic)."""
        target = self.path(bucket, key)
        folder = os.path.dirname(target)
        os.makedirs(folder, exist_ok=True)
        lock = os.open(folder, os.O_RDONLY)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.read_versioned(bucket, key)
            if (current[1] if current is not None else None) != token:
                raise PreconditionFailed(f"{bucket}/{key} is not the version this writer read")
            self.put(bucket, key, data)
            written = self.read_versioned(bucket, key)
            assert written is not None
            return written[1]
        finally:
            os.close(lock)  # (releases the lock)

    def keys(self, bucket: str, prefix: str = "") -> Iterator[str]:
        """Every key in a bucket under `prefix`, sorted; leftover temp files of killed writers are skipped."""
        base = os.path.join(self.root, bucket)
        if not os.path.isdir(base):
            return
        found = []
        for dirpath, _dirs, files in os.walk(base):
            rel = os.path.relpath(dirpath, base)
            for name in files:
                if name.endswith(self.TMP_SUFFIX):
                    continue
                key = name if rel == "." else f"{rel.replace(os.sep, '/')}/{name}"
                if key.startswith(prefix):
                    found.append(key)
        yield from sorted(found)


_TEMPORARY = re.compile(r"\.[0-9]+-[0-9]+" + re.escape(LocalStore.TMP_SUFFIX) + "$")  # `write_temp`'s names: <key>.<pid>-<n>.tmp


def _failed(staged: Staged, exc: OSError) -> NoReturn:
    """Disk full, say: leave no half-written file behind, and say which object failed."""
    LocalStore.discard(staged)
    if exc.filename is None:
        raise OSError(exc.errno, exc.strerror, staged.target) from exc
    raise exc
