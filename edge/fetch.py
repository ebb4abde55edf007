"""Fetch a bundle from an object store at start-up (a container that does not bake one in):
`manifest.json` first, then every file it lists, each checked against the manifest's size and
sha256 as it arrives, into a staging directory that replaces the target whole. `load_bundle`
then verifies the manifest itself (format version, signature) as for any bundle."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from edge.bundle.checks import read_manifest
from edge.bundle.files import MANIFEST
from edge.errors import BundleError

CHUNK = 1 << 20


def fetch_bundle(base_url: str, directory: str | Path, timeout_s: float = 30.0) -> Path:
    """Download the bundle at `base_url` (the URL of its directory) into `directory`."""
    if not base_url.startswith(("https://", "http://")):
        raise BundleError(f"EDGEPERSO_BUNDLE_URL must be an http(s) URL, got {base_url!r}")
    base = base_url.rstrip("/") + "/"
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _download(base + MANIFEST, staging / MANIFEST, timeout_s)
        try:
            manifest, _ = read_manifest(staging)
        except BundleError as exc:
            raise BundleError(f"{base}{MANIFEST} is not a bundle manifest: {exc}") from exc
        for name, entry in (manifest.files | manifest.profile_store).items():
            if "/" in name or name.startswith("."):
                raise BundleError(f"{MANIFEST} lists {name!r}, which is not a plain file name")
            _download(base + name, staging / name, timeout_s, entry.sha256, entry.bytes)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
        return target
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _download(
    url: str, path: Path, timeout_s: float, sha256: str | None = None, size: int | None = None
) -> None:
    digest = hashlib.sha256()
    received = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, open(path, "wb") as out:
            while chunk := response.read(CHUNK):
                digest.update(chunk)
                received += len(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError) as exc:
        raise BundleError(f"cannot fetch {url}: {exc}") from exc
    if size is not None and received != size:
        raise BundleError(f"{url} has {received} bytes; the manifest says {size}")
    if sha256 is not None and digest.hexdigest() != sha256:
        raise BundleError(f"{url} does not match its sha256 in the manifest")
