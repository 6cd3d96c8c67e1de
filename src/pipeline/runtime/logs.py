"""Structured JSON logs: one object per line, the shape all three clouds index.

`severity` is what Cloud Logging reads from a JSON line, `level` what Lambda's JSON log format
and Application Insights queries use; both are written so one shim serves every cloud.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


class JsonLogger:
    """A tiny logger with stdlib-style methods; extra keyword arguments become JSON fields."""

    def __init__(self, stream: TextIO | None = None, level: str = "INFO", flush: bool = True, **fields: Any) -> None:
        self._stream = stream
        self._flush = flush
        self.level = LEVELS.get(level.upper(), 20)
        self.fields = fields

    def bind(self, **fields: Any) -> JsonLogger:
        """A logger that adds `fields` to every line (e.g. the batch id)."""
        child = JsonLogger(self._stream, "DEBUG", self._flush, **{**self.fields, **fields})
        child.level = self.level
        return child

    def log(self, level: str, message: str, *args: Any, exc_info: BaseException | bool | None = None, **fields: Any) -> None:
        if LEVELS.get(level, 20) < self.level:
            return
        if args:
            try:
                message = message % args
            except (TypeError, ValueError):
                message = " ".join([message, *map(str, args)])
        entry: dict[str, Any] = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z", "level": level, "severity": level,
                                 "message": message, **self.fields, **fields}
        if exc_info:
            exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
            if exc is not None:
                import traceback

                entry["error"] = f"{type(exc).__name__}: {exc}"
                entry["traceback"] = "".join(traceback.format_exception(exc)).rstrip()
        stream = self._stream or sys.stderr
        stream.write(json.dumps(entry, default=str, ensure_ascii=False) + "\n")
        if self._flush:  # cloud log agents read line by line; a local log file may buffer
            stream.flush()

    def debug(self, message: str, *args: Any, **fields: Any) -> None:
        self.log("DEBUG", message, *args, **fields)

    def info(self, message: str, *args: Any, **fields: Any) -> None:
        self.log("INFO", message, *args, **fields)

    def warning(self, message: str, *args: Any, **fields: Any) -> None:
        self.log("WARNING", message, *args, **fields)

    warn = warning

    def error(self, message: str, *args: Any, **fields: Any) -> None:
        self.log("ERROR", message, *args, **fields)

    def exception(self, message: str, *args: Any, **fields: Any) -> None:
        self.log("ERROR", message, *args, exc_info=True, **fields)
