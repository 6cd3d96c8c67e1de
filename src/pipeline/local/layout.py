"""Where the local runner keeps things: the buckets only it names, its own folder, and the kinds of line in its
journal. Shared by the runner's layers, `pipeline invoke` and the local operations target."""

from __future__ import annotations

from pathlib import Path

from pipeline.spec.load import LoadedSpec

RAW_BUCKET = "raw"
DEAD_LETTER_BUCKET = "dead-letter"
RAW_CONSUMER = "@raw"
UPLOAD = "@upload"  # journal lines of uploaded files (consumers are stage names, which never start with '@')
TICK = "@tick"  # journal lines of schedule ticks
KEEP = "@keep"  # serve: a request's records kept in the stream file (lines s-e, the file's size "o" after them, the sender's key "k")
JOURNAL_FORMAT = 2  # 2: serve keeps a request's records with a KEEP line (a run of another format starts over)
DEFAULT_BATCH = 500
RUN_DIR = "_run"  # the runner's own files; no bucket can be named so (stage names start with a letter)
LOG_NAME = "run.log"
STREAM_FILE = "stream.jsonl"  # `pipeline serve`: the records POSTed to the local stream, in order (its retention)


def default_root(loaded: LoadedSpec) -> Path:
    """One store per pipeline and stack, so specs sharing a folder never share state."""
    return loaded.base_dir / ".pipeline" / "local" / loaded.spec.name / loaded.stack
