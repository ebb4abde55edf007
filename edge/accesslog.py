"""One JSON line per request on the `edgeperso.access` logger (`edge.logs` writes it), and a
request id on every answer (`x-request-id`).

- **The request id** is Cloudflare's ray id when the request carries a well-formed one (the
  gateway passes it as `x-edgeperso-request-id`, a header only it sets), so the gateway's log
  entries and the app's line about one request carry the same id; else made here.
- **What a line holds**: the id, method, route (one of the app's, or `other`), status,
  milliseconds answering and queued, and what the handler adds: for a recommendation the
  fallback reason code, whether it was personalized, how many items; for feedback how many
  events. Visitors appear only as pseudonyms: the user and session ids hashed with a secret
  salt (`EDGEPERSO_LOG_SALT`; `serve` makes one per start, shared by its workers), so a log
  reader can follow one visitor through a day without learning who it is.
- **Never**: addresses, bodies, query strings, raw ids, headers."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio
import msgspec

from edge.arrival import queued_ms
from edge.routes import route_label

log = logging.getLogger("edgeperso.access")

CF_RAY = re.compile(rb"[0-9a-f]{16}(-[A-Z]{3})?")
FIELDS = "access"  # scope["state"] key: what the handler adds to the line

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def pseudonym(salt: bytes, value: str | None) -> str | None:
    """A stable stand-in for an id: 16 hex of HMAC-SHA256 under the salt."""
    if not value:
        return None
    return hmac.new(salt, value.encode(), hashlib.sha256).hexdigest()[:16]


def note(scope: Scope, **fields: object) -> None:
    """Fields a handler adds to its request's access line."""
    scope.setdefault("state", {}).setdefault(FIELDS, {}).update(fields)


class BufferedLines:
    """Access lines as `edge.logs` writes JSON lines, kept in memory and written to stderr a
    few times a second (`run`) and at shutdown: a line costs an encoding and an append on the
    request's path, not a trip through `logging` and a write (which cost some 5 to 10% of the
    throughput at 16 connections). A process killed loses at most the last `FLUSH_S`."""

    FLUSH_S = 0.2
    MAX_BUFFERED = 5_000  # past this, written at once

    def __init__(self, fd: int = 2) -> None:
        self.fd = fd
        self._lines: list[bytes] = []
        self._lock = threading.Lock()
        self._encode = msgspec.json.Encoder().encode

    def __call__(self, fields: dict[str, object]) -> None:
        now = time.time()
        stamp = (
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
        )
        head = {"ts": stamp, "level": "info", "logger": log.name, "message": "request"}
        line = self._encode(head | fields) + b"\n"
        with self._lock:
            self._lines.append(line)
            full = len(self._lines) >= self.MAX_BUFFERED
        if full:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            lines, self._lines = self._lines, []
        data = memoryview(b"".join(lines))
        while data:
            try:
                data = data[os.write(self.fd, data) :]
            except OSError:
                return  # stderr gone: nothing else to tell

    async def run(self) -> None:
        while True:
            await anyio.sleep(self.FLUSH_S)
            self.flush()


def through_logging(fields: dict[str, object]) -> None:
    """An access line through `logging` (a plain-text log, a test's caplog)."""
    log.info("request", extra={"fields": fields})


class AccessLogMiddleware:
    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        write: Callable[[dict[str, object]], None] = through_logging,
    ) -> None:
        self.app = app
        self.write = write

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        started = time.perf_counter()
        queued = queued_ms(scope)
        scope.setdefault("state", {})
        status = 500

        async def with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, with_id)
        finally:
            path = scope.get("path", "")
            fields: dict[str, object] = {
                "request_id": request_id,
                "method": scope.get("method", ""),
                "route": route_label(path),
                "status": status,
                "ms": round((time.perf_counter() - started) * 1000.0, 3),
                "queued_ms": round(queued, 3),
            }
            fields.update(scope["state"].get(FIELDS, {}))
            self.write(fields)


def _request_id(scope: Scope) -> str:
    """The gateway's `x-edgeperso-request-id` (Cloudflare's ray id, passed on: the gateway drops
    `cf-*` headers), else a `cf-ray` (an app reached without the gateway), when well formed."""
    found: dict[bytes, bytes] = {}
    for name, value in scope.get("headers", []):
        if name in (b"x-edgeperso-request-id", b"cf-ray") and CF_RAY.fullmatch(value):
            found.setdefault(name, value)
    chosen = found.get(b"x-edgeperso-request-id") or found.get(b"cf-ray")
    return chosen.decode() if chosen else secrets.token_hex(8)
