"""Which bundle the server serves, and hot reload.

`EDGEPERSO_BUNDLE` names a publish root (`edge.bundle.publish`: builds under `builds/`, a
pointer naming the current one) or a bundle directory. The watcher polls it: when the pointer,
or any file of the bundle it names, changes, the bundle is loaded, verified and warmed off the
event loop, then swapped in. A bundle that fails verification is refused with its reason and the
one already loaded keeps serving from memory (it never reads its files again), and the failed
bundle is tried again whenever its files change, and every so often meanwhile, so a bundle
copied in file by file is served once its last file lands."""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import time
from pathlib import Path

import anyio
import anyio.to_thread
from starlette.applications import Starlette

from edge import metrics
from edge.bundle import load_bundle, load_fallback_only
from edge.bundle.publish import POINTER, bundle_directory
from edge.config import Settings
from edge.errors import BundleError
from edge.profiles import EmbeddedProfileStore
from edge.recommend import Recommender

log = logging.getLogger("edgeperso.reload")

# A refused bundle whose files do not change is retried at least this often.
RETRY_MAX_SECONDS = 60.0

Stamp = tuple[object, ...]
MISSING = "missing"  # in a stamp: the bundle directory is not there


def load_recommender(settings: Settings) -> Recommender:
    """Load, verify and warm the configured bundle; raises BundleError or OSError."""
    if not settings.bundle_dir:
        raise BundleError("EDGEPERSO_BUNDLE is not set")
    profiles = (
        EmbeddedProfileStore.from_file(Path(settings.profiles_path))
        if settings.profiles_path
        else None
    )
    directory = bundle_directory(settings.bundle_dir)
    bundle = load_bundle(directory, public_key=settings.public_key, profiles=profiles)
    recommender = Recommender(bundle, settings.budget_ms)
    recommender.warm_up()
    log.info("bundle %s loaded from %s", bundle.build_id, directory)
    return recommender


def initial_recommender(settings: Settings) -> Recommender:
    """The bundle at start-up; when it is refused, a recommender that answers with fallbacks
    (the refused bundle's fallback content only if that file itself verifies)."""
    try:
        return load_recommender(settings)
    except (BundleError, OSError) as exc:
        reason = f"bundle refused: {exc}" if settings.bundle_dir else str(exc)
        log.error("%s", reason)
        content = None
        if settings.bundle_dir:
            try:
                content = load_fallback_only(
                    bundle_directory(settings.bundle_dir), public_key=settings.public_key
                )
            except BundleError:
                content = None
        return Recommender(None, settings.budget_ms, reason, content)


def bundle_stamp(path: str | Path, profiles_path: str | None = None) -> Stamp:
    """What changes when anything the server would load changes: the pointer's bytes (of a
    publish root), and the name, size, mtime and inode of every file in the bundle directory
    it names (and of a separate profile store). Cheap: a few stat calls per poll."""
    path = Path(path)
    parts: list[object] = []
    try:
        parts.append((path / POINTER).read_bytes())
    except OSError:
        parts.append(None)
    try:
        directory = bundle_directory(path)
        with os.scandir(directory) as entries:
            files = sorted(
                (e.name, s.st_size, s.st_mtime_ns, s.st_ino)
                for e in entries
                if e.is_file() and (s := e.stat())
            )
        parts.append((str(directory), tuple(files)))
    except FileNotFoundError:
        parts.append(MISSING)  # not there (yet): a swap by rename, a build still being copied
    except (BundleError, OSError) as exc:
        parts.append(str(exc))  # an unreadable pointer, say: the load will report it
    if profiles_path:
        try:
            s = os.stat(profiles_path)
            parts.append((s.st_size, s.st_mtime_ns, s.st_ino))
        except OSError:
            parts.append(None)
    return tuple(parts)


async def watch_bundle(app: Starlette, settings: Settings) -> None:
    """Poll every `settings.reload_seconds` until the app shuts down."""
    if not settings.bundle_dir:
        return
    seen = bundle_stamp(settings.bundle_dir, settings.profiles_path)
    failures = 0 if app.state.recommender.bundle is not None else 1
    last_attempt = time.monotonic()
    while True:
        await anyio.sleep(settings.reload_seconds)
        try:
            current = bundle_stamp(settings.bundle_dir, settings.profiles_path)
        except Exception as exc:  # stat calls only; still, the watcher must never die
            current = (repr(exc),)
        retry_after = min(RETRY_MAX_SECONDS, settings.reload_seconds * 2.0**failures)
        retry_due = failures > 0 and time.monotonic() - last_attempt >= retry_after
        if current == seen and not retry_due:
            continue
        if current[1] is MISSING and failures == 0:  # a swap by rename, say: wait for it
            continue
        seen, last_attempt = current, time.monotonic()
        try:
            recommender = await anyio.to_thread.run_sync(load_recommender, settings)
        except Exception as exc:  # whatever it was, the watcher lives on and says so
            failures += 1
            metrics.RELOAD_ERRORS.inc()
            app.state.reload_error = refusal(app.state.recommender, exc)
            expected = isinstance(exc, BundleError | OSError)
            log.error("%s", app.state.reload_error, exc_info=not expected)
            continue
        failures = 0
        serving: Recommender = app.state.recommender
        same = (
            serving.bundle is not None
            and recommender.bundle is not None
            and serving.bundle.manifest == recommender.bundle.manifest
            and not settings.profiles_path
        )
        if not same:  # the same bundle again (files touched, then put back) keeps the
            app.state.recommender = recommender  # recommender, and what its bandits learned
            metrics.serving(recommender.bundle, serving.bundle)
        app.state.reload_error = None
        del recommender, serving
        await anyio.to_thread.run_sync(release_freed_memory)


def release_freed_memory() -> None:
    """Hand the heap memory a replaced bundle freed back to the system (glibc's malloc_trim):
    its arrays were allocated from per-thread arenas, which otherwise keep it, and a node that
    reloads a new build every day would carry each old bundle's footprint on."""
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):  # not glibc: nothing to trim, or no way to ask
        pass


def refusal(serving: Recommender, exc: Exception) -> str:
    if serving.bundle is None:
        return f"bundle refused: {exc}"
    return (
        f"bundle on disk refused: {exc}; still serving {serving.bundle.build_id}, "
        "as verified when it was loaded"
    )
