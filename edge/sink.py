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
complete line (a torn line was never acknowledged) and renamed."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import BinaryIO, Protocol

import msgspec

log = logging.getLogger("edgeperso.sink")

OPEN_SUFFIX = ".jsonl.open"


class EventSink(Protocol):
    def write(self, records: list[dict[str, object]]) -> None:
        """Store a batch durably or raise; a batch that raised is not stored at all."""

    def close(self) -> None:
        """Make everything written durable and readable; called once, at shutdown."""


class SinkError(Exception):
    """The sink could not store a batch (disk full, permissions...)."""


class JsonlSegmentSink:
    def __init__(
        self, directory: str | Path, max_bytes: int = 64 * 1024 * 1024, max_age_s: float = 3600.0
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes, self.max_age_s = max_bytes, max_age_s
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

    def write(self, records: list[dict[str, object]]) -> None:
        data = b"".join(self._encoder.encode(r) + b"\n" for r in records)
        while True:
            with self._lock:
                file = self._file
                if file is not None and not self._due_for_rotation(file):
                    start = file.tell()
                    try:
                        file.write(data)
                        file.flush()
                    except OSError as exc:
                        self._undo(file, start)
                        raise SinkError(f"the event log could not be written ({exc})") from exc
                    self._appended += 1
                    mine = self._appended
                    break
            # A new segment, with no fsync in flight on the old one (the same lock order as
            # _make_durable: the fsync lock first).
            with self._sync_lock, self._lock:
                if self._file is None or self._due_for_rotation(self._file):
                    self._rotate()
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
                raise SinkError(f"the event log could not be written ({exc})") from exc
            with self._lock:
                self._durable = max(self._durable, through)
                if file is self._file:
                    self._durable_offset = max(self._durable_offset, end)

    def close(self) -> None:
        with self._sync_lock, self._lock:
            self._close_segment()

    def _due_for_rotation(self, file: BinaryIO) -> bool:
        too_old = time.monotonic() - self._opened > self.max_age_s
        return file.tell() >= self.max_bytes or too_old

    def _rotate(self) -> BinaryIO:
        """A new segment; closing the old one fsyncs it, so every batch so far is durable."""
        self._close_segment()
        self._durable, self._durable_offset = self._appended, 0
        self._seq += 1
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self._path = self.directory / f"events-{stamp}-{os.getpid()}-{self._seq:04d}{OPEN_SUFFIX}"
        self._file = open(self._path, "ab")  # noqa: SIM115 (kept open across batches)
        _fsync_directory(self.directory)  # the new name survives a crash with its first batch
        self._opened = time.monotonic()
        return self._file

    def _close_segment(self) -> None:
        if self._file is None or self._path is None:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        empty = self._path.stat().st_size == 0
        if empty:
            self._path.unlink()
        else:
            self._path.rename(self._path.with_name(self._path.name.removesuffix(".open")))
        _fsync_directory(self.directory)
        self._file, self._path = None, None

    def _undo(self, file: BinaryIO, start: int) -> None:
        """Cut a failed batch off, so the segment never holds half of one."""
        try:
            file.truncate(start)
            file.seek(start)
        except OSError:
            log.exception("could not cut a failed batch off %s; starting a new segment", self._path)
            self._file = None  # the next batch opens a fresh segment


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
        _fsync_directory(directory)
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


def _fsync_directory(directory: Path) -> None:
    """Make renames and new files durable too, not only their contents."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
