"""Where accepted feedback events go. The embedded default appends JSON lines to segment files
and fsyncs every batch before the endpoint answers, so an acknowledged event is on disk even if
the process dies right after; another store plugs in through `EventSink`.

Group commit: batches that arrive while an fsync is running are appended behind it and made
durable together by the next one, so concurrent clients share fsyncs instead of queueing one
each. A batch's writer returns only once an fsync that began after its append has succeeded.
When an fsync fails, everything appended since the last good one is cut off and every writer
waiting on it gets the error, so a batch that raised is never stored.

Segments: `events-<UTC start>-<pid>-<seq>.jsonl.open` while written, renamed to `.jsonl` when
rotated (by size or age) or closed. Readers (`edgeperso export`) take the `.jsonl` files. A
segment left `.open` by a process that died is closed at the next start: cut after its last
complete line (a torn line was never acknowledged) and renamed.

Every failure of the disk (a full one included) is a `SinkError`, never a bare OSError: the
endpoint answers 503 with Retry-After, and nothing of the batch is kept. Before it appends, the
sink asks `reserve` for the room (`edge.eventlog`: the directory's size cap and its disk's
free-space reserve). `RetryingSink` opens a sink whose directory is not usable yet, again and
again, so a directory fixed later works without a restart."""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Protocol

import msgspec

from edge.durable import fsync_directory

log = logging.getLogger("edgeperso.sink")

OPEN_SUFFIX = ".jsonl.open"


class EventSink(Protocol):
    def write(self, records: list[dict[str, object]]) -> None:
        """Store a batch durably or raise; a batch that raised is not stored at all."""

    def close(self) -> None:
        """Make everything written durable and readable; called once, at shutdown."""


class SinkError(Exception):
    """The sink could not store a batch (disk full, permissions...); nothing of it was kept.
    `retry_after`: seconds after which sending it again may succeed."""

    retry_after = 10


class LogFull(SinkError):
    """The log reached its size cap, or its disk its free-space reserve or its end."""

    retry_after = 60


