"""Arrays and tables in msgpack, without pickle: an array travels as raw bytes + dtype + shape and
comes back through `np.frombuffer` (no copy, read-only), so decoding never runs code.

A bundle file is read into memory once, verified, and its arrays view those bytes (no copy).
Files are not memory-mapped: a mapped file truncated under a running process kills it with
SIGBUS, and one rewritten in place changes what it serves without a check. Maps are walked as
`msgspec.Raw` pieces (views of the bytes) down to each array's raw bytes; lists and scalars are
decoded as they are."""

from __future__ import annotations

import mmap
import re
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from edge.errors import BundleError

# Plain numeric, boolean and fixed-width byte-string dtypes only: an object dtype would need
# pickle to round-trip. Byte strings ("|S12") hold ids, sorted so they can be searched.
ALLOWED_DTYPES = frozenset(
    ["|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f2", "<f4", "<f8"]
)
_BYTE_STRING = re.compile(r"\|S([1-9][0-9]{0,3})")  # |S1 .. |S9999
ARRAY_TAG = "__ndarray__"
HUGE_PAGE = 2 << 20

_decoder = msgspec.msgpack.Decoder()
_map_of_pieces = msgspec.msgpack.Decoder(dict[str, msgspec.Raw])
_bytes_view = msgspec.msgpack.Decoder(memoryview)
_MAP_FIRST_BYTES = frozenset([*range(0x80, 0x90), 0xDE, 0xDF])  # fixmap, map 16, map 32


def narrowest_int(values: np.ndarray) -> np.ndarray:
    """`values` (integers) in the smallest integer dtype that holds them all: a per-item count
    or code array of 100,000 items is 0.1 MB as uint8 where it was 0.4 as int32."""
    low = int(values.min()) if values.size else 0
    high = int(values.max()) if values.size else 0
    dtype = np.result_type(np.min_scalar_type(low), np.min_scalar_type(high))
    return values.astype(dtype)


def allowed_dtype(dtype: str) -> bool:
    return dtype in ALLOWED_DTYPES or _BYTE_STRING.fullmatch(dtype) is not None


def encode_array(array: np.ndarray) -> dict[str, Any]:
    """One array as a msgpack-friendly map: {"__ndarray__": 1, dtype, shape, data}."""
    array = np.ascontiguousarray(array)
    dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    array = array.astype(dtype, copy=False)
    if not allowed_dtype(dtype.str):
        raise TypeError(
            f"dtype {dtype.str!r} cannot go in a bundle; allowed: {sorted(ALLOWED_DTYPES)} "
            "and byte strings |S1..|S9999"
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
    if not isinstance(dtype, str) or not allowed_dtype(dtype):
        raise BundleError(
            f"array at {where} has dtype {dtype!r}; allowed: {sorted(ALLOWED_DTYPES)} and byte "
            "strings |S1..|S9999"
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


def loads(data: bytes | memoryview, where: str = "$") -> Any:
    """Decode what `dumps` wrote; arrays come back read-only, viewing `data` (no copy)."""
    try:
        return _decode_piece(data, where)
    except msgspec.DecodeError as exc:
        raise BundleError(f"{where} is not valid msgpack: {exc}") from exc


def _decode_piece(piece: Any, where: str) -> Any:
    if len(piece) == 0 or memoryview(piece)[0] not in _MAP_FIRST_BYTES:
        return _from_msgpack_tree(_decoder.decode(piece), where)  # a list or a scalar
    fields = _map_of_pieces.decode(piece)
    if ARRAY_TAG in fields and _decoder.decode(fields[ARRAY_TAG]) == 1:
        payload: dict[str, Any] = {
            key: _decoder.decode(fields[key]) for key in ("dtype", "shape") if key in fields
        }
        if "data" in fields:
            payload["data"] = _bytes_view.decode(fields["data"])
        return decode_array(payload, where)
    return {key: _decode_piece(value, f"{where}.{key}") for key, value in fields.items()}


def write_file(path: Path, tree: Any) -> None:
    path.write_bytes(dumps(tree))


def read_private(path: Path, limit: int) -> memoryview:
    """Up to `limit` bytes of the file, copied into anonymous memory, read-only. Anonymous, not
    the heap: a bundle's 30 MB freed after a reload goes back to the system at once, where heap
    blocks of that size stayed in the allocator's arenas and a node grew with every reload. Not
    mapped from the file: whatever happens to the file afterwards cannot reach these bytes.

    Private (Python's default for anonymous maps is shared memory, whose pages fault in slowly)
    and in huge pages where the kernel offers them on request: reading the 24.6 MB profile store
    of the 100,000-item benchmark shop took 37 ms into a default anonymous map, 25 ms into a
    private one and 9 ms with huge pages (a 2-core AMD EPYC, 2026-12-07)."""
    buffer = mmap.mmap(-1, limit + 1, flags=mmap.MAP_PRIVATE)
    if limit >= HUGE_PAGE and hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            buffer.madvise(mmap.MADV_HUGEPAGE)
        except OSError:  # a kernel without transparent huge pages: small pages, same bytes
            pass
    view = memoryview(buffer)
    size = 0
    with path.open("rb", buffering=0) as f:
        while size <= limit and (n := f.readinto(view[size:])):
            size += n
    return view[:size].toreadonly()


def read_file(path: Path, limit: int = 1 << 34) -> Any:
    """A file read whole into memory and decoded: its arrays view those bytes, so nothing done
    to the file afterwards (truncated, rewritten, deleted) can reach them."""
    size = path.stat().st_size
    data = read_private(path, min(size, limit))
    if not data:
        raise BundleError(f"{path.name} is empty", file=path.name)
    return loads(data, where=path.name)
