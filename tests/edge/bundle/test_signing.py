"""Ed25519 bundle signatures (edge.bundle.signing): keys made, written and read in each form a
build or an edge node holds them; manifests signed and checked; and a real server on 127.0.0.1
with a public key that serves nothing of a forged bundle."""

import base64
import hashlib
import http.client
import json
import os
import re
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key
from starlette.testclient import TestClient

from edge.app import create_app
from edge.bundle import EMBEDDINGS, FALLBACK, MANIFEST, load_bundle, load_fallback_only
from edge.bundle.signing import (
    SigningKeyError,
    load_private_key,
    parse_public_key,
    public_key_from_env,
    raw_public_key,
    write_key_pair,
)
from edge.config import Settings
from edge.errors import BundleError
from tests.edge.small_bundle import IDS, write_small_bundle
from tests.servers import edge_app_command, free_port, get_json, wait_for


def raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def pem(public) -> bytes:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# ---------------------------------------------------------------- keygen
def test_keygen_writes_a_private_key_only_its_owner_reads_and_the_public_key_three_ways(tmp_path):
    keys = write_key_pair(tmp_path / "keys")
    assert stat.S_IMODE(keys.private.stat().st_mode) == 0o600
    assert keys.private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS8
    private = serialization.load_pem_private_key(keys.private.read_bytes(), password=None)
    assert isinstance(private, Ed25519PrivateKey)
    public = serialization.load_pem_public_key(keys.public.read_bytes())
    assert raw(public) == raw(private.public_key()) == base64.b64decode(keys.public_base64)
    assert keys.key_id == hashlib.sha256(raw(public)).hexdigest()[:16]
    # What was written signs what the public key checks.
    public.verify(private.sign(b"payload"), b"payload")


def test_keygen_never_overwrites_a_key(tmp_path):
    first = write_key_pair(tmp_path)
    before = (first.private.read_bytes(), first.public.read_bytes())
    with pytest.raises(SigningKeyError, match="private.pem .*already exist: keygen never"):
        write_key_pair(tmp_path)
    (tmp_path / "private.pem").unlink()  # a public key left alone is not overwritten either
    with pytest.raises(SigningKeyError, match="public.pem already exist"):
        write_key_pair(tmp_path)
    assert first.public.read_bytes() == before[1]


# ---------------------------------------------------------------- the build's private key
def test_the_private_key_is_read_from_keygens_file(tmp_path):
    keys = write_key_pair(tmp_path)
    assert raw_public_key(load_private_key(keys.private)) == base64.b64decode(keys.public_base64)


def test_a_private_key_file_that_cannot_sign_is_refused_saying_why(tmp_path):
    keys = write_key_pair(tmp_path / "keys")
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    rsa = tmp_path / "rsa.pem"
    rsa.write_bytes(
        generate_private_key(65537, 2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    cases = {
        keys.public: "holds a public key: export signs with the private key",
        encrypted: "is encrypted",
        rsa: "is a RSAPrivateKey; bundles are signed with Ed25519",
        garbage: "is not a PEM private key",
        tmp_path / "missing.pem": "cannot be read",
    }
    for path, why in cases.items():
        with pytest.raises(SigningKeyError, match=why):
            load_private_key(path)


# ---------------------------------------------------------------- the edge's public key
def test_the_public_key_is_read_as_base64_pem_text_or_a_file_of_either(tmp_path):
    public = Ed25519PrivateKey.generate().public_key()
    line = base64.b64encode(raw(public)).decode()
    pem_file, line_file = tmp_path / "public.pem", tmp_path / "public.b64"
    pem_file.write_bytes(pem(public))
    line_file.write_text(line + "\n")
    for value in (line, f"  {line}\n", pem(public).decode(), str(pem_file), str(line_file)):
        assert parse_public_key(value) == raw(public), value


def test_a_public_key_that_is_not_one_is_refused_saying_what_is_expected(tmp_path):
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    private_file = tmp_path / "private.pem"
    private_file.write_bytes(private_pem)
    rsa_pem = pem(generate_private_key(65537, 2048).public_key()).decode()
    cases = {
        private_pem.decode(): "holds a private key: an edge node must hold only the public key",
        str(private_file): "holds a private key",
        rsa_pem: "is a RSAPublicKey; bundles are signed with Ed25519",
        base64.b64encode(b"sixteen bytes!!!").decode(): "it decodes to 16 bytes, not 32",
        "/no/such/public.pem": "neither an Ed25519 public key in base64 .* nor the path",
    }
    for value, why in cases.items():
        with pytest.raises(SigningKeyError, match=why) as info:
            parse_public_key(value)
        assert str(info.value).startswith("EDGEPERSO_PUBLIC_KEY"), value


def test_an_edge_with_the_old_hmac_secret_is_told_what_replaced_it():
    with pytest.raises(SigningKeyError, match="EDGEPERSO_SIGNING_KEY .* no longer read") as info:
        public_key_from_env({"EDGEPERSO_SIGNING_KEY": "s3cret", "EDGEPERSO_PUBLIC_KEY": ""})
    assert "EDGEPERSO_PUBLIC_KEY" in str(info.value) and "keygen" in str(info.value)
    assert public_key_from_env({"EDGEPERSO_SIGNING_KEY": ""}) is None


# ---------------------------------------------------------------- forged bundles
SHOP_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"the shop").digest())
TRUSTED = raw(SHOP_KEY.public_key())
PLANTED = (
    b'{"contexts": {"all": [["planted-item", 9.0]], "device=mobile": [["planted-item", 9.0]]}}'
)


def rewrite_manifest(bundle: Path, change) -> None:
    manifest = json.loads((bundle / MANIFEST).read_text())
    change(manifest)
    (bundle / MANIFEST).write_text(json.dumps(manifest))


