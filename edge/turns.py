"""Recommendations take turns on the CPU: one at a time, in arrival order, with a pass of the
event loop before each.

A recommendation is a millisecond or two of CPU with no await in it. Left alone, the requests
the loop read in one pass run back to back before it reads its sockets again: at 64 connections
a burst of up to 64 recommendations (about 100 ms here), while new requests sit unread in their
sockets, not yet stamped (`edge.arrival`), and cheap requests (feedback, health checks) wait
behind the whole burst. Taken in turns, the loop reads its sockets between any two
recommendations: an arrival is stamped within one recommendation of arriving, so the latency
budget sees the whole queue, and cheap requests go in between."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class Turns:
    """A FIFO lock whose holder first lets the loop make one pass. Make it inside the running
    loop (the app's lifespan): an asyncio lock belongs to the loop it is first used on."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()  # wakes its waiters in the order they came

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        waits = self._lock.locked()
        async with self._lock:
            if not waits:
                # One pass of the loop while holding the turn: sockets are read and stamped,
                # cheap requests run, and every recommendation that came meanwhile queues
                # behind this one. A turn that waited had its pass: the lock's wake-up is one.
                await asyncio.sleep(0)
            yield
