"""Run a user's handler on one input (a stream batch, an object, a schedule tick) with the same
delivery semantics on every cloud and locally.

* An exception while the handler holds a record dead-letters that record (error, traceback
  summary, original bytes) and the handler is re-run on the rest of the batch; rows already
  produced for earlier records are kept, rows of the failing record are dropped.
* An exception before the handler takes its first record or after it took its last, or a
  transient one (`ConnectionError`, `TimeoutError`, anything with `retryable = True`), fails the
  whole batch: `BatchFailedError` is raised and the platform retries per the stage's settings. With
  `partial=True` (Kinesis' ReportBatchItemFailures) the records known to be done are written and
  the result says where the platform must resume instead.
* Rows become one JSON-lines object at a key derived from the input's identity; dead letters go
  to one object per input in the dead-letter bucket, so a redelivery overwrites both.
* Rows must be strict JSON (no NaN or Infinity, no sets, bytes or other objects): a row that is
  not is an error of the record that produced it, which is dead-lettered with that error, so what
  lands in a bucket always parses and a redelivery writes the same bytes.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import pairwise
from typing import Any, NamedTuple

from pipeline.runtime import fastjson, keys
from pipeline.runtime.context import Context
from pipeline.runtime.errors import BatchFailedError, is_retryable
from pipeline.runtime.logs import JsonLogger
from pipeline.runtime.records import Record
from pipeline.runtime.store import ObjectStore

Handler = Callable[[Any, Context], Any]

# One encoder, built once: json.dumps with options builds a new encoder per call.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode  # dead letters: always writable
_TRACE_FRAMES = 5


def _strict_encoder() -> Callable[[Any, int], Sequence[str]]:
    """Output rows: no NaN or Infinity, nothing `default` would have to convert. Returns the function
    giving a row's JSON text in pieces (the C encoder's calling convention), to be joined.

    JSONEncoder.encode builds its C encoder on every call; building it once saves a third of the
    time per row. Without the circular-reference markers a cycle raises RecursionError instead.
    """
    encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without the C accelerator
        return lambda row, level: (encoder.encode(row),)
    return make(None, encoder.default, json.encoder.encode_basestring, None, ":", ",", False, False, False)  # type: ignore[no-any-return]


_encode_pieces = _strict_encoder()
_join = "".join


class RowNotJSONError(TypeError):
    """An output row that is not strict JSON; dead-letters the record that produced it."""


def encode_row(row: Any) -> bytes:
    """One output row as a strict JSON line (UTF-8, no newline), or RowNotJSONError."""
    try:
        return _join(_encode_pieces(row, 0)).encode("utf-8")
    except (TypeError, ValueError, RecursionError, UnicodeEncodeError) as exc:
        try:
            shown = repr(row)
        except Exception:  # a broken __repr__ must not hide the real problem
            shown = f"<{type(row).__name__}>"
        raise RowNotJSONError(f"output row is not JSON ({exc}): {shown[:200]}; rows must be made of dict, list, str, int, "
                              "float (not NaN or Infinity), bool and None") from None


class Settings(NamedTuple):
    """A stage's wiring, as the orchestrator puts it into every function's environment.

    (A NamedTuple, not a dataclass: `dataclasses` imports `inspect`, and cold starts pay for every import.)
    """

    stage: str
    trigger: str
    handler: str
    output_bucket: str  # "" for an HTTP stage that does not persist its answers
    output_prefix: str
    dead_letter_bucket: str
    dead_letter_prefix: str
    input_bucket: str = ""
    input_prefix: str = ""
    model_bucket: str = ""
    model_key: str = ""
    state_bucket: str = ""  # a stage over windows of accumulated outputs keeps its watermark and lease here
    state_prefix: str = ""
    window_lateness_s: float = 0.0  # how long after its last-modified time an object of the source may first be listed
    window_max_bytes: int = 0  # most bytes of source objects one window run reads (0: no cap); the rest waits for the next
    timeout_s: int = 0  # the stage's timeout: a window's lease outlives a run that the platform would have stopped

    @property
    def windowed(self) -> bool:
        """A schedule or HTTP stage with `from`: each run reads what its source wrote since the last one (`window.py`)."""
        return bool(self.input_bucket and self.state_bucket)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        needed = ["PIPELINE_STAGE", "PIPELINE_HANDLER", "PIPELINE_DEAD_LETTER_BUCKET"]
        if env.get("PIPELINE_TRIGGER") != "http":
            needed.append("PIPELINE_OUTPUT_BUCKET")
        missing = [k for k in needed if not env.get(k)]
        if missing:
            raise RuntimeError(f"the pipeline runtime needs {', '.join(missing)} in the environment (set by the deployer)")
        stage = env["PIPELINE_STAGE"]
        return cls(
            stage=stage,
            trigger=env.get("PIPELINE_TRIGGER", ""),
            handler=env["PIPELINE_HANDLER"],
            output_bucket=env.get("PIPELINE_OUTPUT_BUCKET", ""),
            output_prefix=env.get("PIPELINE_OUTPUT_PREFIX", f"{stage}/"),
            dead_letter_bucket=env["PIPELINE_DEAD_LETTER_BUCKET"],
            dead_letter_prefix=env.get("PIPELINE_DEAD_LETTER_PREFIX", f"{stage}/"),
            input_bucket=env.get("PIPELINE_INPUT_BUCKET", ""),
            input_prefix=env.get("PIPELINE_INPUT_PREFIX", ""),
            model_bucket=env.get("PIPELINE_MODEL_BUCKET", ""),
            model_key=env.get("PIPELINE_MODEL_KEY", ""),
            state_bucket=env.get("PIPELINE_STATE_BUCKET", ""),
            state_prefix=env.get("PIPELINE_STATE_PREFIX", ""),
            window_lateness_s=_number(env, "PIPELINE_WINDOW_LATENESS_S", float),
            window_max_bytes=_number(env, "PIPELINE_WINDOW_MAX_BYTES", int),
            timeout_s=_number(env, "PIPELINE_TIMEOUT_S", int),
        )


def _number(env: Mapping[str, str], name: str, kind: Callable[[str], Any]) -> Any:
    """A numeric setting (0 when unset); a value that is not a non-negative number is the deployer's error, said so."""
    text = env.get(name, "")
    if not text:
        return kind("0")
    try:
        value = kind(text)
    except ValueError:
        value = -1
    if not value >= 0:
        raise RuntimeError(f"{name}={text!r} in the environment is not a non-negative number (set by the deployer)")
    return value


