"""Slow clients cannot hold the server: a deadline for each request's headers and a cap on open
connections, per server process.

uvicorn 0.54 has neither. Its `timeout_keep_alive` only closes a kept-alive connection that
sends nothing at all, and its first byte cancels it, so a client sending one header byte every
few seconds ("slowloris") kept its connection, and the fd it costs, forever. Its
`limit_concurrency` answers 503 to the requests whose headers completed once too many
connections are open: the slow connections, which never complete theirs, stay, and the normal
clients are the ones refused.

`ConnectionGuard` keeps the connections that wait for a request's headers (since they opened,
or since their last response when kept alive) in the order they began waiting, with one timer
at the oldest one's deadline:
- past `header_timeout` a connection is closed, with a JSON 408 when part of a request came;
- at `max_connections` a new connection evicts the one that has waited longest for its headers
  (a slowloris victim, else an idle kept-alive connection), and is refused (closed) only when
  every open connection has a request in progress.
A request in progress (headers complete, answer not sent) is never evicted; its body has its
own deadline in `edge.app.read_body`. The protocol (`edge.arrival`) reports each connection's
life here."""

from __future__ import annotations

import asyncio
import logging
import resource
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import msgspec

from edge.config import Settings
from edge.errors import RequestTimeout

log = logging.getLogger("edgeperso.connections")

FD_RESERVE = 64  # fds a server process keeps for itself: listener, loop, logs, bundle files
WARN_EVERY_S = 60.0  # at most one warning a minute while the cap is being hit


@dataclass(frozen=True)
class Limits:
    header_timeout: float  # seconds from open or from the last response to complete headers
    max_connections: int  # per process, after the clamp to the fd limit

    @classmethod
    def from_settings(cls, settings: Settings, backlog: int) -> Limits:
        """The settings' limits, within the process's fd limit. One pass of asyncio's accept
        loop takes up to `backlog` connections before the guard sees any, so the open fds
        briefly pass the cap by up to that many: the soft limit is raised (up to the hard one,
        as any process may) to hold both, and failing that the cap is lowered under it. Past
        the limit accept() fails and asyncio stops accepting for a second."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        needed = settings.max_connections + backlog + FD_RESERVE
        if soft != resource.RLIM_INFINITY and soft < needed:
            soft = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        cap = settings.max_connections
        if soft != resource.RLIM_INFINITY and cap > soft - FD_RESERVE:
            cap = max(1, soft - FD_RESERVE)
            log.warning(
                "EDGEPERSO_MAX_CONNECTIONS is %d but this process may open %d files; "
                "holding at most %d connections (raise `ulimit -n` to hold more)",
                settings.max_connections,
                soft,
                cap,
            )
        return cls(settings.header_timeout_seconds, cap)


def timeout_response(header_timeout: float) -> bytes:
    """The whole 408 answer to a request whose headers came too slowly, built once."""
    error = RequestTimeout(
        f"the request's headers did not arrive within {header_timeout:g} s "
        "(EDGEPERSO_HEADER_TIMEOUT_SECONDS); send them at once",
        field="headers",
    )
    body = msgspec.json.encode(error.to_dict())
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class ConnectionGuard:
    """One server process's open connections: which wait for headers, since when, how many."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limits: Limits) -> None:
        self.loop = loop
        self.limits = limits
        self.open: set[asyncio.Transport] = set()  # counted against the cap
        # Waiting for headers, oldest first (OrderedDict: O(1) at both ends and in the middle).
        self.waiting: OrderedDict[asyncio.Transport, float] = OrderedDict()
        self.partial: set[asyncio.Transport] = set()  # waiting, and part of a request came
        self.timer: asyncio.TimerHandle | None = None
        self.timed_out = self.evicted = self.refused = 0
        self._408 = timeout_response(limits.header_timeout)
        self._warned_at = -WARN_EVERY_S
        self._warned_counts = (0, 0)

    def opened(self, transport: asyncio.Transport) -> None:
        """A new connection: counted and waiting for headers, after evicting the longest
        waiting one at the cap; closed at once when none waits."""
        if len(self.open) >= self.limits.max_connections:
            if not self.waiting:
                self.refused += 1
                self._warn()
                transport.close()
                return
            self.evicted += 1
            self._close(next(iter(self.waiting)))
            self._warn()
        self.open.add(transport)
        self.wait(transport)

    def wait(self, transport: asyncio.Transport) -> None:
        """The connection waits for a request's headers from now (opened, or answered)."""
        if transport not in self.open:  # closed by us already
            return
        self.waiting.pop(transport, None)
        self.partial.discard(transport)
        self.waiting[transport] = self.loop.time()
        if self.timer is None:
            self._arm()

    def received(self, transport: asyncio.Transport) -> None:
        if transport in self.waiting:
            self.partial.add(transport)

    def headers_done(self, transport: asyncio.Transport) -> None:
        """A request's headers are complete: in progress until answered, never evicted."""
        self.waiting.pop(transport, None)
        self.partial.discard(transport)

    def lost(self, transport: asyncio.Transport) -> None:
        self.open.discard(transport)
        self.headers_done(transport)

    def _close(self, transport: asyncio.Transport) -> None:
        self.lost(transport)
        transport.close()

    def _arm(self) -> None:
        if self.waiting:
            oldest = next(iter(self.waiting.values()))
            self.timer = self.loop.call_at(oldest + self.limits.header_timeout, self._expire)
        else:
            self.timer = None

    def _expire(self) -> None:
        """Close every connection past its header deadline, then sleep until the next one's."""
        cutoff = self.loop.time() - self.limits.header_timeout
        late = []
        for transport, since in self.waiting.items():
            if since > cutoff:
                break
            late.append(transport)
        for transport in late:
            if transport in self.partial:
                transport.write(self._408)
            self.timed_out += 1
            self._close(transport)
        self._arm()

    def _warn(self) -> None:
        now = self.loop.time()
        if now - self._warned_at < WARN_EVERY_S:
            return
        evicted = self.evicted - self._warned_counts[0]
        refused = self.refused - self._warned_counts[1]
        log.warning(
            "%d connections open, the cap (EDGEPERSO_MAX_CONNECTIONS): %d connections waiting "
            "for headers closed to admit new ones and %d new ones refused (every open one had a "
            "request in progress) since the previous warning or the start",
            len(self.open),
            evicted,
            refused,
        )
        self._warned_at, self._warned_counts = now, (self.evicted, self.refused)


# One guard per uvicorn server (its ServerState), made at its first connection with the
# settings in the environment, where `edge serve` puts them for every worker process.
_guards: weakref.WeakKeyDictionary[object, ConnectionGuard] = weakref.WeakKeyDictionary()


def guard_for(
    server_state: object, loop: asyncio.AbstractEventLoop, backlog: int
) -> ConnectionGuard:
    guard = _guards.get(server_state)
    if guard is None:
        guard = ConnectionGuard(loop, Limits.from_settings(Settings.from_env(), backlog))
        _guards[server_state] = guard
    return guard
