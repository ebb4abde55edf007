"""What a build asks of events that stay on Spark (export/spark/dataset.py) is what it asks of
the same events on this machine (export.stages.read.Dataset): the log's summary, a time cut and
the window after it, its known customers, the baselines' matrix and the items seen."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from export.stages.read import Dataset

pytestmark = [
    pytest.mark.slow,  # a Spark session (a JVM) on local[2]
    # py4j, PySpark's bridge to the JVM, leaves its sockets to the garbage collector.
    pytest.mark.filterwarnings("ignore:unclosed <socket:ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(scope="module")
def both(shop_events):
    """The shop's events held here, and the same events on Spark only."""
    events = shop_events.events.reset_index(drop=True)
    return Dataset(events, shop_events.universe), Dataset(
        None, shop_events.universe, on_spark=shop_events.on_spark
    )


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
    expected = local.since(cut).reset_index(drop=True)
    assert 0 < len(window) < len(local)
    pd.testing.assert_frame_equal(window, expected, check_dtype=False)


def test_known_customers_and_repeat_customers_are_the_same(both, cut):
    local, on_spark = both
    asked = pd.concat(
        [local.since(cut)["user_id"], pd.Series(["", "nobody", "nobody"])], ignore_index=True
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
