"""Arrays and tables in msgpack, without pickle: an array travels as raw bytes + dtype + shape and
comes back through `np.frombuffer` (no copy, read-only), so decoding never runs code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from edge.errors import BundleError

# Plain numeric and boolean dtypes only: an object dtype would need pickle to round-trip.
ALLOWED_DTYPES = frozenset(
    ["|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f2", "<f4", "<f8"]
)
ARRAY_TAG = "__ndarray__"

_decoder = msgspec.msgpack.Decoder()


def encode_array(array: np.ndarray) -> dict[str, Any]:
    """One array as a msgpack-friendly map: {"__ndarray__": 1, dtype, shape, data}."""
    array = np.ascontiguousarray(array)
    dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    array = array.astype(dtype, copy=False)
    if dtype.str not in ALLOWED_DTYPES:
        raise TypeError(
            f"dtype {dtype.str!r} cannot go in a bundle; allowed: {sorted(ALLOWED_DTYPES)}"
        )
    return {ARRAY_TAG: 1, "dtype": dtype.str, "shape": list(array.shape), "data": array.tobytes()}


def _to_msgpack_tree(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return encode_array(value)
    if isinstance(value, dict):
        return {str(k): _to_msgpack_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_msgpack_tree(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _from_msgpack_tree(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        if value.get(ARRAY_TAG) == 1:
            return decode_array(value, where)
        return {k: _from_msgpack_tree(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_from_msgpack_tree(v, where) for v in value]
    return value


def decode_array(payload: dict[str, Any], where: str = "$") -> np.ndarray:
    dtype, shape, data = payload.get("dtype"), payload.get("shape"), payload.get("data")
    if dtype not in ALLOWED_DTYPES:
        raise BundleError(
            f"array at {where} has dtype {dtype!r}; allowed: {sorted(ALLOWED_DTYPES)}"
        )
    if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise BundleError(f"array at {where} has an invalid shape {shape!r}")
    if not isinstance(data, (bytes, memoryview)):
        raise BundleError(f"array at {where} has no raw bytes")
    expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if len(data) != expected:
        raise BundleError(
            f"array at {where} holds {len(data)} bytes but dtype {dtype} and shape {shape} "
            f"need {expected}"
        )
    return np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape)


def dumps(tree: Any) -> bytes:
    """Encode a tree of dicts, lists, scalars and numpy arrays as msgpack."""
    return msgspec.msgpack.encode(_to_msgpack_tree(tree))


def loads(data: bytes, where: str = "$") -> Any:
    """Decode what `dumps` wrote; arrays come back read-only, viewing the input bytes."""
    try:
        tree = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise BundleError(f"{where} is not valid msgpack: {exc}") from exc
    return _from_msgpack_tree(tree, where)


def write_file(path: Path, tree: Any) -> None:
    path.write_bytes(dumps(tree))


def read_file(path: Path) -> Any:
    return loads(path.read_bytes(), where=path.name)
