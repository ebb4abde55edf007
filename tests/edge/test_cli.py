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
