"""Bundles in an object store, laid out as a local publish root is (`edge.bundle.publish`):

    s3://bucket/bundles/current.json          the pointer: the build to serve, and the one before
    s3://bucket/bundles/builds/<build id>/    manifest.json and every file it lists

`publish_to_store` verifies a build, uploads its files under its own prefix (the manifest last)
and only then rewrites the pointer, one PUT that readers see whole or not at all; rolling back
is pointing back. `StoreFollower` keeps a node's local publish root in step with the pointer:
it polls it with its ETag (while nothing changed the store answers 304, with no body), fetches
a new build's manifest first and checks its signature before any other file, checks each
file's size (before its body is read) and sha256, writes the build into a staging directory,
renames it into `builds/` and points the local root to it. The reload watcher (`edge.reload`)
then loads, verifies and swaps it in without dropping a request. A build that fails a check is
never pointed to; the pointer is polled again, with a backoff while it keeps failing."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import anyio
import anyio.to_thread
import msgspec

from edge.bundle.checks import MAX_MANIFEST_BYTES, check_file, read_manifest, verify
from edge.bundle.files import MANIFEST
from edge.bundle.publish import (
    BUILDS,
    POINTER,
    STAGING_PREFIX,
    Pointer,
    build_directory,
    check_build_id,
    decode_pointer,
    point,
    prune,
    read_pointer,
)
from edge.durable import fsync_directory, write_durably
from edge.errors import BundleError
from edge.filelock import held
from edge.objectstore import ObjectStore, StoreError

log = logging.getLogger("edgeperso.remote")

MAX_POINTER_BYTES = 4096
FOLLOW_LOCK = ".follow.lock"
KEEP_LOCAL_BUILDS = 3  # the served one, the one before it (rollback), and one more
MAX_BACKOFF_S = 300.0
UNSIGNED = "--allow-unsigned (EDGEPERSO_ALLOW_UNSIGNED=1)"

_pointer_encoder = msgspec.json.Encoder()


def store_pointer(store: ObjectStore) -> Pointer | None:
    """The store's pointer, checked; None when nothing was published there yet."""
    if not store.exists(POINTER):
        return None
    return decode_pointer(store.get(POINTER, MAX_POINTER_BYTES), store.url + POINTER)


def publish_to_store(bundle: str | Path, url: str, public_key: bytes | None = None) -> Pointer:
    """Verify `bundle` (its signature too, with a key), upload it under `builds/<build id>/` of
    the store at `url` and point to it. A build id already in the store is reused when it is the
    same bundle (same manifest), and refused when it is not."""
    bundle = Path(bundle)
    manifest = verify(bundle, public_key)
    build = check_build_id(manifest.build_id)
    store = ObjectStore(url)
    prefix = f"{BUILDS}/{build}/"
    local_manifest = (bundle / MANIFEST).read_bytes()
    if store.exists(prefix + MANIFEST):
        if store.get(prefix + MANIFEST, MAX_MANIFEST_BYTES) != local_manifest:
            raise BundleError(
                f"{store.url}{prefix} already holds a different bundle with build id {build}; "
                "a build id names one bundle only",
                file=MANIFEST,
            )
    else:
        for name, entry in (manifest.files | manifest.profile_store).items():
            store.put(prefix + name, check_file(bundle, name, entry))
        store.put(prefix + MANIFEST, local_manifest)  # last: a build with a manifest is whole
    return _point_store(store, build)


def rollback_in_store(url: str, to: str | None = None, public_key: bytes | None = None) -> Pointer:
    """Point the store back to `to`, or to the build served before the current one, once its
    manifest is found there (and, with a key, its signature checks)."""
    store = ObjectStore(url)
    current = store_pointer(store)
    if current is None:
        raise BundleError(f"{store.url}{POINTER} does not exist: nothing was published there")
    target = check_build_id(to) if to else current.previous
    if target is None:
        raise BundleError(
            f"{store.url}{POINTER} names no previous build to roll back to; name one with --to",
            file=POINTER,
        )
    prefix = f"{BUILDS}/{target}/"
    if not store.exists(prefix + MANIFEST):
        raise BundleError(f"{store.url}{prefix}{MANIFEST} does not exist: no such build there")
    if public_key is not None:
        with tempfile.TemporaryDirectory(prefix="edgeperso-manifest-") as scratch:
            manifest = store.get(prefix + MANIFEST, MAX_MANIFEST_BYTES)
            (Path(scratch) / MANIFEST).write_bytes(manifest)
            read_manifest(Path(scratch), public_key)
    return _point_store(store, target)


def _point_store(store: ObjectStore, build: str) -> Pointer:
    current = store_pointer(store)
    previous = current.build if current is not None and current.build != build else None
    if current is not None and previous is None:
        previous = current.previous
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    pointer = Pointer(build=build, published_at=stamp, previous=previous)
    store.put(POINTER, _pointer_encoder.encode(pointer) + b"\n")
    return pointer


