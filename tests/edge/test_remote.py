"""Bundles published to a real S3-compatible store (SeaweedFS on 127.0.0.1) and followed from
it: the pointer flips only to a whole build, a node fetches the manifest first and refuses a
forged or damaged build before it is ever pointed to, and an unchanged pointer costs a 304."""

from __future__ import annotations

import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.bundle.publish import read_pointer
from edge.bundle.remote import (
    StoreFollower,
    publish_to_store,
    rollback_in_store,
    store_pointer,
)
from edge.bundle.signing import raw_public_key
from edge.errors import BundleError
from edge.objectstore import ObjectStore
from tests.edge.small_bundle import write_small_bundle

KEY = Ed25519PrivateKey.generate()
PUBLIC = raw_public_key(KEY)


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """Two signed builds, and one signed with another key."""
    base = tmp_path_factory.mktemp("builds")
    forged = write_small_bundle(base / "forged", signing_key=Ed25519PrivateKey.generate())
    manifest = json.loads((forged / "manifest.json").read_text())
    manifest["build_id"] = "20261207T000000Z-f0f0f0f0f0"  # a build of its own
    (forged / "manifest.json").write_text(json.dumps(manifest))
    return {
        "a": write_small_bundle(base / "a", signing_key=KEY),
        "b": write_small_bundle(base / "b", signing_key=KEY, visitor=False),
        "forged": forged,
    }


def build_id(bundle) -> str:
    return json.loads((bundle / "manifest.json").read_text())["build_id"]


def test_publish_uploads_the_build_then_points_to_it_and_rollback_points_back(builds, store_url):
    first = publish_to_store(builds["a"], store_url, PUBLIC)
    assert first.build == build_id(builds["a"]) and first.previous is None
    store = ObjectStore(store_url)
    names = {o.key.rsplit("/", 1)[-1] for o in store.list(f"builds/{first.build}/")}
    manifest = json.loads((builds["a"] / "manifest.json").read_text())
    assert names == {*manifest["files"], *manifest.get("profile_store", {}), "manifest.json"}
    second = publish_to_store(builds["b"], store_url, PUBLIC)
    assert (second.build, second.previous) == (build_id(builds["b"]), first.build)
    assert publish_to_store(builds["b"], store_url, PUBLIC).build == second.build  # again: same
    back = rollback_in_store(store_url, public_key=PUBLIC)
    assert (back.build, back.previous) == (first.build, second.build)
    assert store_pointer(store) == back


def test_a_build_that_does_not_verify_is_never_published(builds, store_url):
    with pytest.raises(BundleError, match="signature"):
        publish_to_store(builds["forged"], store_url, PUBLIC)
    assert store_pointer(ObjectStore(store_url)) is None


def test_a_node_follows_the_pointer_and_an_unchanged_one_costs_nothing(builds, store_url, tmp_path):
    publish_to_store(builds["a"], store_url, PUBLIC)
    follower = StoreFollower(store_url, tmp_path / "root", PUBLIC)
    assert follower.follow_once() and follower.error is None
    assert read_pointer(tmp_path / "root").build == build_id(builds["a"])
    assert not follower.follow_once()  # 304: nothing fetched
    publish_to_store(builds["b"], store_url, PUBLIC)
    assert follower.follow_once()
    pointer = read_pointer(tmp_path / "root")
    assert (pointer.build, pointer.previous) == (build_id(builds["b"]), build_id(builds["a"]))
    assert follower.status().status == "ok" and follower.status().build == pointer.build


def test_a_forged_build_in_the_store_is_refused_after_its_manifest_alone(
    builds, store_url, tmp_path, monkeypatch
):
    """Whoever can write to the store (but not sign) swaps the pointer to a build of theirs."""
    publish_to_store(builds["a"], store_url, PUBLIC)
    follower = StoreFollower(store_url, tmp_path / "root", PUBLIC)
    follower.follow_once()
    store = ObjectStore(store_url)
    forged = builds["forged"]
    for path in forged.iterdir():
        store.put(f"builds/{build_id(forged)}/{path.name}", path.read_bytes())
    store.put("current.json", json.dumps({"build": build_id(forged), "published_at": "x"}).encode())
    asked = []
    real_get = follower.store.get
    monkeypatch.setattr(
        follower.store, "get", lambda key, *a, **k: asked.append(key) or real_get(key, *a, **k)
    )
    assert not follower.follow_once()
    assert [k.rsplit("/", 1)[-1] for k in asked] == ["manifest.json"], follower.error
    status = follower.status()
    assert (
        status.status == "retrying" and "refused" in status.reason and "signature" in status.reason
    )
    assert read_pointer(tmp_path / "root").build == build_id(builds["a"])  # still served
    assert not (tmp_path / "root" / "builds" / build_id(forged)).exists()


@pytest.mark.parametrize("damage", ["changed", "longer"])
def test_a_damaged_file_in_the_store_is_refused_and_the_old_build_stays(
    builds, store_url, tmp_path, damage
):
    publish_to_store(builds["a"], store_url, PUBLIC)
    follower = StoreFollower(store_url, tmp_path / "root", PUBLIC)
    follower.follow_once()
    publish_to_store(builds["b"], store_url, PUBLIC)
    store = ObjectStore(store_url)
    name = next(iter(json.loads((builds["b"] / "manifest.json").read_text())["files"]))
    key = f"builds/{build_id(builds['b'])}/{name}"
    data = bytearray(store.get(key))
    if damage == "changed":
        data[-1] ^= 0xFF
    else:
        data += b"\0" * 1024
    store.put(key, bytes(data))
    assert not follower.follow_once()
    said = "does not match" if damage == "changed" else "more than the"
    assert said in follower.status().reason
    assert read_pointer(tmp_path / "root").build == build_id(builds["a"])
    store.put(key, (builds["b"] / name).read_bytes())  # repaired: followed at the next poll
    assert follower.follow_once()
    assert read_pointer(tmp_path / "root").build == build_id(builds["b"])
    assert hashlib.sha256(
        (tmp_path / "root" / "builds" / build_id(builds["b"]) / name).read_bytes()
    )


def test_following_needs_a_public_key_unless_told_unsigned_is_fine(store_url, tmp_path):
    with pytest.raises(BundleError, match="EDGEPERSO_PUBLIC_KEY"):
        StoreFollower(store_url, tmp_path / "root", None)
    StoreFollower(store_url, tmp_path / "root", None, allow_unsigned=True)


def test_an_empty_store_says_nothing_is_published_there(store_url, tmp_path):
    ObjectStore(store_url).put("other", b"")  # the bucket exists, the pointer does not
    follower = StoreFollower(store_url, tmp_path / "root", PUBLIC)
    assert not follower.follow_once()
    assert "nothing is published there yet" in follower.status().reason


def test_the_cli_publishes_to_the_store_and_rolls_back(builds, store_url, monkeypatch, capsys):
    import base64

    from edge.cli import main

    monkeypatch.setenv("EDGEPERSO_PUBLIC_KEY", base64.b64encode(PUBLIC).decode())
    assert main(["publish", str(builds["a"]), store_url]) == 0
    assert main(["publish", str(builds["b"]), store_url]) == 0
    out = capsys.readouterr().out
    assert f"now serving {build_id(builds['b'])} (was {build_id(builds['a'])})" in out
    assert main(["rollback", store_url]) == 0
    assert f"now serving {build_id(builds['a'])}" in capsys.readouterr().out
    assert main(["publish", str(builds["forged"]), store_url]) == 1
    assert "not published" in capsys.readouterr().err
