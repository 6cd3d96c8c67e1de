"""Runs over windows of accumulated outputs: a schedule or HTTP stage with `from` reads, each run, the
objects its source wrote since the last successful run, exactly once, on every cloud and locally.

The semantics exist once, here, over any `WindowStore` (S3, GCS, Blob, the local store):

* **State** `_state/<stage>/watermark.json` in the stage's own bucket: `{"version": 2, "until": <epoch s>,
  "recent": {key: last-modified}, "last_run": {...}, "runs": n}`. With L the source's lateness (how long
  after its last-modified time an object may first appear in a listing: `PIPELINE_WINDOW_LATENESS_S`),
  every object last modified at or before `until - L` is done, and so is every key in `recent` (the keys
  read that were modified after `until - L`). A late object (an S3 multipart upload is dated at its start,
  a slow writer's object at its creation) is therefore read by the first run that lists it, and never
  twice: a time watermark alone would miss it, a settle delay alone would only make that rarer.
* **Lease** `_state/<stage>/lease.json` `{owner, run, expires}`: one run at a time per stage, whatever the
  platform's concurrency. Created only if absent, taken over only once expired (its time to live is the
  stage's timeout plus a margin, so a platform that stops a run at its timeout cannot leave two running),
  given back by writing it expired. Busy: a scheduled run logs and returns (the next one covers the
  window), an HTTP request is answered 409 with Retry-After.
* **A run** with cut-off C (the scheduled time, the same on every retry, or the request's time; never later
  than the function's clock, so no event, forged or drifted, can move the watermark past now): C at or
  before `until` is a late or repeated delivery and does nothing. Else the window is every key listed
  under the source prefix modified in `(until - L, C]` and not in `recent`, oldest first (at most
  `PIPELINE_WINDOW_MAX_BYTES` of them; the rest waits for the next run). An empty window calls no handler,
  writes nothing and commits nothing. Otherwise the handler runs over the window's rows; the output and
  the dead letters are keyed by the window's start (`<stage>/window/<since>.jsonl`), so a retried or
  overlapping run from the same state overwrites the same objects with at most more rows; then the new
  state is written only if the state is still the version read at the start (S3 `If-Match`, GCS
  `ifGenerationMatch`, Azure `If-Match`, a version token locally) and `until` never goes back.

Standard library only, like the rest of the function runtime.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from pipeline.runtime import keys
from pipeline.runtime.errors import BatchFailedError
from pipeline.runtime.invoke import BatchResult, Settings, StageRunner
from pipeline.runtime.logs import JsonLogger
from pipeline.runtime.store import PreconditionFailed, WindowStore

STATE = "watermark.json"
LEASE = "lease.json"
VERSION = 2
LEASE_MARGIN_S = 60  # a lease outlives the stage's timeout by this much (clocks of function hosts are NTP-synchronised)
DEFAULT_TIMEOUT_S = 900  # the longest any stage may run (the spec's limit), when the environment does not say
EMPTY_BODIES = (b"", b"{}")
FUTURE_SKEW_S = 300  # a cut-off this far ahead of the function's clock is drift; further, it is logged as suspect


class WindowConflictError(RuntimeError):
    """The state changed under a run that held the lease (its lease expired while it ran): the run's
    output may be incomplete. Logged at ERROR (alerted) and raised, so the platform retries from the new state."""

    retryable = True


class StateError(RuntimeError):
    """A state or lease object that cannot be read: refused rather than guessed at."""


class State(NamedTuple):
    until: float | None  # None: no run has committed yet
    recent: dict[str, float]
    last_run: dict[str, Any] | None
    runs: int
    floor: float | None = None  # a version-1 watermark: everything modified at or before it was read

    def lower(self, lateness: float) -> float:
        """Objects modified at or before this are done (unless listed in `recent`, which only adds)."""
        bounds = [self.until - lateness] if self.until is not None else []
        if self.floor is not None:
            bounds.append(self.floor)
        return max(bounds, default=-math.inf)

    def to_bytes(self) -> bytes:
        body: dict[str, Any] = {"version": VERSION, "until": self.until, "recent": dict(sorted(self.recent.items())),
                                "last_run": self.last_run, "runs": self.runs,
                                "objects": (self.last_run or {}).get("objects", 0)}  # what version-1 readers looked at
        if self.floor is not None:
            body["floor"] = self.floor
        return json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8")


NO_STATE = State(None, {}, None, 0)


def parse_state(data: bytes, where: str) -> State:
    """A state object of version 2, or of version 1 (`{"until": t, "objects": n}`, read as a floor: everything
    modified at or before t was read). Anything else is a StateError naming the object."""
    try:
        mark = json.loads(data)
        if not isinstance(mark, dict):
            raise ValueError("not a JSON object")
        version = mark.get("version", 1)
        if version == 1:
            return State(None, {}, None, 0, floor=_finite(mark["until"]))
        if version != VERSION:
            raise ValueError(f"version {version!r}; this runtime reads versions 1 and 2")
        until = None if mark["until"] is None else _finite(mark["until"])
        recent = {str(key): _finite(value) for key, value in dict(mark.get("recent") or {}).items()}
        floor = None if mark.get("floor") is None else _finite(mark["floor"])
        last = mark.get("last_run")
        return State(until, recent, last if isinstance(last, dict) else None, int(mark.get("runs") or 0), floor)
    except (ValueError, KeyError, TypeError) as exc:
        raise StateError(f"{where} is not a window state this runtime can read ({exc}); fix or remove it "
                         "(removed, the next run reads everything the source still holds)") from None


def _finite(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{value!r} is not a time")
    return float(value)


def is_missing(exc: BaseException) -> bool:
    """Whether a store error means 'no such object' (each cloud's client raises its own type)."""
    if isinstance(exc, (FileNotFoundError, KeyError)):
        return True
    name = type(exc).__name__
    status = getattr(exc, "status_code", None) or getattr(exc, "code", None) or getattr(getattr(exc, "response", None), "status_code", None)
    code = getattr(exc, "response", {}).get("Error", {}).get("Code") if isinstance(getattr(exc, "response", None), dict) else None
    return name in {"NotFound", "NoSuchKey", "ResourceNotFoundError", "BlobNotFound"} or status == 404 or code in {"NoSuchKey", "404"}


class Listed(NamedTuple):
    key: str
    modified: float
    size: int


class Plan:
    """One run's window, taken and leased: what to read, the state it started from, what to commit."""

    def __init__(self, run: str, cutoff: float, until: float, objects: list[Listed], state: State, state_token: str | None,
                 lease_token: str, capped: bool) -> None:
        self.run, self.cutoff, self.until, self.objects = run, cutoff, until, objects
        self.state, self.state_token, self.lease_token, self.capped = state, state_token, lease_token, capped

    @property
    def since(self) -> float | None:
        return self.state.until

    @property
    def batch_id(self) -> str:
        return keys.window_batch(self.since)

    def describe(self) -> dict[str, Any]:
        return {"since": iso(self.since), "until": iso(self.until), "objects": len(self.objects)}


class Skipped(NamedTuple):
    """A run that had nothing to do: `late` (its cut-off is not after the watermark: a repeated or late
    delivery), `busy` (another run holds the lease), `empty` (nothing new in the window)."""

    reason: str
    since: float | None
    until: float | None
    holder: dict[str, Any] | None = None  # busy: the lease ({owner, run, expires})

    def describe(self) -> dict[str, Any]:
        return {"since": iso(self.since), "until": iso(self.until), "objects": 0}


def iso(moment: float | None) -> str | None:
    """A time as RFC 3339 UTC text (None stays None: the first window starts at the beginning)."""
    if moment is None:
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


def now() -> float:
    """The function's clock (looked up at each call, so a test can stand in for it)."""
    return time.time()


class Windows:
    """The window state, lease and listing of one stage, over its store."""

    def __init__(self, store: WindowStore, settings: Settings, logger: JsonLogger, clock: Callable[[], float] | None = None,
                 owner: str | None = None) -> None:
        if not settings.windowed:
            raise RuntimeError(f"stage {settings.stage} reads no window (PIPELINE_INPUT_BUCKET and PIPELINE_STATE_BUCKET are set by the deployer)")
        self.store, self.settings, self.logger = store, settings, logger
        self.clock: Callable[[], float] = clock or (lambda: now())
        self.owner = owner or f"{os.uname().nodename}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self.lateness = settings.window_lateness_s
        self.ttl = (settings.timeout_s or DEFAULT_TIMEOUT_S) + LEASE_MARGIN_S
        self.state_key = settings.state_prefix + STATE
        self.lease_key = settings.state_prefix + LEASE

    # -- reading ------------------------------------------------------------------------------------

    def state(self) -> tuple[State, str | None]:
        found = self.store.read_versioned(self.settings.state_bucket, self.state_key)
        if found is None:
            return NO_STATE, None
        return parse_state(found[0], f"{self.settings.state_bucket}/{self.state_key}"), found[1]

    def lease(self) -> tuple[dict[str, Any] | None, str | None]:
        found = self.store.read_versioned(self.settings.state_bucket, self.lease_key)
        if found is None:
            return None, None
        try:
            lease = json.loads(found[0])
            _finite(lease["expires"])
        except (ValueError, KeyError, TypeError):
            raise StateError(f"{self.settings.state_bucket}/{self.lease_key} is not a lease this runtime can read; remove it") from None
        return lease, found[1]

    def listing(self, state: State, cutoff: float) -> list[Listed]:
        """The window: keys under the source prefix modified in (lower, cutoff] and not read already, oldest first."""
        lower = state.lower(self.lateness)
        settings = self.settings
        found = [Listed(key, modified, size) for key, modified, size in self.store.list_sized(settings.input_bucket, settings.input_prefix)
                 if lower < modified <= cutoff and key not in state.recent and not key.endswith("/")]
        found.sort(key=lambda item: (item.modified, item.key))
        return found

    # -- a run ---------------------------------------------------------------------------------------

    def begin(self, cutoff: float, run: str, take_over: bool = False) -> Plan | Skipped:
        """Take the lease, read the state, list the window. `take_over`: the caller knows no other run can be
        going on (the local runner holds its store's lock), so a lease left by a killed run is taken at once."""
        now = self.clock()
        if cutoff > now:  # a tick fires at or after its time: a later cut-off is a clock's drift or a forged event
            if cutoff > now + FUTURE_SKEW_S:
                self.logger.warning("a run's cut-off is in the future: read as now, so the watermark never passes the clock",
                                    run=run, cutoff=iso(cutoff), now=iso(now))
            cutoff = now
        lease_token = self._acquire(run, take_over)
        if isinstance(lease_token, Skipped):
            return lease_token
        try:
            state, token = self.state()
            if state.until is not None and cutoff <= state.until:
                self.release_token(lease_token, run)
                self.logger.info("window already done: a late or repeated delivery", run=run, cutoff=iso(cutoff), until=iso(state.until))
                return Skipped("late", state.until, state.until)
            found = self.listing(state, cutoff)
        except BaseException:
            self.release_token(lease_token, run)
            raise
        if not found:
            self.release_token(lease_token, run)
            self.logger.info("window empty: nothing new since the last run", run=run, since=iso(state.until), cutoff=iso(cutoff))
            return Skipped("empty", state.until, cutoff)
        objects, until = self._cap(found, state, cutoff)
        return Plan(run, cutoff, until, objects, state, token, lease_token, capped=len(objects) < len(found))

    def _cap(self, found: list[Listed], state: State, cutoff: float) -> tuple[list[Listed], float]:
        """At most `window_max_bytes` of the window, whole last-modified groups, at least one group newer than
        the watermark (so the watermark moves and the next run's key differs); `until` is then the last group's time."""
        limit = self.settings.window_max_bytes
        if not limit or sum(item.size for item in found) <= limit:
            return found, cutoff
        since = state.until if state.until is not None else -math.inf
        taken, total, moved = 0, 0, False
        while taken < len(found):
            group_end = taken
            while group_end < len(found) and found[group_end].modified == found[taken].modified:
                group_end += 1
            size = sum(item.size for item in found[taken:group_end])
            if moved and total + size > limit:
                break
            total += size
            moved = moved or found[taken].modified > since
            taken = group_end
        if taken == len(found):
            return found, cutoff
        return found[:taken], found[taken - 1].modified

    def read(self, plan: Plan) -> list[tuple[str, bytes]]:
        """The window's objects' bytes, in order. One removed since the listing (expired by its lifecycle rule) is
        skipped with a warning: it stays in `recent`, as read."""
        out = []
        for item in plan.objects:
            try:
                out.append((item.key, self.store.get(self.settings.input_bucket, item.key)))
            except Exception as exc:
                if not is_missing(exc):
                    raise
                self.logger.warning("an object of the window is gone; skipped", run=plan.run, key=item.key)
        return out

    def check_lease(self, plan: Plan) -> None:
        """Before writing: the lease must still have a margin left (a run past it may have a successor)."""
        lease, token = self.lease()
        if token != plan.lease_token or lease is None or lease.get("expires", 0) - self.clock() < LEASE_MARGIN_S / 2:
            raise WindowConflictError(f"stage {self.settings.stage}: the lease of run {plan.run} ran out before its output was written")

    def commit(self, plan: Plan, result: BatchResult | None, counts: Mapping[str, Any] | None = None) -> State:
        """The new state, written only over the state the run started from; `until` never goes back.
        `counts` (rows, dead_letters, output) when the result came from elsewhere (the local runner's worker)."""
        old = plan.state
        until = max(plan.until, old.until) if old.until is not None else plan.until
        floor = old.floor if old.floor is not None and old.floor > until - self.lateness else None
        lower = until - self.lateness
        recent = {key: modified for key, modified in old.recent.items() if modified > lower}
        recent.update({item.key: item.modified for item in plan.objects if item.modified > lower})
        values = dict(counts or {})
        if result is not None:
            values = {"rows": result.rows, "dead_letters": result.dead_letters, "output": result.output_key}
        last = {"id": plan.run, "since": iso(plan.since), "until": iso(until), "objects": len(plan.objects),
                "rows": int(values.get("rows") or 0), "output": values.get("output"), "dead_letters": int(values.get("dead_letters") or 0),
                "finished_at": iso(self.clock())}
        state = State(until, recent, last, old.runs + 1, floor)
        try:
            self.store.put_if(self.settings.state_bucket, self.state_key, state.to_bytes(), plan.state_token)
        except PreconditionFailed:
            self.logger.error("window state changed under this run: another run held the lease; its output may be incomplete",
                              run=plan.run, since=iso(plan.since), lease_violation=True)
            raise WindowConflictError(f"stage {self.settings.stage}: the window state changed while run {plan.run} held the lease") from None
        self.logger.info("watermark advanced", run=plan.run, since=iso(plan.since), until=iso(until), objects=len(plan.objects),
                         capped=plan.capped)
        return state

    # -- the lease -----------------------------------------------------------------------------------

    def _acquire(self, run: str, take_over: bool) -> str | Skipped:
        lease, token = self.lease()
        now = self.clock()
        if lease is not None and lease["expires"] > now and not take_over:
            self.logger.info("another run holds the window's lease; this one leaves the window to the next run",
                             run=run, holder=lease.get("run"), expires=iso(lease["expires"]))
            return Skipped("busy", None, None, lease)
        body = json.dumps({"owner": self.owner, "run": run, "expires": now + self.ttl}).encode("utf-8")
        try:
            return self.store.put_if(self.settings.state_bucket, self.lease_key, body, token)
        except PreconditionFailed:  # another run took it between our read and our write
            held, _ = self.lease()
            self.logger.info("another run took the window's lease first", run=run, holder=(held or {}).get("run"))
            return Skipped("busy", None, None, held)

    def release(self, plan: Plan) -> None:
        self.release_token(plan.lease_token, plan.run)

    def release_token(self, token: str, run: str) -> None:
        """Give the lease back (written expired), only if it is still ours; a failure here only delays the next run."""
        body = json.dumps({"owner": self.owner, "run": run, "expires": 0}).encode("utf-8")
        try:
            self.store.put_if(self.settings.state_bucket, self.lease_key, body, token)
        except PreconditionFailed:
            self.logger.warning("the window's lease was taken over before this run gave it back", run=run)
        except Exception as exc:
            self.logger.log("WARNING", "could not give the window's lease back; it expires by itself", run=run, exc_info=exc)

    # -- day two: what `pipeline status` shows -------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Read-only: the watermark, the keys remembered, the last run, the lease, and what the next run would read now."""
        state, _ = self.state()
        lease, _ = self.lease()
        now = self.clock()
        waiting = self.listing(state, now)
        held = lease is not None and lease["expires"] > now
        return {"stage": self.settings.stage, "until": iso(state.until), "recent": len(state.recent), "runs": state.runs,
                "last_run": state.last_run, "lease": {"held": held, "owner": lease.get("owner"), "run": lease.get("run"),
                                                      "expires": iso(lease["expires"])} if held and lease else {"held": False},
                "waiting": {"objects": len(waiting), "bytes": sum(item.size for item in waiting),
                            "oldest": iso(waiting[0].modified) if waiting else None}}


def window_status(store: WindowStore, settings: Settings, logger: JsonLogger | None = None) -> dict[str, Any]:
    """A windowed stage's state (see `Windows.status`), for `pipeline status` on every cloud and locally."""
    return Windows(store, settings, logger or JsonLogger(level="WARNING", stage=settings.stage)).status()


# -- one run, in one process (the clouds) ------------------------------------------------------------


class WindowOutcome:
    """What a run did: `ran` (`result`), `dead_lettered` (its retries exhausted: the window's rows went to
    dead letters and the watermark stays), or skipped (`late`, `busy`, `empty`)."""

    def __init__(self, status: str, window: dict[str, Any], result: BatchResult | None = None, holder: dict[str, Any] | None = None,
                 failed: Sequence[dict[str, Any]] = (), retry_after_s: int | None = None) -> None:
        self.status, self.window, self.result, self.holder = status, window, result, holder
        self.failed, self.retry_after_s = list(failed), retry_after_s

    @classmethod
    def skipped(cls, skipped: Skipped, now: float) -> WindowOutcome:
        retry = None
        if skipped.reason == "busy":
            expires = float((skipped.holder or {}).get("expires") or now)
            retry = max(1, math.ceil(expires - now))
        return cls(skipped.reason, skipped.describe(), holder=skipped.holder, retry_after_s=retry)

    def summary(self) -> dict[str, Any]:
        """The answer to a scheduler, and the log line."""
        result = self.result
        return {"status": self.status, "window": self.window, "rows": result.rows if result else 0,
                "output": result.output_key if result else None, "dead_letters": result.dead_letters if result else 0}

    def answer(self) -> tuple[int, dict[str, Any], dict[str, str]]:
        """An HTTP request's (status, JSON body, extra headers): 200 with the window, rows, output and dead letters
        (also for an empty window), 409 while another run holds the lease."""
        if self.status == "busy":
            holder = self.holder or {}
            return 409, {"error": f"another run of this stage ({holder.get('run')}) is reading the window; retry after "
                                  f"{self.retry_after_s} s", "retry_after_s": self.retry_after_s}, {"Retry-After": str(self.retry_after_s)}
        body = {**self.summary(), "failed": self.failed}
        body.pop("status")
        return (500 if self.status == "dead_lettered" else 200), body, {}


def failures(dead: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows that failed, as an HTTP answer lists them: index in the window, its object and line, the error."""
    return [{"index": entry.get("index"), **{k: v for k, v in (entry.get("input") or {}).items() if k in ("key", "line")},
             "type": (entry.get("error") or {}).get("type"), "message": (entry.get("error") or {}).get("message")} for entry in dead]


def run_window(runner: StageRunner, store: WindowStore, cutoff: float, run: str, last_attempt: bool = False,
               windows: Windows | None = None) -> WindowOutcome:
    """One run over the stage's window, all in this process (a function on any cloud): lease, list, read,
    handler, output, commit, lease back. A failure raises BatchFailedError for the platform to retry, except on
    `last_attempt`: then the window's rows are dead-lettered, the watermark stays (the next run reads them again)."""
    windows = windows or Windows(store, runner.settings, runner.logger)
    begun = windows.begin(cutoff, run)
    if isinstance(begun, Skipped):
        return WindowOutcome.skipped(begun, windows.clock())
    plan = begun
    try:
        try:
            objects = windows.read(plan)
        except Exception as exc:
            runner.logger.log("ERROR", "could not read the window's objects; the run will be retried", batch=plan.batch_id, exc_info=exc)
            raise BatchFailedError(runner.settings.stage, plan.batch_id, exc) from exc
        windows.check_lease(plan)
        try:
            result = runner.run_objects(plan.batch_id, runner.settings.input_bucket, objects)
        except BatchFailedError as exc:
            if not last_attempt:
                raise
            _, raws, identities, _ = StageRunner.object_rows(runner.settings.input_bucket, objects)
            failed = runner.dead_letter_all(plan.batch_id, raws, identities, exc.cause)
            return WindowOutcome("dead_lettered", plan.describe(), failed, failed=[{"type": type(exc.cause).__name__, "message": str(exc.cause)}])
        windows.commit(plan, result)
        return WindowOutcome("ran", plan.describe(), result, failed=failures(result.dead_entries))
    finally:
        windows.release(plan)


def takes_no_rows(body: bytes) -> bool:
    """An HTTP request to a stage over accumulated outputs carries no rows: an empty body or `{}`."""
    return body.strip() in EMPTY_BODIES


NO_ROWS_ERROR = "this stage runs over what its source wrote since its last run: POST an empty body or {} (no rows)"


__all__ = ["LEASE", "STATE", "Listed", "Plan", "Skipped", "State", "StateError", "WindowConflictError", "WindowOutcome", "Windows",
           "iso", "parse_state", "run_window", "takes_no_rows", "window_status"]
