"""A simulated shop's files: what `edgeperso export` reads back."""

from __future__ import annotations

import pandas as pd
import pytest

from simulator import SimulatedShop
from tests.simulator.conftest import EVENT_COLUMNS


def test_write_parquet_and_csv(tmp_path, shop: SimulatedShop) -> None:
    paths = shop.write(tmp_path / "pq")
    assert set(paths) == {"events", "catalog", "users", "truth"}
    assert all(p.suffix == ".parquet" and p.exists() for p in paths.values())
    pd.testing.assert_frame_equal(pd.read_parquet(paths["events"]), shop.events)
    pd.testing.assert_frame_equal(pd.read_parquet(paths["catalog"]), shop.catalog)
    pd.testing.assert_frame_equal(pd.read_parquet(paths["truth"]), shop.sessions)
    csv = shop.write(tmp_path / "csv", fmt="csv")
    assert csv["users"].name == "users.csv"
    events = pd.read_csv(csv["events"])
    assert list(events.columns) == EVENT_COLUMNS and len(events) == len(shop.events)
    assert (pd.to_datetime(events["ts"]) == shop.events["ts"]).all()
    with pytest.raises(ValueError):
        shop.write(tmp_path / "x", fmt="json")
