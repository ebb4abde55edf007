import numpy as np
import pandas as pd

from export.interactions import ItemUniverse
from export.popularity import Popularity


def test_recent_events_weigh_more_and_contexts_are_tabled():
    n = 4
    universe = ItemUniverse(
        list("abcd"),
        np.zeros(n, np.int32),
        ["x"],
        np.ones(n, np.float32),
        np.array([True, True, True, False]),
    )
    ts = pd.to_datetime(["2026-01-01"] * 3 + ["2026-03-01"] * 2, utc=True)
    events = pd.DataFrame(
        {
            "ts": ts,
            "item_id": ["a", "a", "a", "b", "d"],
            "type": ["view"] * 5,
            "device": ["mobile", "mobile", "mobile", "desktop", "desktop"],
            "country": [""] * 5,
            "local_hour": [9, 9, 9, 21, 21],
        }
    )
    pop = Popularity(half_life_days=7, min_context_events=1).fit(events, universe, {"view": 1.0})
    assert pop.overall_[1] > pop.overall_[0]  # one recent view beats three two months old
    assert np.isclose(pop.overall_.mean(), 1.0)
    assert set(pop.contexts_) == {"device=mobile", "device=desktop", "hour=morning", "hour=evening"}
    fallback = pop.fallback(universe)
    assert [i for i, _ in fallback["device=desktop"]] == ["b"]  # d is out of stock
    assert [i for i, _ in fallback["all"]][:2] == ["b", "a"]
