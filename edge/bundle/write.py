"""Writing a bundle directory: files first, then a manifest with each file's sha256 and size,
the models, lineage and metrics, signed with the build's Ed25519 key when one is given. The
directory appears whole or not at all. Export writes every bundle through here, and tests write
small ones without the build."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge import arrays
from edge.bundle.checks import sha256_file
from edge.bundle.files import (
    ARRAY_FILES,
    FALLBACK,
    MANIFEST,
    OPTIONAL_ARRAY_FILES,
    PROFILES,
    RANKER,
    REQUIRED_FILES,
)
from edge.bundle.manifest import (
    FORMAT_VERSION,
    FileEntry,
    Lineage,
    Manifest,
    Metrics,
    Models,
    manifest_json,
)
from edge.bundle.signing import sign_manifest
from edge.profiles import encode_profiles
from edge.schemas import Profile

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def write_bundle(
    out_dir: str | Path,
    trees: dict[str, dict[str, Any]],
    ranker_onnx: bytes,
    onnx_opset: int,
    fallback: dict[str, list[tuple[str, float]]],
    profiles: dict[str, Profile],
    models: Models,
    lineage: Lineage = Lineage(),
    metrics: Metrics = Metrics(),
    signing_key: Ed25519PrivateKey | None = None,
    optional_files: dict[str, bytes] | None = None,
) -> Manifest:
    """Write to a staging directory next to `out_dir`, then swap it in whole. `trees` holds
    each array file's tree (`edge.bundle.codecs`); `optional_files` (visitor.onnx,
    rules.msgpack, ...) are listed in the manifest like the required ones."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        optional_arrays = [name for name in OPTIONAL_ARRAY_FILES if name in trees]
        for name in (*ARRAY_FILES, *optional_arrays):
            arrays.write_file(staging / name, trees[name])
        (staging / RANKER).write_bytes(ranker_onnx)
        (staging / FALLBACK).write_text(json.dumps({"contexts": fallback}, ensure_ascii=False))
        (staging / PROFILES).write_bytes(encode_profiles(profiles))
        for name, content in (optional_files or {}).items():
            (staging / name).write_bytes(content)

        def entry(name: str) -> FileEntry:
            path = staging / name
            return FileEntry(sha256=sha256_file(path), bytes=path.stat().st_size)

        listed = (*REQUIRED_FILES, *optional_arrays, *(optional_files or {}))
        files = {name: entry(name) for name in listed}
        created = datetime.now(UTC)
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            build_id=f"{created:%Y%m%dT%H%M%SZ}-{sha256_of_entries(files)[:10]}",
            created_at=created.isoformat(timespec="seconds"),
            files=files,
            onnx_opset=onnx_opset,
            models=models,
            lineage=lineage,
            metrics=metrics,
            profile_store={PROFILES: entry(PROFILES)},
        )
        if signing_key is not None:
            manifest = sign_manifest(manifest, signing_key)
        (staging / MANIFEST).write_text(manifest_json(manifest))
        _swap_in(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _swap_in(staging: Path, out_dir: Path) -> None:
    """`staging` becomes `out_dir`; an older bundle there goes away only once it is replaced."""
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out_dir, old)
        os.replace(staging, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out_dir)


def sha256_of_entries(files: dict[str, FileEntry]) -> str:
    """One digest over every file's digest: the content part of the build id."""
    joined = "".join(f"{name}:{files[name].sha256}" for name in sorted(files))
    return hashlib.sha256(joined.encode()).hexdigest()
