"""The server's log: one JSON object a line on stderr (`serve` sets it up in every worker), and
bounded when something fails over and over.

- Each line has `ts` (UTC), `level`, `logger`, `message`, and the record's `fields` when it has
  some (the access log's, `edge.accesslog`). An exception is `error`: its type, message and
  traceback in one string.
- **Repeats**: a record with the same logger, message template and exception type (at the same
  place) as one logged less than REPEAT_WINDOW_S ago is counted, not written; the next one
  written after the window says how many were held back (`repeated`). An error storm costs a
  line per kind of error per window, whatever the request rate."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import traceback
from typing import Any

REPEAT_WINDOW_S = 60.0


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        repeated = getattr(record, "repeated", 0)
        if repeated:
            line["repeated"] = repeated
        if record.exc_info and record.exc_info[0] is not None:
            kind, value, tb = record.exc_info
            line["error"] = "".join(traceback.format_exception(kind, value, tb)).rstrip()
        return json.dumps(line, ensure_ascii=False, default=str)


class RepeatFilter(logging.Filter):
    """Holds back records that repeat one written less than `window_s` ago (see the module's
    docstring); access-log lines, each about its own request, are never held back."""

    def __init__(self, window_s: float = REPEAT_WINDOW_S) -> None:
        super().__init__()
        self.window_s = window_s
        self._lock = threading.Lock()
        self._seen: dict[tuple[object, ...], tuple[float, int]] = {}  # key -> (written, held)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "edgeperso.access":
            return True
        key = _kind(record)
        now = time.monotonic()
        with self._lock:
            written, held = self._seen.get(key, (-float("inf"), 0))
            if now - written < self.window_s:
                self._seen[key] = (written, held + 1)
                return False
            self._seen[key] = (now, 0)
            if len(self._seen) > 10_000:  # many kinds: forget the oldest
                for old in sorted(self._seen, key=lambda k: self._seen[k][0])[:5_000]:
                    del self._seen[old]
        record.repeated = held
        return True


def _kind(record: logging.LogRecord) -> tuple[object, ...]:
    """What makes two records the same: where they were logged and what failed, not the
    values in their message."""
    failure: tuple[object, ...] = ()
    if record.exc_info and record.exc_info[0] is not None:
        tb = record.exc_info[2]
        last = traceback.extract_tb(tb)[-1] if tb is not None else None
        failure = (
            record.exc_info[0].__name__,
            last.filename if last else "",
            last.lineno if last else 0,
        )
    return (record.name, record.msg, record.levelno, *failure)


def configure(level: str = "info") -> None:
    """JSON lines on stderr for every logger (uvicorn's included), repeats held back."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
