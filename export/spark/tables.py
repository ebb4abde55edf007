"""The tables the candidate models are fitted from, summed on Spark from the validated events
(`export.spark.validate`), so that only they reach the driver, never the events:

- what the events say of each item (`item_facts`: median price, most named labels);
- the user × item interaction matrix the factorization and the item regression learn from;
- each item's first event and its buyers (`ItemActivity`, the ranker's item features);
- popularity's recency-weighted sums, overall and per context value (`PopularitySums`);
- each item's best co-visitation neighbours.

Each event's weight is the one-machine `event_weights` itself (and popularity's decay,
`recency_weights`), and co-visitation's counts are `session_pairs` itself, run on partitions
of whole sessions: what is written here in Spark only sums, joins and ranks what those give.
The parity tests (tests/export/spark/test_tables.py) check each table against the
one-machine one."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from edge.scoring import MAX_CONFIDENCE_WEIGHT
from export.config import BuildConfig
from export.covisitation import CoVisitation, lag_units, session_pairs
from export.interactions import (
    ITEM_CODE,
    ITEM_COUNTS,
    ITEM_LABELS,
    ItemActivity,
    ItemUniverse,
    event_weights,
)
from export.popularity import (
    CONTEXT_DIMENSIONS,
    Popularity,
    PopularitySums,
    hour_buckets,
    recency_weights,
)
from export.spark.validate import FILE, ROW, epoch_seconds, to_pandas
from export.stages.candidates import CandidateTables

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

USER_KEY, WEIGHT, DECAYED, HOUR = "_user_key", "_weight", "_decayed", "_hour"
# Rows per partition when whole sessions are gathered for co-visitation: a partition is one
# pandas frame in a Python worker (about 100 bytes a row).
ROWS_PER_SESSION_PARTITION = 1_000_000


def item_facts(events: DataFrame) -> pd.DataFrame:
    """`export.interactions.item_facts` on Spark: per item id (in id order), its median price,
    the category, brand and title its events name most often (ties: the first in value order;
    "" for none), and its events and distinct sessions."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    facts = events.groupBy("item_id").agg(
        F.median("price").alias("price"),
        F.count(F.lit(1)).alias("events"),
        F.countDistinct("session_id").alias("sessions"),
    )
    for label in ITEM_LABELS:
        named = events.filter(F.col(label).isNotNull() & (F.col(label) != ""))
        counted = named.groupBy("item_id", label).count()
        best = Window.partitionBy("item_id").orderBy(F.desc("count"), F.asc(label))
        mode = counted.withColumn("_rank", F.row_number().over(best)).filter("_rank = 1")
        facts = facts.join(mode.select("item_id", label), "item_id", "left")
    frame = to_pandas(facts).set_index("item_id").sort_index()
    frame["price"] = frame["price"].astype(np.float64)
    frame[list(ITEM_COUNTS)] = frame[list(ITEM_COUNTS)].astype(np.int64)
    for label in ITEM_LABELS:
        frame[label] = frame[label].fillna("").astype(object)
    return frame


def candidate_tables(
    events: DataFrame, universe: ItemUniverse, config: BuildConfig, rows: int
) -> CandidateTables:
    """Every table of `CandidateTables`, from `rows` validated events on Spark."""
    weights, half_life = dict(config.events.weights), config.popularity.half_life_days
    weighed = weighed_events(events, universe, weights, half_life).cache()
    try:
        n_items = len(universe.ids)
        matrix = interaction_matrix(weighed, n_items)
        statistics = item_activity(weighed, n_items).to_tree()
        cv = config.covisitation
        neighbours = CoVisitation(cv.window, cv.neighbours, cv.min_count)
        src, dst, scores = covisitation_top(weighed, n_items, neighbours, rows)
        covisitation = neighbours.fit_top(src, dst, scores, n_items)
        pc = config.popularity
        popularity = Popularity(
            pc.half_life_days, pc.context_top_n, pc.min_context_events, pc.fallback_items
        ).fit_sums(popularity_sums(weighed, n_items, pc.min_context_events), universe)
    finally:
        weighed.unpersist()
    return CandidateTables(matrix, statistics, covisitation, popularity)


