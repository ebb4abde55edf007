"""An advisory lock on a file, for the worker processes of one server that share a directory:
one of them does a job at a time (shipping segments, following the bundle store). The kernel
releases it when its holder exits, kill -9 included, so no stale lock outlives a process."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def held(
    path: Path, wait_until: float | None = None, clock: Callable[[], float] = time.monotonic
) -> Iterator[bool]:
    """True while this process holds the lock on `path` (made if missing), False when another
    does. With `wait_until` (a `clock` time) it waits that long for it, else it tries once.
    An OSError opening the file goes to the caller."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if wait_until is None or clock() > wait_until:
                    yield False
                    return
                time.sleep(0.05)
        yield True
    finally:
        os.close(fd)  # releases the lock
