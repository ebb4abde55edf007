"""The events directory: the feedback log and the exposure log in it, the room they may take,
how long closed segments are kept, and whether the log works, as /readyz reports it.

- **Cap**: every file in the directory and its `exposures/` folder counts towards
  `max_bytes`; a batch that would pass it is refused whole (503, Retry-After).
- **Reserve**: a batch that would leave less than `min_free_bytes` free on the disk is refused
  the same way, before the disk is full for real (and if it fills anyway, the failed write is
  cut off and answered the same way).
- Both are checked against figures read at most once a second (a directory scan and one
  `statvfs`), plus what this process wrote since: other workers' writes of the last second
  are not counted until the next read, so the cap can be passed by up to one second of their
  writes.
- **Retention** is off unless asked for: deleting acknowledged events loses data. With
  `retention_days`, closed segments (`*.jsonl`) whose last write is older are deleted, each
  logged.
- A directory that cannot be used at start does not stop the server: answers keep coming, the
  events endpoint says why it refuses, /readyz says it in `events`, and the sinks are tried
  again every few seconds."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import anyio
from msgspec import Struct

from edge import metrics
from edge.config import Settings
from edge.sink import JsonlSegmentSink, LogFull, RetryingSink, SinkError

log = logging.getLogger("edgeperso.eventlog")

EXPOSURES = "exposures"
REFRESH_S = 1.0  # how old the directory's size and the disk's free space may be
UPKEEP_S = 5.0  # how often sinks that could not be opened are tried again
SWEEP_S = 60.0  # how often retention looks for old segments


def _mib(n: int) -> str:
    return f"{n / 1024**2:,.1f} MiB" if n >= 1024**2 else f"{n:,} bytes"


class LogStatus(Struct, frozen=True, omit_defaults=True):
    """/readyz's `events`: "ok", "full", "unavailable" (a reason says why) or "disabled"."""

    status: str
    reason: str | None = None


