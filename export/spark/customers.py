"""What the bundle knows of each known customer, computed on Spark: their segment features
(`export.segments.user_features`) and their profiles (`export.profiles.build_profiles`).

Both are the one-machine functions themselves, run on partitions that hold whole customers
(every event of a customer in one partition, in time order): a customer's features and
profile depend on their own events alone, and on the end of the log, which is passed in. Only
one row per customer reaches the driver."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import msgspec
import numpy as np
import pandas as pd

from edge.schemas import Profile
from edge.segments import SEGMENT_FEATURES
from export.interactions import ItemUniverse
from export.profiles import build_profiles
from export.segments import user_features
from export.spark.validate import FILE, ROW, as_one_machine_frame, epoch_seconds, to_pandas

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

# Rows per partition of whole customers: each partition is one pandas frame in a worker.
ROWS_PER_CUSTOMER_PARTITION = 1_000_000


def per_customer(
    events: DataFrame,
    rows: int,
    compute: Callable[[pd.DataFrame], pd.DataFrame],
    schema: str,
) -> DataFrame:
    """`compute` run on the known customers' events, a partition of whole customers at a time,
    each partition in time order (equal times: file, then row order) as the one-machine build
    holds the events; `rows`: about how many events there are, for the partitions' number."""
    from pyspark.sql import functions as F

    # At least one per core: a log that fits one partition still uses every core.
    cores = events.sparkSession.sparkContext.defaultParallelism
    partitions = max(cores, -(-rows // ROWS_PER_CUSTOMER_PARTITION))
    customers = (
        events.filter(F.col("user_id") != "")
        .repartition(partitions, "user_id")
        .sortWithinPartitions("ts", FILE, ROW)
    )

    def run(parts: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        frames = list(parts)  # the whole partition: a customer's events may span its batches
        if not frames:
            return
        part = pd.concat(frames, ignore_index=True).drop(columns=[FILE, ROW])
        yield compute(as_one_machine_frame(part))

    return customers.mapInPandas(run, schema)


def customer_features(events: DataFrame, universe: ItemUniverse, rows: int) -> pd.DataFrame:
    """`user_features` of every known customer, by user id in id order."""
    from pyspark.sql import functions as F

    last = events.filter(F.col("user_id") != "").agg(F.max(epoch_seconds(F.col("ts")))).first()
    if last is None or last[0] is None:
        return user_features(pd.DataFrame({"user_id": pd.Series(dtype=object)}))
    end = float(last[0])
    numeric = list(SEGMENT_FEATURES)

    def features(part: pd.DataFrame) -> pd.DataFrame:
        found = user_features(part, universe, end)
        return found.reset_index(names="user")[["user", *numeric, "device", "hour_bucket"]]

    schema = ", ".join(
        ["user string", *(f"{c} double" for c in numeric), "device string", "hour_bucket long"]
    )
    table = to_pandas(per_customer(events, rows, features, schema))
    table = table.set_index("user").sort_index()
    table.index = table.index.astype(str)
    table["device"] = table["device"].astype(str)
    table["hour_bucket"] = table["hour_bucket"].astype(np.int64)
    return table


def customer_profiles(
    events: DataFrame,
    weights: dict[str, float],
    universe: ItemUniverse,
    rows: int,
    attributes: dict[str, dict[str, str]] | None = None,
) -> dict[str, Profile]:
    """`build_profiles` of every known customer, by user id in id order; each profile
    travels to the driver as msgpack."""

    def profiles(part: pd.DataFrame) -> pd.DataFrame:
        built = build_profiles(part, weights, universe=universe)
        encode = msgspec.msgpack.Encoder().encode  # made in the worker: encoders do not travel
        return pd.DataFrame({"user": list(built), "profile": [encode(p) for p in built.values()]})

    table = to_pandas(per_customer(events, rows, profiles, "user string, profile binary"))
    decoder = msgspec.msgpack.Decoder(Profile)
    attributes = attributes or {}
    out: dict[str, Profile] = {}
    for user, encoded in sorted(zip(table["user"].astype(str), table["profile"])):
        profile = decoder.decode(bytes(encoded))
        if user in attributes:
            profile = msgspec.structs.replace(profile, attributes=attributes[user])
        out[user] = profile
    return out
