import json
import shutil

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge import arrays
from edge.bundle import ARRAY_FILES, load_bundle, verify, write_bundle
from edge.bundle.manifest import Signature
from edge.bundle.signing import key_id, raw_public_key


def test_rewriting_a_bundle_replaces_it_whole_and_leaves_no_staging(small_bundle_dir, tmp_path):
    out = tmp_path / "bundle"
    shutil.copytree(small_bundle_dir, out)
    models = load_bundle(out).manifest.models
    trees = {name: arrays.read_file(out / name) for name in ARRAY_FILES}
    fallback = json.loads((out / "fallback.json").read_text())["contexts"]
    key = Ed25519PrivateKey.generate()
    manifest = write_bundle(
        out, trees, (out / "ranker.onnx").read_bytes(), 15, fallback, {}, models, signing_key=key
    )
    assert isinstance(manifest.signature, Signature)
    assert manifest.signature.key_id == key_id(raw_public_key(key))
    assert manifest.models == models and manifest.onnx_opset == 15
    assert verify(out, public_key=raw_public_key(key)).build_id == manifest.build_id
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_a_failed_write_keeps_the_old_bundle(small_bundle_dir, tmp_path):
    out = tmp_path / "bundle"
    shutil.copytree(small_bundle_dir, out)
    models = load_bundle(out).manifest.models
    with pytest.raises(KeyError):
        write_bundle(out, {}, b"", 15, {}, {}, models)
    assert (
        verify(out).build_id
        == json.loads((small_bundle_dir / "manifest.json").read_text())["build_id"]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
