import json
import shutil

import pytest

from edge.bundle import ARRAY_FILES, verify
from export import writer


def test_rewriting_a_bundle_replaces_it_whole_and_leaves_no_staging(bundle_dir, tmp_path):
    out = tmp_path / "bundle"
    shutil.copytree(bundle_dir, out)
    from edge import arrays

    trees = {name: arrays.read_file(out / name) for name in ARRAY_FILES}
    fallback = json.loads((out / "fallback.json").read_text())["contexts"]
    manifest = writer.write_bundle(
        out,
        trees,
        (out / "ranker.onnx").read_bytes(),
        fallback,
        {},
        {"event_weights": {"view": 1.0}},
        {},
        {},
        signing_key=b"key",
    )
    assert manifest["signature"] and manifest["models"] == {"event_weights": {"view": 1.0}}
    assert verify(out, signing_key=b"key").build_id == manifest["build_id"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_a_failed_write_keeps_the_old_bundle(bundle_dir, tmp_path):
    out = tmp_path / "bundle"
    shutil.copytree(bundle_dir, out)
    with pytest.raises(KeyError):
        writer.write_bundle(out, {}, b"", {}, {}, {}, {}, {})
    assert (
        verify(out).build_id == json.loads((bundle_dir / "manifest.json").read_text())["build_id"]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
