"""Hot reload: watch the bundle's manifest; when it changes, load, verify and warm the new bundle
off the event loop, then swap it in. A bundle that fails verification is refused with its reason
and the one already loaded keeps serving."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import anyio
import anyio.to_thread
from starlette.applications import Starlette

from edge.bundle import MANIFEST, load_bundle
from edge.config import Settings
from edge.errors import BundleError
from edge.profiles import EmbeddedProfileStore
from edge.recommend import Recommender

log = logging.getLogger("edgeperso.reload")


def load_recommender(settings: Settings) -> Recommender:
    """Load, verify and warm the configured bundle; raises BundleError or OSError."""
    if not settings.bundle_dir:
        raise BundleError("EDGEPERSO_BUNDLE is not set")
    profiles = (
        EmbeddedProfileStore.from_file(Path(settings.profiles_path))
        if settings.profiles_path
        else None
    )
    bundle = load_bundle(settings.bundle_dir, signing_key=settings.signing_key, profiles=profiles)
    recommender = Recommender(bundle, settings.budget_ms)
    recommender.warm_up()
    log.info("bundle %s loaded from %s", bundle.build_id, settings.bundle_dir)
    return recommender


def manifest_stamp(bundle_dir: str) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(Path(bundle_dir) / MANIFEST)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


async def watch_bundle(app: Starlette, settings: Settings) -> None:
    """Poll every `settings.reload_seconds`; runs until the app shuts down."""
    if not settings.bundle_dir:
        return
    stamp = manifest_stamp(settings.bundle_dir)
    while True:
        await anyio.sleep(settings.reload_seconds)
        current = manifest_stamp(settings.bundle_dir)
        if current is None or current == stamp:
            continue
        stamp = current
        try:
            recommender = await anyio.to_thread.run_sync(load_recommender, settings)
        except (BundleError, OSError) as exc:
            app.state.reload_error = f"new bundle refused, still serving the old one: {exc}"
            log.error("%s", app.state.reload_error)
            continue
        app.state.recommender = recommender
        app.state.reload_error = None