def weighed_events(
    events: DataFrame, universe: ItemUniverse, weights: dict[str, float], half_life_days: float
) -> DataFrame:
    """The columns the tables need, with each event's item code, its user key (`user_keys`:
    the user, or its anonymous session), its weight (`event_weights`), that weight decayed
    for popularity (`recency_weights`, from the log's last event) and its hour bucket."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StructType

    spark = events.sparkSession
    codes = spark.createDataFrame(
        pd.DataFrame({"item_id": universe.ids, ITEM_CODE: np.arange(len(universe.ids))})
    )
    anonymous = F.col("user_id") == ""
    key = F.when(anonymous, F.concat(F.lit("session:"), F.col("session_id")))
    columns = ["user_id", "session_id", "type", "dwell_ms", "device", "country", "local_hour"]
    coded = events.join(codes, "item_id").select(
        *columns,
        F.col(ITEM_CODE).cast("int").alias(ITEM_CODE),
        epoch_seconds(F.col("ts")).alias("_seconds"),
        FILE,
        ROW,
        key.otherwise(F.col("user_id")).alias(USER_KEY),
    )
    end_row = coded.agg(F.max("_seconds")).first()
    end = float(end_row[0]) if end_row is not None and end_row[0] is not None else 0.0

    def weigh(parts: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for part in parts:
            weight = event_weights(part, weights)
            seconds = part["_seconds"].to_numpy(dtype=np.float64)
            yield part.assign(
                **{
                    WEIGHT: weight,
                    DECAYED: recency_weights(weight, seconds, end, half_life_days),
                    HOUR: hour_buckets(part["local_hour"].to_numpy()).astype(str),
                }
            )

    schema = StructType(list(coded.schema.fields))  # a copy: `add` changes a schema in place
    schema = schema.add(WEIGHT, "double").add(DECAYED, "double").add(HOUR, "string")
    return coded.mapInPandas(weigh, schema)


def interaction_matrix(weighed: DataFrame, n_items: int) -> sp.csr_matrix:
    """`export.interactions.interaction_matrix`: users × items, the positive weights summed
    and capped, users in the order of their first positive event (time, then file and row
    order: the order the one-machine build meets them in)."""
    return user_item_matrix(weighed, n_items)[0]


def user_item_matrix(weighed: DataFrame, n_items: int) -> tuple[sp.csr_matrix, pd.Index]:
    """`export.interactions.user_item_matrix`: `interaction_matrix` and each row's user key."""
    from pyspark.sql import functions as F

    positive = weighed.filter(F.col(WEIGHT) > 0)
    first = positive.groupBy(USER_KEY).agg(F.min(F.struct("_seconds", FILE, ROW)).alias("_first"))
    summed = positive.groupBy(USER_KEY, ITEM_CODE).agg(F.sum(WEIGHT).alias(WEIGHT))
    table = to_pandas(
        summed.join(first, USER_KEY).select(
            USER_KEY,
            ITEM_CODE,
            WEIGHT,
            F.col("_first._seconds").alias("s"),
            F.col(f"_first.{FILE}").alias("f"),
            F.col(f"_first.{ROW}").alias("r"),
        )
    )
    users = table[[USER_KEY, "s", "f", "r"]].drop_duplicates(USER_KEY)
    users = users.sort_values(["s", "f", "r"], kind="stable")
    user_code = pd.Series(np.arange(len(users)), index=users[USER_KEY].to_numpy())
    rows = user_code.reindex(table[USER_KEY].to_numpy()).to_numpy()
    items = table[ITEM_CODE].to_numpy()
    matrix = sp.csr_matrix(
        (np.minimum(table[WEIGHT].to_numpy(), MAX_CONFIDENCE_WEIGHT), (rows, items)),
        shape=(len(users), n_items),
    )
    matrix.sort_indices()
    return matrix.astype(np.float32), pd.Index(users[USER_KEY].to_numpy(dtype=object))


