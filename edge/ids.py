"""Sorted id arrays: item and user ids as fixed-width UTF-8 byte strings in byte order, found by
binary search in place. A table of any size is ready as soon as its file is mapped: there is no
dictionary to build at load, and no per-id object in memory."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def encode_ids(ids: Sequence[str]) -> np.ndarray:
    """`ids` (sorted, unique) as the array a bundle stores."""
    encoded = [i.encode() for i in ids]
    if any(not e or e.endswith(b"\0") for e in encoded):
        raise ValueError("ids must be non-empty and must not end with a NUL character")
    array = np.array(encoded, dtype=f"S{max((len(e) for e in encoded), default=1)}")
    if not is_sorted_and_unique(array):
        raise ValueError("ids must be unique and sorted (UTF-8 byte order)")
    return array


def is_sorted_and_unique(ids: np.ndarray) -> bool:
    return ids.size < 2 or bool(np.all(ids[1:] > ids[:-1]))


def find_ids(ids: np.ndarray, wanted: Sequence[str]) -> np.ndarray:
    """Index of each wanted id in `ids`, -1 for one it does not hold (aligned with `wanted`)."""
    if not wanted or not ids.size:
        return np.full(len(wanted), -1, dtype=np.int64)
    encoded = [i.encode() for i in wanted]
    query = np.array(encoded, dtype=ids.dtype)  # same dtype: searchsorted then converts nothing
    found = np.searchsorted(ids, query)
    found[found == ids.size] = 0
    # The array cut ids longer than the stored ones and stripped trailing NULs: such an id may
    # now equal a stored one without being it, so its length must have survived too.
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    hit = (ids[found] == query) & (np.strings.str_len(query) == lengths)
    return np.where(hit, found, -1)