def disk_error(exc: OSError, what: str = "the event log could not be written") -> SinkError:
    """The SinkError for an OSError: LogFull when the disk or a quota is full."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return LogFull(f"{what}: its disk is full ({exc})")
    return SinkError(f"{what} ({exc})")


class JsonlSegmentSink:
    """`reserve(n)` is asked for the room of each batch before it is appended (it raises
    SinkError, usually LogFull, to refuse). The first segment is opened at once, so a
    directory that cannot be written fails here rather than at the first batch."""

    def __init__(
        self,
        directory: str | Path,
        max_bytes: int = 64 * 1024 * 1024,
        max_age_s: float = 3600.0,
        reserve: Callable[[int], None] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes, self.max_age_s = max_bytes, max_age_s
        self.reserve = reserve
        self._lock = threading.Lock()  # the file and the counters; batches come from threads
        self._sync_lock = threading.Lock()  # one fsync at a time
        self._encoder = msgspec.json.Encoder()
        self._file: BinaryIO | None = None
        self._path: Path | None = None
        self._opened = 0.0
        self._seq = 0
        self._appended = 0  # batches appended so far (a batch's number is its count)
        self._durable = 0  # batches up to this number are on disk
        self._durable_offset = 0  # where the current segment's durable part ends
        self._lost_through = 0  # batches up to this number were cut off by a failed fsync
        self.recovered = recover_segments(self.directory)
        with self._sync_lock, self._lock:
            self._rotate()

    def write(self, records: list[dict[str, object]]) -> None:
        data = b"".join(self._encoder.encode(r) + b"\n" for r in records)
        if self.reserve is not None:
            self.reserve(len(data))
        while True:
            with self._lock:
                file = self._file
                if file is not None and not self._due_for_rotation(file):
                    start = file.tell()
                    try:
                        _append(file, data)
                    except OSError as exc:
                        self._undo(file, start)
                        raise disk_error(exc) from exc
                    self._appended += 1
                    mine = self._appended
                    break
            # A new segment, with no fsync in flight on the old one (the same lock order as
            # _make_durable: the fsync lock first).
            with self._sync_lock, self._lock:
                if self._file is None or self._due_for_rotation(self._file):
                    try:
                        self._rotate()
                    except OSError as exc:
                        raise disk_error(exc, "a new event log segment could not be made") from exc
        self._make_durable(mine)

    def _make_durable(self, mine: int) -> None:
        """Return once batch `mine` is on disk; raise SinkError if it was cut off."""
        with self._sync_lock:
            with self._lock:
                if mine <= self._lost_through:
                    raise SinkError("the event log could not be written (an fsync failed)")
                if mine <= self._durable:
                    return  # an fsync that began after this batch's append covered it
                file = self._file
                if file is None:  # the segment was given up after a failed cut: not stored
                    raise SinkError("the event log could not be written (segment abandoned)")
                through, end = self._appended, file.tell()
            try:
                os.fsync(file.fileno())
            except OSError as exc:
                with self._lock:
                    self._undo(file, self._durable_offset)
                    self._lost_through = self._appended
                raise disk_error(exc) from exc
            with self._lock:
                self._durable = max(self._durable, through)
                if file is self._file:
                    self._durable_offset = max(self._durable_offset, end)

    def close_if_due(self) -> None:
        """Close the segment when it is past its age, even with no batch coming to rotate it
        (so that it can be shipped); the next batch opens a new one. An empty one waits."""
        with self._sync_lock, self._lock:
            file = self._file
            if file is None or file.tell() == 0 or not self._due_for_rotation(file):
                return
            try:
                self._close_segment()
            except OSError:
                log.exception("could not close the event segment %s", self._path)

    def close(self) -> None:
        """Close the segment; a failure is logged (what it cuts off was never acknowledged)."""
        with self._sync_lock, self._lock:
            try:
                self._close_segment()
            except OSError:
                log.exception("could not close the event segment %s", self._path)

    def _due_for_rotation(self, file: BinaryIO) -> bool:
        too_old = time.monotonic() - self._opened > self.max_age_s
        return file.tell() >= self.max_bytes or too_old

    def _rotate(self) -> BinaryIO:
        """A new segment; closing the old one fsyncs it, so every batch so far is durable."""
        self._close_segment()
        self._durable, self._durable_offset = self._appended, 0
        self._seq += 1
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = self.directory / f"events-{stamp}-{os.getpid()}-{self._seq:04d}{OPEN_SUFFIX}"
        # Unbuffered: a failed write leaves nothing in a buffer that a later flush or truncate
        # would try to write again, and the cut below is exact.
        file = open(path, "ab", buffering=0)  # noqa: SIM115 (kept open across batches)
        self._file, self._path = file, path
        fsync_directory(self.directory)  # the new name survives a crash with its first batch
        self._opened = time.monotonic()
        return file

    def _close_segment(self) -> None:
        """Fsync, close and rename the segment. A failed fsync cuts off what it should have
        made durable (the batches waiting on it fail) before the error goes up."""
        file, path = self._file, self._path
        if file is None or path is None:
            return
        try:
            os.fsync(file.fileno())
        except OSError:
            self._undo(file, self._durable_offset)
            self._lost_through = self._appended
            raise
        self._durable, self._durable_offset = self._appended, file.tell()
        self._file, self._path = None, None
        file.close()
        if path.stat().st_size == 0:
            path.unlink()
        else:
            path.rename(path.with_name(path.name.removesuffix(".open")))
        fsync_directory(self.directory)

    def _undo(self, file: BinaryIO, start: int) -> None:
        """Cut a failed batch off, so the segment never holds half of one."""
        try:
            file.truncate(start)
            file.seek(start)
        except OSError:
            log.exception("could not cut a failed batch off %s; starting a new segment", self._path)
            self._file = None  # the next batch opens a fresh segment
            # Batches appended before it were never fsynced there: they fail too.
            self._lost_through = self._appended


def _append(file: BinaryIO, data: bytes) -> None:
    """All of `data`, or an OSError: an unbuffered write may take only part of it."""
    view = memoryview(data)
    while view:
        written = file.write(view)
        if not written:
            raise OSError(errno.EIO, "the disk took no bytes")
        view = view[written:]


class RetryingSink:
    """A sink opened when its directory can be used: at start, at a write `retry_s` after the
    last try, or by `try_open` (the app's upkeep, every few seconds). Until then every write
    raises SinkError saying why, so a directory fixed later recovers without a restart."""

    def __init__(
        self,
        open_sink: Callable[[], EventSink],
        name: str,
        retry_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._open, self.name, self.retry_s, self._clock = open_sink, name, retry_s, clock
        self._sink: EventSink | None = None
        self._tried = -float("inf")
        self._lock = threading.Lock()
        self.error: str | None = None  # why it is not open, while it is not

    @property
    def is_open(self) -> bool:
        return self._sink is not None

    def try_open(self) -> bool:
        with self._lock:
            if self._sink is not None:
                return True
            self._tried = self._clock()
            try:
                self._sink = self._open()
            except (OSError, SinkError) as exc:
                error = f"the {self.name} cannot be opened: {exc}"
                if error != self.error:  # said once, not every few seconds
                    log.error("%s; retrying every %g s", error, self.retry_s)
                self.error = error
                return False
            if self.error is not None:
                log.warning("the %s is open again", self.name)
            self.error = None
            return True

    def write(self, records: list[dict[str, object]]) -> None:
        if self._sink is None and self._clock() - self._tried >= self.retry_s:
            self.try_open()
        sink = self._sink
        if sink is None:
            error = SinkError(f"{self.error}; retried every {self.retry_s:g} s")
            error.retry_after = max(1, round(self.retry_s))
            raise error
        sink.write(records)

    def close_if_due(self) -> None:
        with self._lock:
            sink = self._sink
        if isinstance(sink, JsonlSegmentSink):
            sink.close_if_due()

    def close(self) -> None:
        with self._lock:
            if self._sink is not None:
                self._sink.close()


def recover_segments(directory: Path) -> list[Path]:
    """Close the segments of processes that are gone: keep their complete lines, rename them."""
    closed = []
    for path in sorted(directory.glob(f"*{OPEN_SUFFIX}")):
        if _writer_alive(path):
            continue  # another worker's live segment
        data = path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        if len(complete) < len(data):
            log.warning("%s ended in a torn line (never acknowledged); cut it off", path.name)
            path.write_bytes(complete)
        if complete:
            target = path.with_name(path.name.removesuffix(".open"))
            path.rename(target)
            closed.append(target)
        else:
            path.unlink()
    if closed:
        fsync_directory(directory)
        log.info("closed %d event segment(s) left open by a stopped process", len(closed))
    return closed


def _writer_alive(path: Path) -> bool:
    """Whether the process named in a segment's file name still runs (not this one)."""
    try:
        pid = int(path.name.removesuffix(OPEN_SUFFIX).split("-")[-2])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
