"""The funnel: views before carts before purchases, abandoned carts, rare repeat purchases."""

from __future__ import annotations

import pandas as pd

from simulator import SimulatedShop


def test_funnel_counts_and_abandoned_carts(shop: SimulatedShop) -> None:
    counts = shop.events["type"].value_counts()
    assert counts["view"] > counts["add_to_cart"] > counts["purchase"] > 0
    assert counts["remove_from_cart"] < counts["add_to_cart"]
    carted = set(shop.events.loc[shop.events["type"] == "add_to_cart", "session_id"])
    bought = set(shop.events.loc[shop.events["type"] == "purchase", "session_id"])
    assert bought <= carted
    assert len(carted - bought) > 0.3 * len(carted)  # abandoned carts are common


def _first_ts(events: pd.DataFrame, kind: str) -> pd.Series:
    return events[events["type"] == kind].groupby(["session_id", "item_id"])["ts"].min()


def test_every_step_follows_the_previous_one_for_the_same_item(shop: SimulatedShop) -> None:
    events = shop.events
    viewed = _first_ts(events, "view")
    carted = _first_ts(events, "add_to_cart")
    for kind, earlier in (("add_to_cart", viewed), ("purchase", viewed), ("purchase", carted)):
        later = events[events["type"] == kind].set_index(["session_id", "item_id"])["ts"]
        before = earlier.reindex(later.index)
        assert before.notna().all(), kind
        assert (before.to_numpy() < later.to_numpy()).all(), kind
    removed = events[events["type"] == "remove_from_cart"].set_index(["session_id", "item_id"])
    assert (carted.reindex(removed.index).to_numpy() < removed["ts"].to_numpy()).all()


def test_repeat_purchases_are_possible_but_rare(big_shop: SimulatedShop) -> None:
    bought = big_shop.events[big_shop.events["type"] == "purchase"]
    repeats = bought.duplicated(["user_id", "item_id"]).mean()
    assert 0 < repeats < 0.06
