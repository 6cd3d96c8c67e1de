"""The process a stage's handler runs in under `pipeline run`: what a function container is in the cloud.

The local runner starts one per stage (see `stage_process.py`) with the stage's environment, so a
handler that calls `sys.exit()` or `os._exit()`, crashes the interpreter or hangs ends or blocks
only this process. The runner notices, starts a new one (module state is gone, as in a new
container) and retries the input, then dead-letters it, as every cloud does.

A worker never writes to the store: it writes outputs and dead letters to temporary files next to
their keys and names them in its reply; the runner, which owns the store and the journal, decides
whether and when each lands (fsync, rename, journal line, in order), so crash safety stays in one place.

Protocol, on two pipes whose fds are on the command line, frames of an 8-byte length + a pickle:

    runner -> worker   ("stream", batch_id, datas, lines, arrivals) | ("object", bucket, key, data) | ("schedule", tick)
                       | ("object_file", bucket, key, tmp)   an object another worker staged in file tmp
                       | ("window", batch_id, bucket, [(key, data), ...])   a run over a window of accumulated objects
                       | ("http", body, content_type)                           one request to an HTTP stage
                       | ("records", batch_id, [(data, identity), ...])  stream records rebuilt with their identities
                                                                         (`pipeline dlq replay` of dead-lettered records)
    worker -> runner   first ("ready",) or ("error", info); then one reply per request:
                       ("ok", result, puts) | ("failed", info) | ("exited", info, code) | ("store_failed", os_error)
                       where puts are (bucket, key, temporary file): the objects the input wrote, in order

A run over a window of accumulated outputs gets its window from the runner, which holds the window's
lease, lists the store and sends the objects' bytes (`window.py`); the worker runs the handler on their
rows and returns the output and dead letters as writes; the runner lands them, then commits the window.

What the handler prints and the JSON log lines go to stdout/stderr, which the runner reads and shows.
Standard library only: starting a worker must stay cheap.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import pickle
import signal
import struct
import sys
import threading
import time
import types
from typing import Any

from pipeline.local.lines import LineRecord
from pipeline.runtime.context import Context
from pipeline.runtime.errors import BatchFailedError
from pipeline.runtime.invoke import BatchResult, Settings, StageRunner, error_info, http_rows, load_handler
from pipeline.runtime.logs import JsonLogger
from pipeline.runtime.records import Record
from pipeline.runtime.store import LocalStore

_HEADER = struct.Struct("!Q")
_HERE = os.path.dirname(os.path.abspath(__file__))


def _error_info(exc: BaseException) -> dict[str, Any]:
    """`error_info`, whose traceback leaves out the runtime's own frames, leaving out this folder's too: the worker's
    frames are the runner's, not what failed (as when the worker lived beside the runtime)."""
    kept, entry = [], exc.__traceback__
    while entry is not None:
        if os.path.dirname(os.path.abspath(entry.tb_frame.f_code.co_filename)) != _HERE:
            kept.append(entry)
        entry = entry.tb_next
    rebuilt: types.TracebackType | None = None
    for entry in reversed(kept):
        rebuilt = types.TracebackType(rebuilt, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return error_info(exc.with_traceback(rebuilt))


def write_frame(fd: int, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data) if len(data) < 65536 else None
    if view is None:  # big frames: no copy to prepend the header
        _write_all(fd, memoryview(_HEADER.pack(len(data))))
        view = memoryview(data)
    _write_all(fd, view)


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view):]


def read_frame(fd: int) -> Any:
    """The next message, or None when the other side closed the pipe (or died) before sending one whole."""
    header = _read_exactly(fd, _HEADER.size)
    if header is None:
        return None
    data = _read_exactly(fd, _HEADER.unpack(header)[0])
    return None if data is None else pickle.loads(data)


def _read_exactly(fd: int, size: int) -> bytes | None:
    parts: list[bytes] = []
    left = size
    while left:
        part = os.read(fd, min(left, 1 << 20))
        if not part:
            return None
        parts.append(part)
        left -= len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


