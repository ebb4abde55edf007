"""Exact order statistics per group on Spark (export/spark/order_statistics.py): a big group's
values at ranks near its ends are found between approximate quantiles, a small group's by
sorting, and both equal numpy's sorted values, ties and far outliers included."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from export.spark import order_statistics

pytestmark = [
    pytest.mark.slow,  # a Spark session (a JVM) on local[2]
    # py4j, PySpark's bridge to the JVM, leaves its sockets to the garbage collector.
    pytest.mark.filterwarnings("ignore:unclosed <socket:ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


def groups(rng: np.random.Generator) -> dict[int, np.ndarray]:
    """Times in seconds: a big group with ties (whole seconds) and a few values years away, and
    a small one."""
    big = np.floor(rng.normal(1.7e9, 86_400 * 30, size=60_000))
    big[:40] = rng.uniform(1.0e9, 1.1e9, size=40)  # years before the rest
    small = np.floor(rng.uniform(1.7e9, 1.7e9 + 3_600, size=500))
    return {0: big, 1: small}


def ranks_of(size: int) -> tuple[int, ...]:
    k = max(1, int(0.001 * size))
    return (k, size - 1 - k, 0, size - 1)


def test_values_at_ranks_are_exact_and_a_big_group_is_not_sorted(spark, monkeypatch):
    values = groups(np.random.default_rng(0))
    frame = spark.createDataFrame(
        pd.DataFrame(
            {
                "g": np.repeat(list(values), [v.size for v in values.values()]),
                "s": np.concatenate(list(values.values())),
            }  # fmt: skip
        )
    )
    sorted_groups = []
    sort = order_statistics._sorted

    def recorded(frame, group, value, ranks):
        sorted_groups.extend(ranks)
        return sort(frame, group, value, ranks)

    monkeypatch.setattr(order_statistics, "_sorted", recorded)
    near_ends = {g: ranks_of(v.size)[:2] for g, v in values.items()}
    sizes = {g: v.size for g, v in values.items()}
    found = order_statistics.values_at_ranks(frame, "g", "s", near_ends, sizes)
    for g, asked in near_ends.items():
        assert found[g] == tuple(float(np.sort(values[g])[r]) for r in asked)
    assert sorted_groups == [1]  # the big group was bracketed
    # The very ends lie outside the grid: the big group is sorted for them, still exact.
    ends = {0: ranks_of(sizes[0])[2:]}
    assert order_statistics.values_at_ranks(frame, "g", "s", ends, sizes)[0] == (
        float(values[0].min()),
        float(values[0].max()),
    )


def test_a_bracket_too_full_to_collect_falls_back_to_sorting(spark, monkeypatch):
    """A time shared by a large share of the group: its bracket would collect them all."""
    values = np.full(20_000, 1.7e9)
    values[::2] += np.arange(10_000)
    frame = spark.createDataFrame(pd.DataFrame({"g": 0, "s": values}))
    monkeypatch.setattr(order_statistics, "MOST_COLLECTED", 100)
    asked = {0: ranks_of(values.size)[:2]}
    found = order_statistics.values_at_ranks(frame, "g", "s", asked, {0: values.size})
    assert found[0] == tuple(float(np.sort(values)[r]) for r in asked[0])