def item_activity(weighed: DataFrame, n_items: int) -> ItemActivity:
    """`export.interactions.item_statistics`'s parts: each item's first event, the log's last,
    and per item its buyers and those who bought it in more than one session."""
    from pyspark.sql import functions as F

    first = to_pandas(weighed.groupBy(ITEM_CODE).agg(F.min("_seconds").alias("s")))
    end_row = weighed.agg(F.max("_seconds")).first()
    end = float(end_row[0]) if end_row is not None and end_row[0] is not None else 0.0
    baskets = (
        weighed.filter(F.col("type") == "purchase")
        .select(ITEM_CODE, USER_KEY, "session_id")
        .distinct()
        .groupBy(ITEM_CODE, USER_KEY)
        .count()
    )
    buyers = to_pandas(
        baskets.groupBy(ITEM_CODE).agg(
            F.count("*").alias("buyers"),
            F.sum(F.when(F.col("count") > 1, 1).otherwise(0)).alias("repeaters"),
        )
    )
    activity = ItemActivity(np.full(n_items, np.inf), end, np.zeros(n_items), np.zeros(n_items))
    activity.first[first[ITEM_CODE].to_numpy()] = first["s"].to_numpy()
    activity.buyers[buyers[ITEM_CODE].to_numpy()] = buyers["buyers"].to_numpy()
    activity.repeaters[buyers[ITEM_CODE].to_numpy()] = buyers["repeaters"].to_numpy()
    return activity


def popularity_sums(weighed: DataFrame, n_items: int, min_context_events: int) -> PopularitySums:
    """`PopularitySums`: the decayed weights summed per item, and per context value with at
    least `min_context_events` events (the empty value left out)."""
    from pyspark.sql import functions as F

    column = {"device": "device", "country": "country", "hour": HOUR}
    # One row per event and context dimension, so that one job counts every value's events
    # and one sums every kept value's weights per item.
    stacked = weighed.select(
        ITEM_CODE,
        DECAYED,
        F.explode(
            F.array(
                *(
                    F.struct(F.lit(d).alias("dimension"), F.col(c).alias("value"))
                    for d, c in column.items()
                )
            )
        ).alias("_context"),
    ).select(ITEM_CODE, DECAYED, "_context.dimension", "_context.value")
    counts = {
        (str(row["dimension"]), str(row["value"])): int(row["count"])
        for row in stacked.groupBy("dimension", "value").count().collect()
        if row["value"] not in (None, "") and row["count"] >= min_context_events
    }
    kept = F.concat_ws("=", "dimension", "value").isin([f"{d}={v}" for d, v in counts])
    summed = to_pandas(
        stacked.filter(kept)
        .groupBy("dimension", "value", ITEM_CODE)
        .agg(F.sum(DECAYED).alias("w"))
        .unionByName(
            weighed.groupBy(ITEM_CODE)
            .agg(F.sum(DECAYED).alias("w"))
            .select(F.lit("").alias("dimension"), F.lit("").alias("value"), ITEM_CODE, "w")
        )
    )
    contexts: dict[str, dict[str, tuple[int, np.ndarray]]] = {d: {} for d in CONTEXT_DIMENSIONS}
    overall = np.zeros(n_items)
    for (dimension, value), part in summed.groupby(["dimension", "value"]):
        sums = np.zeros(n_items)
        sums[part[ITEM_CODE].to_numpy()] = part["w"].to_numpy()
        if dimension == "":
            overall = sums
        else:
            contexts[str(dimension)][str(value)] = (counts[(str(dimension), str(value))], sums)
    return PopularitySums(overall, contexts)


