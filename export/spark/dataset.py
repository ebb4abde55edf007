"""What `export.stages.read.Dataset` asks of events that stay on Spark: the log's summary,
a time cut, the window after it (collected to the driver, as the one-machine build holds
events), its known customers, and the user × item matrix the baselines learn from. Each
answers what the one-machine form answers on the same events (tests/export/spark)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import scipy.sparse as sp

from export.interactions import ItemUniverse, attach_item_codes
from export.spark.tables import user_item_matrix as summed_matrix
from export.spark.tables import weighed_events
from export.spark.validate import in_time_order, to_pandas

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from export.stages.read import LogSummary


def nanoseconds(ts: Column) -> Column:
    """A timestamp column as nanoseconds since the epoch (what a pandas Timestamp's `value`
    is), exact for Spark's microseconds."""
    from pyspark.sql import functions as F

    return F.unix_micros(ts) * 1000


def summarize(events: DataFrame) -> LogSummary:
    """`export.stages.read.summarize` in one Spark job."""
    from pyspark.sql import functions as F

    from export.stages.read import LogSummary

    known = F.when(F.col("user_id") != "", F.col("user_id"))
    row = events.agg(
        F.count(F.lit(1)).alias("events"),
        F.min(nanoseconds(F.col("ts"))).alias("first"),
        F.max(nanoseconds(F.col("ts"))).alias("last"),
        F.countDistinct("session_id").alias("sessions"),
        F.countDistinct(known).alias("customers"),
        F.collect_set("type").alias("types"),
    ).first()
    assert row is not None  # an aggregate without grouping has one row

    def moment(nanos: int | None) -> pd.Timestamp | None:
        return None if nanos is None else pd.Timestamp(nanos, tz="UTC")

    return LogSummary(
        int(row["events"]),
        moment(row["first"]),
        moment(row["last"]),
        int(row["sessions"]),
        int(row["customers"]),
        frozenset(row["types"]),
    )


def before(events: DataFrame, cut: pd.Timestamp) -> DataFrame:
    from pyspark.sql import functions as F

    return events.filter(nanoseconds(F.col("ts")) < cut.value)


def since(events: DataFrame, cut: pd.Timestamp | None, universe: ItemUniverse) -> pd.DataFrame:
    """The events from `cut` on (None: all of them) on the driver, as the one-machine build
    holds them: in time order (equal times: file, then row order), indexed 0..n-1, with item
    codes and `type` as a categorical."""
    from pyspark.sql import functions as F

    if cut is not None:
        events = events.filter(nanoseconds(F.col("ts")) >= cut.value)
    frame = in_time_order(events)
    attach_item_codes(frame, universe)
    frame["type"] = frame["type"].astype("category")
    return frame


def customers(events: DataFrame) -> pd.Index:
    """The known customers with an event in `events`, in no set order."""
    from pyspark.sql import functions as F

    known = events.filter(F.col("user_id") != "").select("user_id").distinct()
    found: pd.Index = pd.Index(to_pandas(known)["user_id"].to_numpy(dtype=object), dtype=object)
    return found


def customers_with_items(events: DataFrame, types: list[str], at_least: int) -> int:
    """The known customers with events of `types` on at least `at_least` distinct items."""
    from pyspark.sql import functions as F

    known = events.filter((F.col("user_id") != "") & F.col("type").isin(types))
    per_customer = known.select("user_id", "item_id").distinct().groupBy("user_id").count()
    return int(per_customer.filter(F.col("count") >= at_least).count())


def user_item_matrix(
    events: DataFrame, universe: ItemUniverse, weights: dict[str, float]
) -> tuple[sp.csr_matrix, pd.Index]:
    """`export.interactions.user_item_matrix`, summed on Spark."""
    weighed = weighed_events(events, universe, weights, half_life_days=1.0)  # no decay used
    return summed_matrix(weighed, len(universe.ids))


def items_seen(events: DataFrame) -> pd.Index:
    """The ids of the items with an event in `events`, in no set order."""
    found: pd.Index = pd.Index(to_pandas(events.select("item_id").distinct())["item_id"])
    return found
