"""`pipeline serve`: a local HTTP server in front of the same runner, store and journal as `pipeline run`.

    GET  /   (or /health)     what is served: the pipeline, its stages and these routes
    POST /stream              records into the local stream (JSON lines, or a JSON array of records):
                              kept, archived raw, batched like `pipeline run` and processed before the answer
    PUT  /uploads/<name>      a file (JSON lines, optionally gzip) into the landing bucket -> the object
                              stages that read it (POST works too)
    POST /stages/<name>       an HTTP stage: rows in (JSON array or JSON lines), the handler's rows out,
                              with the runtime's status (200, 400 not rows, 500 failed as a whole); a stage
                              with `from` takes no body and runs over what its source wrote since its last run
    POST /tick                every schedule stage once now (also every `--tick` seconds)

The HTTP threads only read requests and write answers (`serve_http.py` decides who is answered and
bounds what a connection may hold). The work runs on the main thread, one request at a time, through a
queue: the runner (workers, journal, queued writer) stays single-threaded as in `pipeline run`, and
Ctrl-C lands where the work is, so a stop in the middle of a request is a stop in the middle of a run,
which the journal resumes when the server starts again.

An answer says exactly what was kept. Records and uploads are kept in one step a stop cannot cut in two
(`LocalRun.add_records`); a stop before it answers 503 (nothing kept: send again), a stop after it 202
(kept, processed when the server starts again: do not send again). A sender that got no answer at all
(the server was killed) sends again with the same `Idempotency-Key` header, and what was kept under it
is not kept twice.
Standard library only (`http.server`).
"""

from __future__ import annotations

import json
import queue
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

from pipeline.local.errors import LocalUsageError
from pipeline.local.inputs import check_upload_name
from pipeline.local.runner import LocalRun, Outcome
from pipeline.local.serve_http import Budget, GuardedHandler, GuardedServer, HostPolicy, connection_limit, return_large_blocks
from pipeline.local.stages import LocalRunError
from pipeline.local.text import printable

DEFAULT_MAX_BODY = 64 * 1024 * 1024
DRAIN_LIMIT = 64 * 1024 * 1024  # a body this much over the limit is still read before the 413; a bigger one is cut off
KEY_HEADER = "Idempotency-Key"
STOP_PATIENCE_S = 5.0  # on the way out, how long answers still being written may take
Answer = tuple[int, dict[str, Any]]


class BodyError(ValueError):
    """A request body that cannot be taken: the status to answer with and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def stream_records(body: bytes, limit: int) -> list[bytes]:
    """A POST /stream body as records: a JSON array (each element one record, re-encoded compactly) or
    JSON lines (each non-blank line one record, as sent: a line that is not JSON is a record too, which
    the stream stage dead-letters as it would in the cloud). Gzip bodies are inflated (within `limit`)."""
    data = inflate(body, limit)
    text = data.strip()
    if text.startswith(b"["):
        try:
            items = json.loads(text)
            if isinstance(items, list):
                return [json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode("utf-8") for item in items]
        except RecursionError:
            raise BodyError(400, "the body is a JSON array nested too deeply to be read; send records as JSON lines "
                                 "(one record per line) or an array of records nested less deeply") from None
        except ValueError:
            pass
    records = [line.rstrip(b"\r") for line in data.split(b"\n")]
    return [line for line in records if line.strip()]


def inflate(body: bytes, limit: int) -> bytes:
    """Gzip-compressed bytes (by their magic number) inflated, refusing more than `limit` bytes; anything else as is."""
    if not body.startswith(b"\x1f\x8b"):
        return body
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BodyError(400, f"the body is not valid gzip: {exc}") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise BodyError(413, f"the body inflates to more than {limit:,} bytes (--max-body-mb)")
    if not inflater.eof:
        raise BodyError(400, "the gzip body is truncated")
    return data


def counts(outcome: Outcome) -> dict[str, Any]:
    """What a request did, for its answer: per stage counts, the raw objects archived, dead letters, objects written."""
    stages = {name: values for name, values in outcome.stats.items() if not name.startswith("@")}
    return {"stages": stages, "raw_objects": outcome.stats.get("@raw", {}).get("invocations", 0),
            "dead_letters": sum(v.get("dead_letters", 0) for v in stages.values()), "objects": outcome.objects}


def idempotency_key(value: str | None) -> str | None:
    """The `Idempotency-Key` header: 1-255 visible ASCII characters (None when not sent)."""
    if value is None:
        return None
    if not 1 <= len(value) <= 255 or not all("!" <= c <= "~" for c in value):
        raise BodyError(400, f"the {KEY_HEADER} header must be 1-255 visible ASCII characters (no spaces), e.g. a UUID")
    return value


class _Job:
    """One request's work, done on the main thread; the HTTP thread waits for its answer. `answer` is what
    the sender is told if the server stops first: nothing kept, until the work says otherwise (`kept`)."""

    def __init__(self, work: Callable[[_Job], Answer], unkept: Answer) -> None:
        self.work = work
        self.answer = unkept
        self.started = self.kept = False
        self.done = threading.Event()

    def keep(self, answer: Answer) -> None:
        """The request's input is kept for good: if the server stops before the work is done, say so."""
        self.answer, self.kept = answer, True