def covisitation_top(
    weighed: DataFrame, n_items: int, model: CoVisitation, rows: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each item's `model.neighbours` best co-visitation neighbours, as (item, neighbour,
    score) arrays: `session_pairs` on partitions of whole sessions, each in session then time
    order; its one-way counts summed across partitions, made two-way, scored like a cosine
    (`CoVisitation.fit`) and ranked per item by score, then neighbour."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    window, count_seen = model.window, model.min_count > 1
    partitions = max(
        weighed.sparkSession.sparkContext.defaultParallelism,
        math.ceil(rows / ROWS_PER_SESSION_PARTITION),
    )
    sessions = (
        weighed.filter(F.col(WEIGHT) > 0)
        .select("session_id", ITEM_CODE, "_seconds", FILE, ROW)
        .repartition(partitions, "session_id")
        .sortWithinPartitions("session_id", "_seconds", FILE, ROW)
    )

    def counted(parts: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        frames = list(parts)  # the whole partition: its sessions are whole only together
        if not frames:
            return
        part = pd.concat(frames, ignore_index=True)
        session = pd.factorize(part["session_id"])[0]
        item = part[ITEM_CODE].to_numpy(dtype=np.int32)
        summed, seen, frequency = session_pairs(session, item, n_items, window, count_seen)
        # One table of sums: the pairs (a != b), the times each was seen, and each item's
        # count of events on the diagonal, where no pair falls.
        pieces = [_entries(summed, "summed")]
        if seen is not None:
            pieces.append(_entries(seen, "seen"))
        counts = np.flatnonzero(frequency)
        pieces.append(pd.DataFrame({"a": counts, "b": counts, "summed": frequency[counts]}))
        table = pd.concat(pieces, ignore_index=True).reindex(columns=["a", "b", "summed", "seen"])
        yield table.fillna(0.0).astype({"a": "int32", "b": "int32"})

    schema = "a int, b int, summed double, seen double"
    totals = (
        sessions.mapInPandas(counted, schema)
        .groupBy("a", "b")
        .agg(F.sum("summed").alias("summed"), F.sum("seen").alias("seen"))
        .cache()  # read three times below: the pairs, both ways, and the frequencies
    )
    try:
        frequency = totals.filter(F.col("a") == F.col("b")).select("a", F.col("summed").alias("f"))
        one_way = totals.filter(F.col("a") != F.col("b"))
        flipped = one_way.select(F.col("b").alias("a"), F.col("a").alias("b"), "summed", "seen")
        pairs = (
            one_way.unionByName(flipped)
            .groupBy("a", "b")
            .agg(F.sum("summed").alias("summed"), F.sum("seen").alias("seen"))
        )
        if count_seen:
            pairs = pairs.filter(F.col("seen") >= model.min_count)
        fa = frequency.select(F.col("a"), F.col("f").alias("fa"))
        fb = frequency.select(F.col("a").alias("b"), F.col("f").alias("fb"))
        scored = pairs.join(fa, "a").join(fb, "b")
        units = float(lag_units(model.window))  # as CoVisitation.fit scores them
        score = F.col("summed") / F.lit(units) / F.sqrt(F.col("fa") * F.col("fb"))
        best = Window.partitionBy("a").orderBy(F.desc("score"), F.asc("b"))
        top = scored.withColumn("score", score).withColumn("_rank", F.row_number().over(best))
        table = to_pandas(top.filter(F.col("_rank") <= model.neighbours).select("a", "b", "score"))
    finally:
        totals.unpersist()
    return (
        table["a"].to_numpy(dtype=np.int64),
        table["b"].to_numpy(dtype=np.int64),
        table["score"].to_numpy(dtype=np.float64),
    )


def _entries(matrix: sp.csr_matrix, column: str) -> pd.DataFrame:
    coo = matrix.tocoo()
    return pd.DataFrame({"a": coo.row, "b": coo.col, column: coo.data})
