"""Publishing bundles so that no server ever sees half of one.

A publish root holds every build in its own directory and a small pointer naming the one to
serve:

    ROOT/current.json            {"build": "<build id>", "previous": "<build id>", ...}
    ROOT/builds/<build id>/      manifest.json and every file it lists

`publish` verifies a bundle, copies it into a hidden staging directory, fsyncs it, renames it
to `builds/<build id>` and only then rewrites the pointer (a new file renamed over the old, so
a reader sees the old pointer or the new one, never a mix). Rolling back is pointing back.
A server started on ROOT follows the pointer (`edge.reload`); a build copied in by other means,
file by file, is retried until it verifies."""

from __future__ import annotations

import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from edge.bundle.checks import check_file, check_manifest, verify
from edge.bundle.files import MANIFEST
from edge.bundle.manifest import Manifest
from edge.durable import fsync_directory, write_atomically, write_durably
from edge.errors import BundleError

POINTER = "current.json"
BUILDS = "builds"
STAGING_PREFIX = ".incoming-"
# What a build id may be to name a directory: the ids export writes (20261206T233718Z-98b5b279be)
# and any other plain name, never a path.
BUILD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class Pointer(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """current.json: the build to serve, and the one it replaced (what `rollback` returns to)."""

    build: str
    published_at: str
    previous: str | None = None


_pointer_decoder = msgspec.json.Decoder(Pointer)
_pointer_encoder = msgspec.json.Encoder()


def is_publish_root(path: str | Path) -> bool:
    """A pointer or a `builds/` directory: a root whose pointer went missing is still one (and
    says so), not a bundle directory without a manifest."""
    path = Path(path)
    return (path / POINTER).is_file() or (path / BUILDS).is_dir()


def read_pointer(root: str | Path) -> Pointer:
    """The pointer, checked: a build id that names a plain directory under `builds/`."""
    path = Path(root) / POINTER
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BundleError(f"{path} cannot be read: {exc}", file=POINTER) from exc
    return decode_pointer(data, str(path))


def decode_pointer(data: bytes, where: str) -> Pointer:
    """A pointer's bytes (read from `where`, a file or an object), checked."""
    try:
        pointer = _pointer_decoder.decode(data)
    except (msgspec.DecodeError, ValueError) as exc:  # ValueError: bytes that are not UTF-8
        raise BundleError(
            f"{where} is not a publish pointer ({exc}); `edgeperso publish` writes "
            '{"build": ..., "published_at": ..., "previous": ...}',
            file=POINTER,
        ) from exc
    for build in (pointer.build, pointer.previous):
        if build is not None:
            check_build_id(build)
    return pointer


def check_build_id(build: str) -> str:
    if not BUILD_ID.fullmatch(build):
        raise BundleError(
            f"build id {build!r} cannot name a directory: letters, digits, '.', '_' and '-' "
            "only, 1 to 128 of them, not starting with '.', '_' or '-'",
            file=POINTER,
        )
    return build


def build_directory(root: str | Path, build: str) -> Path:
    return Path(root) / BUILDS / check_build_id(build)


def bundle_directory(path: str | Path) -> Path:
    """The bundle to serve from `path`: the pointer's build when `path` is a publish root,
    else `path` itself (a bundle directory, as export writes it)."""
    if is_publish_root(path):
        return build_directory(path, read_pointer(path).build)
    return Path(path)


def publish(bundle: str | Path, root: str | Path, public_key: bytes | None = None) -> Pointer:
    """Verify `bundle` (its signature too, with a key), copy it under `root` and point to it.
    A build already published under the same id is reused when it is the same bundle."""
    bundle, root = Path(bundle), Path(root)
    manifest = verify(bundle, public_key)
    build = check_build_id(manifest.build_id)
    target = build_directory(root, build)
    if target.exists():
        _check_same_build(target, bundle, public_key)
    else:
        _copy_in(bundle, manifest, target, public_key)
    return point(root, build, public_key)


def point(root: str | Path, build: str, public_key: bytes | None = None) -> Pointer:
    """Make `build` (already under `root`) the one served, once it verifies; the build served
    until now becomes `previous`."""
    root = Path(root)
    verify(build_directory(root, build), public_key)
    current = read_pointer(root) if (root / POINTER).is_file() else None
    previous = current.build if current is not None and current.build != build else None
    if current is not None and previous is None:
        previous = current.previous
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    pointer = Pointer(build=build, published_at=stamp, previous=previous)
    write_atomically(root / POINTER, _pointer_encoder.encode(pointer) + b"\n")
    return pointer


def rollback(root: str | Path, to: str | None = None, public_key: bytes | None = None) -> Pointer:
    """Point back to `to`, or to the build served before the current one."""
    current = read_pointer(root)
    target = to or current.previous
    if target is None:
        raise BundleError(
            f"{Path(root) / POINTER} names no previous build to roll back to; name one with "
            f"--to (published: {', '.join(published_builds(root)) or 'none'})",
            file=POINTER,
        )
    return point(root, target, public_key)


def published_builds(root: str | Path) -> list[str]:
    """Build ids under `root`, oldest first (by when their directory was made)."""
    builds = Path(root) / BUILDS
    if not builds.is_dir():
        return []
    found = [p for p in builds.iterdir() if p.is_dir() and not p.name.startswith(STAGING_PREFIX)]
    return [p.name for p in sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name))]


def prune(root: str | Path, keep: int) -> list[str]:
    """Delete all but the `keep` newest builds; never the current one or its previous."""
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    pointer = read_pointer(root)
    kept = {pointer.build, pointer.previous}
    builds = published_builds(root)
    removed = [b for b in builds[: max(0, len(builds) - keep)] if b not in kept]
    for build in removed:
        shutil.rmtree(build_directory(root, build))
    return removed


def _check_same_build(target: Path, bundle: Path, public_key: bytes | None) -> None:
    published = check_manifest(target, public_key)
    incoming = check_manifest(bundle, public_key)
    if published != incoming:
        raise BundleError(
            f"{target} already holds a different bundle with build id {incoming.build_id}; "
            "a build id names one bundle only",
            file=MANIFEST,
        )
    verify(target, public_key)


def _copy_in(bundle: Path, manifest: Manifest, target: Path, public_key: bytes | None) -> None:
    """Copy the verified bytes (not the files again: they could change meanwhile) into a
    staging directory, fsync everything, check it once more, and rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f"{STAGING_PREFIX}{target.name}-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        entries = manifest.files | manifest.profile_store
        for name, entry in entries.items():
            write_durably(staging / name, check_file(bundle, name, entry))
        write_durably(staging / MANIFEST, (bundle / MANIFEST).read_bytes())
        fsync_directory(staging)
        if check_manifest(staging, public_key) != manifest:
            raise BundleError(
                f"{bundle / MANIFEST} changed while it was published; publish it again",
                file=MANIFEST,
            )
        staging.rename(target)
        fsync_directory(target.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
