"""Fetch a bundle from an object store at start-up (a container that does not bake one in):
`manifest.json` first, its signature checked against the node's public key before anything else
is downloaded, then every file it lists, each checked against the manifest's size and sha256 as
it arrives, into a staging directory that replaces the target whole. `load_bundle` then
verifies the bundle again as for any bundle.

A download needs https and a public key: only a node told explicitly that unsigned local
bundles are fine (`--allow-unsigned`, EDGEPERSO_ALLOW_UNSIGNED=1) fetches without them."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from edge.bundle.checks import MAX_MANIFEST_BYTES, read_manifest
from edge.bundle.files import MANIFEST
from edge.errors import BundleError

CHUNK = 1 << 20
ALLOW_UNSIGNED = "--allow-unsigned (EDGEPERSO_ALLOW_UNSIGNED=1)"


def check_fetch_policy(base_url: str, public_key: bytes | None, allow_unsigned: bool) -> None:
    """A BundleError, saying what to set, unless this download may go ahead: an https URL and
    a public key to check the manifest with, or the explicit word that unsigned is fine."""
    if not base_url.startswith(("https://", "http://")):
        raise BundleError(f"EDGEPERSO_BUNDLE_URL must be an https:// URL, got {base_url!r}")
    if allow_unsigned:
        return
    if not base_url.startswith("https://"):
        raise BundleError(
            f"EDGEPERSO_BUNDLE_URL must be https://, got {base_url!r}: a bundle fetched in the "
            f"clear can be swapped on the way. For a local, unsigned bundle, say so with "
            f"{ALLOW_UNSIGNED}"
        )
    if public_key is None:
        raise BundleError(
            "fetching a bundle needs the public key its signature is checked with: set "
            "EDGEPERSO_PUBLIC_KEY (or serve --public-key) to the line `edgeperso keygen` printed, "
            f"and export with --signing-key. For a local, unsigned bundle, say so with "
            f"{ALLOW_UNSIGNED}"
        )


def fetch_bundle(
    base_url: str,
    directory: str | Path,
    *,
    public_key: bytes | None,
    allow_unsigned: bool = False,
    timeout_s: float = 30.0,
) -> Path:
    """Download the bundle at `base_url` (the URL of its directory) into `directory`. With
    `public_key`, a manifest whose signature does not verify stops the fetch before any other
    file is requested, and `directory` is left as it was."""
    check_fetch_policy(base_url, public_key, allow_unsigned)
    base = base_url.rstrip("/") + "/"
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _download(base + MANIFEST, staging / MANIFEST, timeout_s, limit=MAX_MANIFEST_BYTES)
        try:
            manifest, _ = read_manifest(staging, public_key)
        except BundleError as exc:
            raise BundleError(f"{base}{MANIFEST} refused: {exc}", file=MANIFEST) from exc
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
    url: str,
    path: Path,
    timeout_s: float,
    sha256: str | None = None,
    size: int | None = None,
    limit: int | None = None,
) -> None:
    """`url` into `path`; stops as soon as it has more bytes than `size` (or `limit`)."""
    most = size if size is not None else limit
    digest = hashlib.sha256()
    received = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, open(path, "wb") as out:
            while chunk := response.read(CHUNK):
                digest.update(chunk)
                received += len(chunk)
                if most is not None and received > most:
                    break
                out.write(chunk)
    except (urllib.error.URLError, OSError) as exc:
        raise BundleError(f"cannot fetch {url}: {exc}") from exc
    if size is not None and received != size:
        got = f"more than {size}" if received > size else str(received)
        raise BundleError(f"{url} has {got} bytes; the manifest says {size}")
    if limit is not None and received > limit:
        raise BundleError(f"{url} has more than {limit} bytes; a bundle manifest is far smaller")
    if sha256 is not None and digest.hexdigest() != sha256:
        raise BundleError(f"{url} does not match its sha256 in the manifest")
