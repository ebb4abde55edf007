import numpy as np
import pytest

from edge import arrays
from edge.errors import BundleError


@pytest.mark.parametrize(
    "dtype", ["float32", "float64", "int8", "int32", "int64", "bool", "float16", "uint8", "S5"]
)
def test_round_trip_keeps_dtype_shape_and_values(dtype):
    values = (np.arange(24) % 7).astype(dtype).reshape(2, 3, 4)
    back = arrays.loads(arrays.dumps({"a": values, "nested": {"b": values[0]}, "n": 3}))
    assert back["a"].dtype == values.dtype and back["a"].shape == (2, 3, 4)
    np.testing.assert_array_equal(back["a"], values)
    np.testing.assert_array_equal(back["nested"]["b"], values[0])
    assert back["n"] == 3


def test_decoded_arrays_are_read_only_views():
    back = arrays.loads(arrays.dumps({"a": np.ones(4, dtype=np.float32)}))
    assert not back["a"].flags.writeable


def test_object_arrays_are_refused_at_encode():
    with pytest.raises(TypeError, match="cannot go in a bundle"):
        arrays.dumps({"a": np.array(["x", None], dtype=object)})


def test_a_tampered_shape_is_refused_with_the_path():
    tree = arrays._to_msgpack_tree({"a": np.ones(4, dtype=np.float32)})
    tree["a"]["shape"] = [5]
    import msgspec

    with pytest.raises(BundleError, match=r"array at \$\.a holds 16 bytes"):
        arrays.loads(msgspec.msgpack.encode(tree))


def test_an_unknown_dtype_is_refused():
    import msgspec

    tree = {"a": {arrays.ARRAY_TAG: 1, "dtype": "|O", "shape": [1], "data": b"x" * 8}}
    with pytest.raises(BundleError, match="dtype '|O'"):
        arrays.loads(msgspec.msgpack.encode(tree))


def test_files_are_plain_msgpack_readable_by_the_reference_library(tmp_path):
    import msgpack

    arrays.write_file(tmp_path / "x.msgpack", {"a": np.arange(3, dtype=np.int32)})
    raw = msgpack.unpackb((tmp_path / "x.msgpack").read_bytes())
    assert raw["a"]["dtype"] == "<i4" and raw["a"]["shape"] == [3]
    np.testing.assert_array_equal(np.frombuffer(raw["a"]["data"], "<i4"), [0, 1, 2])


def test_garbage_is_a_bundle_error():
    with pytest.raises(BundleError, match="not valid msgpack"):
        arrays.loads(b"\xc1\xc1\xc1")


def test_files_are_memory_mapped_and_arrays_view_them(tmp_path):
    values = np.arange(1000, dtype=np.float32)
    arrays.write_file(tmp_path / "x.msgpack", {"t": {"a": values, "ids": np.array([b"a", b"bc"])}})
    back = arrays.read_file(tmp_path / "x.msgpack")
    np.testing.assert_array_equal(back["t"]["a"], values)
    assert not back["t"]["a"].flags.owndata and not back["t"]["a"].flags.writeable
    assert back["t"]["ids"].dtype == np.dtype("|S2") and back["t"]["ids"][1] == b"bc"
    (tmp_path / "x.msgpack").unlink()  # a bundle swap removes the old files: views stay valid
    assert float(back["t"]["a"].sum()) == float(values.sum())


def test_an_empty_file_is_a_bundle_error(tmp_path):
    (tmp_path / "x.msgpack").write_bytes(b"")
    with pytest.raises(BundleError, match="x.msgpack is empty"):
        arrays.read_file(tmp_path / "x.msgpack")


def test_a_map_with_a_tag_other_than_1_is_a_plain_map():
    tree = {"m": {arrays.ARRAY_TAG: 2, "x": [1, 2]}}
    import msgspec

    assert arrays.loads(msgspec.msgpack.encode(tree)) == tree
