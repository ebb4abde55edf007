"""The bundle's public contract, through `edge.bundle.verify`, `edge.bundle.load_bundle` and
`edge.errors.BundleError` only, whatever the package's modules look like inside."""

import hashlib
import hmac
import json
import shutil

import pytest

from edge.bundle import load_bundle, verify
from edge.errors import BundleError

# Every bundle has these (the format's required files), written out here rather than read from
# the package, so that a file dropped from its list is noticed.
REQUIRED = (
    "items.msgpack",
    "embeddings.msgpack",
    "covisitation.msgpack",
    "item_regression.msgpack",
    "popularity.msgpack",
    "ranker.onnx",
    "fallback.json",
)


@pytest.fixture()
def copy(bundle_dir, tmp_path):
    return shutil.copytree(bundle_dir, tmp_path / "bundle")


def test_the_exported_bundle_verifies_and_loads(copy, bundle):
    assert verify(copy).build_id == bundle.build_id
    assert load_bundle(copy).build_id == bundle.build_id


@pytest.mark.parametrize("name", REQUIRED)
def test_a_manifest_that_does_not_list_a_required_file_is_refused_naming_it(copy, name):
    """The file stays on disk: listed nowhere, it has no checksum, so it must not be read."""
    path = copy / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["files"][name]
    path.write_text(json.dumps(manifest))
    for check in (verify, load_bundle):
        with pytest.raises(BundleError) as info:
            check(copy)
        assert info.value.file == name, check
        assert name in info.value.message and "manifest.json" in info.value.message, check


def test_a_bundle_loads_with_every_optional_part_it_lists(tmp_path):
    import msgspec

    from edge.bandits import Bandit
    from edge.experiments import Experiment
    from edge.rules import DEFAULT_RULES
    from tests.edge.small_bundle import write_small_bundle

    split = msgspec.convert({"key": "e", "variants": [{"name": "a"}, {"name": "b"}]}, Experiment)
    arms = [{"name": "b0"}, {"name": "b1"}]
    banner = msgspec.convert({"slot": "home-banner", "arms": arms}, Bandit)
    full = write_small_bundle(tmp_path / "full", experiments=[split], bandits=[banner])
    loaded = load_bundle(full)
    assert loaded.directory == full and loaded.rules == DEFAULT_RULES
    assert loaded.experiments == (split,) and loaded.bandits == (banner,)
    assert loaded.visitor is not None and loaded.visitor.segments is not None
    bare = load_bundle(write_small_bundle(tmp_path / "bare", visitor=False))
    assert (bare.visitor, bare.experiments, bare.bandits) == (None, (), ())


def test_a_directory_without_a_readable_manifest_is_refused_naming_the_manifest(tmp_path):
    with pytest.raises(BundleError, match="manifest.json is missing") as info:
        load_bundle(tmp_path)
    assert info.value.file == "manifest.json"
    (tmp_path / "manifest.json").write_text("{not json")
    for check in (verify, load_bundle):
        with pytest.raises(BundleError, match="manifest.json is not valid JSON") as info:
            check(tmp_path)
        assert info.value.file == "manifest.json"


def signature_of(manifest: dict, key: bytes, **dumps) -> str:
    """HMAC-SHA256 over the manifest without its signature, as docs/bundle-format.md says:
    keys sorted, compact JSON (computed here as another signing tool would)."""
    unsigned = {k: v for k, v in manifest.items() if k != "signature"}
    form = {"sort_keys": True, "separators": (",", ":")} | dumps
    return hmac.new(key, json.dumps(unsigned, **form).encode(), hashlib.sha256).hexdigest()


def test_a_manifest_signed_as_documented_loads_and_any_other_signature_is_refused(copy):
    key, path = b"the shop's key", copy / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["signature"] = signature_of(manifest, key)
    path.write_text(json.dumps(manifest, indent=4))  # the file's own layout is not signed
    assert load_bundle(copy, signing_key=key).build_id == manifest["build_id"]
    refused = [
        (manifest["signature"], b"another key", "does not match the signing key"),
        (signature_of(manifest, key, sort_keys=False), key, "does not match the signing key"),
        (signature_of(manifest, key, separators=None), key, "does not match the signing key"),
        (None, key, "the bundle is not signed, but this edge requires a signature"),
    ]
    for signature, check_key, why in refused:
        path.write_text(json.dumps(manifest | {"signature": signature}))
        with pytest.raises(BundleError, match=why) as info:
            load_bundle(copy, signing_key=check_key)
        assert info.value.file == "manifest.json"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda path: path.unlink(), "is listed in manifest.json but missing from"),
        (lambda path: path.write_bytes(path.read_bytes() + b"\0"), "bytes; the manifest says"),
    ],
)
def test_a_listed_file_that_is_missing_or_of_another_size_is_refused_naming_it(copy, change, why):
    change(copy / "popularity.msgpack")
    for check in (verify, load_bundle):
        with pytest.raises(BundleError, match=f"^popularity.msgpack .*{why}") as info:
            check(copy)
        assert info.value.file == "popularity.msgpack"
