"""The purchase-intent model's sessions on Spark (`export.intent.Sessions`): when each recent
session started, and the rows of the sampled ones. Only the sessions of the intent model's
windows, and the events of the sampled ones (at most `intent.max_sessions` per window), reach
the driver; each customer's visit history is found on Spark.

The rows are `export.intent.SessionLog.rows` itself, on the sampled sessions' events."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from edge.bundle.manifest import IntentInfo
from export.intent import SessionLog, VisitHistory, fit_intent_on
from export.interactions import ItemUniverse
from export.spark.validate import FILE, ROW, as_one_machine_frame, epoch_seconds, to_pandas

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def fit_intent(
    events: DataFrame,
    universe: ItemUniverse,
    train_days: float,
    eval_days: float,
    max_sessions: int,
    seed: int,
    truth: pd.Series | None = None,
) -> tuple[bytes | None, IntentInfo | None]:
    """`export.intent.fit_intent` on the events on Spark."""
    from pyspark.sql import functions as F

    found = events.agg(
        F.max(F.unix_micros(F.col("ts"))).alias("last"),
        F.max(F.when(F.col("type") == "purchase", 1).otherwise(0)).alias("bought"),
    ).first()
    if found is None or found["last"] is None or not found["bought"]:
        return None, None
    last = pd.Timestamp(int(found["last"]), unit="us", tz="UTC")
    # Every window the model reads starts after this: the evaluation's training window, and
    # the last `train_days` the shipped model learns from.
    since = last + pd.Timedelta(seconds=1) - pd.Timedelta(days=max(train_days + eval_days, 0))
    log = SessionsOnSpark(events, universe, since)
    return fit_intent_on(log, last, train_days, eval_days, max_sessions, seed, truth)


class SessionsOnSpark:
    """`export.intent.Sessions` of the events on Spark whose sessions start at `since` or
    later."""

    def __init__(self, events: DataFrame, universe: ItemUniverse, since: pd.Timestamp) -> None:
        from pyspark.sql import functions as F

        self.events, self.universe = events, universe
        starts = (
            events.groupBy("session_id")
            .agg(F.min(F.unix_micros(F.col("ts"))).alias("started"))
            .filter(F.col("started") >= int(since.value // 1000))
        )
        table = to_pandas(starts)
        started = pd.to_datetime(table["started"].to_numpy(dtype=np.int64), unit="us", utc=True)
        index = pd.Index(table["session_id"].to_numpy(dtype=object))
        self.started = pd.Series(started.astype("datetime64[ns, UTC]"), index=index).sort_index()

    def starting(self, start: pd.Timestamp, end: pd.Timestamp) -> pd.Index:
        """The sessions whose first event falls in [start, end), in session id order."""
        return self.started.index[(self.started >= start) & (self.started < end)]

    def rows(self, sessions: pd.Index, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """`SessionLog.rows` of `sessions`, from their events and their customers' visits."""
        from pyspark.sql import functions as F

        spark = self.events.sparkSession
        chosen = spark.createDataFrame(pd.DataFrame({"session_id": sessions.to_numpy(dtype=str)}))
        in_chosen = self.events.join(F.broadcast(chosen), "session_id")
        # In time order, equal times in file and row order, as the one-machine build holds them.
        part = to_pandas(in_chosen.orderBy("ts", FILE, ROW).drop(FILE, ROW))
        part = as_one_machine_frame(part[self.events.drop(FILE, ROW).columns])
        log = SessionLog(part, self.universe, self.history(chosen))
        return log.rows(sessions, seed)

    def history(self, chosen: DataFrame) -> VisitHistory:
        """`VisitHistory` of the sessions of `chosen` (a session_id column): their customers'
        visits, by start, then session id."""
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        known = self.events.filter(F.col("user_id") != "")
        customers = known.join(F.broadcast(chosen), "session_id").select("user_id").distinct()
        seconds = epoch_seconds(F.col("ts"))
        visits = (
            known.join(customers, "user_id")
            .groupBy("user_id", "session_id")
            .agg(
                F.min(seconds).alias("start"),
                F.max(seconds).alias("end"),
                F.sum(F.when(F.col("type") == "purchase", 1).otherwise(0)).alias("bought"),
            )
        )
        earlier = Window.partitionBy("user_id").orderBy("start", "session_id")
        before = earlier.rowsBetween(Window.unboundedPreceding, -1)
        visits = visits.withColumn("last_end", F.lag("end").over(earlier)).withColumn(
            "before", F.coalesce(F.sum("bought").over(before), F.lit(0))
        )
        table = to_pandas(visits.join(F.broadcast(chosen), "session_id"))
        # A session id two customers share keeps the later customer's (in id order), as the
        # one-machine build's table of visits does.
        table = table.sort_values(["user_id", "start", "session_id"], kind="stable")
        sessions = table["session_id"].astype(str).tolist()
        last_end = table["last_end"].to_numpy(dtype=np.float64, na_value=np.nan).tolist()
        before_counts = table["before"].to_numpy(dtype=np.int64).tolist()
        return VisitHistory(dict(zip(sessions, last_end)), dict(zip(sessions, before_counts)))
