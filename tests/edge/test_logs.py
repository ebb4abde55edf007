"""The server's log: JSON lines, and an error storm that costs one line per kind of error."""

from __future__ import annotations

import io
import json
import logging

import pytest

from edge.logs import JsonFormatter, RepeatFilter, configure


@pytest.fixture
def stream():
    """A log stream set up as `serve` sets it up, restored after."""
    root = logging.getLogger()
    kept, level = list(root.handlers), root.level
    configure("info")
    out = io.StringIO()
    root.handlers[0].setStream(out)
    yield out
    root.handlers[:] = kept
    root.setLevel(level)


def lines(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_is_one_json_object_with_its_fields_and_its_error(stream):
    log = logging.getLogger("edgeperso.test")
    log.info("loaded %s", "b1", extra={"fields": {"items": 3}})
    try:
        raise ValueError("bad value")
    except ValueError:
        log.exception("step failed")
    first, second = lines(stream)
    assert first["level"] == "info" and first["message"] == "loaded b1" and first["items"] == 3
    assert first["ts"].endswith("Z") and first["logger"] == "edgeperso.test"
    assert second["level"] == "error" and "ValueError: bad value" in second["error"]
    assert "Traceback" in second["error"]


def fail(n: int) -> None:
    raise RuntimeError(f"failure {n}")  # one place: the same kind of error every time


def test_an_error_storm_is_one_line_then_a_count(stream):
    log = logging.getLogger("edgeperso.test")
    for n in range(500):
        try:
            fail(n)
        except RuntimeError:
            log.exception("recommend step %r failed", "rank")
    assert len(lines(stream)) == 1  # 499 held back
    handler = logging.getLogger().handlers[0]
    (repeats,) = [f for f in handler.filters if isinstance(f, RepeatFilter)]
    repeats.window_s = 0.0  # the window has passed
    try:
        fail(500)
    except RuntimeError:
        log.exception("recommend step %r failed", "rank")
    last = lines(stream)[-1]
    assert last["repeated"] == 499 and "failure 500" in last["error"]


def test_different_errors_are_each_written(stream):
    log = logging.getLogger("edgeperso.test")
    for kind in (ValueError, KeyError, OSError):
        try:
            raise kind("x")
        except Exception:
            log.exception("step failed")
    log.warning("another message")
    assert len(lines(stream)) == 4


def test_access_lines_are_never_held_back(stream):
    access = logging.getLogger("edgeperso.access")
    for n in range(50):
        access.info("request", extra={"fields": {"request_id": str(n)}})
    assert len(lines(stream)) == 50


def test_the_formatter_never_fails_on_odd_values():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "v %s", (object(),), None)
    record.fields = {"when": object()}
    assert json.loads(JsonFormatter().format(record))["message"].startswith("v <object")
