"""Verifying a bundle directory: the manifest's format version and schema, the signature when
a key is configured, and every listed file's size and sha256 (hashed in worker threads, since
hashlib lets go of the GIL). Files are read into memory once and checked there: what a load
decodes is exactly what was verified, whatever happens to the files afterwards."""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec

from edge.arrays import read_private
from edge.bundle.files import MANIFEST, REQUIRED_FILES
from edge.bundle.manifest import (
    SUPPORTED_FORMAT_VERSIONS,
    FileEntry,
    Manifest,
)
from edge.bundle.signing import verify_manifest
from edge.errors import BundleError

HASH_THREADS = min(4, os.cpu_count() or 1)
MAX_MANIFEST_BYTES = 16 << 20


def sha256_file(path: Path) -> str:
    """Hashed in 1 MiB reads (hashlib lets go of the GIL for each): never memory-mapped, since a
    mapped file that someone truncates meanwhile kills the process with SIGBUS."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(
    directory: Path, public_key: bytes | None = None
) -> tuple[Manifest, dict[str, Any]]:
    """The manifest, decoded strictly, and the dict its signature covers. With a public key
    (raw Ed25519), the signature is checked before the manifest is decoded: a manifest changed
    after signing is reported as such, whatever else is wrong with it. The typed manifest is
    made from the very dict that was verified, so what was checked is what is used."""
    path = directory / MANIFEST
    try:
        raw = read_private(path, MAX_MANIFEST_BYTES)
    except (FileNotFoundError, NotADirectoryError):
        raise BundleError(
            f"{path} is missing: is {directory} a bundle made by `edgeperso export`?", file=MANIFEST
        ) from None
    except OSError as exc:
        raise BundleError(f"{MANIFEST} cannot be read: {exc}", file=MANIFEST) from exc
    if len(raw) > MAX_MANIFEST_BYTES:
        raise BundleError(
            f"{MANIFEST} is over {MAX_MANIFEST_BYTES:,} bytes: not a manifest", file=MANIFEST
        )
    try:
        as_dict = json.loads(bytes(raw))
        version = as_dict.get("format_version") if isinstance(as_dict, dict) else None
    except ValueError as exc:  # invalid JSON, or bytes that are not UTF-8
        raise BundleError(f"{MANIFEST} is not valid JSON: {exc}", file=MANIFEST) from exc
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise BundleError(
            f"{MANIFEST} has format_version {version!r}; this edge reads "
            f"{sorted(SUPPORTED_FORMAT_VERSIONS)}. Re-export the bundle with a matching edgeperso.",
            file=MANIFEST,
        )
    if public_key is not None:
        verify_manifest(as_dict, public_key)
    try:
        return msgspec.convert(as_dict, Manifest, str_keys=True), as_dict
    except msgspec.ValidationError as exc:
        raise BundleError(
            f"{MANIFEST} is malformed: {exc}. Re-export the bundle with a matching edgeperso.",
            file=MANIFEST,
        ) from exc


def read_file_bytes(directory: Path, name: str, entry: FileEntry) -> memoryview:
    """The file's bytes, read once into private memory (`edge.arrays.read_private`), if it has
    the size the manifest says. Reading stops one byte past that size, so a file swapped for a
    huge one costs nothing to refuse."""
    if Path(name).name != name:
        raise BundleError(f"{MANIFEST} lists {name!r}, which is not a plain file name", file=name)
    try:
        data = read_private(directory / name, entry.bytes + 1)
    except FileNotFoundError:
        raise BundleError(
            f"{name} is listed in {MANIFEST} but missing from {directory}", file=name
        ) from None
    except OSError as exc:
        raise BundleError(f"{name} cannot be read: {exc}", file=name) from exc
    if len(data) != entry.bytes:
        size = f"{len(data)}" if len(data) <= entry.bytes else f"more than {entry.bytes}"
        raise BundleError(f"{name} has {size} bytes; the manifest says {entry.bytes}", file=name)
    return data


def check_bytes(name: str, data: memoryview, entry: FileEntry) -> None:
    """The bytes have the manifest's sha256 (hashlib lets go of the GIL while it hashes)."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != entry.sha256:
        raise BundleError(
            f"{name} has sha256 {actual[:16]}…, the manifest says {entry.sha256[:16]}…: "
            "the file was changed or truncated after export",
            file=name,
        )


def check_file(directory: Path, name: str, entry: FileEntry) -> memoryview:
    """The file's bytes, once they have the manifest's size and sha256; else a BundleError.
    What is checked is what is returned: nothing is read from the disk a second time."""
    data = read_file_bytes(directory, name, entry)
    check_bytes(name, data, entry)
    return data


def check_manifest(directory: Path, public_key: bytes | None = None) -> Manifest:
    """Format version, the required files listed, and the signature when a public key is
    configured (it covers the manifest, whose hashes cover the files)."""
    manifest, _ = read_manifest(directory, public_key)
    missing = [name for name in REQUIRED_FILES if name not in manifest.files]
    if missing:
        raise BundleError(f"{MANIFEST} does not list {missing}", file=missing[0])
    return manifest


def start_file_checks(
    pool: ThreadPoolExecutor, directory: Path, manifest: Manifest, profile_store: bool = True
) -> dict[str, Future[memoryview]]:
    """Every listed file (the embedded profile store's too, unless `profile_store` is false)
    read into memory and checked against its size and sha256 in `pool`; each future gives the
    verified bytes. The ONNX files start first, as onnxruntime waits for them (they are small);
    then the largest, so the longest hash is not left for last. The futures come back in
    manifest order, the order `raise_first_failure` reports in."""
    entries = dict(manifest.files) | (dict(manifest.profile_store) if profile_store else {})
    order = sorted(entries, key=lambda name: (not name.endswith(".onnx"), -entries[name].bytes))
    started = {name: pool.submit(check_file, directory, name, entries[name]) for name in order}
    return {name: started[name] for name in entries}


def raise_first_failure(checks: dict[str, Future[memoryview]]) -> None:
    for check in checks.values():
        check.result()


def verify(directory: Path, public_key: bytes | None = None) -> Manifest:
    """Check format version, every file's presence, size and sha256, and the signature when a
    key is configured. Raises BundleError naming the file and the reason."""
    directory = Path(directory)
    manifest = check_manifest(directory, public_key)
    with ThreadPoolExecutor(max_workers=HASH_THREADS) as pool:
        raise_first_failure(start_file_checks(pool, directory, manifest))
    return manifest
