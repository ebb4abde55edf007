"""Verifying and loading a bundle, on copies of the small bundle (`tests.edge.small_bundle`)
changed one way at a time."""

import json
import shutil
from pathlib import Path

import pytest

from edge.bundle import (
    EMBEDDINGS,
    FORMAT_VERSION,
    MANIFEST,
    RANKER,
    load_bundle,
    verify,
)
from edge.bundle.manifest import manifest_json
from edge.bundle.signing import raw_public_key, sign_manifest
from edge.errors import BundleError
from tests.edge import small_bundle as shop


@pytest.fixture
def copy(small_bundle_dir, tmp_path):
    target = tmp_path / "bundle"
    shutil.copytree(small_bundle_dir, target)
    return target


def test_a_good_bundle_verifies_and_loads(small_bundle):
    assert small_bundle.manifest.format_version == FORMAT_VERSION
    assert len(small_bundle.model.items) == small_bundle.model.embeddings.factors.shape[0]
    assert small_bundle.model.ranker is not None
    assert small_bundle.fallback == shop.fallback_content()


def test_a_changed_byte_is_refused_naming_the_file(copy):
    path = copy / EMBEDDINGS
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="embeddings.msgpack has sha256") as info:
        load_bundle(copy)
    assert info.value.file == EMBEDDINGS


def test_a_missing_file_is_refused_naming_the_file(copy):
    (copy / RANKER).unlink()
    with pytest.raises(BundleError, match="ranker.onnx is listed in manifest.json but missing"):
        verify(copy)


def test_an_unknown_format_version_is_refused(copy):
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["format_version"] = 99
    (copy / MANIFEST).write_text(json.dumps(manifest))
    reads = "this edge reads \\[4, 5, 6, 7, 8, 9\\]"
    with pytest.raises(BundleError, match=f"format_version 99; {reads}"):
        verify(copy)


def test_no_manifest_is_refused(tmp_path):
    with pytest.raises(BundleError, match="manifest.json is missing"):
        verify(tmp_path)


def test_signature_is_checked_when_a_key_is_configured(copy):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    with pytest.raises(BundleError, match="not signed"):
        verify(copy, public_key=raw_public_key(key))
    signed = sign_manifest(verify(copy), key)
    (copy / MANIFEST).write_text(manifest_json(signed))
    assert verify(copy, public_key=raw_public_key(key)).signature == signed.signature
    assert verify(copy).signature == signed.signature  # no key: read, not checked
    with pytest.raises(BundleError, match="but this edge trusts key"):
        verify(copy, public_key=raw_public_key(other))
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["lineage"]["rows_kept"] += 1  # any change after signing breaks it
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="signature does not match the public key"):
        verify(copy, public_key=raw_public_key(key))


def test_a_path_outside_the_bundle_is_refused(copy):
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["files"]["../escape"] = {"sha256": "0" * 64, "bytes": 1}
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="not a plain file name"):
        verify(copy)


def rewrite(bundle: Path, name: str, tree: dict) -> None:
    """Write `tree` as the bundle's file `name`, with a manifest entry that matches it."""
    import hashlib

    from edge import arrays

    data = arrays.dumps(tree)
    (bundle / name).write_bytes(data)
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (bundle / MANIFEST).write_text(json.dumps(manifest))


def test_arrays_that_do_not_fit_are_refused_naming_the_file(copy):
    from edge import arrays

    tree = arrays.read_file(copy / "covisitation.msgpack")
    lengths, codes = tree["lengths"], tree["score_codes"]
    short = dict(tree, lengths=lengths[:-1], indices=tree["indices"][: -int(lengths[-1]) or None])
    short["score_codes"] = codes[: short["indices"].size]  # one row short, consistent
    rewrite(copy, "covisitation.msgpack", short)
    with pytest.raises(BundleError, match="covisitation.msgpack has") as info:
        load_bundle(copy)
    assert info.value.file == "covisitation.msgpack"
    rewrite(copy, "covisitation.msgpack", dict(tree, score_codes=codes[1:]))
    with pytest.raises(BundleError, match="covisitation.msgpack is missing or has a malformed"):
        load_bundle(copy)
    tree.pop("lengths")
    rewrite(copy, "covisitation.msgpack", tree)
    with pytest.raises(BundleError, match="covisitation.msgpack is missing or has a malformed"):
        load_bundle(copy)


def test_embeddings_for_another_number_of_items_are_refused(copy):
    from edge import arrays

    tree = arrays.read_file(copy / "embeddings.msgpack")
    items = int(tree.get("items", tree["order"].size))
    rewrite(copy, "embeddings.msgpack", dict(tree, items=items + 1))
    with pytest.raises(BundleError, match=f"embeddings.msgpack has \\({items + 1},\\) rows"):
        load_bundle(copy)


def test_a_garbled_file_is_reported_by_its_checksum_not_by_what_broke_decoding(copy):
    # Files are decoded while they are hashed: the decoding fails first, but the changed
    # file is the reason the load gives.
    path = copy / "items.msgpack"
    path.write_bytes(b"\xc1" * path.stat().st_size)  # same size, not msgpack at all
    with pytest.raises(BundleError, match="items.msgpack has sha256") as info:
        load_bundle(copy)
    assert info.value.file == "items.msgpack"


@pytest.mark.parametrize("name", [RANKER, "visitor.onnx"])
def test_onnxruntime_never_reads_a_file_that_failed_its_checksum(copy, monkeypatch, name):
    import onnxruntime

    parsed = []
    real = onnxruntime.InferenceSession

    def recording(model, *args, **kwargs):
        parsed.append(model)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", recording)
    path = copy / name
    garbled = bytearray(path.read_bytes())
    garbled[len(garbled) // 2] ^= 0xFF
    path.write_bytes(bytes(garbled))
    with pytest.raises(BundleError, match=f"{name} has sha256"):
        load_bundle(copy)
    assert bytes(garbled) not in parsed


def test_a_profile_store_given_in_its_place_means_the_embedded_one_is_not_checked(copy):
    from edge.bundle import PROFILES
    from edge.profiles import EmptyProfileStore

    (copy / PROFILES).write_bytes(b"replaced by the shop's own store")
    store = EmptyProfileStore()
    assert load_bundle(copy, profiles=store).profiles is store
    with pytest.raises(BundleError, match="profiles.msgpack has"):
        load_bundle(copy)
