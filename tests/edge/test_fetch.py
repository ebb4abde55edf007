"""Fetching a bundle from an object store: an http server on 127.0.0.1 serving a bundle
directory. Over http a fetch needs the explicit --allow-unsigned; with a public key the
manifest's signature is checked before any other file is asked for."""

import contextlib
import functools
import hashlib
import http.server
import json
import shutil
import threading

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.bundle import load_bundle
from edge.bundle.signing import raw_public_key
from edge.errors import BundleError
from edge.fetch import fetch_bundle
from tests.edge.small_bundle import write_small_bundle


class RecordingHandler(http.server.SimpleHTTPRequestHandler):
    requested: list[str]

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass

    def do_GET(self):
        self.requested.append(self.path.rsplit("/", 1)[-1])
        super().do_GET()


@contextlib.contextmanager
def serve_directory(root):
    """An http server on 127.0.0.1 over `root`; yields its URL and the names asked for."""
    requested: list[str] = []
    handler = functools.partial(
        type("Handler", (RecordingHandler,), {"requested": requested}), directory=str(root)
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requested
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def store(bundle_dir, tmp_path):
    """The exported bundle served over http on 127.0.0.1, as an object store would."""
    root = tmp_path / "store"
    shutil.copytree(bundle_dir, root / "bundles" / "b1")
    with serve_directory(root) as (url, _):
        yield f"{url}/bundles/b1", root / "bundles" / "b1"


@pytest.fixture(scope="module")
def shop_key():
    return Ed25519PrivateKey.generate()


@pytest.fixture()
def signed_store(tmp_path, shop_key):
    """The small bundle signed with the shop's key, served over http on 127.0.0.1."""
    root = tmp_path / "store"
    write_small_bundle(root / "b1", signing_key=shop_key)
    with serve_directory(root) as (url, requested):
        yield f"{url}/b1", root / "b1", requested


def test_a_bundle_is_fetched_whole_and_verified(store, tmp_path, bundle):
    url, _ = store
    fetched = fetch_bundle(url, tmp_path / "served", public_key=None, allow_unsigned=True)
    assert load_bundle(fetched).build_id == bundle.build_id
    again = fetch_bundle(url + "/", fetched, public_key=None, allow_unsigned=True)
    assert again == fetched  # a second fetch replaces the first


def test_a_file_that_does_not_match_the_manifest_is_refused(store, tmp_path):
    url, root = store
    ranker = root / "ranker.onnx"
    original = ranker.read_bytes()
    ranker.write_bytes(b"tampered")
    with pytest.raises(BundleError, match="ranker.onnx has 8 bytes; the manifest says"):
        fetch_bundle(url, tmp_path / "served", public_key=None, allow_unsigned=True)
    assert not (tmp_path / "served").exists()  # nothing half-fetched is left to serve
    ranker.write_bytes(original + b"\0" * (3 << 20))  # longer: the download stops past its size
    with pytest.raises(BundleError, match=r"ranker.onnx has more than \d+ bytes; the manifest"):
        fetch_bundle(url, tmp_path / "served", public_key=None, allow_unsigned=True)
    ranker.write_bytes(original)
    # Same size, other bytes: only the sha256 check can tell, and every other file is intact.
    fallback = root / "fallback.json"
    fallback.write_bytes(b" " * fallback.stat().st_size)
    with pytest.raises(
        BundleError, match=r"/fallback\.json does not match its sha256 in the manifest$"
    ):
        fetch_bundle(url, tmp_path / "served", public_key=None, allow_unsigned=True)
    assert not (tmp_path / "served").exists()


def test_an_unreachable_store_or_a_bad_url_says_so(tmp_path):
    with pytest.raises(BundleError, match="must be an https:// URL, got 's3://bucket/b1'"):
        fetch_bundle("s3://bucket/b1", tmp_path / "x", public_key=None, allow_unsigned=True)
    with pytest.raises(BundleError, match="cannot fetch http://127.0.0.1:9/b1/manifest.json"):
        fetch_bundle(
            "http://127.0.0.1:9/b1",
            tmp_path / "x",
            public_key=None,
            allow_unsigned=True,
            timeout_s=2,
        )


def test_without_the_explicit_word_a_fetch_needs_https_and_a_public_key(signed_store, tmp_path):
    """Refused before anything is asked of the store: nothing to tamper with on the way."""
    url, _, requested = signed_store
    key = raw_public_key(Ed25519PrivateKey.generate())
    with pytest.raises(BundleError, match="must be https://.* --allow-unsigned") as info:
        fetch_bundle(url, tmp_path / "x", public_key=key)
    assert "EDGEPERSO_ALLOW_UNSIGNED=1" in info.value.message
    https = url.replace("http://", "https://")
    with pytest.raises(BundleError, match="needs the public key .* EDGEPERSO_PUBLIC_KEY"):
        fetch_bundle(https, tmp_path / "x", public_key=None)
    assert requested == [] and not (tmp_path / "x").exists()


def test_a_signed_bundle_is_fetched_when_its_manifest_verifies(signed_store, tmp_path, shop_key):
    url, _, requested = signed_store
    key = raw_public_key(shop_key)
    fetched = fetch_bundle(url, tmp_path / "served", public_key=key, allow_unsigned=True)
    assert load_bundle(fetched, public_key=key).manifest.signature is not None
    assert requested[0] == "manifest.json" and "fallback.json" in requested


@pytest.mark.parametrize(
    ("forge", "why"),
    [
        ("wrong key", "signature is by key [0-9a-f]{16}, but this edge trusts key"),
        ("manifest altered", "signature does not match the public key"),
        ("file swapped, sha256 rewritten", "signature does not match the public key"),
    ],
)
def test_a_forged_manifest_stops_the_fetch_before_any_other_file_is_asked_for(
    signed_store, tmp_path, shop_key, forge, why
):
    url, root, requested = signed_store
    if forge == "wrong key":
        write_small_bundle(root, signing_key=Ed25519PrivateKey.generate())
    else:
        manifest = json.loads((root / "manifest.json").read_text())
        if forge == "manifest altered":
            manifest["build_id"] = "forged-build"
        else:
            swapped = b'{"contexts": {"all": [["planted-item", 1.0]]}}'
            (root / "fallback.json").write_bytes(swapped)
            manifest["files"]["fallback.json"] = {
                "sha256": hashlib.sha256(swapped).hexdigest(),
                "bytes": len(swapped),
            }
        (root / "manifest.json").write_text(json.dumps(manifest))
    served = tmp_path / "served"
    served.mkdir()
    (served / "kept.txt").write_text("what was there before")
    with pytest.raises(BundleError, match=f"manifest.json refused: .*{why}"):
        fetch_bundle(url, served, public_key=raw_public_key(shop_key), allow_unsigned=True)
    assert requested == ["manifest.json"]
    assert [p.name for p in served.iterdir()] == ["kept.txt"]  # left as it was
