"""Quotas on POST /v1/events: a token bucket per client, counting events (not requests), so no
one client can fill the log or flood the bandits. The defaults (50 events a second sustained,
bursts of 1,000) are far above what a page sends. Each worker process keeps its own table:
with N workers a client may get up to N times the quota, however its connections land.

The table of clients is bounded: past `max_clients`, the one seen longest ago is forgotten. A
forgotten client comes back with a full bucket, which is what an idle one has anyway (a bucket
refills in burst / rate seconds, 20 s by default)."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

from edge.errors import PayloadTooLarge, TooManyEvents

CLIENT_HEADER = "x-edgeperso-client"
MAX_CLIENT_KEY_CHARS = 256
MAX_CLIENTS = 20_000  # about 260 bytes each (key, bucket, table): some 5 MB per worker


def client_key(headers: Mapping[str, str], peer: tuple[str, int] | None, trust_header: bool) -> str:
    """Who sent a request: the gateway's `x-edgeperso-client` when it is trusted (the gateway
    sets it from the connecting address and drops the client's own), else the socket's peer."""
    if trust_header:
        given = headers.get(CLIENT_HEADER, "").strip()
        if given:
            return "h:" + given[:MAX_CLIENT_KEY_CHARS]
    return "a:" + (peer[0] if peer else "unknown")


class EventQuota:
    """Token buckets of `burst` events refilled at `rate` events a second, one per client."""

    def __init__(
        self,
        rate: float,
        burst: int,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1 or max_clients < 1:
            raise ValueError(
                f"a quota needs rate > 0, burst >= 1, max_clients >= 1; got "
                f"{rate}, {burst}, {max_clients}"
            )
        self.rate, self.burst, self.max_clients = rate, burst, max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, when
        self._lock = threading.Lock()

    def charge(self, client: str, events: int) -> None:
        """Take `events` from the client's bucket, or raise without taking any: 429
        (`TooManyEvents`, with when to retry), or 413 for a batch larger than a whole burst."""
        if events > self.burst:
            raise PayloadTooLarge(
                f"the batch has {events} events; this service takes at most {self.burst} at "
                "once from one client (EDGEPERSO_EVENTS_BURST): send smaller batches",
                field="$.events",
            )
        now = self._clock()
        with self._lock:
            tokens, then = self._buckets.pop(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - then) * self.rate)
            allowed = tokens >= events
            if allowed:
                tokens -= events
            self._buckets[client] = (tokens, now)  # the most recently seen go last
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        if not allowed:
            wait = max(1, math.ceil((events - tokens) / self.rate))
            raise TooManyEvents(
                f"this client sent more than its quota of {self.rate:g} events a second (bursts "
                f"of up to {self.burst}); {events} more fit in about {wait} s: retry after it",
                retry_after=wait,
            )

    def __len__(self) -> int:
        return len(self._buckets)