def forged_bundles(root: Path) -> dict[str, Path]:
    """Three ways a bundle may be forged, each with an item planted in its fallback content and
    its embeddings broken, so that without a key the refused bundle's fallback is served."""
    forged = {}
    # 1. Signed, but with another key.
    bundle = write_small_bundle(root / "wrong-key", signing_key=Ed25519PrivateKey.generate())
    (bundle / FALLBACK).write_bytes(PLANTED)
    rewrite_manifest(bundle, lambda m: m["files"][FALLBACK].update(entry(PLANTED)))
    forged["wrong key"] = bundle
    # 2. Signed with the shop's key, then the manifest altered.
    bundle = write_small_bundle(root / "altered", signing_key=SHOP_KEY)
    rewrite_manifest(bundle, lambda m: m.update(build_id="forged-build-id"))
    forged["manifest altered after signing"] = bundle
    # 3. Signed with the shop's key, then a file swapped and its sha256 entry rewritten.
    bundle = write_small_bundle(root / "swapped", signing_key=SHOP_KEY)
    (bundle / FALLBACK).write_bytes(PLANTED)
    rewrite_manifest(bundle, lambda m: m["files"][FALLBACK].update(entry(PLANTED)))
    forged["file swapped, sha256 rewritten"] = bundle
    for bundle in forged.values():
        (bundle / EMBEDDINGS).write_bytes(b"broken")  # the whole bundle is refused
    return forged


def entry(data: bytes) -> dict:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def from_the_bundle(text: str, bundle: Path) -> list[str]:
    """What in `text` came from `bundle`: its items, its planted item, its build id."""
    build_id = json.loads((bundle / MANIFEST).read_text())["build_id"]
    found = re.findall(r'"(i\d\d|planted-item)"', text)
    return found + ([build_id] if build_id in text else [])


REQUESTS = [
    {"k": 5},
    {"k": 5, "context": {"device": "mobile", "country": "de", "local_hour": 20}},
    {"k": 5, "user_id": "u-loyal", "session": {"events": [{"item_id": IDS[0], "type": "view"}]}},
]


def test_without_a_key_a_forged_bundle_would_be_served(tmp_path):
    """What the key prevents (the test below would notice if it stopped doing so): without one,
    the planted fallback item and the altered build id reach visitors."""
    bundles = forged_bundles(tmp_path)
    planted = bundles["file swapped, sha256 rewritten"]
    assert load_fallback_only(planted, public_key=None) == {
        "all": [("planted-item", 9.0)],
        "device=mobile": [("planted-item", 9.0)],
    }
    with TestClient(create_app(Settings(bundle_dir=str(planted), reload_seconds=0))) as client:
        answer = client.post("/v1/recommend", json={"k": 5}).text
    assert "planted-item" in from_the_bundle(answer, planted)
    altered = bundles["manifest altered after signing"]
    (altered / EMBEDDINGS).unlink()
    write_small_bundle(tmp_path / "intact")
    (altered / EMBEDDINGS).write_bytes((tmp_path / "intact" / EMBEDDINGS).read_bytes())
    assert load_bundle(altered).build_id == "forged-build-id"


@pytest.mark.parametrize("forge", ["wrong key", "manifest altered after signing"])
def test_load_fallback_only_with_a_key_reads_nothing_of_a_forged_bundle(tmp_path, forge):
    assert load_fallback_only(forged_bundles(tmp_path)[forge], public_key=TRUSTED) is None


def test_a_server_with_a_public_key_serves_nothing_of_a_forged_bundle(tmp_path):
    """Three real servers on 127.0.0.1 (started together), each given one forged bundle and the
    shop's public key: /readyz says why the bundle was refused, and no answer holds any item,
    fallback item or build id of it."""
    bundles = forged_bundles(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEPERSO_")}
    env |= {"EDGEPERSO_PUBLIC_KEY": base64.b64encode(TRUSTED).decode()}
    servers = {}
    try:
        for forge, bundle in bundles.items():
            port = free_port()
            events = Path(tempfile.mkdtemp(dir=tmp_path))
            command = [*edge_app_command(bundle, events, port), "--log-level", "warning"]
            servers[forge] = (port, subprocess.Popen(command, env=env))
        for forge, (port, process) in servers.items():
            wait_for(port, "/readyz", process, want=(503,), seconds=30)
            status, ready = get_json(port, "/readyz")
            assert status == 503 and ready["status"] == "not ready", forge
            assert "bundle refused" in ready["reason"] and "signature" in ready["reason"], forge
            answers = [json.dumps(ready)]
            for body in REQUESTS:
                status, answer = post(port, "/v1/recommend", body)
                assert status == 200 and answer["items"] == [], (forge, answer)
                assert answer["fallback"].startswith("bundle_unavailable"), forge
                answers.append(json.dumps(answer))
            answers.append(json.dumps(get_json(port, "/healthz")[1]))
            assert from_the_bundle("\n".join(answers), bundles[forge]) == [], forge
    finally:
        for _, process in servers.values():
            process.terminate()
        for _, process in servers.values():
            process.wait(timeout=10)


def post(port: int, path: str, body: dict) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(
            "POST", path, json.dumps(body).encode(), {"content-type": "application/json"}
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_a_refusal_names_the_signature_before_anything_else_is_wrong(tmp_path):
    """A forged bundle is reported as forged (not as, say, a bad checksum), so an operator
    knows it was not merely damaged."""
    for forge, bundle in forged_bundles(tmp_path).items():
        with pytest.raises(BundleError, match="signature") as info:
            load_bundle(bundle, public_key=TRUSTED)
        assert info.value.file == MANIFEST, forge
