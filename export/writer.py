"""Writing a bundle directory: files first, then a manifest with each file's sha256 and size,
the lineage and the metrics, optionally signed. The directory appears whole or not at all."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import onnx

from edge import arrays
from edge.bundle import (
    ARRAY_FILES,
    FALLBACK,
    MANIFEST,
    PROFILES,
    RANKER,
    REQUIRED_FILES,
    manifest_signature,
    sha256_file,
)
from edge.profiles import encode_profiles
from edge.schemas import FORMAT_VERSION, Profile


def onnx_opset(onnx_bytes: bytes) -> int:
    model = onnx.load_from_string(onnx_bytes)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def write_bundle(
    out_dir: str | Path,
    trees: dict[str, dict[str, Any]],
    ranker_onnx: bytes,
    fallback: dict[str, Any],
    profiles: dict[str, Profile],
    models: dict[str, Any],
    lineage: dict[str, Any],
    metrics: dict[str, Any],
    signing_key: bytes | None = None,
    optional_files: dict[str, bytes] | None = None,
) -> dict[str, Any]:
    """Write to a staging directory next to `out_dir`, then swap it in whole. `optional_files`
    (visitor.onnx, experiments.msgpack) are listed in the manifest like the required ones."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for name in ARRAY_FILES:
            arrays.write_file(staging / name, trees[name])
        (staging / RANKER).write_bytes(ranker_onnx)
        (staging / FALLBACK).write_text(json.dumps({"contexts": fallback}, ensure_ascii=False))
        (staging / PROFILES).write_bytes(encode_profiles(profiles))

        def entry(name: str) -> dict[str, Any]:
            path = staging / name
            return {"sha256": sha256_file(path), "bytes": path.stat().st_size}

        for name, content in (optional_files or {}).items():
            (staging / name).write_bytes(content)
        files = {name: entry(name) for name in (*REQUIRED_FILES, *(optional_files or {}))}
        created = datetime.now(UTC)
        digest = sha256_of_entries(files)
        manifest: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "build_id": f"{created:%Y%m%dT%H%M%SZ}-{digest[:10]}",
            "created_at": created.isoformat(timespec="seconds"),
            "files": files,
            "onnx_opset": onnx_opset(ranker_onnx),
            "models": models,
            "lineage": lineage,
            "metrics": metrics,
            "profile_store": {PROFILES: entry(PROFILES)},
        }
        if signing_key is not None:
            manifest["signature"] = manifest_signature(manifest, signing_key)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, allow_nan=False))
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out_dir, old)
            os.replace(staging, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def sha256_of_entries(files: dict[str, dict[str, Any]]) -> str:
    """One digest over every file's digest: the content part of the build id."""
    joined = "".join(f"{name}:{files[name]['sha256']}" for name in sorted(files))
    return hashlib.sha256(joined.encode()).hexdigest()
