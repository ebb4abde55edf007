"""The embedded profile store: profiles.msgpack written by `encode_profiles`, read one profile
at a time. The file's layout is checked with the reference msgpack library, not with the
store's own reader."""

import msgpack
import numpy as np
import pytest

from edge import arrays
from edge.errors import BundleError
from edge.profiles import EmbeddedProfileStore, EmptyProfileStore, encode_profiles
from edge.schemas import Profile

ANNA = Profile(
    recent_items=["i2", "i1"],
    recent_weights=[4.0, 1.0],
    bought_items=["i2"],
    n_events=7,
    n_purchases=1,
    last_ts=1_790_000_000.5,
    monetary=19.9,
    mean_price=9.95,
    attributes={"tier": "gold"},
    segment="loyal",
    visits_since_purchase=2,
    last_purchase_ts=1_789_000_000.0,
)
BEN = Profile([], [], [], 0, 0, 0.0, 0.0, 0.0)
# Unsorted on purpose, and with an id whose UTF-8 bytes sort after every ASCII one.
PROFILES = {"zoë": BEN, "anna": ANNA, "ben": BEN}


def store(profiles=PROFILES) -> EmbeddedProfileStore:
    return EmbeddedProfileStore.from_tree(arrays.loads(encode_profiles(profiles)))


def test_each_profile_comes_back_field_for_field_and_an_unknown_user_is_none():
    profiles = store()
    assert profiles.get("anna") == ANNA and profiles.get("zoë") == BEN
    assert profiles.get("nobody") is None and profiles.get("ann") is None
    assert profiles.get("annabel") is None  # a longer id sharing a stored id's prefix
    assert len(profiles) == 3
    assert list(profiles.user_ids()) == ["anna", "ben", "zoë"]
    assert profiles.as_dict() == {"anna": ANNA, "ben": BEN, "zoë": BEN}


def test_the_file_holds_sorted_ids_offsets_and_one_msgpack_record_per_profile():
    tree = msgpack.unpackb(encode_profiles(PROFILES))
    ids = tree["ids"]
    assert ids["dtype"] == "|S4" and ids["shape"] == [3]
    assert ids["data"] == b"anna" + b"ben\0" + "zoë".encode()
    offsets = np.frombuffer(tree["offsets"]["data"], dtype="<i8")
    records = tree["records"]["data"]
    assert offsets[0] == 0 and offsets[-1] == len(records)
    by_user = {
        user: msgpack.unpackb(records[offsets[i] : offsets[i + 1]])
        for i, user in enumerate(["anna", "ben", "zoë"])
    }
    # A profile is a msgpack array, its fields in the order they are declared.
    assert by_user["anna"] == [
        ["i2", "i1"],
        [4.0, 1.0],
        ["i2"],
        7,
        1,
        1_790_000_000.5,
        19.9,
        9.95,
        {"tier": "gold"},
        "loyal",
        2,
        1_789_000_000.0,
    ]
    assert by_user["ben"][:8] == [[], [], [], 0, 0, 0.0, 0.0, 0.0]


def test_a_store_file_is_read_from_disk(tmp_path):
    path = tmp_path / "profiles.msgpack"
    path.write_bytes(encode_profiles(PROFILES))
    profiles = EmbeddedProfileStore.from_file(path)
    assert profiles.get("anna") == ANNA and len(profiles) == 3


def tree_with(**changes):
    tree = dict(arrays.loads(encode_profiles(PROFILES)))
    tree.update(changes)
    return tree


# Arrays that fit together (three users, records of 5, 2 and 2 bytes): each case below
# changes one of them so that they no longer do.
FITTING = {"offsets": np.array([0, 5, 7, 9], dtype=np.int64), "records": np.zeros(9, np.uint8)}


@pytest.mark.parametrize(
    "changes",
    [
        {"offsets": np.array([0, 5, 5, 9], dtype=np.int64)},  # an empty record
        {"offsets": np.array([1, 5, 7, 9], dtype=np.int64)},  # not from the first byte
        {"offsets": np.array([0, 5, 7, 8], dtype=np.int64)},  # a byte left after the last
        {"offsets": np.array([0, 5, 9], dtype=np.int64)},  # one offset short
        {"offsets": np.array([0, 5, 7, 9], dtype=np.int32)},
        {"records": np.zeros(9, np.int8)},
        {"ids": np.array([b"ben", b"anna", b"zo"])},  # not sorted
        {"ids": np.array([1, 2, 3])},  # not byte strings
    ],
)
def test_a_store_whose_arrays_do_not_fit_together_is_refused_naming_the_file(changes):
    assert EmbeddedProfileStore.from_tree(tree_with(**FITTING))
    with pytest.raises(BundleError, match="^profiles.msgpack is not a valid profile store") as info:
        EmbeddedProfileStore.from_tree(tree_with(**(FITTING | changes)))
    assert info.value.file == "profiles.msgpack"


def test_a_store_missing_an_array_is_refused_naming_the_file():
    tree = tree_with()
    del tree["records"]
    with pytest.raises(BundleError, match="^kv.msgpack is not a profile store") as info:
        EmbeddedProfileStore.from_tree(tree, "kv.msgpack")
    assert info.value.file == "kv.msgpack"


def test_a_malformed_record_is_a_bundle_error_naming_the_user():
    tree = tree_with()
    records = tree["records"].copy()
    offsets = tree["offsets"]
    records[offsets[1] : offsets[2]] = 0xC1  # ben's record: a byte msgpack never uses
    broken = EmbeddedProfileStore.from_tree(dict(tree, records=records))
    assert broken.get("anna") == ANNA  # the others still read
    with pytest.raises(BundleError, match="the profile of 'ben' is malformed"):
        broken.get("ben")


def test_the_empty_store_knows_no_one():
    empty = EmptyProfileStore()
    assert empty.get("anna") is None and len(empty) == 0
