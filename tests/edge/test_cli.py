import json
import shutil

import pytest

from edge.cli import main
from edge.context import HOUR_BUCKETS


def test_gateway_content_is_the_verified_bundles_fallback_with_its_build_id(
    small_bundle_dir, tmp_path
):
    out = tmp_path / "content.json"
    assert main(["gateway-content", str(small_bundle_dir), "--out", str(out)]) == 0
    content = json.loads(out.read_text())
    manifest = json.loads((small_bundle_dir / "manifest.json").read_text())
    fallback = json.loads((small_bundle_dir / "fallback.json").read_text())
    assert content["bundle"] == manifest["build_id"]
    assert content["hour_buckets"] == list(HOUR_BUCKETS)
    assert content["contexts"] == fallback["contexts"] and content["contexts"]["all"]


def test_gateway_content_refuses_a_tampered_bundle_and_writes_nothing(
    small_bundle_dir, tmp_path, capsys
):
    tampered = tmp_path / "tampered"
    shutil.copytree(small_bundle_dir, tampered)
    fallback = json.loads((tampered / "fallback.json").read_text())
    fallback["contexts"]["all"].insert(0, ["planted-item", 1e9])
    (tampered / "fallback.json").write_text(json.dumps(fallback))
    out = tmp_path / "content.json"
    assert main(["gateway-content", str(tampered), "--out", str(out)]) == 1
    assert "fallback.json" in capsys.readouterr().err
    assert not out.exists()


def test_serve_runs_one_uvicorn_server_stamping_arrivals_on_asyncio_without_websockets(
    small_bundle_dir, monkeypatch
):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append((app, options)))
    for name in ("EDGEPERSO_BUNDLE", "EDGEPERSO_BUDGET_MS", "EDGEPERSO_EVENTS_DIR"):
        monkeypatch.setenv(name, "")  # so that the test ends with them as they were, unset
        monkeypatch.delenv(name)
    assert main(["serve", "--bundle", str(small_bundle_dir), "--port", "8123"]) == 0
    [(app, options)] = calls
    # No WebSocket route: uvicorn must not import a WebSocket library at start (about 20 ms).
    assert options["ws"] == "none" and options["host"] == "127.0.0.1" and options["port"] == 8123
    assert options["workers"] == 1 and not options["factory"] and callable(app)
    # Requests are stamped on arrival, so the latency budget counts their wait in the server.
    from edge.arrival import ArrivalStampingProtocol

    assert options["http"] is ArrivalStampingProtocol
    # The stdlib loop by default (docs/serving.md, "The event loop", says why).
    assert options["loop"] == "asyncio"


def test_serve_takes_uvloop_when_asked_and_refuses_an_unknown_loop(
    small_bundle_dir, monkeypatch, capsys
):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append(options))
    monkeypatch.setenv("EDGEPERSO_BUNDLE", "")
    assert main(["serve", "--bundle", str(small_bundle_dir), "--loop", "uvloop"]) == 0
    assert calls[0]["loop"] == "uvloop"
    with pytest.raises(SystemExit):
        main(["serve", "--bundle", str(small_bundle_dir), "--loop", "trio"])
    assert "invalid choice: 'trio'" in capsys.readouterr().err


def test_serve_says_how_to_get_uvloop_when_it_is_not_installed(small_bundle_dir, monkeypatch):
    import importlib.util

    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, **options: None)
    monkeypatch.setenv("EDGEPERSO_BUNDLE", "")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "uvloop" else find_spec(name)
    )
    with pytest.raises(SystemExit, match=r"needs the uvloop package \(pip install uvloop\)"):
        main(["serve", "--bundle", str(small_bundle_dir), "--loop", "uvloop"])


# ---------------------------------------------------------------- signatures
SIGNING_ENV = (
    "EDGEPERSO_BUNDLE",
    "EDGEPERSO_PUBLIC_KEY",
    "EDGEPERSO_ALLOW_UNSIGNED",
    "EDGEPERSO_SIGNING_KEY",
    "EDGEPERSO_BUNDLE_URL",
)


