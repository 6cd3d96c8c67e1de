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

The HTTP threads only read requests and write answers. The work runs on the main thread, one
request at a time, through a queue: the runner (workers, journal, queued writer) stays
single-threaded as in `pipeline run`, and Ctrl-C lands where the work is, so a stop in the middle
of a request is a stop in the middle of a run, which the journal resumes when the server starts again.
Standard library only (`http.server`).
"""

from __future__ import annotations

import json
import queue
import threading
import time
import zlib
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from pipeline.runtime.local import LocalRun, LocalRunError, LocalUsageError, Outcome, check_upload_name

DEFAULT_MAX_BODY = 64 * 1024 * 1024
DRAIN_LIMIT = 64 * 1024 * 1024  # a body this much over the limit is still read before the 413; a bigger one is cut off
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
        except ValueError:
            items = None
        if isinstance(items, list):
            return [json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode("utf-8") for item in items]
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


class _Job:
    """One request's work, done on the main thread; the HTTP thread waits for its answer."""

    def __init__(self, work: Callable[[], Answer]) -> None:
        self.work = work
        self.done = threading.Event()
        self.answer: Answer = (503, {"error": "the server is stopping; send the request again when it runs"})


class LocalServer:
    """The server: binds at once (a port in use fails before the store is taken), then `serve()` until stopped."""

    def __init__(self, session: LocalRun, host: str = "127.0.0.1", port: int = 8080, max_body: int = DEFAULT_MAX_BODY,
                 tick_s: float | None = None, on_request: Callable[[str], None] | None = None) -> None:
        self.session = session
        self.spec = session.spec
        self.max_body = max_body
        self.tick_s = tick_s
        self.on_request = on_request or (lambda line: None)
        self.jobs: queue.Queue[_Job] = queue.Queue()
        self.stopping = threading.Event()
        self.handled = 0
        self.httpd = ThreadingHTTPServer((host, port), _handler(self))
        self.httpd.daemon_threads = True

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
        side, answer what is still queued with 503, and let the caller close the session."""
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
            self.httpd.shutdown()
            self.httpd.server_close()
            while True:
                try:
                    self.jobs.get_nowait().done.set()
                except queue.Empty:
                    break

    def _do(self, job: _Job) -> None:
        try:
            job.answer = job.work()
            self.handled += 1
        except LocalUsageError as exc:
            job.answer = (400, {"error": str(exc)})
        except LocalRunError as exc:  # the machine got in the way (disk full...): nothing more can be written
            job.answer = (503, {"error": str(exc)})
            raise
        finally:
            job.done.set()

    def submit(self, work: Callable[[], Answer]) -> Answer:
        """From an HTTP thread: queue the work and wait for its answer (503 when the server stops first)."""
        job = _Job(work)
        if self.stopping.is_set():
            return job.answer
        self.jobs.put(job)
        while not job.done.wait(0.5):
            if self.stopping.is_set() and not job.done.is_set():
                return (503, {"error": "the server is stopping; send the request again when it runs"})
        return job.answer

    # -- the work of each route ------------------------------------------------------------------------

    def post_stream(self, body: bytes) -> Answer:
        records = stream_records(body, self.max_body)
        if not records:
            return 400, {"error": "no records in the body: send JSON lines (one record per line) or a JSON array of records"}

        def work() -> Answer:
            first = self.session.next_line
            outcome = self.session.add_records(records)
            return 200, {"records": len(records), "lines": [first, first + len(records) - 1], **counts(outcome)}

        return self.submit(work)

    def put_upload(self, name: str, body: bytes) -> Answer:
        assert self.spec.uploads is not None
        uploads = self.spec.uploads
        check_upload_name(name)

        def work() -> Answer:
            outcome = self.session.add_upload(name, body)
            return 200, {"upload": f"{uploads.name}/{uploads.prefix}{name}", "bytes": len(body), **counts(outcome)}

        return self.submit(work)

    def post_stage(self, name: str, body: bytes, content_type: str) -> Answer:
        stage = self.spec.stage(name)
        inflate(body, self.max_body)  # a gzip body is checked against the limit here; the runtime inflates it again

        def work() -> Answer:
            status, answer, _ = self.session.request(stage, body, content_type)
            return status, answer

        return self.submit(work)

    def post_tick(self) -> Answer:
        def work() -> Answer:
            name, outcome = self.session.tick()
            return 200, {"tick": name, **counts(outcome)}

        return self.submit(work)


def _said(outcome: Outcome) -> str:
    parts = []
    for name, values in outcome.stats.items():
        if not name.startswith("@"):
            parts.append(f"{name} {values.get('rows', 0):,} rows" + (f", {values['dead_letters']:,} dead letters" if values.get("dead_letters") else ""))
    return "; ".join(parts) or "nothing to do"


def _handler(server: LocalServer) -> type[BaseHTTPRequestHandler]:
    """The request handler class, bound to `server` (http.server builds one instance per request)."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "pipeline-serve"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return  # each request is reported once, with what it did, by _answer

        def do_GET(self) -> None:
            path = urlsplit(self.path).path.rstrip("/") or "/"
            if path in ("/", "/health"):
                self._answer(200, server.describe())
            else:
                self._not_found(path)

        def do_POST(self) -> None:
            self._route("POST")

        def do_PUT(self) -> None:
            self._route("PUT")

        def _route(self, method: str) -> None:
            path = urlsplit(self.path).path
            spec = server.spec
            try:
                if path == "/stream" and spec.stream is not None and method == "POST":
                    self._answer(*server.post_stream(self._body()))
                elif path.startswith("/uploads/") and spec.uploads is not None:
                    self._answer(*server.put_upload(unquote(path[len("/uploads/"):]), self._body()))
                elif path.startswith("/stages/") and method == "POST":
                    name = unquote(path[len("/stages/"):])
                    stage = next((s for s in spec.stages if s.name == name), None)
                    if stage is None:
                        self._not_found(path, f"no stage named {name!r}")
                    elif not stage.trigger.http:
                        self._answer(405, {"error": f"stage {name!r} is triggered by {_trigger_text(stage.trigger.kind, spec)}, not by "
                                                    "HTTP requests", "routes": server.routes()}, allow="")
                    else:
                        body = self._body(optional=bool(stage.trigger.window_source))  # a window takes no rows: no body is fine
                        self._answer(*server.post_stage(name, body, self.headers.get("Content-Type", "")))
                elif path == "/tick" and method == "POST" and any(s.trigger.schedule for s in spec.stages):
                    self._body(optional=True)
                    self._answer(*server.post_tick())
                else:
                    self._not_found(path)
            except BodyError as exc:
                self.close_connection = True  # what is left of the body is not read
                self._answer(exc.status, {"error": str(exc)})
            except LocalUsageError as exc:  # an upload's name that cannot be one
                self._answer(400, {"error": str(exc)})

        def _body(self, optional: bool = False) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                raise BodyError(411, "send the body with a Content-Length (chunked transfer encoding is not supported)")
            length = self.headers.get("Content-Length")
            if length is None:
                if optional:
                    return b""
                raise BodyError(411, "send the body with a Content-Length")
            try:
                size = int(length)
                if size < 0:
                    raise ValueError
            except ValueError:
                raise BodyError(400, f"Content-Length {length!r} is not a size") from None
            if size > server.max_body:
                if size <= server.max_body + DRAIN_LIMIT:  # read it (and drop it), so the client can read the answer
                    left = size
                    while left > 0 and (chunk := self.rfile.read(min(left, 1 << 20))):
                        left -= len(chunk)
                raise BodyError(413, f"the body is {size:,} bytes; this server takes at most {server.max_body:,} (--max-body-mb)")
            data = self.rfile.read(size)
            if len(data) < size:
                raise BodyError(400, "the body ended before its Content-Length")
            return data

        def _not_found(self, path: str, message: str | None = None) -> None:
            self._answer(404, {"error": message or f"nothing is served at {path}", "routes": server.routes()})

        def _answer(self, status: int, body: dict[str, Any], allow: str | None = None) -> None:
            data = (json.dumps(body, ensure_ascii=False, indent=None) + "\n").encode("utf-8")
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if allow is not None:
                    self.send_header("Allow", allow)
                if self.close_connection:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client went away: what was done stays done
                self.close_connection = True
            try:
                reason = HTTPStatus(status).phrase
            except ValueError:
                reason = ""
            detail = body.get("error") or _request_said(body)
            server.on_request(f"{self.command} {urlsplit(self.path).path} {status} {reason}" + (f": {detail}" if detail else ""))

    return Handler


def _request_said(body: dict[str, Any]) -> str:
    if "stages" in body and isinstance(body["stages"], dict):
        parts = [f"{name} {v.get('rows', 0):,} rows" + (f", {v['dead_letters']:,} dead letters" if v.get("dead_letters") else "")
                 for name, v in body["stages"].items()]
        return "; ".join(parts)
    if "rows" in body and isinstance(body["rows"], list):
        return f"{len(body['rows']):,} rows" + (f", {len(body.get('failed') or []):,} failed" if body.get("failed") else "")
    return ""


def _trigger_text(kind: str, spec: Any) -> str:
    return {"stream": "the stream (POST records to /stream)" if spec.stream is not None else "the stream",
            "objects": "new objects (PUT files to /uploads/<name>, or feed the stage it reads)",
            "schedule": "its schedule (POST /tick runs it now)"}.get(kind, kind)
