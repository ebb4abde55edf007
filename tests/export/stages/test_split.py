"""The split stage: the evaluation's parts, and an empty part named with the setting to change."""

import msgspec
import pandas as pd
import pytest

from export.config import BuildConfig
from export.errors import CannotTrainError
from export.interactions import build_universe
from export.stages.read import Dataset
from export.stages.split import (
    choose_holdout,
    known_share,
    ranker_label_days,
    split_events,
    split_for_evaluation,
    time_split,
)
from export.validate import QualityReport, normalize_events


def _data(shop, config):
    events = normalize_events(shop.events, config, QualityReport())
    return Dataset(events, build_universe(events, None))


def test_a_time_split_holds_out_the_rankers_label_window(shop):
    config = msgspec.convert({"evaluation": {"protocol": "temporal"}}, BuildConfig)
    data = _data(shop, config)
    split = split_events(data, config)
    days = ranker_label_days(data, config)
    assert (split.description.split, split.description.days) == ("time", round(days, 2))
    assert len(split.train) + len(split.test) == len(data.events)
    assert split.train.events["ts"].max() < split.test.events["ts"].min()
    assert split.test.events["ts"].min() >= data.events["ts"].max() - pd.Timedelta(days=days)


def test_a_holdout_longer_than_the_log_names_its_span_and_the_setting(shop):
    config = msgspec.convert({"evaluation": {"holdout_days": 400}}, BuildConfig)
    data = _data(shop, config)
    with pytest.raises(CannotTrainError) as caught:
        split_events(data, config)
    message = str(caught.value)
    span = data.events["ts"].max() - data.events["ts"].min()
    assert f"(0 training and {len(data.events):,} test events)" in message
    assert f"the log spans {span.total_seconds() / 86_400:.1f} days" in message
    assert "evaluation.holdout_days" in message


def test_leave_last_out_without_repeat_customers_names_protocol_and_targets(shop):
    config = msgspec.convert(
        {"evaluation": {"protocol": "leave_last_out", "target_types": ["add_to_cart"]}},
        BuildConfig,
    )
    data = _data(shop, config)
    first = data.events.drop_duplicates("user_id")  # one event per customer: nothing repeats
    with pytest.raises(CannotTrainError) as caught:
        split_events(data.with_events(first), config)
    message = str(caught.value)
    assert "leave_last_out split left an empty part" in message
    assert "evaluation.protocol" in message and "evaluation.target_types" in message


def test_auto_keeps_a_window_that_asks_enough_and_else_holds_out_a_random_share(shop):
    """The small simulated shop's last 6 days ask 125 questions: too few for the ranker, while
    a random share of each customer's items asks every repeat customer (241)."""
    config = BuildConfig()
    data = _data(shop, config)
    chosen = choose_holdout(data, config, "auto")
    assert chosen.protocol == "random"
    assert "a random 25% of each customer's items asks" in chosen.reason
    split = split_events(data, config)
    assert split.description.split == "random" and split.protocol == "random"
    assert split.description.chosen_because == chosen.reason
    # A window of most of the log asks more than the random share would.
    wide = msgspec.convert({"ranker": {"label_days": 38}}, BuildConfig)
    wider = choose_holdout(data, wide, "auto")
    assert wider.protocol == "sessions" and "the window asks enough" in wider.reason


def test_random_holds_out_a_share_of_each_customers_items_from_the_first_time_they_took_them(
    shop,
):
    config = BuildConfig()
    data = _data(shop, config)
    split = split_for_evaluation(data, config, "random")
    train, test = split.train.events, split.test.events
    assert set(test["type"]) == {"purchase"}
    held = set(zip(test["user_id"], test["item_id"]))
    first_taken = test.groupby(["user_id", "item_id"])["ts"].min()
    on_held = train.join(first_taken.rename("taken"), on=["user_id", "item_id"], how="inner")
    assert held and (on_held["ts"] < on_held["taken"]).all()  # only what came before it
    assert set(on_held["type"]) <= {"view", "add_to_cart", "remove_from_cart"}
    purchases = data.events[(data.events["type"] == "purchase") & (data.events["user_id"] != "")]
    distinct = purchases.drop_duplicates(["user_id", "item_id"]).groupby("user_id").size()
    held_per_user = test.drop_duplicates(["user_id", "item_id"]).groupby("user_id").size()
    for user, n in held_per_user.items():
        assert n == max(1, min(distinct[user] - 1, int(0.25 * distinct[user] + 0.5)))
    assert (distinct[~distinct.index.isin(held_per_user.index)] == 1).all()
    again = split_for_evaluation(data, config, "random")
    assert again.test.events.index.equals(test.index)  # seeded


def test_next_new_item_holds_out_each_customers_last_first_time_purchase(shop):
    config = BuildConfig()
    data = _data(shop, config)
    split = split_for_evaluation(data, config, "next_new_item")
    train, test = split.train.events, split.test.events
    assert not test.empty and set(test["type"]) == {"purchase"}
    for user, rows in test.groupby("user_id"):
        cut = rows["ts"].min()
        before = train[train["user_id"] == user]
        assert not before.empty and (before["ts"] < cut).all()
        assert not set(rows["item_id"]) & set(before["item_id"])


def test_auto_holds_out_a_random_share_of_a_log_whose_customers_arrive_in_bulk(shop):
    """Every customer's events at their first moment (ratings entered at a sitting): the window
    is mostly first visits, whatever its size, and says little of what comes next."""
    config = BuildConfig()
    data = _data(shop, config)
    events = data.events.copy()
    events["ts"] = events.groupby("user_id")["ts"].transform("min")
    events = events.sort_values("ts", kind="stable")
    wide = msgspec.convert({"ranker": {"label_days": 20}}, BuildConfig)
    chosen = choose_holdout(data.with_events(events), wide, "auto")
    assert chosen.protocol == "random" and "mostly first visits" in chosen.reason


def test_a_time_split_cuts_where_the_last_days_begin_and_asks_who_is_known_before():
    events = _log(
        [
            (1, "u1", "s1", "a"),
            (9, "u1", "s2", "b"),
            (9, "", "s3", "c"),
            (10, "", "s4", "d"),
        ]
    )
    data = Dataset(events, build_universe(events, None))
    history, window = time_split(data, 2)
    assert list(history.events["item_id"]) == ["a"]
    assert list(window.events["item_id"]) == ["b", "c", "d"]
    assert known_share(history, window) == pytest.approx(1 / 3)
    assert known_share(history, window.with_events(window.events.head(1))) == 1.0
    assert history.known_customers(pd.Series(["u1", "", "u2"])).tolist() == [True, False, False]


def _log(rows):
    """Views from (day, user, session, item) rows, in time order, with the columns a
    validated log has."""
    frame = pd.DataFrame(rows, columns=["day", "user_id", "session_id", "item_id"])
    frame["ts"] = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(frame.pop("day"), "D")
    frame["type"], frame["price"], frame["dwell_ms"] = "view", 1.0, float("nan")
    frame["category"], frame["brand"], frame["title"] = "", "", ""
    return frame
