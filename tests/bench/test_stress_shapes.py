"""bench/stress_shapes.py: each stress shape makes the log it promises, seeded and without
touching its input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import stress_shapes
from stress_shapes import (
    SHAPES,
    apply_shape,
    bulk_timestamps,
    evaluation_cut,
    late_items,
    long_tail,
    one_event_users,
    power_law_caps,
    purchase_only,
    sample_visitors,
    stray_timestamps,
    view_only,
    visitors,
)

from export.interactions import build_universe
from export.stages.read import Dataset
from export.stages.split import time_split
from export.validate import stray_timestamps as flagged_as_stray
from simulator import simulate_shop

DAY = pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def log(seed) -> pd.DataFrame:
    """A simulated shop's log of views, carts and purchases, a fifth of its sessions
    anonymous (no customer id), as shops' logs have them."""
    events = simulate_shop(n_users=300, n_items=150, n_events=6_000, seed=seed, days=30).events
    events = events.astype({"user_id": object, "session_id": object, "item_id": object})
    sessions = events["session_id"].unique()
    anonymous = np.random.default_rng(seed).choice(sessions, size=len(sessions) // 5)
    events.loc[events["session_id"].isin(anonymous), "user_id"] = ""
    return events


@pytest.mark.parametrize("name", list(SHAPES))
def test_a_shape_leaves_its_input_as_it_was_and_the_same_seed_gives_the_same_log(name, log):
    before = log.copy()
    first = apply_shape(name, log, seed=3)
    pd.testing.assert_frame_equal(log, before)
    pd.testing.assert_frame_equal(first, apply_shape(name, log, seed=3))
    assert first["ts"].is_monotonic_increasing
    assert list(first.columns) == list(log.columns)


@pytest.mark.parametrize("name", ["bulk_timestamps", "long_tail", "one_event_users", "late_items"])
def test_a_random_shape_draws_differently_under_another_seed(name, log):
    assert not apply_shape(name, log, seed=1).equals(apply_shape(name, log, seed=2))


def test_an_unknown_shape_is_refused_by_name(log):
    with pytest.raises(ValueError, match="unknown shape 'typos'; allowed: original, bulk"):
        apply_shape("typos", log, seed=0)


def test_visitors_are_customers_or_else_their_anonymous_session():
    events = pd.DataFrame({"user_id": ["u1", "", "u1"], "session_id": ["a", "b", "c"]})
    assert visitors(events).tolist() == ["u1", "session:b", "u1"]


def test_bulk_timestamps_give_each_visitor_at_most_three_of_their_own_timestamps(log):
    out = bulk_timestamps(log, seed=0, max_stamps=3)
    assert len(out) == len(log)
    stamps_before = log.groupby(visitors(log))["ts"].agg(lambda ts: set(ts))
    stamps_after = out.groupby(visitors(out))["ts"].agg(lambda ts: set(ts))
    assert (stamps_before.map(len) > 3).sum() > 100  # the log had far more to begin with
    assert stamps_after.map(len).max() == 3
    assert (stamps_after.map(len) == 1).any()
    assert all(stamps_after[v] <= stamps_before[v] for v in stamps_after.index)


def test_bulk_timestamps_with_one_stamp_put_a_whole_history_at_its_first_moment(log):
    out = bulk_timestamps(log, seed=0, max_stamps=1)
    assert out.groupby(visitors(out))["ts"].nunique().max() == 1
    first = log.groupby(visitors(log))["ts"].min()
    assert out.groupby(visitors(out))["ts"].min().equals(first)


def test_stray_timestamps_move_one_event_months_before_and_one_a_year_after_the_log(log):
    out = stray_timestamps(log, seed=0)
    t_min, t_max = log["ts"].min(), log["ts"].max()
    early = out[out["ts"] < t_min]
    late = out[out["ts"] > t_max]
    assert len(early) == 1 and len(late) == 1 and len(out) == len(log)
    assert t_min - early["ts"].iat[0] >= pd.Timedelta(days=60)
    assert late["ts"].iat[0] - t_max >= pd.Timedelta(days=365)


def test_the_builds_stray_check_catches_exactly_the_two_moved_events(log):
    out = stray_timestamps(log, seed=0)
    stray = flagged_as_stray(out["ts"])
    assert stray.sum() == 2
    assert set(out.index[stray]) == {0, len(out) - 1}  # the first and the last, in time order


def test_stray_timestamps_in_a_long_log_are_still_beyond_the_stray_margin():
    """Two months before a two-year log is inside it by the stray check's margin (the span):
    the early event goes a whole span back instead."""
    ts = pd.date_range("2020-01-01", "2022-01-01", periods=5_000, tz="UTC")
    events = pd.DataFrame({"ts": ts, "user_id": "u", "session_id": "s", "item_id": "i"})
    out = stray_timestamps(events, seed=0)
    assert flagged_as_stray(out["ts"]).sum() == 2


def test_stray_timestamps_need_three_events():
    events = pd.DataFrame({"ts": pd.to_datetime(["2026-01-01", "2026-01-02"], utc=True)})
    with pytest.raises(ValueError, match="at least 3 events, got 2"):
        stray_timestamps(events)


def test_purchase_only_and_view_only_keep_every_event_of_their_type_and_nothing_else(log):
    purchases, views = purchase_only(log), view_only(log)
    assert set(purchases["type"]) == {"purchase"} and set(views["type"]) == {"view"}
    assert len(purchases) == (log["type"] == "purchase").sum() > 0
    assert len(views) == (log["type"] == "view").sum() > 0


def test_power_law_caps_move_no_more_than_the_share_asked_with_the_steepest_law_that_does():
    # 32 events, a quarter is 8. Scale 16 caps ranks 1-4 at 16, 8, 5, 4 and moves 0+0+3+4 = 7;
    # any smaller scale caps rank 2 at 7, moving 9 or more.
    caps = power_law_caps(np.array([8.0, 8.0, 8.0, 8.0]), exponent=1.0, tail_share=0.25)
    assert caps.tolist() == [16, 8, 5, 4]


def test_long_tail_makes_most_items_one_offs_and_keeps_every_event(log):
    out = long_tail(log, seed=0, tail_share=0.25)
    counts = out["item_id"].value_counts()
    one_offs = counts[counts.index.str.startswith("long-tail:")]
    assert len(out) == len(log)
    assert (one_offs == 1).all()
    assert one_offs.sum() == pytest.approx(0.25 * len(log), abs=0.01 * len(log))
    assert (counts == 1).mean() > 0.8  # a very long tail: most items are seen once
    # Each item keeps what it had, up to the power law's cap for its popularity rank.
    before = log["item_id"].value_counts().reset_index()
    before = before.sort_values(["count", "item_id"], ascending=[False, True])
    caps = power_law_caps(before["count"].to_numpy(dtype=float), 1.0, 0.25)
    kept = counts.reindex(before["item_id"]).fillna(0).to_numpy()
    assert (kept == np.minimum(before["count"].to_numpy(), caps)).all()
    assert (kept < before["count"].to_numpy()).sum() > 50  # the cap cut most items down


def test_one_event_users_make_half_of_the_visitors_single_event_ones(log):
    out = one_event_users(log, seed=0, share=0.5)
    sizes = visitors(out).value_counts()
    assert (sizes == 1).mean() >= 0.5
    assert (visitors(log).value_counts() == 1).mean() < 0.1  # not so before
    assert len(out) == len(log)
    key = ["ts", "item_id", "type"]
    pd.testing.assert_frame_equal(
        out[key].sort_values(key).reset_index(drop=True),
        log[key].sort_values(key).reset_index(drop=True),
    )
    assert set(visitors(log)) <= set(visitors(out))  # every visitor keeps an event
    split_off = out[out["session_id"].str.startswith("one-event:")]
    anonymous = split_off["user_id"] == ""
    assert anonymous.any() and (~anonymous).any()  # new sessions and new customers both


@pytest.mark.parametrize("holdout_days", [None, 5.0])
def test_late_items_leave_30_percent_of_items_unseen_before_the_evaluations_cut(log, holdout_days):
    out = late_items(log, seed=0, share=0.3, holdout_days=holdout_days)
    cut = evaluation_cut(log, holdout_days)
    assert evaluation_cut(out, holdout_days) == cut  # the span, and so the cut, did not move
    first_seen = out.groupby("item_id")["ts"].min()
    naturally_late = (log.groupby("item_id")["ts"].min() >= cut).sum()
    late = (first_seen >= cut).sum()
    assert round(0.3 * len(first_seen)) <= late <= round(0.3 * len(first_seen)) + naturally_late
    # The build's own time split puts none of their events in its training part.
    days = (log["ts"].max() - cut) / DAY
    history, test = time_split(Dataset(out, build_universe(out, None)), days)
    unseen = set(test.events["item_id"]) - set(history.events["item_id"])
    assert len(unseen) >= round(0.3 * len(first_seen))
    assert len(out) == len(log)
    assert out["ts"].min() == log["ts"].min() and out["ts"].max() == log["ts"].max()


def test_late_items_move_events_into_sessions_of_their_own(log):
    out = late_items(log, seed=0)
    moved = out[out["session_id"].str.endswith("~late")]
    assert len(moved) > 0
    assert (moved["ts"] >= evaluation_cut(log)).all()


def test_evaluation_cut_is_the_last_15_percent_of_the_span_by_default():
    ts = pd.to_datetime(["2026-01-01", "2026-01-21", "2026-01-31"], utc=True)
    events = pd.DataFrame({"ts": ts})
    assert evaluation_cut(events) == pd.Timestamp("2026-01-26 12:00", tz="UTC")  # 4.5 days
    assert evaluation_cut(events, holdout_days=10) == pd.Timestamp("2026-01-21", tz="UTC")


def test_sample_visitors_keeps_whole_histories_under_the_cap(log):
    out = sample_visitors(log, max_events=2_000, seed=0)
    assert 1_500 < len(out) <= 2_000
    kept = visitors(out).value_counts()
    assert kept.equals(visitors(log).value_counts().reindex(kept.index))
    assert sample_visitors(log, max_events=len(log), seed=0) is log
    assert not out.equals(sample_visitors(log, max_events=2_000, seed=1))


def test_the_grid_lists_the_reference_first_then_each_stress_shape():
    assert list(stress_shapes.SHAPES) == [
        "original",
        "bulk_timestamps",
        "stray_timestamps",
        "purchase_only",
        "view_only",
        "long_tail",
        "one_event_users",
        "late_items",
    ]
