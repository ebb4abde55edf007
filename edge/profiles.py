"""The profile store: user id → recent items and a few counters. The embedded default is one
msgpack file next to the bundle; a shop with many users plugs in a key-value store with the same
`get` (the bundle itself never grows with the number of users)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import msgspec

from edge.errors import BundleError
from edge.schemas import Profile

_decoder = msgspec.msgpack.Decoder(dict[str, Profile])


class ProfileStore(Protocol):
    def get(self, user_id: str) -> Profile | None: ...

    def __len__(self) -> int: ...


class EmbeddedProfileStore:
    """All profiles in memory, decoded once from `profiles.msgpack`."""

    def __init__(self, profiles: dict[str, Profile]) -> None:
        self._profiles = profiles

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "profiles.msgpack") -> EmbeddedProfileStore:
        try:
            return cls(_decoder.decode(data))
        except msgspec.DecodeError as exc:
            raise BundleError(f"{name} is not a valid profile store: {exc}", file=name) from exc

    @classmethod
    def from_file(cls, path: Path) -> EmbeddedProfileStore:
        return cls.from_bytes(path.read_bytes(), path.name)

    def get(self, user_id: str) -> Profile | None:
        return self._profiles.get(user_id)

    def __len__(self) -> int:
        return len(self._profiles)

    def as_dict(self) -> dict[str, Profile]:
        """Every profile (a read-only view for tools, demos and benchmarks)."""
        return dict(self._profiles)


class EmptyProfileStore:
    def get(self, user_id: str) -> Profile | None:
        return None

    def __len__(self) -> int:
        return 0


def encode_profiles(profiles: dict[str, Profile]) -> bytes:
    return msgspec.msgpack.encode(profiles)
