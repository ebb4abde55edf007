"""When a request arrived, so that its latency budget counts the time it waited in the server.

One process serves on one core: while it computes an answer, the requests that came meanwhile
wait, and under overload that wait is most of their latency. The budget used to start when the
handler did, so a request that had waited 100 ms still got its whole 50 ms and was answered
late, in no fair order. `ArrivalStampingProtocol` is uvicorn's httptools protocol, stamping
each request's scope when its headers are parsed; the handler subtracts what has passed since,
and a request that waited past its budget gets fallback content at once (cheap, so the queue
drains instead of growing)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

RECEIVED = "edgeperso.received"  # scope key: time.perf_counter() when the headers were parsed


class ArrivalStampingProtocol(HttpToolsProtocol):
    def on_headers_complete(self) -> None:
        # Before the parent makes the request's task: that task gets this scope.
        self.scope[RECEIVED] = time.perf_counter()  # type: ignore[literal-required]  # ASGI allows extension keys; uvicorn's TypedDict lists none
        super().on_headers_complete()


def queued_ms(scope: Mapping[str, Any]) -> float:
    """Milliseconds since the request's headers were parsed; 0 when no protocol stamped it (a
    test client, another server)."""
    received = scope.get(RECEIVED)
    if not isinstance(received, float):
        return 0.0
    return max(0.0, (time.perf_counter() - received) * 1000.0)
