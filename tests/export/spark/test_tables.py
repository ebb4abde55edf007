"""The tables the candidate models are fitted from, summed on Spark (export/spark/tables.py),
equal the one-machine ones (export/stages/candidates.py) on a simulated shop's log: what the
events say of each item, the interaction matrix, the items' statistics, popularity overall and
per context, and co-visitation neighbours."""

from __future__ import annotations

import msgspec
import numpy as np
import pandas as pd
import pytest

from export.config import BuildConfig
from export.interactions import attach_item_codes, item_facts, universe_of
from export.io import read_table
from export.stages.candidates import candidate_tables
from export.stages.read import Dataset
from export.validate import QualityReport, normalize_events, sorted_by_time
from tests.export.spark.conftest import NOW

pytestmark = [
    pytest.mark.slow,  # a Spark session (a JVM) on local[2]
    # py4j, PySpark's bridge to the JVM, leaves its sockets to the garbage collector.
    pytest.mark.filterwarnings("ignore:unclosed <socket:ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(scope="module")
def both(spark, shop_files):
    """The simulated log's tables on this machine and on Spark, with pairs seen once dropped
    (so that the times each pair was seen are counted too), and some anonymous sessions."""
    from export.spark.tables import item_facts as item_facts_on_spark
    from export.spark.validate import read_events, validate_events

    config = BuildConfig()
    config = msgspec.structs.replace(
        config, covisitation=msgspec.structs.replace(config.covisitation, min_count=2)
    )
    raw = read_table(shop_files["events"])
    raw.loc[raw.index % 7 == 0, "user_id"] = ""  # anonymous: the session is the user
    path = shop_files["events"].with_name("events-some-anonymous.parquet")
    raw.to_parquet(path)

    events = sorted_by_time(normalize_events(read_table(path), config, QualityReport(), NOW))
    facts = item_facts(events)
    universe = universe_of(facts, None)
    attach_item_codes(events, universe)
    events["type"] = events["type"].astype("category")
    local = candidate_tables(Dataset(events, universe), config)

    on_spark = validate_events(read_events(spark, [path]), config, NOW).events.cache()
    spark_facts = item_facts_on_spark(on_spark)
    tables = candidate_tables(Dataset(events, universe, on_spark=on_spark), config)
    return facts, spark_facts, local, tables


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
