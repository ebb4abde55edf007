"""The bundle's public contract, through `edge.bundle.verify`, `edge.bundle.load_bundle` and
`edge.errors.BundleError` only, whatever the package's modules look like inside."""

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
