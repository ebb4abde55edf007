"""Shipping the events directory to an object store, so that nothing acknowledged lives only on
a node's disk (edge containers have ephemeral disks, and are replaced or put to sleep).

- **What**: closed segments (`events-*.jsonl`, feedback and `exposures/`), oldest first. With a
  store set, segments are closed by age every `EDGEPERSO_EVENTS_ROTATE_SECONDS` (10) even when
  idle, so an acknowledged event leaves the node within about that many seconds.
- **Where**: `<store>/<kind>/dt=<day>/<node>/<segment>-<sha256 of its bytes, 16 hex>.jsonl`,
  kind `events` or `exposures`, day the segment's UTC start, node the name kept in the events
  directory (`.node-id`, or EDGEPERSO_NODE_ID). The name is a function of the disk and the
  bytes, so uploading a segment again (after a crash between the upload and the delete, or a
  store that took an upload its sender never heard back from) writes the same object, and two
  segments never share a name.
- **When deleted**: only after the store confirmed the upload; then the directory is fsynced.
- **Failures**: a failed upload stops the round (the store is likely down); rounds are retried
  with a backoff doubling from one second to a minute. Segments wait on disk under the events
  directory's cap (`edge.eventlog`): past it, POST /v1/events answers 503 and nothing accepted
  is lost. /readyz says what is waiting and why; recommendations never wait on the store.
- **Several workers**: one ships at a time (an advisory lock on `.shipping.lock`, released by
  the kernel if its holder dies), the others only report.
- **Shutdown**: after the sinks close their segments, every worker ships what is left, for up
  to `EDGEPERSO_SHIP_GRACE_SECONDS` (10)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import anyio
import anyio.to_thread
from msgspec import Struct

from edge import metrics
from edge.durable import fsync_directory
from edge.filelock import held
from edge.objectstore import ObjectStore, StoreError

log = logging.getLogger("edgeperso.shipping")

EXPOSURES = "exposures"  # the exposure log's folder in the events directory (edge.eventlog)
SEGMENT = re.compile(r"events-(\d{8})T\d{6}Z-.+\.jsonl")
LOCK = ".shipping.lock"
NODE_FILE = ".node-id"
ROUND_S = 1.0  # how often closed segments are looked for
MAX_BACKOFF_S = 60.0
BEHIND_S = 60.0  # a segment waiting longer than this makes /readyz say "behind"
NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def new_node_id() -> str:
    """This machine's name (made safe for a key) and a random part: a container's host name
    may be shared by many, and a new instance is a new node."""
    host = re.sub(r"[^A-Za-z0-9.-]+", "-", socket.gethostname()).strip(".-")[:40] or "node"
    return f"{host}-{secrets.token_hex(4)}"


def node_id_of(root: str | Path) -> str:
    """The node's name kept in the events directory (`.node-id`), made on first use: a server
    started again on the same disk ships a segment it had half uploaded under the same key."""
    path = Path(root) / NODE_FILE
    for _ in range(50):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            name = path.read_text().strip()
            if name:  # else another worker is writing it: read again
                return check_node_id(name)
            time.sleep(0.01)
            continue
        node = new_node_id()
        try:
            os.write(fd, node.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_directory(path.parent)
        return node
    raise ValueError(f"{path} stays empty; delete it, or set EDGEPERSO_NODE_ID")


def check_node_id(node: str) -> str:
    if not NODE_ID.fullmatch(node):
        raise ValueError(
            f"EDGEPERSO_NODE_ID {node!r} must be 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return node


class ShippingStatus(Struct, frozen=True):
    """/readyz's `shipping`: "ok"; "retrying" when this process's last upload failed (the reason
    says why); "behind" when a segment has waited over BEHIND_S all the same."""

    status: str
    store: str
    waiting_segments: int = 0
    waiting_bytes: int = 0
    oldest_waiting_s: float | None = None
    reason: str | None = None


class Shipper:
    def __init__(
        self,
        root: str | Path,
        store: ObjectStore,
        node: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root, self.store, self.node = Path(root), store, check_node_id(node)
        self._clock = clock
        self.shipped = 0  # segments this process uploaded
        self.error: str | None = None  # why the last round stopped, until one succeeds
        self._failures = 0
        self._next_round = -float("inf")
        self._status: tuple[float, ShippingStatus] | None = None  # (when, what) /readyz said

    def waiting(self) -> list[Path]:
        """Closed segments not shipped yet, oldest first (by the start time in their names)."""
        found = []
        for folder in (self.root, self.root / EXPOSURES):
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                found += [p for p in folder.iterdir() if SEGMENT.fullmatch(p.name)]
        return sorted(found, key=lambda p: p.name)

    def object_key(self, path: Path, data: bytes) -> str:
        kind = "exposures" if path.parent == self.root / EXPOSURES else "events"
        match = SEGMENT.fullmatch(path.name)
        day = match.group(1) if match else time.strftime("%Y%m%d", time.gmtime())
        digest = hashlib.sha256(data).hexdigest()[:16]
        stem = path.name.removesuffix(".jsonl")
        return f"{kind}/dt={day[:4]}-{day[4:6]}-{day[6:]}/{self.node}/{stem}-{digest}.jsonl"

    def ship_once(self, deadline: float | None = None) -> int:
        """Upload every waiting segment (until `deadline`, a clock time), deleting each once the
        store has it; how many. A failure stops the round and is remembered in `error`."""
        shipped = 0
        with self._lock(wait_until=deadline) as held:
            if not held:
                return 0  # another worker ships
            for path in self.waiting():
                if deadline is not None and self._clock() > deadline:
                    break
                try:
                    data = path.read_bytes()
                except FileNotFoundError:
                    continue  # shipped by a worker that held the lock before
                try:
                    self.store.put(self.object_key(path, data), data)
                except StoreError as exc:
                    self._failed(str(exc))
                    metrics.SHIP_FAILURES.inc()
                    return shipped
                metrics.SHIPPED.inc()
                path.unlink(missing_ok=True)
                fsync_directory(path.parent)
                shipped += 1
        self.shipped += shipped
        if self.error is not None:
            log.warning("shipping to %s works again", self.store.url)
        self.error, self._failures = None, 0
        return shipped

    def _failed(self, error: str) -> None:
        self._failures += 1
        backoff = min(MAX_BACKOFF_S, ROUND_S * 2 ** (self._failures - 1))
        self._next_round = self._clock() + backoff
        if error != self.error:  # said once, not at every round
            log.error("could not ship the event log (%s); trying again with backoff", error)
        self.error = error

    @contextlib.contextmanager
    def _lock(self, wait_until: float | None) -> Iterator[bool]:
        """The shipping lock of the events directory (`edge.filelock`)."""
        with contextlib.ExitStack() as stack:
            try:
                mine = stack.enter_context(held(self.root / LOCK, wait_until, self._clock))
            except OSError as exc:  # opening the lock file; errors of the round go up
                self._failed(f"the events directory cannot be used ({exc})")
                mine = False
            yield mine

    def status(self, now: float | None = None) -> ShippingStatus:
        """What waits, read from the directory at most once a second (/readyz may be asked
        much more often than that)."""
        now = time.time() if now is None else now
        cached = self._status
        if cached is not None and now - cached[0] < ROUND_S and cached[1].reason == self.error:
            return cached[1]
        status = self._read_status(now)
        self._status = (now, status)
        metrics.SHIP_WAITING.set(status.oldest_waiting_s or 0.0)
        return status

    def _read_status(self, now: float) -> ShippingStatus:
        waiting, size, oldest = 0, 0, None
        for path in self.waiting():
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            waiting += 1
            size += stat.st_size
            age = now - _started(path, stat.st_mtime)
            oldest = age if oldest is None else max(oldest, age)
        behind = oldest is not None and oldest > BEHIND_S
        reason = self.error
        if behind and reason is None:
            reason = f"segments have waited over {BEHIND_S:g} s (another worker ships them)"
        return ShippingStatus(
            "retrying" if self.error else "behind" if behind else "ok",
            self.store.url,
            waiting,
            size,
            None if oldest is None else round(oldest, 1),
            reason,
        )

    async def run(self, before_round: Callable[[], None]) -> None:
        """A round every ROUND_S (later after failures) until cancelled (the app's lifespan);
        `before_round` closes segments past their age first."""
        while True:
            await anyio.sleep(ROUND_S)
            try:
                await anyio.to_thread.run_sync(before_round)
                if self._clock() >= self._next_round:
                    await anyio.to_thread.run_sync(self.ship_once)
                await anyio.to_thread.run_sync(self.status)  # the waiting-age gauge, too
            except Exception:  # shipping must never stop the server
                log.exception("a shipping round failed; trying again in %g s", ROUND_S)

    def drain(self, grace_s: float) -> None:
        """At shutdown, once the sinks are closed: ship what is left within `grace_s`."""
        deadline = self._clock() + grace_s
        while self._clock() < deadline:
            self.ship_once(deadline=deadline)
            left = self.waiting()
            if not left:
                return
            if self.error is not None:
                time.sleep(min(1.0, max(0.0, deadline - self._clock())))
        left = self.waiting()
        if left:
            log.error(
                "%d segment(s) were not shipped before the grace period ended (%s); they stay "
                "in %s and are shipped by the next server started on it",
                len(left),
                self.error or "out of time",
                self.root,
            )


def _started(path: Path, fallback: float) -> float:
    """When a segment was opened (the UTC stamp in its name), as a Unix time."""
    match = re.search(r"events-(\d{8}T\d{6}Z)-", path.name)
    if match is None:
        return fallback
    opened = datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return opened.timestamp()