class LogSpace:
    """The room left for the events directory: under its cap, above its disk's reserve."""

    def __init__(
        self,
        root: Path,
        max_bytes: int,
        min_free_bytes: int,
        refresh_s: float = REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root, self.max_bytes, self.min_free_bytes = root, max_bytes, min_free_bytes
        self.refresh_s, self._clock = refresh_s, clock
        self._lock = threading.Lock()
        self._read_at = -float("inf")
        self.used = 0  # bytes in the directory, as last read plus what was reserved since
        self.free = 0  # bytes free on its disk, likewise
        self.full: str | None = None  # why the last batch was refused for room, until one fits

    def refresh(self) -> None:
        """Read the directory's size and the disk's free space now."""
        used = 0
        for folder in (self.root, self.root / EXPOSURES):
            try:
                entries = list(os.scandir(folder))
            except FileNotFoundError:
                continue
            for entry in entries:
                try:
                    if entry.is_file(follow_symlinks=False):
                        used += entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:
                    continue  # rotated or deleted by another worker meanwhile
        disk = os.statvfs(self.root)
        with self._lock:
            self.used, self.free = used, disk.f_bavail * disk.f_frsize
            self._read_at = self._clock()
            if self.used < self.max_bytes and self.free > self.min_free_bytes:
                self.full = None  # room again (a batch may still be too large for it)

    def reserve(self, size: int) -> None:
        """Count `size` bytes about to be written, or raise LogFull saying which limit."""
        if self._clock() - self._read_at >= self.refresh_s:
            try:
                self.refresh()
            except OSError as exc:
                raise SinkError(f"the events directory cannot be read ({exc})") from exc
        with self._lock:
            if self.used + size > self.max_bytes:
                self.full = (
                    f"the event log is full: its directory holds {_mib(self.used)}, and a batch "
                    f"of {size:,} bytes would pass its cap of {_mib(self.max_bytes)} "
                    "(EDGEPERSO_EVENTS_MAX_BYTES: move closed segments away, raise it, or set "
                    "EDGEPERSO_EVENTS_RETENTION_DAYS)"
                )
            elif self.free - size < self.min_free_bytes:
                self.full = (
                    f"the event log is full: its disk has {_mib(self.free)} free, and a batch of "
                    f"{size:,} bytes would leave less than the {_mib(self.min_free_bytes)} kept "
                    "free (EDGEPERSO_EVENTS_MIN_FREE_BYTES)"
                )
            else:
                self.used += size
                self.free -= size
                self.full = None
                return
            raise LogFull(self.full)


class EventLog:
    """The feedback and exposure sinks of one events directory, with its space and upkeep."""

    def __init__(
        self,
        root: str | Path,
        max_bytes: int = 1024**3,
        min_free_bytes: int = 64 * 1024**2,
        retention_days: float | None = None,
        retry_s: float = UPKEEP_S,
        rotate_s: float = 3600.0,
    ) -> None:
        self.root = Path(root)
        self.retention_days = retention_days
        self.retry_s = retry_s
        self.space = LogSpace(self.root, max_bytes, min_free_bytes)
        reserve = self.space.reserve
        self.feedback = RetryingSink(
            lambda: JsonlSegmentSink(self.root, max_age_s=rotate_s, reserve=reserve),
            "event log",
            retry_s,
        )
        self.exposures = RetryingSink(
            lambda: JsonlSegmentSink(self.root / EXPOSURES, max_age_s=rotate_s, reserve=reserve),
            "exposure log",
            retry_s,
        )
        self._swept = -float("inf")

    @classmethod
    def from_settings(cls, settings: Settings) -> EventLog:
        if settings.events_dir is None:
            raise ValueError("no events directory is set (EDGEPERSO_EVENTS_DIR)")
        return cls(
            settings.events_dir,
            settings.events_max_bytes,
            settings.events_min_free_bytes,
            settings.events_retention_days,
            UPKEEP_S,
            settings.rotate_seconds,
        )

    def open(self) -> None:
        """Open what can be opened now; what cannot says why in `status` and is tried again."""
        for sink in (self.feedback, self.exposures):
            sink.try_open()

    def status(self) -> LogStatus:
        if not self.feedback.is_open:
            return LogStatus("unavailable", self.feedback.error)
        if self.space.full is not None:
            return LogStatus("full", self.space.full)
        return LogStatus("ok")

    def upkeep(self, now: float | None = None) -> list[Path]:
        """One round: open what is not open, read the room left, apply retention; the
        segments it deleted."""
        self.open()
        if self.feedback.is_open:
            try:
                self.space.refresh()
            except OSError:
                log.exception("could not read the size of %s", self.root)
            metrics.EVENT_LOG_BYTES.set(self.space.used)
            metrics.EVENT_LOG_CAP.set(self.space.max_bytes)
        now = time.time() if now is None else now
        if self.retention_days is None or now - self._swept < SWEEP_S:
            return []
        self._swept = now
        return delete_old_segments(self.root, self.retention_days, now)

    async def run(self) -> None:
        """`upkeep` every `retry_s` seconds until cancelled (the app's lifespan)."""
        while True:
            await anyio.sleep(self.retry_s)
            try:
                await anyio.to_thread.run_sync(self.upkeep)
            except Exception:  # the upkeep must never stop the server
                log.exception("event log upkeep failed; trying again in %g s", self.retry_s)

    def close_due_segments(self) -> None:
        """Close segments past their age, written to or not (shipping calls it every second)."""
        self.feedback.close_if_due()
        self.exposures.close_if_due()

    def close(self) -> None:
        self.feedback.close()
        self.exposures.close()


def delete_old_segments(root: Path, retention_days: float, now: float) -> list[Path]:
    """Delete closed segments (feedback and exposures) last written over `retention_days` ago."""
    cutoff = now - retention_days * 86400.0
    deleted = []
    for folder in (root, root / EXPOSURES):
        for path in sorted(folder.glob("*.jsonl")):
            try:
                written = path.stat().st_mtime
                if written >= cutoff:
                    continue
                path.unlink()
            except FileNotFoundError:
                continue  # another worker deleted it first
            except OSError:
                log.exception("could not delete the old segment %s", path)
                continue
            deleted.append(path)
            age = (now - written) / 86400.0
            log.warning(
                "deleted %s: last written %.1f days ago, past EDGEPERSO_EVENTS_RETENTION_DAYS=%g",
                path,
                age,
                retention_days,
            )
    return deleted
