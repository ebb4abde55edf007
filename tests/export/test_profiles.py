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
            "session_id": ["s1", "s1", "s2", "s2", "s3"],  # normalized logs always have one
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


def test_profiles_count_the_visits_since_the_last_purchase():
    times = [
        "2026-01-01 10:00",
        "2026-01-01 10:05",
        "2026-01-02 09:00",
        "2026-01-03 09:00",
        "2026-01-04 09:00",
        "2026-01-04 09:00",
    ]
    events = pd.DataFrame(
        {
            "user_id": ["u"] * 5 + ["v"],
            "session_id": ["s1", "s1", "s2", "s3", "s4", "s9"],
            "item_id": list("abcdef"),
            "type": ["view", "purchase", "view", "view", "view", "view"],
            "qty": 1,
            "price": 1.0,
            "ts": pd.to_datetime(times, utc=True),
        }
    )
    profiles = build_profiles(events, WEIGHTS)
    bought = pd.Timestamp("2026-01-01 10:05", tz="UTC").timestamp()
    assert (profiles["u"].visits_since_purchase, profiles["u"].last_purchase_ts) == (3, bought)
    assert (profiles["v"].visits_since_purchase, profiles["v"].last_purchase_ts) == (1, 0.0)