class _StoreFailedError(Exception):
    """The local disk refused a write (full, read-only...): the runner stops the run and says why."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.info = {"errno": error.errno, "strerror": error.strerror, "filename": error.filename}


class _ReturnedStore:
    """The runner's store, seen from the worker. A write goes to a temporary file next to its key and is
    named in the reply: the runner fsyncs it and renames it over the key, in order with everything else
    and with the journal (the bytes never cross the pipe, and the write is done here, beside the runner's
    work). Nothing is read through it: the runner sends every input's bytes with the request."""

    def __init__(self, root: str) -> None:
        self.staging = LocalStore(root, durable=False)
        self.puts: list[tuple[str, str, str]] = []  # (bucket, key, temporary file)

    def put(self, bucket: str, key: str, data: bytes) -> None:
        try:
            staged = self.staging.write_temp(bucket, key, data)
        except OSError as exc:
            raise _StoreFailedError(exc) from exc
        self.puts.append((bucket, key, staged.tmp))

    def discard(self) -> None:
        """The request failed: what it staged will never land."""
        for _, _, tmp in self.puts:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self.puts = []

    def get(self, bucket: str, key: str) -> bytes:
        raise FileNotFoundError(f"{bucket}/{key} was not sent to the local worker (the runner sends the objects an input needs)")


class _LocalStageRunner(StageRunner):
    """Logs each dead-lettered record with its traceback, so it shows while the run goes on."""

    def _dead_entry(self, batch_id: str, index: int, raw: bytes, identity: dict[str, Any], exc: BaseException | None,
                    reason: str = "handler raised") -> dict[str, Any]:
        if exc is not None:
            self.logger.log("ERROR", f"record dead-lettered ({reason})", batch=batch_id, index=index, exc_info=exc)
        return super()._dead_entry(batch_id, index, raw, identity, exc, reason)


def _result(result: BatchResult) -> dict[str, Any]:
    return {"items": result.items, "rows": result.rows, "dead_letters": result.dead_letters, "filtered": result.filtered,
            "output_key": result.output_key}


def _handle(runner: StageRunner, store: _ReturnedStore, request: tuple[Any, ...]) -> dict[str, Any]:
    """Run one request; the result counts items, rows and dead letters (an HTTP request adds its status and answer)."""
    kind = request[0]
    if kind == "stream":
        _, batch_id, datas, lines, arrivals = request
        records = [LineRecord(data, line, arrival) for data, line, arrival in zip(datas, lines, arrivals, strict=True)]
        return _result(runner.run_stream(records, batch_id))
    if kind == "object":
        _, bucket, key, data = request
        return _result(runner.run_object(bucket, key, data=data))
    if kind == "object_file":  # an object another worker staged: read where it is, or where it landed since
        _, bucket, key, tmp = request
        return _result(runner.run_object(bucket, key, data=store.staging.read_staged(bucket, key, tmp), encoded_rows=True))
    if kind == "schedule":
        return _result(runner.run_schedule(request[1]))
    if kind == "window":
        from pipeline.runtime.window import failures

        _, batch_id, bucket, objects = request
        result = runner.run_objects(batch_id, bucket, objects)
        return {**_result(result), "failed": failures(result.dead_entries)}
    if kind == "records":
        _, batch_id, items = request
        rebuilt = [Record(data, key=who.get("key"), record_id=str(who.get("record_id") or ""), partition=str(who.get("partition") or "0"),
                          sequence=str(who.get("sequence") or ""),
                          arrival_time=who["arrival_time"] if isinstance(who.get("arrival_time"), (int, float)) else None)
                   for data, who in items]
        return _result(runner.run_stream(rebuilt, batch_id))
    if kind == "http":
        _, body, content_type = request
        status, answer = runner.run_http(body, content_type)
        items = len(http_rows(body, content_type)) if status != 400 else 0  # 400: the body is not rows
        return {"status": status, "body": answer, "items": items, "rows": len(answer.get("rows", ())),
                "dead_letters": len(answer.get("failed", ())), "output_key": answer.get("output")}
    raise ValueError(f"unknown request {kind!r}")


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 1