_loaded: dict[str, Handler] = {}


def load_handler(handler: str, root: str | os.PathLike[str]) -> Handler:
    """Import `path/file.py:function` relative to the code root, once per process.

    The file's folder and the root go on sys.path so a handler can import its sibling modules.
    """
    file, _, name = handler.partition(":")
    path = os.path.realpath(os.path.join(root, file))
    cache_key = f"{path}:{name}"
    if cache_key in _loaded:
        return _loaded[cache_key]
    if not os.path.isfile(path):
        raise RuntimeError(f"handler file {file!r} not found under {root}")
    for folder in (os.path.realpath(root), os.path.dirname(path)):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    module_name = "pipeline_user_" + keys.safe(file).replace("=", "_").replace(".", "_").replace("-", "_")
    module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    function = getattr(module, name, None)
    if not callable(function):
        raise RuntimeError(f"{file} defines no function {name!r}")
    _loaded[cache_key] = function
    return function  # type: ignore[no-any-return]


class BatchResult:
    """What one invocation did; entry points turn it into their cloud's response."""

    def __init__(self, batch_id: str, items: int, error: str | None = None) -> None:
        self.batch_id = batch_id
        self.items = items
        self.rows = 0
        self.output_key: str | None = None
        self.dead_letters = 0
        self.dead_letter_key: str | None = None
        self.retry_from: int | None = None  # partial mode: index of the first item the platform must redeliver
        self.error = error
        self.poisoned: list[int] = []
        self.dead_entries: list[dict[str, Any]] = []  # what went to the dead-letter object (an HTTP answer over a window lists them)
        self.filtered = 0  # inputs the handler took and gave no row for (see `_Outcome.filtered`)

    def __repr__(self) -> str:
        return (f"BatchResult({self.batch_id!r}, items={self.items}, rows={self.rows}, output={self.output_key!r}, "
                f"dead_letters={self.dead_letters}, retry_from={self.retry_from})")


