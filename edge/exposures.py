"""The exposure log: which visitor saw which experiment variant, written by the server itself
for every answer that applied a variant, so sample ratios and conversions per variant can be
checked without trusting the page to report its impressions.

Answers must not wait for a disk, so exposures are buffered and flushed to their sink about
once a second, and at shutdown; a process that dies without shutting down loses at most the
last second of exposures (never an acknowledged feedback event: those are fsynced first).
A sink that fails (a full or missing directory) never stops the server: exposures wait in the
buffer for the next flush, and past `MAX_BUFFERED` the oldest are dropped and counted."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

import anyio

from edge.schemas import RecommendRequest, RecommendResponse
from edge.sink import EventSink, SinkError

log = logging.getLogger("edgeperso.exposures")

FLUSH_SECONDS = 1.0
MAX_BUFFERED = 100_000  # past this (a sink that keeps failing), the oldest are dropped and counted


class ExposureLog:
    def __init__(self, sink: EventSink) -> None:
        self.sink = sink
        self._buffer: list[dict[str, object]] = []
        self._lock = threading.Lock()
        self.dropped = 0
        self._last_error: str | None = None  # said once, not at every flush

    def add(self, request: RecommendRequest, response: RecommendResponse) -> None:
        if not response.variants:
            return
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        records: list[dict[str, object]] = [
            {
                "ts": stamp,
                "type": "exposure",
                "experiment": key,
                "variant": variant,
                "user_id": request.user_id or "",
                "session_id": request.session_id or "",
                "bundle": response.bundle,
            }
            for key, variant in response.variants.items()
        ]
        with self._lock:
            self._buffer.extend(records)
            overflow = len(self._buffer) - MAX_BUFFERED
            if overflow > 0:
                del self._buffer[:overflow]
                self.dropped += overflow

    def flush(self) -> None:
        """Write what is buffered; on failure keep it for the next flush."""
        with self._lock:
            batch, self._buffer = self._buffer, []
        if not batch:
            return
        try:
            self.sink.write(batch)
        except SinkError as exc:
            if str(exc) != self._last_error:
                log.error("could not write exposures (%s); keeping them for the next flush", exc)
            self._last_error = str(exc)
            with self._lock:
                self._buffer[:0] = batch
                overflow = len(self._buffer) - MAX_BUFFERED
                if overflow > 0:
                    del self._buffer[:overflow]
                    self.dropped += overflow
            return
        if self._last_error is not None:
            log.warning("exposures are written again")
        self._last_error = None

    async def run(self) -> None:
        """Flush about once a second until cancelled (the app's lifespan)."""
        while True:
            await anyio.sleep(FLUSH_SECONDS)
            try:
                await anyio.to_thread.run_sync(self.flush)
            except Exception:  # exposures must never stop the server
                log.exception("flushing exposures failed; trying again in %g s", FLUSH_SECONDS)

    def close(self) -> None:
        try:
            self.flush()
            self.sink.close()
        except Exception:
            log.exception("closing the exposure log failed")
        if self.dropped:
            log.error("%d exposures were dropped: the exposure sink kept failing", self.dropped)