class LocalServer:
    """The server: binds at once (a port in use fails before the store is taken), then `serve()` until stopped."""

    def __init__(self, session: LocalRun, host: str = "127.0.0.1", port: int = 8080, max_body: int = DEFAULT_MAX_BODY,
                 tick_s: float | None = None, on_request: Callable[[str], None] | None = None, allow_hosts: tuple[str, ...] = ()) -> None:
        self.session = session
        self.spec = session.spec
        self.max_body = max_body
        self.tick_s = tick_s
        self.on_request = on_request or (lambda line: None)
        self.jobs: queue.Queue[_Job] = queue.Queue()
        self.handled = 0
        self.httpd = GuardedServer((host, port), _handler(self), HostPolicy((host, *allow_hosts)), Budget(2 * max_body), self.on_request)
        self.stopping = self.httpd.stopping

    @property
    def url(self) -> str:
        address = self.httpd.server_address
        host = address[0].decode() if isinstance(address[0], bytes) else str(address[0])
        port = address[1]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}"

    def routes(self) -> list[dict[str, str]]:
        routes = [{"method": "GET", "path": "/", "does": "this description (also /health)"}]
        if self.spec.stream is not None:
            routes.append({"method": "POST", "path": "/stream", "does": "records (JSON lines or a JSON array) into the local stream"})
        if self.spec.uploads is not None:
            routes.append({"method": "PUT", "path": "/uploads/<file name>", "does": "a file into the landing bucket (POST works too)"})
        for stage in self.spec.stages:
            if stage.trigger.http and stage.trigger.window_source:
                routes.append({"method": "POST", "path": f"/stages/{stage.name}",
                               "does": f"no body: {stage.name} over what {stage.trigger.window_source} wrote since its last run"})
            elif stage.trigger.http:
                routes.append({"method": "POST", "path": f"/stages/{stage.name}", "does": f"rows in, {stage.name}'s rows out"})
        if any(s.trigger.schedule for s in self.spec.stages):
            routes.append({"method": "POST", "path": "/tick", "does": "every schedule stage once now"})
        return routes

    def describe(self) -> dict[str, Any]:
        return {"pipeline": self.spec.name, "stack": self.session.loaded.stack, "store": str(self.session.root),
                "stages": [{"name": s.name, "trigger": s.trigger.kind} for s in self.spec.stages], "routes": self.routes()}

    # -- the main thread -------------------------------------------------------------------------------

    def serve(self) -> None:
        """Answer requests until Ctrl-C or SIGTERM (a KeyboardInterrupt in this thread), then stop the HTTP
        side: queued requests are answered 503 (nothing of them was kept), answers being written get a few
        seconds to reach their senders, and the caller closes the session."""
        self.httpd.max_connections = connection_limit()  # (the workers' descriptors are open by now)
        return_large_blocks()
        listener = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="pipeline-http", daemon=True)
        listener.start()
        next_tick = time.monotonic() + self.tick_s if self.tick_s else None
        try:
            while True:
                wait = 0.5 if next_tick is None else max(0.0, min(0.5, next_tick - time.monotonic()))
                try:
                    job = self.jobs.get(timeout=wait)
                except queue.Empty:
                    if next_tick is not None and time.monotonic() >= next_tick:
                        name, outcome = self.session.tick()
                        self.on_request(f"tick {name}: {_said(outcome)}")
                        next_tick = time.monotonic() + (self.tick_s or 0)
                    continue
                self._do(job)
        finally:
            self.stopping.set()
            while True:
                try:
                    self.jobs.get_nowait().done.set()
                except queue.Empty:
                    break
            self.httpd.shutdown()
            self.httpd.close_all(STOP_PATIENCE_S)
            self.httpd.server_close()

    def _do(self, job: _Job) -> None:
        job.started = True
        try:
            job.answer = job.work(job)
            self.handled += 1
        except BodyError as exc:
            job.answer = (exc.status, {"error": str(exc)})
        except LocalUsageError as exc:
            job.answer = (400, {"error": str(exc)})
        except LocalRunError as exc:  # the machine got in the way (disk full...): nothing more can be written
            if not job.kept:
                job.answer = (503, {"error": str(exc), "kept": False})
            raise
        finally:
            job.done.set()

    def submit(self, work: Callable[[_Job], Answer], unkept: Answer) -> Answer:
        """From an HTTP thread: queue the work and wait for its answer (`unkept` when the server stops before it began)."""
        job = _Job(work, unkept)
        if self.stopping.is_set():
            return job.answer
        self.jobs.put(job)
        while not job.done.wait(0.5):
            if self.stopping.is_set() and not job.started:
                return job.answer
        return job.answer

    # -- the work of each route ------------------------------------------------------------------------

    def post_stream(self, body: bytes, key: str | None) -> Answer:
        def work(job: _Job) -> Answer:
            records = stream_records(body, self.max_body)
            if not records:
                return 400, {"error": "no records in the body: send JSON lines (one record per line) or a JSON array of records"}
            first, last = self.session.next_line, self.session.next_line + len(records) - 1
            kept = {"records": len(records), "lines": [first, last], "kept": True}
            outcome = self.session.add_records(records, key, lambda: job.keep((202, {
                **kept, "processed": False, "message": "the server stopped before processing these records: they are kept and "
                                                       "processed when it starts again; do not send them again"})))
            if outcome.repeated:
                return 200, _repeated(self.session.keys_kept[key or ""])
            return 200, {**kept, **counts(outcome)}

        return self.submit(work, (503, {"error": "the server stopped before keeping these records: nothing of this request "
                                                 "is kept; send it again", "kept": False}))

    def put_upload(self, name: str, body: bytes, key: str | None) -> Answer:
        assert self.spec.uploads is not None
        landed = f"{self.spec.uploads.name}/{self.spec.uploads.prefix}{name}"

        def work(job: _Job) -> Answer:
            kept = {"upload": landed, "bytes": len(body), "kept": True}
            outcome = self.session.add_upload(name, body, key, lambda: job.keep((202, {
                **kept, "processed": False, "message": "the server stopped before processing this file: it is kept and processed "
                                                       "when it starts again; do not send it again"})))
            if outcome.repeated:
                return 200, _repeated(self.session.keys_kept[key or ""])
            return 200, {**kept, **counts(outcome)}

        return self.submit(work, (503, {"error": "the server stopped before keeping this file: it is not kept; send it again",
                                        "kept": False}))

    def post_stage(self, name: str, body: bytes, content_type: str) -> Answer:
        stage = self.spec.stage(name)

        def work(job: _Job) -> Answer:
            inflate(body, self.max_body)  # a gzip body is checked against the limit here; the runtime inflates it again
            status, answer, _ = self.session.request(stage, body, content_type)
            return status, answer

        return self.submit(work, (503, {"error": "the server stopped before answering this request; send it again "
                                                 "(a persisted answer is written at the same key)"}))

    def post_tick(self) -> Answer:
        def work(job: _Job) -> Answer:
            name, outcome = self.session.tick()
            return 200, {"tick": name, **counts(outcome)}

        return self.submit(work, (503, {"error": "the server stopped during this tick: a tick it had begun is finished when it "
                                                 "starts again, and POST /tick then reads nothing twice"}))


