"""Publishing: each build in its own directory, a pointer flipped only once the build is whole
and verified, rollback by pointing back."""

import json
import shutil

import pytest

from edge.bundle import load_bundle
from edge.bundle.publish import (
    POINTER,
    bundle_directory,
    is_publish_root,
    point,
    prune,
    publish,
    published_builds,
    read_pointer,
    rollback,
)
from edge.cli import main as edge_main
from edge.errors import BundleError
from edge.rules import RuleBook
from tests.edge.small_bundle import write_small_bundle


def build_id(bundle) -> str:
    return json.loads((bundle / "manifest.json").read_text())["build_id"]


@pytest.fixture
def three_bundles(tmp_path):
    """Three bundles with different files, so three build ids."""
    return [
        write_small_bundle(tmp_path / "a"),
        write_small_bundle(tmp_path / "b", visitor=False),
        write_small_bundle(tmp_path / "c", rules=RuleBook()),
    ]


def test_a_published_build_lives_in_its_own_directory_and_the_pointer_names_it(
    three_bundles, tmp_path
):
    root = tmp_path / "root"
    first, second, _ = three_bundles
    pointer = publish(first, root)
    assert is_publish_root(root) and pointer.build == build_id(first)
    assert pointer.previous is None
    served = bundle_directory(root)
    assert served == root / "builds" / build_id(first)
    assert load_bundle(served).build_id == build_id(first)
    assert sorted(p.name for p in served.iterdir()) == sorted(p.name for p in first.iterdir())
    pointer = publish(second, root)
    assert (pointer.build, pointer.previous) == (build_id(second), build_id(first))
    assert read_pointer(root) == pointer
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []  # no staging left


def test_a_broken_bundle_is_refused_before_anything_is_written(three_bundles, tmp_path):
    root = tmp_path / "root"
    first, second, _ = three_bundles
    publish(first, root)
    (second / "items.msgpack").write_bytes(b"tampered")
    with pytest.raises(BundleError, match="items.msgpack has 8 bytes"):
        publish(second, root)
    assert read_pointer(root).build == build_id(first)
    assert published_builds(root) == [build_id(first)]


def test_publishing_the_same_build_again_reuses_it_and_another_bundle_under_its_id_is_refused(
    three_bundles, tmp_path
):
    root = tmp_path / "root"
    first = three_bundles[0]
    publish(first, root)
    assert publish(first, root).build == build_id(first)
    assert published_builds(root) == [build_id(first)]
    # The same build id on another bundle: here, its manifest says something else.
    other = shutil.copytree(first, tmp_path / "other")
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["created_at"] = "2000-01-01T00:00:00+00:00"
    (other / "manifest.json").write_text(json.dumps(manifest))
    assert build_id(other) == build_id(first)
    with pytest.raises(BundleError, match="already holds a different bundle"):
        publish(other, root)


def test_rollback_points_back_and_forth_and_needs_somewhere_to_go(three_bundles, tmp_path):
    root = tmp_path / "root"
    a, b, c = (build_id(bundle) for bundle in three_bundles)
    publish(three_bundles[0], root)
    with pytest.raises(BundleError, match="no previous build to roll back to.*published: " + a):
        rollback(root)
    publish(three_bundles[1], root)
    publish(three_bundles[2], root)
    assert (rollback(root).build, read_pointer(root).previous) == (b, c)
    assert rollback(root).build == c  # pointing back again
    assert rollback(root, to=a).build == a
    with pytest.raises(BundleError, match="missing"):
        rollback(root, to="20000101T000000Z-0000000000")
    assert read_pointer(root).build == a


def test_pointing_to_a_build_that_no_longer_verifies_is_refused(three_bundles, tmp_path):
    root = tmp_path / "root"
    publish(three_bundles[0], root)
    publish(three_bundles[1], root)
    first = build_id(three_bundles[0])
    (root / "builds" / first / "popularity.msgpack").write_bytes(b"")
    with pytest.raises(BundleError, match="popularity.msgpack has 0 bytes"):
        point(root, first)
    assert read_pointer(root).build == build_id(three_bundles[1])


def test_prune_keeps_the_newest_and_always_the_current_and_previous(three_bundles, tmp_path):
    root = tmp_path / "root"
    for bundle in three_bundles:
        publish(bundle, root)
    a, b, c = (build_id(bundle) for bundle in three_bundles)
    rollback(root, to=a)  # current a, previous c
    assert prune(root, keep=1) == [b]
    assert set(published_builds(root)) == {a, c}
    with pytest.raises(ValueError, match="at least 1"):
        prune(root, keep=0)


@pytest.mark.parametrize(
    "pointer, message",
    [
        (b"", "not a publish pointer"),
        (b'{"build": "../../etc", "published_at": "x"}', "cannot name a directory"),
        (b'{"build": ".hidden", "published_at": "x"}', "cannot name a directory"),
        (b'{"build": "a", "published_at": "x", "extra": 1}', "unknown field"),
    ],
)
def test_a_pointer_that_is_not_one_is_refused_with_what_it_should_be(pointer, message, tmp_path):
    (tmp_path / POINTER).write_bytes(pointer)
    with pytest.raises(BundleError, match=message):
        bundle_directory(tmp_path)


def test_publish_and_rollback_on_the_command_line(three_bundles, tmp_path, capsys):
    root = tmp_path / "root"
    a, b = build_id(three_bundles[0]), build_id(three_bundles[1])
    assert edge_main(["publish", str(three_bundles[0]), str(root)]) == 0
    assert edge_main(["publish", str(three_bundles[1]), str(root)]) == 0
    out = capsys.readouterr().out
    assert f"now serving {b} (was {a})" in out and f"edgeperso rollback {root}" in out
    assert edge_main(["rollback", str(root)]) == 0
    assert f"now serving {a} (was {b})" in capsys.readouterr().out
    (three_bundles[2] / "manifest.json").write_text("{}")
    assert edge_main(["publish", str(three_bundles[2]), str(root)]) == 1
    assert "not published: " in capsys.readouterr().err
    assert read_pointer(root).build == a