class _Feed:
    """The iterable handed to the handler: tracks which item it holds and which items produced rows.

    `current` is the index of the item the handler took last (None before the first and after the
    last), `marks[i]` the number of output rows when item i was taken, `productive` the last item
    after which rows appeared. That is all it takes to attribute an exception to one record and to
    know which rows are safe to keep.
    """

    __slots__ = ("current", "ended", "items", "marks", "out", "productive", "skip", "start")

    def __init__(self, items: Sequence[Any], start: int, skip: Mapping[int, Any], out: list[Any], marks: list[int], productive: int) -> None:
        self.items, self.start, self.skip, self.out, self.marks = items, start, skip, out, marks
        self.current: int | None = None
        self.productive = productive
        self.ended = -1  # the number of output rows when the handler had taken every item (-1: it did not)

    def __iter__(self) -> Iterator[Any]:
        items, out, marks, skip = self.items, self.out, self.marks, self.skip
        prev = -1
        for i in range(self.start, len(items)):
            count = len(out)
            if i in skip:
                marks[i] = count
                continue
            if prev >= 0 and count != marks[prev]:
                self.productive = prev
            marks[i] = count
            self.current = prev = i
            yield items[i]
        if prev >= 0 and len(out) != marks[prev]:
            self.productive = prev
        self.current = None
        self.ended = len(out)


class _Outcome:
    """Rows kept (encoded JSON lines), poison records, and `cut`: items [0, cut) are done, the rest must be redelivered.
    `filtered`: the items that gave no row (see `filtered`)."""

    __slots__ = ("cut", "error", "filtered", "poison", "rows")

    def __init__(self, rows: list[bytes], poison: dict[int, BaseException], cut: int, error: BaseException | None = None,
                 filtered: int = 0) -> None:
        self.rows, self.poison, self.cut, self.error, self.filtered = rows, poison, cut, error, filtered


def filtered(n: int, poison: Mapping[int, Any], marks: list[int], ended: int, rows: int) -> int:
    """How many of `n` items the handler filtered out: took, and gave no row for before it took the next
    (the rows of item i are those that appeared between its mark and the next item's). A handler that
    made rows only after it had taken every item (returned a list, or yielded a summary at the end)
    aggregated its input rather than filtering it: none then (nor when it stopped before the last item,
    which says nothing about the items it left)."""
    if ended < 0 or rows > ended:
        return 0
    bounds = [marks[i] for i in range(n) if i not in poison] if poison else marks[:n]
    bounds.append(ended)
    return sum(1 for a, b in pairwise(bounds) if a == b)


_HERE = os.path.dirname(os.path.abspath(__file__))


def _trace(exc: BaseException) -> list[str]:
    """The innermost frames, without the runtime's own: the user's code is what failed."""
    import traceback  # only on failures: keeps cold starts short

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if os.path.dirname(os.path.abspath(f.filename)) != _HERE][-_TRACE_FRAMES:]
    return [f"{os.path.basename(f.filename)}:{f.lineno} in {f.name}" for f in frames]


def error_info(exc: BaseException) -> dict[str, Any]:
    carried = getattr(exc, "error_info", None)  # an error described in another process (the local runner's worker)
    if isinstance(carried, dict):
        return carried
    return {"type": type(exc).__name__, "message": str(exc), "traceback": _trace(exc)}


