"""Two simulated shops shared by the simulator's tests: a default-sized one and a larger one
for effects that need many purchases per context."""

from __future__ import annotations

import pandas as pd
import pytest

from simulator import SimulatedShop, simulate_shop

EVENT_COLUMNS = [
    "ts",
    "user_id",
    "session_id",
    "item_id",
    "type",
    "qty",
    "price",
    "dwell_ms",
    "device",
    "country",
    "local_hour",
]
START = pd.Timestamp("2026-01-01", tz="UTC")  # simulate_shop's default start and length
DAYS = 60


@pytest.fixture(scope="package")
def shop() -> SimulatedShop:
    return simulate_shop(seed=7)


@pytest.fixture(scope="package")
def big_shop() -> SimulatedShop:
    """Enough purchases per context cell (~7k in all, ~450 at night) for stable shares."""
    return simulate_shop(n_events=300_000, seed=3)
