"""`simulate_shop`: the sizes it is asked for, its seed, and its arguments."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from simulator import ShopSizeError, simulate_shop


def test_row_count_is_close_to_the_request() -> None:
    for n_events in (5_000, 50_000, 200_000):
        rows = len(simulate_shop(n_users=500, n_items=300, n_events=n_events, seed=1).events)
        assert 0.9 * n_events <= rows <= 1.1 * n_events, (n_events, rows)


def test_one_day_period_and_tz_aware_start_stay_in_range() -> None:
    shop = simulate_shop(n_users=50, n_items=40, n_events=3_000, days=1, start="2026-03-01T00:00Z")
    ts = shop.events["ts"]
    assert ts.min() >= pd.Timestamp("2026-03-01", tz="UTC")
    assert ts.max() < pd.Timestamp("2026-03-02", tz="UTC")


def test_tiny_and_invalid_arguments() -> None:
    tiny = simulate_shop(n_users=1, n_items=2, n_events=1, n_categories=2)
    assert 1 <= len(tiny.events) <= 60
    with pytest.raises(ShopSizeError, match="n_categories <= n_items"):
        simulate_shop(n_items=10, n_categories=20)
    with pytest.raises(ShopSizeError, match="must be positive"):
        simulate_shop(n_events=0)


def test_same_seed_same_frames_and_other_seed_differs() -> None:
    a = simulate_shop(n_users=300, n_items=200, n_events=20_000, seed=11)
    b = simulate_shop(n_users=300, n_items=200, n_events=20_000, seed=11)
    for name in ("events", "catalog", "users", "sessions"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    c = simulate_shop(n_users=300, n_items=200, n_events=20_000, seed=12)
    assert not a.catalog["price"].equals(c.catalog["price"])
    assert not a.events["item_id"].head(1_000).equals(c.events["item_id"].head(1_000))


@pytest.mark.slow
def test_a_million_events() -> None:
    shop = simulate_shop(n_users=20_000, n_items=10_000, n_events=1_000_000, seed=5)
    events = shop.events
    assert 900_000 <= len(events) <= 1_100_000
    assert events["ts"].is_monotonic_increasing
    assert events["item_id"].isin(shop.catalog["item_id"]).all()
    assert events["session_id"].nunique() == len(shop.sessions)
    assert re.fullmatch(r"s\d{8}", events["session_id"].iloc[-1])