@pytest.fixture()
def clean_env(monkeypatch):
    """The signing variables unset, and unset again after the test whatever `serve` set."""
    for name in SIGNING_ENV:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    return monkeypatch


def public_line(key) -> str:
    """EDGEPERSO_PUBLIC_KEY's form: the raw public key in base64."""
    import base64

    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def uvicorn_calls(monkeypatch) -> list:
    import uvicorn

    calls: list = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append(options))
    return calls


def test_serve_refuses_to_start_with_the_old_hmac_key_saying_what_replaced_it(
    small_bundle_dir, clean_env
):
    calls = uvicorn_calls(clean_env)
    clean_env.setenv("EDGEPERSO_SIGNING_KEY", "s3cret")
    with pytest.raises(SystemExit, match="EDGEPERSO_SIGNING_KEY .* no longer read") as info:
        main(["serve", "--bundle", str(small_bundle_dir)])
    assert "EDGEPERSO_PUBLIC_KEY" in str(info.value) and calls == []


def test_serve_downloads_only_over_https_with_a_public_key_unless_told_unsigned_is_fine(
    tmp_path, clean_env, capsys
):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    calls = uvicorn_calls(clean_env)
    serve = ["serve", "--bundle", str(tmp_path / "bundle"), "--bundle-url"]
    with pytest.raises(SystemExit, match="must be https://.*--allow-unsigned"):
        main([*serve, "http://127.0.0.1:9/b1"])
    with pytest.raises(SystemExit, match="needs the public key its signature is checked with"):
        main([*serve, "https://127.0.0.1:9/b1"])
    assert calls == []
    # Allowed downloads are tried (nothing listens on port 9); the server starts anyway, to
    # answer fallbacks and say why on /readyz.
    key = public_line(Ed25519PrivateKey.generate())
    assert main([*serve, "https://127.0.0.1:9/b1", "--public-key", key]) == 0
    assert "bundle fetch failed: cannot fetch https://127.0.0.1:9/b1/manifest.json" in (
        capsys.readouterr().err
    )
    assert main([*serve, "http://127.0.0.1:9/b1", "--allow-unsigned"]) == 0
    assert "bundle fetch failed: cannot fetch http://127.0.0.1:9/b1/manifest.json" in (
        capsys.readouterr().err
    )
    assert len(calls) == 2


def test_inspect_names_the_key_that_signed_and_whether_it_was_checked(tmp_path, clean_env, capsys):
    import hashlib

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from tests.edge.small_bundle import write_small_bundle

    key = Ed25519PrivateKey.generate()
    signed = write_small_bundle(tmp_path / "signed", signing_key=key)
    pem = tmp_path / "public.pem"
    pem.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    key_id = hashlib.sha256(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    key_id = key_id.hexdigest()[:16]
    assert main(["inspect", str(signed), "--json", "--public-key", str(pem)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["signed_by"] == key_id and summary["signature_verified"] is True
    assert main(["inspect", str(signed)]) == 0
    assert f"signed: by key {key_id}, not checked: no public key given" in capsys.readouterr().out
    other = public_line(Ed25519PrivateKey.generate())
    assert main(["inspect", str(signed), "--public-key", other]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"INVALID bundle {signed}: the bundle's signature is by key {key_id}")
    assert main(["inspect", str(signed), "--public-key", "not a key"]) == 1
    assert "cannot check bundle" in capsys.readouterr().err


def test_gateway_content_with_a_public_key_writes_only_a_bundle_signed_with_it(
    small_bundle_dir, tmp_path, clean_env, capsys
):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tests.edge.small_bundle import write_small_bundle

    key = Ed25519PrivateKey.generate()
    out = tmp_path / "content.json"
    command = ["gateway-content", "--out", str(out), "--public-key", public_line(key)]
    assert main([*command, str(small_bundle_dir)]) == 1
    assert "the bundle is not signed" in capsys.readouterr().err and not out.exists()
    signed = write_small_bundle(tmp_path / "signed", signing_key=key)
    assert main([*command, str(signed)]) == 0
    assert json.loads(out.read_text())["contexts"]["all"]