class StageRunner:
    """Runs one stage's handler on inputs and writes outputs and dead letters to an ObjectStore."""

    def __init__(self, settings: Settings, handler: Handler, store: ObjectStore, context: Context, logger: JsonLogger | None = None) -> None:
        self.settings = settings
        self.handler = handler
        self.store = store
        self.context = context
        self.logger = logger or context.logger
        code = getattr(handler, "__code__", None)
        self.is_generator = bool(code is not None and code.co_flags & 0x20)  # CO_GENERATOR, without importing inspect

    # -- the core: per-record isolation ---------------------------------------------------------

    def apply(self, items: Sequence[Any], partial: bool = False) -> _Outcome:
        """Call the handler on `items`, re-running it past each poison record; see the module doc.

        Rows are encoded as they arrive, so a row that is not JSON fails like an exception raised
        while the handler holds the record that produced it.
        """
        n = len(items)
        out: list[bytes] = []
        marks = [0] * (n + 1)
        poison: dict[int, BaseException] = {}
        start, productive = 0, -1
        handler, context, encode = self.handler, self.context, encode_row
        while True:
            feed = _Feed(items, start, poison, out, marks, productive)
            base = len(out)
            try:
                result = handler(feed, context)
                if result is not None:
                    if isinstance(result, (dict, str, bytes)):
                        raise TypeError(f"handler returned a {type(result).__name__}; return or yield an iterable of rows")
                    if isinstance(result, list) and not self.is_generator:
                        out.extend([encode(row) for row in result])
                    else:
                        append = out.append
                        for row in result:
                            append(encode(row))
                return _Outcome(out, poison, n, filtered=filtered(n, poison, marks, feed.ended, len(out)))
            except Exception as exc:
                current = feed.current
                if current is None and isinstance(exc, RowNotJSONError):
                    del out[base:]
                    return self._isolate(items, start, poison, out, exc)
                if current is None or is_retryable(exc):
                    cut = feed.productive + 1 if partial else 0
                    if cut <= 0:
                        raise BatchFailedError(self.settings.stage, "", exc) from exc
                    del out[marks[cut]:]
                    return _Outcome(out, {i: e for i, e in poison.items() if i < cut}, cut, exc)
                poison[current] = exc
                del out[marks[current]:]
                productive = feed.productive
                start = productive + 1
                if start == 0:
                    out.clear()

    def _isolate(self, items: Sequence[Any], start: int, poison: dict[int, BaseException], out: list[bytes],
                 error: RowNotJSONError) -> _Outcome:
        """A row that is not JSON came after the handler took its last record (a returned list, or rows
        yielded at the end): run the handler on each remaining record alone to find the one that made it."""
        left = [i for i in range(start, len(items)) if i not in poison]
        if not left:  # no record to blame (a schedule run): the invocation fails
            raise BatchFailedError(self.settings.stage, "", error) from error
        if len(left) == 1:
            poison[left[0]] = error
            return _Outcome(out, poison, len(items))
        for i in left:
            alone = self.apply([items[i]])
            out.extend(alone.rows)
            if alone.poison:
                poison[i] = alone.poison[0]
        return _Outcome(out, poison, len(items))

    # -- writing -----------------------------------------------------------------------------------

    def _write(self, result: BatchResult, lines: list[bytes], dead: list[dict[str, Any]]) -> None:
        settings = self.settings
        if dead:
            key = keys.dead_letter_key(settings.dead_letter_prefix, result.batch_id)
            body = "".join(_encode(entry) + "\n" for entry in dead).encode("utf-8")
            self.store.put(settings.dead_letter_bucket, key, body)
            result.dead_letters, result.dead_letter_key, result.dead_entries = len(dead), key, dead
        if lines and settings.output_bucket:  # an HTTP stage without persist answers with its rows instead
            key = keys.output_key(settings.output_prefix, result.batch_id)
            lines.append(b"")
            self.store.put(settings.output_bucket, key, b"\n".join(lines))
            lines.pop()
            result.rows, result.output_key = len(lines), key

    def _dead_entry(self, batch_id: str, index: int, raw: bytes, identity: dict[str, Any], exc: BaseException | None,
                    reason: str = "handler raised") -> dict[str, Any]:
        return {
            "pipeline": self.context.pipeline, "stage": self.settings.stage, "batch": batch_id, "index": index, "reason": reason,
            "input": identity, "error": error_info(exc) if exc is not None else None,
            "data_base64": base64.b64encode(raw).decode("ascii"),
        }

    def _finish(self, batch_id: str, n: int, outcome: _Outcome, raw_of: Callable[[int], bytes],
                identity_of: Callable[[int], dict[str, Any]], extra_dead: list[dict[str, Any]] | None = None) -> BatchResult:
        result = BatchResult(batch_id, n)
        dead = list(extra_dead or [])
        for index in sorted(outcome.poison):
            dead.append(self._dead_entry(batch_id, index, raw_of(index), identity_of(index), outcome.poison[index]))
        result.poisoned = sorted(outcome.poison)
        result.filtered = outcome.filtered
        self._write(result, outcome.rows, dead)
        if outcome.cut < n:
            result.retry_from = outcome.cut
            result.error = f"{type(outcome.error).__name__}: {outcome.error}"
        self.logger.info("batch done", batch=batch_id, items=n, rows=result.rows, dead_letters=result.dead_letters,
                         output=result.output_key, retry_from=result.retry_from)
        return result

    # -- the three triggers ------------------------------------------------------------------------

    def run_stream(self, records: Sequence[Record], batch_id: str, partial: bool = False,
                   batch_id_for: Callable[[int], str] | None = None) -> BatchResult:
        """One batch of stream records (one shard/partition).

        With `partial`, a transient failure after some records are done writes those and reports
        where to resume; `batch_id_for(cut)` then names the output after the records it holds, so
        the resumed batch (which starts at `cut`) gets a key of its own and nothing overlaps.
        """
        try:
            outcome = self.apply(records, partial)
        except BatchFailedError as exc:
            self.logger.log("ERROR", "batch failed; it will be retried", batch=batch_id, exc_info=exc.cause)
            raise BatchFailedError(self.settings.stage, batch_id, exc.cause) from exc.cause
        if outcome.cut < len(records) and batch_id_for is not None:
            batch_id = batch_id_for(outcome.cut)
        return self._finish(batch_id, len(records), outcome, lambda i: records[i].data, lambda i: records[i].describe())

    @staticmethod
    def parse_object(data: bytes, encoded_rows: bool = False) -> tuple[list[Any], list[bytes], dict[int, BaseException]]:
        """JSON lines (gzip-compressed or not) -> rows; a line that is not JSON is a poison record of its own.

        UTF-8 (what every stage writes) is decoded once for the whole object: parsing str lines
        skips json's per-call encoding detection. Anything else is parsed line by line as bytes.
        `encoded_rows`: the object is known to hold one JSON value per line, as `encode_row` wrote
        it (a stage's output, where the local runner had a worker write it): then the lines are
        parsed as one JSON array, in one call (line by line again if that fails).
        """
        data = decompress(data)
        rows: list[Any] = []
        raws: list[bytes] = []
        bad: dict[int, BaseException] = {}
        loads = fastjson.loads
        raw_lines = data.split(b"\n")
        try:
            lines: list[Any] = data.decode("utf-8").split("\n")  # "\n" is one byte in UTF-8: the same lines as raw_lines
        except UnicodeDecodeError:
            lines = raw_lines
        if encoded_rows and lines and isinstance(lines[0], str):
            whole = lines[:-1] if lines[-1] == "" else lines
            raws = raw_lines[:len(whole)]
            if all(whole):
                try:
                    rows = json.loads("[" + ",".join(whole) + "]")
                except (ValueError, RecursionError):
                    rows = []
                if len(rows) == len(whole):
                    return rows, raws, bad
            rows, raws = [], []
        for line, raw in zip(lines, raw_lines, strict=True):
            if not line.strip():
                continue
            try:
                rows.append(loads(line))
            except (ValueError, RecursionError) as exc:  # (a line nested deeper than the parser goes is not JSON it can read)
                bad[len(raws)] = exc
                rows.append(None)
            raws.append(raw)
        return rows, raws, bad

    def run_object(self, bucket: str, key: str, generation: str | None = None, data: bytes | None = None,
                   encoded_rows: bool = False) -> BatchResult:
        """One new object of the source stage: read it (unless its bytes are given), run the handler on its rows.
        `encoded_rows`: see `parse_object`."""
        batch_id = keys.object_batch(key, self.settings.input_prefix)
        source = {"bucket": bucket, "key": key, "generation": generation}
        try:
            rows, raws, bad = self.parse_object(self.store.get(bucket, key) if data is None else data, encoded_rows)
        except Exception as exc:  # reading failed: retry the event
            self.logger.log("ERROR", "could not read the input object; it will be retried", batch=batch_id, source=source, exc_info=exc)
            raise BatchFailedError(self.settings.stage, batch_id, exc) from exc
        good = [i for i in range(len(rows)) if i not in bad]
        items = [rows[i] for i in good] if bad else rows
        try:
            outcome = self.apply(items)
        except BatchFailedError as exc:
            self.logger.log("ERROR", "object failed; it will be retried", batch=batch_id, source=source, exc_info=exc.cause)
            raise BatchFailedError(self.settings.stage, batch_id, exc.cause) from exc.cause

        extra = [self._dead_entry(batch_id, i, raws[i], {**source, "line": i}, exc, "not JSON") for i, exc in sorted(bad.items())]
        return self._finish(batch_id, len(raws), outcome, lambda i: raws[good[i]], lambda i: {**source, "line": good[i]}, extra)

    def run_schedule(self, tick: str) -> BatchResult:
        """One scheduled run without an input (no `from`), named by its scheduled time (`tick`, as
        `entry.tick_name` gives it): the handler gets no rows, and a redelivered tick overwrites its output.
        A schedule with `from` runs over a window instead (`window.run_window`)."""
        batch_id = keys.schedule_batch(tick)
        try:
            outcome = self.apply([])
        except BatchFailedError as exc:
            self.logger.log("ERROR", "scheduled run failed; it will be retried", batch=batch_id, exc_info=exc.cause)
            raise BatchFailedError(self.settings.stage, batch_id, exc.cause) from exc.cause
        return self._finish(batch_id, 0, outcome, lambda i: b"", lambda i: {})

    def run_objects(self, batch_id: str, bucket: str, objects: Sequence[tuple[str, bytes]]) -> BatchResult:
        """The handler over the rows of several objects at once (a window's), in order, as one invocation
        named `batch_id`: one output object, one dead-letter object. A line that is not JSON is dead-lettered alone."""
        rows, raws, identities, bad = self.object_rows(bucket, objects)
        good = [i for i in range(len(rows)) if i not in bad]
        try:
            outcome = self.apply([rows[i] for i in good] if bad else rows)
        except BatchFailedError as exc:
            self.logger.log("ERROR", "run over the window failed; it will be retried", batch=batch_id, exc_info=exc.cause)
            raise BatchFailedError(self.settings.stage, batch_id, exc.cause) from exc.cause
        extra = [self._dead_entry(batch_id, i, raws[i], identities[i], exc, "not JSON") for i, exc in sorted(bad.items())]
        return self._finish(batch_id, len(raws), outcome, lambda i: raws[good[i]], lambda i: identities[good[i]], extra)

    @staticmethod
    def object_rows(bucket: str, objects: Sequence[tuple[str, bytes]]
                    ) -> tuple[list[Any], list[bytes], list[dict[str, Any]], dict[int, BaseException]]:
        """Rows, raw lines, identities ({bucket, key, line}) and lines that are not JSON (by index) of several objects."""
        rows: list[Any] = []
        raws: list[bytes] = []
        identities: list[dict[str, Any]] = []
        bad: dict[int, BaseException] = {}
        for key, data in objects:
            parsed, lines, errors = StageRunner.parse_object(data)
            for i, (row, raw) in enumerate(zip(parsed, lines, strict=True)):
                if i in errors:
                    bad[len(rows)] = errors[i]
                rows.append(row)
                raws.append(raw)
                identities.append({"bucket": bucket, "key": key, "line": i})
        return rows, raws, identities, bad

    def run_http(self, body: bytes, content_type: str = "") -> tuple[int, dict[str, Any]]:
        """One HTTP request: rows in (a JSON array, or JSON lines), the handler's rows out.

        Returns (status, JSON body). 200 with `{"rows": [...], "failed": [...]}` (rows that raised are
        dead-lettered and listed by index); 400 for a body that is not rows; 500 when the request failed
        as a whole (the caller may retry). With `persist`, the rows are also written, keyed by the
        body's hash, so a retried request overwrites its own output.
        """
        import hashlib

        try:
            rows = http_rows(body, content_type)
        except ValueError as exc:
            return 400, {"error": str(exc)}
        batch_id = keys.request_batch(hashlib.sha256(body).hexdigest()[:32])
        try:
            outcome = self.apply(rows)
        except BatchFailedError as exc:
            self.logger.log("ERROR", "request failed", batch=batch_id, exc_info=exc.cause)
            return 500, {"error": f"{type(exc.cause).__name__}: {exc.cause}", "retryable": True}
        raws = [_encode(row).encode("utf-8") for row in rows]
        result = self._finish(batch_id, len(rows), outcome, lambda i: raws[i], lambda i: {"request": batch_id, "row": i})
        failed = [{"index": i, **error_info(exc)} for i, exc in sorted(outcome.poison.items())]
        rows_out = [json.loads(line) for line in outcome.rows]  # the strictly encoded rows, as the caller receives them
        return 200, {"rows": rows_out, "failed": failed, "output": result.output_key, "dead_letters": result.dead_letter_key}

    def dead_letter_all(self, batch_id: str, raws: Sequence[bytes], identities: Sequence[dict[str, Any]], exc: BaseException) -> BatchResult:
        """Retries exhausted: every item of the input goes to the dead-letter bucket with the batch's error."""
        dead = [self._dead_entry(batch_id, i, raw, identities[i], exc, "retries exhausted") for i, raw in enumerate(raws)]
        if not dead:
            dead = [self._dead_entry(batch_id, 0, b"", {}, exc, "retries exhausted")]
        result = BatchResult(batch_id, len(raws), error=f"{type(exc).__name__}: {exc}")
        self._write(result, [], dead)
        self.logger.error("retries exhausted; input dead-lettered", batch=batch_id, dead_letters=result.dead_letters)
        return result


