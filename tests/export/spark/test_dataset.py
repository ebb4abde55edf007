"""What a build asks of events that stay on Spark (export/spark/dataset.py) is what it asks of
the same events on this machine (export.stages.read.Dataset): the log's summary, a time cut and
the window after it, its known customers, the baselines' matrix and the items seen, and what
the cases ask of a window, down to the same cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from edge.schemas import Profile
from export.cases import make_cases

pytestmark = [
    pytest.mark.slow,  # a Spark session (a JVM) on local[2]
    # py4j, PySpark's bridge to the JVM, leaves its sockets to the garbage collector.
    pytest.mark.filterwarnings("ignore:unclosed <socket:ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(scope="module")
def cut(both):
    """A moment inside the log, between two events' times."""
    local, _ = both
    return local.events["ts"].iloc[len(local.events) * 3 // 4] + pd.Timedelta(microseconds=1)


def test_the_summary_and_the_whole_log_are_the_same(both):
    local, on_spark = both
    assert on_spark.summary == local.summary
    assert local.summary.customers > 100 and local.summary.types >= {"view", "purchase"}
    pd.testing.assert_frame_equal(on_spark.events, local.events, check_dtype=False)
    assert on_spark.events["type"].dtype == "category"


def test_a_cut_leaves_the_same_history_and_window(both, cut):
    local, on_spark = both
    before, history = local.before(cut), on_spark.before(cut)
    assert history.held is None  # still on Spark
    assert history.summary == before.summary and len(history) == len(before)
    window = on_spark.since(cut)
    assert window.held is None  # still on Spark
    expected = local.since(cut).events.reset_index(drop=True)
    assert 0 < len(window) < len(local) and window.summary == local.since(cut).summary
    pd.testing.assert_frame_equal(window.events, expected, check_dtype=False)


def test_known_customers_and_repeat_customers_are_the_same(both, cut):
    local, on_spark = both
    asked = pd.concat(
        [local.since(cut).events["user_id"], pd.Series(["", "nobody", "nobody"])],
        ignore_index=True,
    )
    assert set(on_spark.before(cut).customers) == set(local.before(cut).customers)
    known = local.before(cut).known_customers(asked)
    np.testing.assert_array_equal(on_spark.before(cut).known_customers(asked), known)
    assert known.any() and not known.all()
    for types, at_least in ((["purchase"], 2), (["view", "add_to_cart"], 3)):
        count = local.customers_with_items(types, at_least)
        assert on_spark.customers_with_items(types, at_least) == count > 0


def test_the_baselines_matrix_and_the_items_seen_are_the_same(both, cut, shop_events):
    local, on_spark = both
    weights = dict(shop_events.config.events.weights)
    matrix, keys = local.before(cut).user_item_matrix(weights)
    spark_matrix, spark_keys = on_spark.before(cut).user_item_matrix(weights)
    assert list(spark_keys) == list(keys)
    np.testing.assert_allclose(spark_matrix.toarray(), matrix.toarray(), rtol=1e-6)
    assert set(on_spark.before(cut).items_seen()) == set(local.before(cut).items_seen())


def test_a_window_answers_what_the_cases_ask_and_gives_the_same_cases(both, cut):
    """Only the answers reach the driver: the events of each visitor, each customer's targets,
    the ids of the sessions to sample from and the sampled sessions' events; the cases made of
    them are the one-machine build's, for customers and for sessions."""
    local, on_spark = both
    here, there = local.since(cut), on_spark.since(cut)
    targets = ["purchase", "add_to_cart"]
    visitors = here.events_per_visitor()
    pd.testing.assert_series_equal(
        there.events_per_visitor().sort_index(), visitors.sort_index(), check_names=False
    )
    assert "" in visitors.index and there.anonymous_sessions() == here.anonymous_sessions() > 0
    assert there.sessions_with_targets(targets) == here.sessions_with_targets(targets) > 0
    expected = here.customer_targets(targets)
    got = there.customer_targets(targets)
    assert len(expected) > 20 and list(got["user_id"]) == list(expected["user_id"])
    assert [set(i) for i in got["items"]] == [set(i) for i in expected["items"]]
    context = ["device", "country", "local_hour", "ts"]
    pd.testing.assert_frame_equal(got[context], expected[context], check_dtype=False)
    ids = here.sessions_of_two_or_more()
    np.testing.assert_array_equal(there.sessions_of_two_or_more(), ids)
    some = ids[::7]
    pd.testing.assert_frame_equal(
        there.events_of_sessions(some).reset_index(drop=True),
        here.events_of_sessions(some).reset_index(drop=True),
        check_dtype=False,
    )
    history = local.before(cut)
    bought = history.events[history.events["type"] == "purchase"].groupby("user_id")["item_id"]
    profiles = {
        user: Profile(["x"], [1.0], list(items), 1, len(items), 0.0, 0.0, 1.0)
        for user, items in bought
        if user
    }
    for kind in ("users", "sessions"):  # 40 sampled (not every session asks a question)
        cases = make_cases(kind, here, profiles, targets, 40, seed=3)
        assert len(cases) > 10 and make_cases(kind, there, profiles, targets, 40, 3) == cases
