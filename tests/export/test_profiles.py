import math

import pandas as pd

from export.profiles import build_profiles

WEIGHTS = {"view": 1.0, "purchase": 8.0, "cancel": 0.0}


def test_profiles_hold_recent_items_purchases_and_counters():
    ts = pd.date_range("2026-01-01", periods=5, freq="h", tz="UTC")
    log = pd.DataFrame(
        {
            "ts": ts,
            "user_id": ["u", "u", "u", "u", ""],
            "item_id": ["a", "b", "a", "c", "z"],
            "type": ["view", "purchase", "purchase", "cancel", "view"],
            "qty": [1.0, 2.0, 1.0, 1.0, 1.0],
            "price": [5.0, 10.0, 5.0, 99.0, 1.0],
            "dwell_ms": [float("nan")] * 5,
        }
    )
    profiles = build_profiles(log, WEIGHTS, {"u": {"tier": "gold"}}, max_recent=2)
    assert set(profiles) == {"u"}  # anonymous rows have no profile
    p = profiles["u"]
    assert p.recent_items == ["a", "b"] and p.recent_weights == [8.0, 8.0]  # newest first
    assert p.bought_items == ["b", "a"]
    assert (p.n_events, p.n_purchases, p.monetary) == (4, 2, 25.0)
    assert math.isclose(p.mean_price, 20 / 3)  # the zero-weight cancel does not count
    assert p.attributes == {"tier": "gold"}
    assert p.last_ts == ts[3].timestamp()
