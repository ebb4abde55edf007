"""The tables the candidate models are fitted from, summed on Spark (export/spark/tables.py),
equal the one-machine ones (export/stages/candidates.py) on a simulated shop's log: what the
events say of each item, the interaction matrix, the items' statistics, popularity overall and
per context, and co-visitation neighbours."""

from __future__ import annotations

import msgspec
import numpy as np
import pandas as pd
import pytest

from export.interactions import item_facts
from export.stages.candidates import candidate_tables
from export.stages.read import Dataset

pytestmark = [
    pytest.mark.slow,  # a Spark session (a JVM) on local[2]
    # py4j, PySpark's bridge to the JVM, leaves its sockets to the garbage collector.
    pytest.mark.filterwarnings("ignore:unclosed <socket:ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(scope="module")
def both(shop_events):
    """The tables on this machine and on Spark, with pairs seen once dropped (so that the
    times each pair was seen are counted too)."""
    from export.spark.tables import item_facts as item_facts_on_spark

    config = shop_events.config
    config = msgspec.structs.replace(
        config, covisitation=msgspec.structs.replace(config.covisitation, min_count=2)
    )
    events, universe = shop_events.events, shop_events.universe
    local = candidate_tables(Dataset(events, universe), config)
    on_spark = Dataset(events, universe, on_spark=shop_events.on_spark)
    tables = candidate_tables(on_spark, config)
    return item_facts(events), item_facts_on_spark(shop_events.on_spark), local, tables


def test_what_the_events_say_of_each_item_is_the_same(both):
    facts, spark_facts, _, _ = both
    pd.testing.assert_frame_equal(spark_facts, facts, check_dtype=False)


def test_the_interaction_matrix_and_item_statistics_are_the_same(both):
    _, _, local, spark = both
    assert spark.matrix.shape == local.matrix.shape
    assert (local.matrix.indptr == spark.matrix.indptr).all()
    assert (local.matrix.indices == spark.matrix.indices).all()
    np.testing.assert_allclose(spark.matrix.data, local.matrix.data, rtol=1e-6)
    for name, values in local.statistics.items():
        np.testing.assert_array_equal(spark.statistics[name], values, err_msg=name)


def test_popularity_is_the_same_overall_and_per_context(both):
    _, _, local, spark = both
    np.testing.assert_allclose(spark.popularity.overall_, local.popularity.overall_, rtol=1e-6)
    assert list(spark.popularity.contexts_) == list(local.popularity.contexts_)
    assert len(local.popularity.contexts_) >= 6  # devices, countries and hours of the day
    for key, table in local.popularity.contexts_.items():
        got = spark.popularity.contexts_[key]
        np.testing.assert_array_equal(got["items"], table["items"], err_msg=key)
        np.testing.assert_allclose(got["scores"], table["scores"], rtol=1e-6, err_msg=key)


def test_co_visitation_neighbours_agree(both):
    """Top-20 lists overlap by at least 0.99 on average (scores summed in another order may
    break a tie the other way); in practice they are equal."""
    _, _, local, spark = both
    a, b = local.covisitation, spark.covisitation
    overlaps = []
    for item in range(len(a.indptr_) - 1):
        mine = set(a.indices_[a.indptr_[item] : a.indptr_[item + 1]][:20].tolist())
        theirs = set(b.indices_[b.indptr_[item] : b.indptr_[item + 1]][:20].tolist())
        if mine or theirs:
            overlaps.append(len(mine & theirs) / max(len(mine), len(theirs)))
    assert len(overlaps) > 300
    assert np.mean(overlaps) >= 0.99
    np.testing.assert_allclose(
        b.scores_.astype(np.float64), a.scores_.astype(np.float64), rtol=1e-3
    )