MAX_DECOMPRESSED_BYTES = 2 * 1024**3  # an uploaded .gz that expands beyond this is refused, not loaded


def decompress(data: bytes) -> bytes:
    """Gzip-compressed input (by its magic number, whatever the file is called) -> bytes; anything else as is."""
    if not data.startswith(b"\x1f\x8b"):
        return data
    import gzip
    import zlib

    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = inflater.decompress(data, MAX_DECOMPRESSED_BYTES)
    if inflater.unconsumed_tail:
        raise ValueError(f"the gzip input expands beyond {MAX_DECOMPRESSED_BYTES:,} bytes")
    if not inflater.eof:
        raise gzip.BadGzipFile("truncated gzip input")
    return out


NESTED_TOO_DEEPLY = "is nested too deeply to be read (each row may nest a few hundred levels at most)"


def http_rows(body: bytes, content_type: str = "") -> list[Any]:
    """An HTTP request body as rows: a JSON array of rows, or JSON lines (one row per line). Anything else
    (not JSON, not UTF-8, broken gzip, nesting beyond the parser's depth) is a ValueError: the caller's
    request is bad (400), not the handler's failure."""
    import zlib

    try:
        text = decompress(body).decode("utf-8", errors="strict").strip()
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"the request body is not valid gzip: {exc}") from None
    if not text:
        raise ValueError("the request body is empty; send a JSON array of rows or JSON lines")
    if text.startswith("["):
        try:
            rows = json.loads(text)
        except RecursionError:
            raise ValueError(f"the request body {NESTED_TOO_DEEPLY}") from None
        except ValueError as exc:
            raise ValueError(f"the request body is not a JSON array: {exc}") from None
        if not isinstance(rows, list):
            raise ValueError("the request body must be a JSON array of rows")
        return rows
    result = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                result.append(json.loads(line))
            except RecursionError:
                raise ValueError(f"line {number} of the request body {NESTED_TOO_DEEPLY}") from None
            except ValueError as exc:
                raise ValueError(f"line {number} of the request body is not JSON: {exc}") from None
    return result


def make_runner(settings: Settings, store: ObjectStore, root: str | os.PathLike[str], env: Mapping[str, str] | None = None,
                model_path: str | None = None, logger: JsonLogger | None = None) -> StageRunner:
    """Load the handler and build its context (model downloaded lazily from the artifact bucket)."""
    from pipeline.runtime.context import model_loader_from_env

    env = os.environ if env is None else env
    log = logger or JsonLogger(level=env.get("PIPELINE_LOG_LEVEL", "INFO"), pipeline=env.get("PIPELINE_NAME", ""), stage=settings.stage)
    loader = None if model_path else model_loader_from_env(store.get, env)
    context = Context(settings.stage, logger=log, env=env, model_path=model_path, model_loader=loader, trigger=settings.trigger)
    return StageRunner(settings, load_handler(settings.handler, root), store, context, log)
