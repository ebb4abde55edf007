"""Verifying a bundle directory: the manifest's format version and schema, the signature when
a key is configured, and every listed file's size and sha256 (hashed in worker threads, since
hashlib lets go of the GIL)."""

from __future__ import annotations

import hashlib
import hmac
import json
import mmap
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec

from edge.bundle.files import MANIFEST, REQUIRED_FILES
from edge.bundle.manifest import (
    SUPPORTED_FORMAT_VERSIONS,
    FileEntry,
    Manifest,
    manifest_decoder,
    manifest_signature,
)
from edge.errors import BundleError

HASH_THREADS = min(4, os.cpu_count() or 1)


def sha256_file(path: Path) -> str:
    """One hashing call over the mapped file: it lets go of the GIL once for the whole file,
    where reading in chunks would take the GIL back for each, in turn with the loading thread."""
    with path.open("rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return hashlib.sha256().hexdigest()
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return hashlib.sha256(mapped).hexdigest()


def read_manifest(
    directory: Path, signing_key: bytes | None = None
) -> tuple[Manifest, dict[str, Any]]:
    """The manifest, decoded strictly, and the dict its signature covers. With a signing key,
    the signature is checked before the manifest is decoded: a manifest changed after signing
    is reported as such, whatever else is wrong with it."""
    path = directory / MANIFEST
    if not path.is_file():
        raise BundleError(
            f"{path} is missing: is {directory} a bundle made by `edgeperso export`?", file=MANIFEST
        )
    raw = path.read_bytes()
    try:
        as_dict = json.loads(raw)
        version = as_dict.get("format_version") if isinstance(as_dict, dict) else None
    except json.JSONDecodeError as exc:
        raise BundleError(f"{MANIFEST} is not valid JSON: {exc}", file=MANIFEST) from exc
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise BundleError(
            f"{MANIFEST} has format_version {version!r}; this edge reads "
            f"{sorted(SUPPORTED_FORMAT_VERSIONS)}. Re-export the bundle with a matching edgeperso.",
            file=MANIFEST,
        )
    if signing_key is not None:
        check_signature(as_dict, signing_key)
    try:
        return manifest_decoder.decode(raw), as_dict
    except msgspec.ValidationError as exc:
        raise BundleError(
            f"{MANIFEST} is malformed: {exc}. Re-export the bundle with a matching edgeperso.",
            file=MANIFEST,
        ) from exc


def check_file(directory: Path, name: str, entry: FileEntry) -> None:
    """The file is where the manifest says, with its size and sha256; else a BundleError."""
    path = directory / name
    if Path(name).name != name:
        raise BundleError(f"{MANIFEST} lists {name!r}, which is not a plain file name", file=name)
    if not path.is_file():
        raise BundleError(f"{name} is listed in {MANIFEST} but missing from {directory}", file=name)
    size = path.stat().st_size
    if size != entry.bytes:
        raise BundleError(f"{name} has {size} bytes; the manifest says {entry.bytes}", file=name)
    actual = sha256_file(path)
    if actual != entry.sha256:
        raise BundleError(
            f"{name} has sha256 {actual[:16]}…, the manifest says {entry.sha256[:16]}…: "
            "the file was changed or truncated after export",
            file=name,
        )


def check_manifest(directory: Path, signing_key: bytes | None = None) -> Manifest:
    """Format version, the required files listed, and the signature when a key is configured
    (it covers the manifest, whose hashes cover the files)."""
    manifest, _ = read_manifest(directory, signing_key)
    missing = [name for name in REQUIRED_FILES if name not in manifest.files]
    if missing:
        raise BundleError(f"{MANIFEST} does not list {missing}", file=missing[0])
    return manifest


def check_signature(manifest: dict[str, Any], signing_key: bytes) -> None:
    signature = manifest.get("signature")
    if signature is None:
        raise BundleError(
            "the bundle is not signed, but this edge requires a signature", file=MANIFEST
        )
    expected = manifest_signature(manifest, signing_key)
    if not (isinstance(signature, str) and hmac.compare_digest(expected, signature)):
        raise BundleError("the manifest's signature does not match the signing key", file=MANIFEST)


def start_file_checks(
    pool: ThreadPoolExecutor, directory: Path, manifest: Manifest, profile_store: bool = True
) -> dict[str, Future[None]]:
    """Every listed file's size and sha256 (the embedded profile store's too, unless
    `profile_store` is false), checked in `pool`: hashlib lets go of the GIL while it hashes.
    The ONNX files start first, as onnxruntime waits for them (they are small); then the
    largest, so the longest hash is not left for last. The futures come back in manifest order,
    the order `raise_first_failure` reports in."""
    entries = dict(manifest.files) | (dict(manifest.profile_store) if profile_store else {})
    order = sorted(entries, key=lambda name: (not name.endswith(".onnx"), -entries[name].bytes))
    started = {name: pool.submit(check_file, directory, name, entries[name]) for name in order}
    return {name: started[name] for name in entries}


def raise_first_failure(checks: dict[str, Future[None]]) -> None:
    for check in checks.values():
        check.result()


def verify(directory: Path, signing_key: bytes | None = None) -> Manifest:
    """Check format version, every file's presence, size and sha256, and the signature when a
    key is configured. Raises BundleError naming the file and the reason."""
    directory = Path(directory)
    manifest = check_manifest(directory, signing_key)
    with ThreadPoolExecutor(max_workers=HASH_THREADS) as pool:
        raise_first_failure(start_file_checks(pool, directory, manifest))
    return manifest
