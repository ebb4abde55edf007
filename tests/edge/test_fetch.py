import functools
import http.server
import shutil
import threading

import pytest

from edge.bundle import load_bundle
from edge.errors import BundleError
from edge.fetch import fetch_bundle


@pytest.fixture()
def store(bundle_dir, tmp_path):
    """The bundle served from a directory over HTTP on 127.0.0.1, as an object store would."""
    root = tmp_path / "store"
    shutil.copytree(bundle_dir, root / "bundles" / "b1")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/bundles/b1", root / "bundles" / "b1"
    finally:
        server.shutdown()
        server.server_close()


def test_a_bundle_is_fetched_whole_and_verified(store, tmp_path, bundle):
    url, _ = store
    fetched = fetch_bundle(url, tmp_path / "served")
    assert load_bundle(fetched).build_id == bundle.build_id
    assert fetch_bundle(url + "/", fetched) == fetched  # a second fetch replaces the first


def test_a_file_that_does_not_match_the_manifest_is_refused(store, tmp_path):
    url, root = store
    ranker = root / "ranker.onnx"
    original = ranker.read_bytes()
    ranker.write_bytes(b"tampered")
    with pytest.raises(BundleError, match="ranker.onnx has 8 bytes; the manifest says"):
        fetch_bundle(url, tmp_path / "served")
    assert not (tmp_path / "served").exists()  # nothing half-fetched is left to serve
    ranker.write_bytes(original)
    # Same size, other bytes: only the sha256 check can tell, and every other file is intact.
    fallback = root / "fallback.json"
    fallback.write_bytes(b" " * fallback.stat().st_size)
    with pytest.raises(
        BundleError, match=r"/fallback\.json does not match its sha256 in the manifest$"
    ):
        fetch_bundle(url, tmp_path / "served")
    assert not (tmp_path / "served").exists()


def test_an_unreachable_store_or_a_bad_url_says_so(tmp_path):
    with pytest.raises(BundleError, match="must be an http"):
        fetch_bundle("s3://bucket/b1", tmp_path / "x")
    with pytest.raises(BundleError, match="cannot fetch http://127.0.0.1:9/b1/manifest.json"):
        fetch_bundle("http://127.0.0.1:9/b1", tmp_path / "x", timeout_s=2)
