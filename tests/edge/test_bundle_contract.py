"""The bundle's public contract, through `edge.bundle.verify`, `edge.bundle.load_bundle` and
`edge.errors.BundleError` only, whatever the package's modules look like inside."""

import base64
import hashlib
import hmac
import json
import shutil

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edge.bundle import load_bundle, verify
from edge.errors import BundleError

MANIFEST = "manifest.json"

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


def raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def signature_of(manifest: dict, key: Ed25519PrivateKey, **dumps) -> dict:
    """The Ed25519 signature docs/bundle-format.md describes, made here as another signing tool
    would: over the manifest without its signature, keys sorted, compact JSON; named by the
    first 16 hex digits of the public key's sha256; the signature's 64 bytes in base64."""
    unsigned = {k: v for k, v in manifest.items() if k != "signature"}
    form = {"sort_keys": True, "separators": (",", ":")} | dumps
    value = key.sign(json.dumps(unsigned, **form).encode())
    return {
        "algorithm": "ed25519",
        "key_id": hashlib.sha256(raw(key)).hexdigest()[:16],
        "value": base64.b64encode(value).decode(),
    }


def test_a_manifest_signed_as_documented_loads_and_any_other_signature_is_refused(copy):
    key, other, path = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate(), copy / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["signature"] = signature_of(manifest, key)
    path.write_text(json.dumps(manifest, indent=4))  # the file's own layout is not signed
    assert load_bundle(copy, public_key=raw(key)).build_id == manifest["build_id"]
    mismatch = "signature does not match the public key"
    refused = [
        (manifest["signature"], raw(other), "signature is by key .*, but this edge trusts key"),
        (signature_of(manifest, key, sort_keys=False), raw(key), mismatch),
        (signature_of(manifest, key, separators=None), raw(key), mismatch),
        # Another key's signature under this key's id: the id names a key, it proves nothing.
        (
            signature_of(manifest, other) | {"key_id": manifest["signature"]["key_id"]},
            raw(key),
            mismatch,
        ),
        (manifest["signature"] | {"algorithm": "hmac-sha256"}, raw(key), "signature is malformed"),
        (manifest["signature"] | {"value": "not base64!"}, raw(key), "signature is malformed"),
        (None, raw(key), "the bundle is not signed, but this edge requires a signature by key"),
    ]
    for signature, public_key, why in refused:
        path.write_text(json.dumps(manifest | {"signature": signature}))
        with pytest.raises(BundleError, match=why) as info:
            load_bundle(copy, public_key=public_key)
        assert info.value.file == MANIFEST


def test_a_format_6_bundle_signed_with_an_hmac_secret_loads_only_where_no_key_is_set(copy):
    """Format 6 signed with a shared secret: `signature` was HMAC-SHA256 in hex over the same
    payload. With no public key such a bundle loads as an unsigned one did; with one, it is
    refused with what to do."""
    path = copy / MANIFEST
    manifest = json.loads(path.read_text()) | {"format_version": 6}
    unsigned = {k: v for k, v in manifest.items() if k != "signature"}
    payload = json.dumps(unsigned, sort_keys=True, separators=(",", ":")).encode()
    manifest["signature"] = hmac.new(b"old secret", payload, hashlib.sha256).hexdigest()
    path.write_text(json.dumps(manifest))
    assert load_bundle(copy).manifest.signature == manifest["signature"]
    with pytest.raises(BundleError, match="HMAC shared secret .* no longer accepts") as info:
        load_bundle(copy, public_key=raw(Ed25519PrivateKey.generate()))
    assert "--signing-key" in info.value.message


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
