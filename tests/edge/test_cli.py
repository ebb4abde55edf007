import json
import shutil

from edge.cli import main
from edge.context import HOUR_BUCKETS


def test_gateway_content_is_the_verified_bundles_fallback_with_its_build_id(bundle_dir, tmp_path):
    out = tmp_path / "content.json"
    assert main(["gateway-content", str(bundle_dir), "--out", str(out)]) == 0
    content = json.loads(out.read_text())
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    fallback = json.loads((bundle_dir / "fallback.json").read_text())
    assert content["bundle"] == manifest["build_id"]
    assert content["hour_buckets"] == list(HOUR_BUCKETS)
    assert content["contexts"] == fallback["contexts"] and content["contexts"]["all"]


def test_gateway_content_refuses_a_tampered_bundle_and_writes_nothing(bundle_dir, tmp_path, capsys):
    tampered = tmp_path / "tampered"
    shutil.copytree(bundle_dir, tampered)
    fallback = json.loads((tampered / "fallback.json").read_text())
    fallback["contexts"]["all"].insert(0, ["planted-item", 1e9])
    (tampered / "fallback.json").write_text(json.dumps(fallback))
    out = tmp_path / "content.json"
    assert main(["gateway-content", str(tampered), "--out", str(out)]) == 1
    assert "fallback.json" in capsys.readouterr().err
    assert not out.exists()
