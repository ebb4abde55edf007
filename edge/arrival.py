"""When a request arrived, so that its latency budget counts the time it waited in the server.

One process serves on one core: while it computes an answer, the requests that came meanwhile
wait, and under overload that wait is most of their latency. The budget used to start when the
handler did, so a request that had waited 100 ms still got its whole 50 ms and was answered
late, in no fair order. `ArrivalStampingProtocol` is uvicorn's httptools protocol, stamping
each request's scope when its headers are parsed; the handler subtracts what has passed since,
and a request that waited past its budget gets fallback content at once (cheap, so the queue
drains instead of growing).

It is also where slow clients are bounded: it tells `edge.connections` when a connection opens,
receives bytes, completes a request's headers, is answered and is lost, and that guard closes
the connections whose headers come too slowly and keeps the open ones under a cap."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Mapping
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from edge.connections import guard_for

RECEIVED = "edgeperso.received"  # scope key: time.perf_counter() when the headers were parsed


class ArrivalStampingProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.guard = guard_for(server_state, self.loop, config.backlog)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn's
        super().connection_made(transport)
        no_delay(transport)
        self.guard.opened(transport)  # at the cap: evicts another, or closes this one

    def data_received(self, data: bytes) -> None:
        self.guard.received(self.transport)
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self.guard.headers_done(self.transport)
        # Before the parent makes the request's task: that task gets this scope.
        self.scope[RECEIVED] = time.perf_counter()  # type: ignore[literal-required]  # ASGI allows extension keys; uvicorn's TypedDict lists none
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)  # the next request's headers are already in
        super().on_response_complete()
        if not pipelined and not self.transport.is_closing():
            self.guard.wait(self.transport)  # kept alive: the next headers have a deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.lost(self.transport)
        super().connection_lost(exc)


def queued_ms(scope: Mapping[str, Any]) -> float:
    """Milliseconds since the request's headers were parsed; 0 when no protocol stamped it (a
    test client, another server)."""
    received = scope.get(RECEIVED)
    if not isinstance(received, float):
        return 0.0
    return max(0.0, (time.perf_counter() - received) * 1000.0)


def no_delay(transport: asyncio.Transport) -> None:
    """Send each answer at once (TCP_NODELAY). asyncio sets it only on sockets whose protocol
    number says TCP, and the listening socket uvicorn makes for `--workers N` says 0: its
    accepted connections kept Nagle's algorithm, and a kept-alive client waited for the delayed
    ACK, about 40 ms, on every answer."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # the connection is already gone
            pass
