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
    out = np.full(len(wanted), -1, dtype=np.int64)
    if not wanted or not ids.size:
        return out
    width = ids.itemsize
    encoded = [i.encode() for i in wanted]
    # Longer than every stored id, or ending in NUL (the array would strip it): not held.
    fits = [j for j, e in enumerate(encoded) if 0 < len(e) <= width and not e.endswith(b"\0")]
    if not fits:
        return out
    query = np.array([encoded[j] for j in fits], dtype=ids.dtype)
    found = np.minimum(np.searchsorted(ids, query), ids.size - 1)
    hit = ids[found] == query
    out[np.asarray(fits)[hit]] = found[hit]
    return out