def _repeated(what: Any) -> dict[str, Any]:
    """The answer to a request whose idempotency key was kept before: what it kept, and that nothing was kept again."""
    kept = {"lines": list(what)} if isinstance(what, tuple) else dict(what)
    return {**kept, "kept": True, "repeated": True,
            "message": f"a request with this {KEY_HEADER} was kept before (and is processed); nothing was kept again"}


def _said(outcome: Outcome) -> str:
    parts = []
    for name, values in outcome.stats.items():
        if not name.startswith("@"):
            parts.append(f"{name} {values.get('rows', 0):,} rows" + (f", {values['dead_letters']:,} dead letters" if values.get("dead_letters") else ""))
    return "; ".join(parts) or "nothing to do"


def _path(target: str) -> str:
    """The path of a request target (a target urlsplit cannot read is its own path: it matches no route)."""
    try:
        return urlsplit(target).path
    except ValueError:
        return target


def _handler(server: LocalServer) -> type[GuardedHandler]:
    """The request handler class, bound to `server` (http.server builds one instance per request)."""

    class Handler(GuardedHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server calls do_<METHOD>
            self._unread()
            path = _path(self.path).rstrip("/") or "/"
            if path in ("/", "/health"):
                self._answer(200, server.describe())
            else:
                self._not_found(path)

        def do_POST(self) -> None:  # noqa: N802
            self._route("POST")

        def do_PUT(self) -> None:  # noqa: N802
            self._route("PUT")

        def _route(self, method: str) -> None:
            path = _path(self.path)
            spec = server.spec
            try:
                if path == "/stream" and spec.stream is not None and method == "POST":
                    key = idempotency_key(self.headers.get(KEY_HEADER))
                    self._with_body(lambda body: server.post_stream(body, key))
                elif path.startswith("/uploads/") and spec.uploads is not None:
                    key = idempotency_key(self.headers.get(KEY_HEADER))
                    name = unquote(path[len("/uploads/"):])
                    check_upload_name(name)
                    self._with_body(lambda body: server.put_upload(name, body, key))
                elif path.startswith("/stages/") and method == "POST":
                    name = unquote(path[len("/stages/"):])
                    stage = next((s for s in spec.stages if s.name == name), None)
                    if stage is None:
                        self._not_found(path, f"no stage named {name!r}")
                    elif not stage.trigger.http:
                        self._unread()
                        self._answer(405, {"error": f"stage {name!r} is triggered by {_trigger_text(stage.trigger.kind, spec)}, not by "
                                                    "HTTP requests", "routes": server.routes()}, allow="")
                    else:
                        content_type = self.headers.get("Content-Type", "")
                        # a stage over a window takes no rows: no body is fine
                        self._with_body(lambda body: server.post_stage(name, body, content_type), optional=bool(stage.trigger.window_source))
                elif path == "/tick" and method == "POST" and any(s.trigger.schedule for s in spec.stages):
                    self._with_body(lambda body: server.post_tick(), optional=True)
                else:
                    self._not_found(path)
            except BodyError as exc:
                self.close_connection = True  # what is left of the body is not read
                self._answer(exc.status, {"error": str(exc)})
            except LocalUsageError as exc:  # an upload's name that cannot be one
                self.close_connection = True
                self._answer(400, {"error": str(exc)})

        def _with_body(self, action: Callable[[bytes], Answer], optional: bool = False) -> None:
            """Read the body (within the limit and the budget), do `action` with it, answer."""
            size = self._length(optional)
            with self.body(size) as data:
                if data is None:
                    self.close_connection = True
                    self._answer(503, {"error": "the server is stopping: nothing of this request is kept; send it again", "kept": False})
                    return
                status, answer = action(data)
            self._answer(status, answer, detail=answer.get("error") or _request_said(answer))

        def _length(self, optional: bool) -> int:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                raise BodyError(411, "send the body with a Content-Length (chunked transfer encoding is not supported)")
            length = self.headers.get("Content-Length")
            if length is None:
                if optional:
                    return 0
                raise BodyError(411, "send the body with a Content-Length")
            try:
                size = int(length)
                if size < 0:
                    raise ValueError
            except ValueError:
                raise BodyError(400, f"Content-Length {printable(length, 40)!r} is not a size") from None
            if size > server.max_body:
                if size <= server.max_body + DRAIN_LIMIT:  # read it (and drop it), so the client can read the answer
                    self.drain(size)
                raise BodyError(413, f"the body is {size:,} bytes; this server takes at most {server.max_body:,} (--max-body-mb)")
            return size

        def _unread(self) -> None:
            """A body this route does not read: the connection cannot carry another request after it."""
            if self.headers.get("Content-Length", "0") != "0" or self.headers.get("Transfer-Encoding"):
                self.close_connection = True

        def _not_found(self, path: str, message: str | None = None) -> None:
            self._unread()
            self._answer(404, {"error": message or f"nothing is served at {path}", "routes": server.routes()})

    return Handler


def _request_said(body: dict[str, Any]) -> str:
    if body.get("repeated"):
        return "repeated: nothing kept again"
    if "stages" in body and isinstance(body["stages"], dict):
        parts = [f"{name} {v.get('rows', 0):,} rows" + (f", {v['dead_letters']:,} dead letters" if v.get("dead_letters") else "")
                 for name, v in body["stages"].items()]
        return "; ".join(parts)
    if "rows" in body and isinstance(body["rows"], list):
        return f"{len(body['rows']):,} rows" + (f", {len(body.get('failed') or []):,} failed" if body.get("failed") else "")
    return str(body.get("message") or "")


def _trigger_text(kind: str, spec: Any) -> str:
    return {"stream": "the stream (POST records to /stream)" if spec.stream is not None else "the stream",
            "objects": "new objects (PUT files to /uploads/<name>, or feed the stage it reads)",
            "schedule": "its schedule (POST /tick runs it now)"}.get(kind, kind)