def _exit_info(exc: BaseException) -> dict[str, Any]:
    info = _error_info(exc)
    if isinstance(exc, SystemExit):
        info["message"] = f"the handler called sys.exit({exc.code!r}), which ends its process"
    else:
        info["message"] = f"{type(exc).__name__} ended the handler's process: {exc}"
    return info


def _drop_stale_bytecode(folder: str) -> None:
    """A .pyc names its source by modification time in whole seconds and by size, so an edit within
    the same second that keeps the size (`--watch`, a quick fix) would run the old code. Bytecode
    no newer than its source is dropped before the handler is imported."""
    for current, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("node_modules", "site-packages")]
        if os.path.basename(current) != "__pycache__":
            continue
        for name in files:
            source = os.path.join(os.path.dirname(current), name.split(".", 1)[0] + ".py")
            compiled = os.path.join(current, name)
            try:
                if name.endswith(".pyc") and os.stat(source).st_mtime_ns >= os.stat(compiled).st_mtime_ns:
                    os.unlink(compiled)
            except OSError:  # no source (or not ours to delete): leave it
                continue


def _watch_parent(parent: int) -> None:
    """A worker whose runner died (kill -9) ends itself, even while a handler hangs."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def main() -> None:
    config = json.loads(sys.argv[-1])
    requests, replies = int(config["requests"]), int(config["replies"])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the runner's: it stops workers itself
    faulthandler.enable()  # a crash in native code shows where it happened
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the runner asks where a handler hangs before it kills it
    threading.Thread(target=_watch_parent, args=(os.getppid(),), name="pipeline-parent-watch", daemon=True).start()
    for path in reversed(config.get("paths", [])):  # the stage's requirements, ahead of everything else installed
        sys.path.insert(0, path)

    settings = Settings.from_env()
    env = os.environ
    level = env.get("PIPELINE_LOG_LEVEL", "INFO")
    sys.dont_write_bytecode = True  # handler modules are compiled afresh by every worker: a few milliseconds
    _drop_stale_bytecode(os.path.dirname(os.path.join(config["root"], settings.handler.partition(":")[0])))
    try:
        handler = load_handler(settings.handler, config["root"])
    except BaseException as exc:  # whatever the module does while importing (even sys.exit), the runner must hear of it
        write_frame(replies, ("error", _error_info(exc)))
        sys.stderr.flush()
        os._exit(1)
    pipeline = env.get("PIPELINE_NAME", "")
    handler_log = JsonLogger(sys.stderr, level, pipeline=pipeline, stage=settings.stage)
    runtime_log = handler_log.bind(logger="runtime")  # the runner shows these only from WARNING up
    context = Context(settings.stage, logger=handler_log, env=env, model_path=env.get("PIPELINE_MODEL_PATH"), trigger=settings.trigger)
    store = _ReturnedStore(config["store"])
    runner = _LocalStageRunner(settings, handler, store, context, runtime_log)
    write_frame(replies, ("ready",))

    while True:
        request = read_frame(requests)
        if request is None:  # the runner is done with this stage
            return
        store.puts = []
        reply: tuple[Any, ...]
        try:
            reply = ("ok", _handle(runner, store, request), store.puts)
        except _StoreFailedError as exc:
            store.discard()
            reply = ("store_failed", exc.info)
        except BatchFailedError as exc:
            store.discard()
            reply = ("failed", _error_info(exc.cause))
        except Exception as exc:  # the runtime itself failed on this input: retried like any failure
            store.discard()
            reply = ("failed", _error_info(exc))
        except BaseException as exc:  # SystemExit, KeyboardInterrupt... in a handler: the process ends, as a function's would
            store.discard()
            sys.stdout.flush()
            sys.stderr.flush()
            write_frame(replies, ("exited", _exit_info(exc), _exit_code(exc)))
            os._exit(_exit_code(exc))
        write_frame(replies, reply)


if __name__ == "__main__":
    main()
