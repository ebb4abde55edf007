"""The profile store: user id → recent items and a few counters. The embedded default is one
file next to the bundle; a shop with many users plugs in a key-value store with the same `get`
(the bundle itself never grows with the number of users).

The embedded file is held in memory as read (and, in a bundle, verified) and decoded one profile
at a time: sorted user ids (searched in place), an offset per user, and each profile's msgpack
record. Only the profiles requests ask for are ever decoded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import msgspec
import numpy as np

from edge import arrays
from edge.errors import BundleError
from edge.ids import encode_ids, find_ids, is_sorted_and_unique
from edge.schemas import Profile

_record_decoder = msgspec.msgpack.Decoder(Profile)
_record_encoder = msgspec.msgpack.Encoder()


class ProfileStore(Protocol):
    def get(self, user_id: str) -> Profile | None: ...

    def __len__(self) -> int: ...


class EmbeddedProfileStore:
    """Profiles read from `profiles.msgpack`: {ids, offsets, records}."""

    def __init__(self, ids: np.ndarray, offsets: np.ndarray, records: np.ndarray) -> None:
        self._ids, self._offsets, self._records = ids, offsets, records.data

    @classmethod
    def from_tree(cls, tree: Any, name: str = "profiles.msgpack") -> EmbeddedProfileStore:
        """The store in a decoded file, whatever it holds: a tree of another shape is refused."""
        try:
            ids, offsets, records = tree["ids"], tree["offsets"], tree["records"]
            ok = (
                ids.dtype.kind == "S"
                and offsets.dtype == np.int64
                and offsets.shape == (ids.size + 1,)
                and records.dtype == np.uint8
                and offsets[0] == 0
                and offsets[-1] == records.size
                and bool(np.all(np.diff(offsets) > 0))
                and is_sorted_and_unique(ids)
            )
        except (KeyError, TypeError, AttributeError, IndexError) as exc:
            raise BundleError(f"{name} is not a profile store: {exc!r}", file=name) from exc
        if not ok:
            raise BundleError(
                f"{name} is not a valid profile store: ids must be sorted and unique, with "
                "one increasing offset per id into the records",
                file=name,
            )
        return cls(ids, offsets, records)

    @classmethod
    def from_file(cls, path: Path) -> EmbeddedProfileStore:
        return cls.from_tree(arrays.read_file(path), path.name)

    def get(self, user_id: str) -> Profile | None:
        [i] = find_ids(self._ids, [user_id]).tolist()
        return None if i < 0 else self._profile(i, user_id)

    def _profile(self, i: int, user_id: str) -> Profile:
        start, stop = int(self._offsets[i]), int(self._offsets[i + 1])
        try:
            return _record_decoder.decode(self._records[start:stop])
        except msgspec.DecodeError as exc:  # the file passed its checksum: a writer's bug
            raise BundleError(f"the profile of {user_id!r} is malformed: {exc}") from exc

    def __len__(self) -> int:
        return self._ids.size

    def user_ids(self) -> Iterator[str]:
        return (u.decode() for u in self._ids.tolist())

    def as_dict(self) -> dict[str, Profile]:
        """Every profile, decoded (for tools, demos and benchmarks; requests use `get`)."""
        return {user: self._profile(i, user) for i, user in enumerate(self.user_ids())}


class EmptyProfileStore:
    def get(self, user_id: str) -> Profile | None:
        return None

    def __len__(self) -> int:
        return 0


def encode_profiles(profiles: dict[str, Profile]) -> bytes:
    """The embedded store's file: users in id order, each profile its own msgpack record."""
    users = sorted(profiles)
    records = [_record_encoder.encode(profiles[u]) for u in users]
    offsets = np.zeros(len(users) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(r) for r in records])
    blob = np.frombuffer(b"".join(records), dtype=np.uint8)
    return arrays.dumps({"ids": encode_ids(users), "offsets": offsets, "records": blob})
