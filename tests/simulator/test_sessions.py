"""Sessions and views: the context and taste effects a model of the log can learn."""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulator import SimulatedShop
from tests.simulator.conftest import DAYS, START


def _with_category(shop: SimulatedShop) -> pd.DataFrame:
    return shop.events.merge(shop.catalog[["item_id", "category"]], on="item_id", how="left")


def _tvd(a: pd.Series, b: pd.Series) -> float:
    """Total variation distance between the value distributions of two samples."""
    pa = a.value_counts(normalize=True)
    pb = b.value_counts(normalize=True)
    return 0.5 * float(pa.sub(pb, fill_value=0.0).abs().sum())


def _permutation_null(values: pd.Series, labels: pd.Series, a: str, b: str) -> float:
    """Largest TVD between groups a and b over 20 label shuffles: sampling noise, ~95th pct."""
    rng = np.random.default_rng(0)
    nulls = []
    for _ in range(20):
        shuffled = pd.Series(rng.permutation(labels.to_numpy()), index=labels.index)
        nulls.append(_tvd(values[shuffled == a], values[shuffled == b]))
    return max(nulls)


def test_device_shifts_what_is_bought(big_shop: SimulatedShop) -> None:
    # Each device adds an N(0, 1) bias to every category logit, so mobile vs desktop purchase
    # mixes sit at a TVD of 0.2-0.4 over seeds 0-11, while shuffled labels give ~0.05.
    # Twice the noise ceiling and an absolute 0.15 both leave a wide margin.
    bought = _with_category(big_shop).query("type == 'purchase'")
    observed = _tvd(
        bought.loc[bought["device"] == "mobile", "category"],
        bought.loc[bought["device"] == "desktop", "category"],
    )
    null = _permutation_null(bought["category"], bought["device"], "mobile", "desktop")
    assert observed > 0.15
    assert observed > 2 * null


def test_hour_of_day_shifts_what_is_bought(big_shop: SimulatedShop) -> None:
    # Same N(0, 1) biases per hour bucket: night vs morning TVD is 0.25-0.41 over seeds 0-11;
    # night holds only ~450 purchases, so its noise ceiling is higher (~0.1).
    bought = _with_category(big_shop).query("type == 'purchase'")
    bucket = (bought["local_hour"] // 6).map(
        {0: "night", 1: "morning", 2: "afternoon", 3: "evening"}
    )
    observed = _tvd(
        bought.loc[bucket == "night", "category"], bought.loc[bucket == "morning", "category"]
    )
    null = _permutation_null(bought["category"], bucket, "night", "morning")
    assert observed > 0.15
    assert observed > 2 * null


def test_context_popularity_differs_from_overall(big_shop: SimulatedShop) -> None:
    bought = _with_category(big_shop).query("type == 'purchase'")
    night_mobile = bought[(bought["device"] == "mobile") & (bought["local_hour"] < 6)]
    morning_desktop = bought[(bought["device"] == "desktop") & bought["local_hour"].between(6, 11)]
    top_a = set(night_mobile["category"].value_counts().index[:10])
    top_b = set(morning_desktop["category"].value_counts().index[:10])
    assert len(top_a & top_b) <= 8
    assert _tvd(night_mobile["category"], morning_desktop["category"]) > 0.25
    assert _tvd(night_mobile["category"], bought["category"]) > 0.15


def test_sessions_start_in_the_local_evening_more_than_at_night(shop: SimulatedShop) -> None:
    start = shop.sessions.merge(
        shop.events.groupby("session_id", as_index=False)["local_hour"].first(), on="session_id"
    )
    for _, group in start.groupby("country"):
        evening = group["local_hour"].between(18, 23).sum()
        night = group["local_hour"].between(0, 5).sum()
        assert evening > 2 * night


def test_later_behaviour_is_predictable_from_earlier(shop: SimulatedShop) -> None:
    """Late-period views fall in a user's early top-3 categories far more than chance."""
    events = _with_category(shop)
    cutoff = START + pd.Timedelta(days=int(DAYS * 0.8))
    counts = [
        part.groupby(["user_id", "category"]).size().unstack(fill_value=0)
        for part in (events[events["ts"] < cutoff], events[events["ts"] >= cutoff])
    ]
    users = counts[0].index.intersection(counts[1].index)
    columns = counts[0].columns.union(counts[1].columns)
    early, late = (c.loc[users].reindex(columns=columns, fill_value=0).to_numpy() for c in counts)
    assert len(users) > 300
    top3 = np.argsort(-early, axis=1, kind="stable")[:, :3]
    own = (np.take_along_axis(late, top3, axis=1).sum(axis=1) / late.sum(axis=1)).mean()
    # Chance: the same late views scored against another user's early favourites.
    other = np.roll(top3, 1, axis=0)
    chance = (np.take_along_axis(late, other, axis=1).sum(axis=1) / late.sum(axis=1)).mean()
    assert own > 1.6 * chance
    assert own > 0.35
