"""Writes that survive a crash: files fsynced before they count, a file replaced whole (written
aside, then renamed over it), and directories fsynced so that new names and renames last too."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_directory(directory: Path) -> None:
    """Make renames and new files in `directory` durable, not only their contents."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes | memoryview) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_atomically(path: Path, data: bytes) -> None:
    """Readers see the old file or the new one, never a mix, and the new one survives a crash."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write_durably(temporary, data)
    temporary.replace(path)
    fsync_directory(path.parent)
