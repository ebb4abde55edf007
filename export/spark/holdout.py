"""The per-customer splits of `export.cases` on Spark: `random_holdout`, `leave_last_out` and
`next_new_item`, each giving the training and the test part as Spark frames. The cuts are
summed on Spark; only `random_holdout`'s distinct customer and target item pairs reach the
driver, where the one-machine `held_pairs` draws the same seeded share of them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from export.cases import held_pairs
from export.spark.dataset import nanoseconds
from export.spark.validate import FILE, ROW, to_pandas

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

SINCE = "_since"  # a customer's cut, or a held pair's first time taken, in nanoseconds


def random_holdout(
    events: DataFrame, target_types: list[str], share: float, seed: int
) -> tuple[DataFrame, DataFrame]:
    """`export.cases.random_holdout`: the pairs in the order first taken (time, then file and
    row order, as the one-machine log is ordered), the same draw, and the parts cut on Spark."""
    from pyspark.sql import functions as F

    known = _known_targets(events, target_types)
    first = F.min(F.struct(nanoseconds(F.col("ts")).alias(SINCE), F.col(FILE), F.col(ROW)))
    pairs = to_pandas(
        known.groupBy("user_id", "item_id")
        .agg(first.alias("first"))
        .select("user_id", "item_id", "first.*")
    )
    pairs = pairs.sort_values([SINCE, FILE, ROW], ignore_index=True)
    pairs = pairs.astype({"user_id": object, "item_id": object})
    held = held_pairs(pairs[["user_id", "item_id", SINCE]], share, seed)
    if held.empty:
        return events, events.limit(0)
    since = events.sparkSession.createDataFrame(
        held.astype({SINCE: np.int64}), f"user_id string, item_id string, {SINCE} long"
    )
    joined = events.join(since, ["user_id", "item_id"], "left")
    return _parts(joined, events, F.col(SINCE), target_types)


def leave_last_out(events: DataFrame, target_types: list[str]) -> tuple[DataFrame, DataFrame]:
    """`export.cases.leave_last_out`: each customer with two target events or more is cut at
    their last."""
    from pyspark.sql import functions as F

    per_customer = (
        _known_targets(events, target_types)
        .groupBy("user_id")
        .agg(F.max(nanoseconds(F.col("ts"))).alias(SINCE), F.count(F.lit(1)).alias("_targets"))
    )
    cuts = per_customer.filter(F.col("_targets") > 1).select("user_id", SINCE)
    joined = events.join(cuts, "user_id", "left")
    return _parts(joined, events, F.col(SINCE), target_types)


def next_new_item(events: DataFrame, target_types: list[str]) -> tuple[DataFrame, DataFrame]:
    """`export.cases.next_new_item`: each customer's cut is the first touch of the last item
    they took that was new to them, when they did something before it."""
    from pyspark.sql import functions as F

    ns = nanoseconds(F.col("ts"))
    known = events.filter(F.col("user_id") != "")
    first = known.groupBy("user_id", "item_id").agg(F.min(ns).alias("_first"))
    taken = _known_targets(events, target_types).select("user_id", "item_id").distinct()
    first = first.join(taken, ["user_id", "item_id"])
    cut = first.groupBy("user_id").agg(F.max("_first").alias(SINCE))
    earliest = known.groupBy("user_id").agg(F.min(ns).alias("_earliest"))
    cut = cut.join(earliest, "user_id").filter(F.col("_earliest") < F.col(SINCE))
    newest = (
        first.join(cut.select("user_id", SINCE), "user_id")
        .filter(F.col("_first") == F.col(SINCE))
        .select("user_id", "item_id", F.lit(True).alias("_newest"))
    )
    joined = events.join(cut.select("user_id", SINCE), "user_id", "left").join(
        newest, ["user_id", "item_id"], "left"
    )
    later = F.col(SINCE).isNotNull() & (ns >= F.col(SINCE))
    test = joined.filter(later & F.col("_newest").isNotNull() & F.col("type").isin(target_types))
    return joined.filter(~later).select(*events.columns), test.select(*events.columns)


def _known_targets(events: DataFrame, target_types: list[str]) -> DataFrame:
    from pyspark.sql import functions as F

    return events.filter((F.col("user_id") != "") & F.col("type").isin(target_types))


def _parts(
    joined: DataFrame, events: DataFrame, since: Column, target_types: list[str]
) -> tuple[DataFrame, DataFrame]:
    """The events before each one's cut (or without one) for training; from it on, the
    target events for the test."""
    from pyspark.sql import functions as F

    after = since.isNotNull() & (nanoseconds(F.col("ts")) >= since)
    train = joined.filter(~after).select(*events.columns)
    test = joined.filter(after & F.col("type").isin(target_types)).select(*events.columns)
    return train, test
