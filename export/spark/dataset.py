"""What `export.stages.read.Dataset` asks of events that stay on Spark: the log's summary,
a time cut, its known customers, the user × item matrix the baselines learn from, and what
the cases ask of a window (`export.cases.Window`). Each answers what the one-machine form
answers on the same events (tests/export/spark); only the answers reach the driver, and the
events themselves only when `collected`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from export.cases import CUSTOMER_TARGETS
from export.interactions import ItemUniverse, attach_item_codes
from export.spark.tables import user_item_matrix as summed_matrix
from export.spark.tables import weighed_events
from export.spark.validate import FILE, ROW, in_time_order, to_pandas

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


def since(events: DataFrame, cut: pd.Timestamp) -> DataFrame:
    from pyspark.sql import functions as F

    return events.filter(nanoseconds(F.col("ts")) >= cut.value)


def collected(events: DataFrame, universe: ItemUniverse) -> pd.DataFrame:
    """`events` on the driver, as the one-machine build holds them: in time order (equal
    times: file, then row order), indexed 0..n-1, with item codes and `type` as a
    categorical."""
    frame = in_time_order(events)
    attach_item_codes(frame, universe)
    frame["type"] = frame["type"].astype("category")
    return frame


def events_per_visitor(events: DataFrame) -> pd.Series:
    """The events of each user id ("" for the anonymous ones together), in no set order."""
    counts = to_pandas(events.groupBy("user_id").count())
    return pd.Series(
        counts["count"].to_numpy(dtype=np.int64),
        index=pd.Index(counts["user_id"].to_numpy(dtype=object), dtype=object),
    )


def customer_targets(events: DataFrame, target_types: list[str]) -> pd.DataFrame:
    """`export.cases.customer_targets`: per customer, their distinct target items, and the
    context of their first target event in time order (equal times: file, then row order)."""
    from pyspark.sql import functions as F

    targets = events.filter((F.col("user_id") != "") & F.col("type").isin(target_types))
    context = F.struct(*CUSTOMER_TARGETS[2:])
    per_customer = targets.groupBy("user_id").agg(
        F.collect_set("item_id").alias("items"),
        F.min_by(context, F.struct("ts", FILE, ROW)).alias("first"),
    )
    frame = to_pandas(per_customer.select("user_id", "items", "first.*"))
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True).astype("datetime64[ns, UTC]")
    frame["user_id"] = frame["user_id"].astype(object)
    frame = frame.sort_values("user_id", ignore_index=True)  # as pandas orders them
    return frame[CUSTOMER_TARGETS]


def sessions_of_two_or_more(events: DataFrame) -> np.ndarray:
    """`export.cases.sessions_of_two_or_more`: sorted on the driver, as pandas orders them."""
    from pyspark.sql import functions as F

    sizes = events.groupBy("session_id").count().filter(F.col("count") >= 2)
    ids = to_pandas(sizes.select("session_id"))["session_id"].to_numpy(dtype=object)
    return np.sort(ids)


def events_of_sessions(
    events: DataFrame, session_ids: np.ndarray, universe: ItemUniverse
) -> pd.DataFrame:
    """`export.cases.events_of_sessions`: only those sessions' events reach the driver."""
    from pyspark.sql import functions as F

    wanted = events.sparkSession.createDataFrame(
        pd.DataFrame({"session_id": session_ids.astype(str)}), "session_id string"
    )
    chosen = events.join(F.broadcast(wanted), "session_id").select(*events.columns)
    return collected(chosen, universe).sort_values("session_id", kind="stable")


def anonymous_sessions(events: DataFrame) -> int:
    """The sessions with an anonymous event."""
    from pyspark.sql import functions as F

    return events.filter(F.col("user_id") == "").select("session_id").distinct().count()


def sessions_with_targets(events: DataFrame, target_types: list[str]) -> int:
    """The sessions of two events or more with an event of `target_types`."""
    from pyspark.sql import functions as F

    per_session = events.groupBy("session_id").agg(
        F.count(F.lit(1)).alias("events"),
        F.max(F.col("type").isin(target_types).cast("int")).alias("targets"),
    )
    return per_session.filter((F.col("events") >= 2) & (F.col("targets") > 0)).count()


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
