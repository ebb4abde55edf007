"""Each known customer's segment features and profile, computed on Spark on partitions of
whole customers (export/spark/customers.py), equal the one-machine ones."""

from __future__ import annotations

import math

import msgspec
import pandas as pd
import pytest

from export.profiles import build_profiles
from export.segments import user_features

pytestmark = [
    pytest.mark.slow,  # a Spark session (a JVM) on local[2]
    # py4j, PySpark's bridge to the JVM, leaves its sockets to the garbage collector.
    pytest.mark.filterwarnings("ignore:unclosed <socket:ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


def test_segment_features_are_the_same(shop_events):
    from export.spark.customers import customer_features

    expected = user_features(shop_events.events, shop_events.universe)
    got = customer_features(shop_events.on_spark, shop_events.universe, len(shop_events.events))
    assert len(expected) > 500
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, check_names=False)


def test_profiles_are_the_same_with_the_users_attributes(shop_events):
    from export.spark.customers import customer_profiles

    events, universe = shop_events.events, shop_events.universe
    weights = shop_events.config.events.weights
    customer = events.loc[events["user_id"] != "", "user_id"].iloc[0]
    attributes = {customer: {"tier": "gold"}}
    expected = build_profiles(events, weights, attributes, universe=universe)
    got = customer_profiles(shop_events.on_spark, weights, universe, len(events), attributes)
    assert list(got) == list(expected)
    assert got[customer].attributes == {"tier": "gold"}
    for user, profile in expected.items():
        assert _fields(got[user]) == _fields(profile), user


def _fields(profile) -> list[object]:
    """A profile's fields, NaN (an unknown mean price) as None so that it equals itself."""
    return [
        None if isinstance(v, float) and math.isnan(v) else v for v in msgspec.to_builtins(profile)
    ]