class FollowStatus(msgspec.Struct, frozen=True):
    """/readyz's `bundle_store`: "ok", or "retrying" with the reason the last poll failed."""

    status: str
    store: str
    build: str | None  # the build the store pointed to when last followed
    reason: str | None = None


class StoreFollower:
    """Keeps the local publish root `root` in step with the store at `url`."""

    def __init__(
        self,
        url: str,
        root: str | Path,
        public_key: bytes | None,
        allow_unsigned: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if public_key is None and not allow_unsigned:
            raise BundleError(
                "following a bundle store needs the public key bundles are signed with: set "
                "EDGEPERSO_PUBLIC_KEY (or serve --public-key) to the line `edgeperso keygen` "
                f"printed, and export with --signing-key. For unsigned bundles, say so with "
                f"{UNSIGNED}"
            )
        self.store = ObjectStore(url)
        self.root, self.public_key = Path(root), public_key
        self._clock = clock
        self._etag: str | None = None
        self.build: str | None = None
        self.error: str | None = None
        self._failures = 0
        self._next_poll = -float("inf")

    def follow_once(self) -> bool:
        """Poll the pointer; fetch and point to a new build. Whether the local root changed.
        A failure is remembered in `error` (and logged once), never raised."""
        try:
            changed = self._follow()
        except (StoreError, BundleError, OSError) as exc:
            self._failed(str(exc))
            return False
        if self.error is not None:
            log.warning("following %s works again", self.store.url)
        self.error, self._failures = None, 0
        return changed

    def _follow(self) -> bool:
        self.root.mkdir(parents=True, exist_ok=True)
        with held(self.root / FOLLOW_LOCK) as mine:
            if not mine:
                return False  # another worker of this server follows
            try:
                answer = self.store.get_if_changed(POINTER, self._etag, MAX_POINTER_BYTES)
            except StoreError as exc:
                if "no such object" not in str(exc):
                    raise
                raise StoreError(
                    f"{exc}: nothing is published there yet (`edgeperso publish BUNDLE "
                    f"{self.store.url}`)"
                ) from exc
            if answer is None:
                return False
            data, etag = answer
            pointer = decode_pointer(data, self.store.url + POINTER)
            target = build_directory(self.root, pointer.build)
            if not (target / MANIFEST).is_file():
                self._fetch(pointer.build, target)
            local = self.root / POINTER
            changed = not local.is_file() or read_pointer(self.root).build != pointer.build
            if changed:
                point(self.root, pointer.build, self.public_key)
                log.info("following %s: now serving %s", self.store.url, pointer.build)
                prune(self.root, KEEP_LOCAL_BUILDS)
            self._etag, self.build = etag, pointer.build  # only now: a failure polls again
            return changed

    def _fetch(self, build: str, target: Path) -> None:
        """The build's files into a staging directory, each checked, then renamed to `target`."""
        prefix = f"{BUILDS}/{build}/"
        staging = target.with_name(f"{STAGING_PREFIX}{build}-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            manifest_bytes = self.store.get(prefix + MANIFEST, MAX_MANIFEST_BYTES)
            write_durably(staging / MANIFEST, manifest_bytes)
            try:  # the signature, before any other file is asked for
                manifest, _ = read_manifest(staging, self.public_key)
            except BundleError as exc:
                raise BundleError(f"{self.store.url}{prefix}{MANIFEST} refused: {exc}") from exc
            for name, entry in (manifest.files | manifest.profile_store).items():
                if "/" in name or name.startswith("."):
                    raise BundleError(f"{MANIFEST} lists {name!r}, which is not a plain file name")
                data = self.store.get(prefix + name, max_bytes=entry.bytes)
                if len(data) != entry.bytes or hashlib.sha256(data).hexdigest() != entry.sha256:
                    raise BundleError(
                        f"{self.store.url}{prefix}{name} does not match its size and sha256 in "
                        "the manifest"
                    )
                write_durably(staging / name, data)
            fsync_directory(staging)
            verify(staging, self.public_key)
            staging.rename(target)
            fsync_directory(target.parent)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _failed(self, error: str) -> None:
        self._failures += 1
        self._next_poll = self._clock() + min(MAX_BACKOFF_S, 2.0**self._failures)
        if error != self.error:
            log.error("could not follow the bundle store (%s); the served bundle stays", error)
        self.error = error

    def status(self) -> FollowStatus:
        """The build the local root points to (another worker of the server may have moved it),
        and whether this process's last poll failed."""
        build = self.build
        try:
            build = read_pointer(self.root).build
        except BundleError:
            pass  # nothing followed yet
        return FollowStatus("retrying" if self.error else "ok", self.store.url, build, self.error)

    async def run(self, poll_s: float) -> None:
        """Poll every `poll_s` seconds (later after failures) until cancelled."""
        while True:
            await anyio.sleep(poll_s)
            if self._clock() < self._next_poll:
                continue
            try:
                await anyio.to_thread.run_sync(self.follow_once)
            except Exception:  # following must never stop the server
                log.exception("following the bundle store failed; trying again")
