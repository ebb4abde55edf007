"""Reading and validating the event log on Spark, with the one-machine build's meaning
(`export.validate`): the same canonical rows, the same drop reasons and counts, the same kept
events.

- Each row on its own (mapping, parsing, the row checks, its local hour) is
  `export.validate.canonical_rows`, run a partition at a time.
- What looks across rows is written here in Spark, per input file as the one-machine build
  does it file by file: the stray-timestamp bounds (the 0.1% and 99.9% order statistics of a
  file's dated rows), each row's first failure, exact copies (the first one in file order
  kept), and session ids for rows without one (a user's events cut at gaps, numbered across
  the file in user, then time order);
- and across files: a repeated event id keeps its first copy in time order."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow.parquet as pq

from export.config import BuildConfig
from export.io import delimiter_of, file_format, first_line
from export.spark.files import UrlInput, head, parquet_schema
from export.spark.order_statistics import values_at_ranks
from export.validate import (
    DROP_REASONS,
    FAILED,
    LABEL_COLUMNS,
    NOT_COMPARED,
    ROW_CHECKS,
    ROW_CHECKS_BEFORE_STRAY,
    STRAY_SHARE,
    QualityReport,
    canonical_rows,
)

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import Column, DataFrame, SparkSession

FILE, ROW = "_file", "_row"  # which input file a row came from, and its place in it
DAY_S = 86_400


@dataclass(frozen=True)
class SparkEvents:
    """The kept events (canonical columns, plus FILE and ROW) and what validation counted."""

    events: DataFrame
    report: QualityReport
    rows_per_file: dict[int, int]  # rows read from each file, by its index in the paths


def read_events(spark: SparkSession, sources: Sequence[Path | UrlInput]) -> DataFrame:
    """Every event file as text columns (CSV; JSON lines and Parquet keep their types, as the
    one-machine reader does), each row tagged with its file's index and its place in it. A
    `UrlInput` of several files (a directory's JSON-lines files) is one file: theirs in order,
    each in its own order."""
    frames = []
    for index, source in enumerate(sources):
        if isinstance(source, UrlInput) and len(source.urls) > 1:
            joined = _stripped(spark.read.json(list(source.urls)))
            frames.append(with_position_across_files(joined, index))
        else:
            frames.append(with_position(_stripped(read_file(spark, source)), index))
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame, allowMissingColumns=True)
    return out


def read_file(spark: SparkSession, source: Path | UrlInput) -> DataFrame:
    """One event file, on this machine's disk or by URL (its first file)."""
    location = source.urls[0] if isinstance(source, UrlInput) else str(source)
    fmt = file_format(PurePosixPath(location))
    if fmt == "csv":
        header = head(spark, location) if isinstance(source, UrlInput) else first_line(source)
        return (
            spark.read.option("header", True)
            .option("sep", delimiter_of(header))
            .option("escape", '"')  # a quote inside a quoted field is doubled (RFC 4180)
            .option("inferSchema", False)
            .csv(location)
        )
    if fmt == "jsonl":
        return spark.read.json(location)
    if isinstance(source, UrlInput):
        return read_parquet(spark, location, parquet_schema(spark, location))
    return read_parquet(spark, location, pq.read_schema(source))


def _stripped(frame: DataFrame) -> DataFrame:
    return frame.toDF(*[c.strip() for c in frame.columns])


def read_parquet(spark: SparkSession, location: str, schema: pa.Schema) -> DataFrame:
    """A Parquet file (its `schema` read from its footer), its nanosecond timestamps included:
    pandas and pyarrow write those by default, and Spark refuses them unless told to read
    them as integers, which are turned back into timestamps here (to the microsecond, Spark's
    precision)."""
    import pyarrow as pa
    from pyspark.sql import functions as F

    nanos = {
        field.name: field.type.tz is not None
        for field in schema
        if pa.types.is_timestamp(field.type) and field.type.unit == "ns"
    }
    if nanos:
        spark.conf.set("spark.sql.legacy.parquet.nanosAsLong", "true")
    frame = spark.read.parquet(location)
    for name, aware in nanos.items():
        quoted = "`" + name.replace("`", "``") + "`"
        # In integers (a double holds 1.7e18 to about 256 ns), rounding down.
        instant = F.expr(f"timestamp_micros(({quoted} - pmod({quoted}, 1000)) div 1000)")
        # A time without a zone stays without one (the session's zone is UTC).
        frame = frame.withColumn(name, instant if aware else instant.cast("timestamp_ntz"))
    return frame


def with_position(frame: DataFrame, file_index: int) -> DataFrame:
    """FILE and ROW: ROW increases with the row's place in its file (Spark reads a file's
    splits in order, and numbers each partition's rows after the previous one's)."""
    from pyspark.sql import functions as F

    return frame.withColumn(FILE, F.lit(file_index)).withColumn(
        ROW, F.monotonically_increasing_id()
    )


def with_position_across_files(frame: DataFrame, file_index: int) -> DataFrame:
    """FILE and ROW for several files read as one: ROW increases with the file's path, then
    the row's place in it. Spark packs the files' splits into partitions in an order of its
    own, so the rows of each split (numbered in order within it) are counted first, and each
    split starts after the ones before it in (path, offset) order."""
    from pyspark.sql import functions as F

    spark = frame.sparkSession
    numbered = frame.select(
        "*",
        F.col("_metadata.file_path").alias("_path"),
        F.col("_metadata.file_block_start").alias("_start"),  # the split's offset in its file
        F.monotonically_increasing_id().alias("_id"),  # in order within a split
    )
    sizes = (
        numbered.groupBy("_path", "_start")
        .agg(F.min("_id").alias("_first"), F.count(F.lit(1)).alias("_rows"))
        .collect()
    )
    starts = pd.DataFrame(
        sorted(
            (str(r["_path"]), int(r["_start"]), int(r["_first"]), int(r["_rows"])) for r in sizes
        ),
        columns=["_path", "_start", "_first", "_rows"],
    )
    starts["_before"] = starts["_rows"].cumsum() - starts["_rows"]
    offsets = spark.createDataFrame(starts.drop(columns="_rows"))
    row = F.col("_before") + F.col("_id") - F.col("_first")
    placed = numbered.join(F.broadcast(offsets), ["_path", "_start"])
    return placed.select(*frame.columns, F.lit(file_index).alias(FILE), row.alias(ROW))


def canonical_schema(has_event_id: bool) -> str:
    text = ["user_id", "item_id", "session_id", "type", *LABEL_COLUMNS, "title"]
    fields = ["ts timestamp", *(f"{c} string" for c in text[:4])]
    fields += ["qty double", "price double", "dwell_ms double"]
    fields += [f"{c} string" for c in text[4:]]
    if has_event_id:
        fields.append("event_id string")
    fields += [f"{FAILED} int", "local_hour int", f"{FILE} int", f"{ROW} long"]
    return ", ".join(fields)


def validate_events(
    raw: DataFrame, config: BuildConfig, now: datetime | None = None
) -> SparkEvents:
    """The one-machine `normalize_events`, file by file, then the event ids across files."""
    from pyspark.sql import functions as F

    now = now or datetime.now(UTC)
    mapped = set(config.input.columns) if config.input.columns else set(raw.columns)
    has_event_id = "event_id" in mapped and (
        not config.input.columns or config.input.columns["event_id"] in raw.columns
    )
    columns = canonical_columns(has_event_id)

    def rows_of(parts: Iterable[pd.DataFrame]) -> Iterable[pd.DataFrame]:
        for part in parts:
            rows = canonical_rows(part.drop(columns=[FILE, ROW]), config, now)
            rows[FILE] = part[FILE].to_numpy()
            rows[ROW] = part[ROW].to_numpy()
            yield rows.astype({FAILED: "int32", "local_hour": "int32"})[columns]

    # Cached before the stray bounds are found: they and the drop counts read the same rows,
    # and canonical_rows is the costliest step of validation.
    canonical = raw.mapInPandas(rows_of, canonical_schema(has_event_id)).cache()
    rows = canonical.withColumn("_reason", first_failure(canonical)).cache()
    report = QualityReport()
    counts: dict[int, int] = {int(r): int(n) for r, n in rows.groupBy("_reason").count().collect()}
    per_file = {int(f): int(n) for f, n in rows.groupBy(FILE).count().collect()}
    report.rows_read = sum(counts.values())
    for index, name in enumerate(DROP_REASONS[: len(ROW_CHECKS) + 1]):
        report.dropped[name] = int(counts.get(index, 0))
    kept = rows.filter(F.col("_reason") < 0).drop("_reason", FAILED)
    kept = with_duplicates_marked(kept)
    report.dropped["duplicate"] = kept.filter(F.col("_copy")).count()
    kept = kept.filter(~F.col("_copy")).drop("_copy")
    # Cached where counted: each count, and every step after, would compute it all again.
    kept = with_sessions(kept, config.events.session_gap_minutes).cache()
    report.rows_kept = kept.count()
    rows.unpersist()
    canonical.unpersist()
    if has_event_id:
        sessions = kept
        kept = without_repeated_event_ids(sessions).drop("event_id").cache()
        report.dropped["duplicate_event_id"] = report.rows_kept - kept.count()
        report.rows_kept -= report.dropped["duplicate_event_id"]
        sessions.unpersist()
    return SparkEvents(kept, report, per_file)


def canonical_columns(has_event_id: bool) -> list[str]:
    names = [field.split()[0] for field in canonical_schema(has_event_id).split(", ")]
    return names


def first_failure(rows: DataFrame) -> Column:
    """Each row's drop reason (an index into DROP_REASONS), -1 when it passed every check: the
    row checks in order, the stray check among them."""
    from pyspark.sql import functions as F

    checks = [F.col(FAILED).bitwiseAND(1 << bit) != 0 for bit in range(len(ROW_CHECKS))]
    before, after = checks[:ROW_CHECKS_BEFORE_STRAY], checks[ROW_CHECKS_BEFORE_STRAY:]
    ordered = [*before, stray_rows(rows), *after]
    reason = F.lit(-1)
    for index in reversed(range(len(ordered))):  # the first true condition wins
        reason = F.when(ordered[index], F.lit(index)).otherwise(reason)
    return reason


def stray_rows(rows: DataFrame) -> Column:
    """`export.validate.stray_timestamps` per file: among its dated rows (a time, not ahead of
    the clock), those before its (k+1)-th smallest time or after its (k+1)-th largest by more
    than the span between the two (at least a day), k = max(1, 0.1% of them); none in a file
    of fewer than three."""
    from pyspark.sql import functions as F

    dated = (F.col(FAILED).bitwiseAND(0b1100) == 0) & F.col("ts").isNotNull()
    seconds = F.col("ts").cast("double")
    times = rows.filter(dated).select(FILE, seconds.alias("s"))
    sizes = {int(f): int(n) for f, n in times.groupBy(FILE).count().collect()}
    ranks: dict[int, tuple[int, ...]] = {}
    for file, n in sizes.items():
        if n >= 3:
            k = max(1, int(STRAY_SHARE * n))  # as export.validate.stray_timestamps counts it
            ranks[file] = (k, n - 1 - k)
    stray = F.lit(False)
    for file, (lo, hi) in values_at_ranks(times, FILE, "s", ranks, sizes).items():
        margin = max(hi - lo, DAY_S)
        outside = (seconds < lo - margin) | (seconds > hi + margin)
        stray = stray | ((F.col(FILE) == file) & dated & outside)
    return stray


def with_duplicates_marked(kept: DataFrame) -> DataFrame:
    """`_copy`: an exact copy of an earlier row of the same file (every compared column equal,
    missing values equal to each other), as `export.validate.duplicated_rows` finds them."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    compared = [c for c in kept.columns if c not in (*NOT_COMPARED, FILE, ROW)]
    first = Window.partitionBy(FILE, *compared).orderBy(ROW)
    return kept.withColumn("_copy", F.row_number().over(first) > 1)


def with_sessions(kept: DataFrame, gap_minutes: float) -> DataFrame:
    """`export.validate.sessionize` per file for the rows without a session id: in user, then
    time order (then file order), a new session at each new user or gap over `gap_minutes`,
    numbered across the file from 1, as "<user>#<number>".

    Each user's events are cut into sessions on their own, so the events spread over every
    task; only the users' session counts are put in order, one row per user, to number them
    across the file."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    missing = F.col("session_id").eqNullSafe("")
    given, without = kept.filter(~missing), kept.filter(missing)
    in_time = Window.partitionBy(FILE, "user_id").orderBy("ts", ROW)
    previous_ts = F.lag("ts").over(in_time)
    gap = F.col("ts").cast("double") - previous_ts.cast("double")
    new = F.when(previous_ts.isNull() | (gap > gap_minutes * 60), 1).otherwise(0)
    cut = without.withColumn("_new", new).withColumn(
        "_nth", F.sum("_new").over(in_time.rowsBetween(Window.unboundedPreceding, 0))
    )
    earlier_users = (
        Window.partitionBy(FILE).orderBy("user_id").rowsBetween(Window.unboundedPreceding, -1)
    )
    users = cut.groupBy(FILE, "user_id").agg(F.sum("_new").alias("_sessions"))
    users = users.select(
        FILE,
        "user_id",
        F.coalesce(F.sum("_sessions").over(earlier_users), F.lit(0)).alias("_before"),
    )
    number = (F.col("_before") + F.col("_nth")).cast("string")
    numbered = cut.join(users, [FILE, "user_id"]).withColumn(
        "session_id", F.concat(F.col("user_id"), F.lit("#"), number)
    )
    return given.unionByName(numbered.select(*kept.columns))


def without_repeated_event_ids(kept: DataFrame) -> DataFrame:
    """`export.validate.drop_repeated_event_ids`: across files, a non-empty event id's later
    copies in time order (equal times: file, then row order) are dropped."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    first = Window.partitionBy("event_id").orderBy("ts", FILE, ROW)
    later = (F.col("event_id") != "") & (F.row_number().over(first) > 1)
    return kept.withColumn("_later", later).filter(~F.col("_later")).drop("_later")


def join_logins(events: DataFrame, report: QualityReport) -> DataFrame:
    """`export.validate.join_logins`: a session's anonymous events given to the one customer
    its other events name; a session with anonymous events that names two or more is left
    alone. `report` counts both."""
    from pyspark.sql import functions as F

    anonymous = F.col("user_id") == ""
    named = events.filter(~anonymous).select("session_id", "user_id").distinct()
    customers = named.groupBy("session_id").agg(
        F.count("*").alias("_customers"), F.min("user_id").alias("_customer")
    )
    with_anonymous = events.filter(anonymous).select("session_id").distinct()
    report.logins_ambiguous += (
        customers.join(with_anonymous, "session_id").filter(F.col("_customers") > 1).count()
    )
    one = customers.filter(F.col("_customers") == 1).select("session_id", "_customer")
    joined = events.join(one, "session_id", "left")
    given = anonymous & F.col("_customer").isNotNull()
    report.logins_joined += joined.filter(given).count()
    user = F.when(given, F.col("_customer")).otherwise(F.col("user_id"))
    return joined.withColumn("user_id", user).select(*events.columns)


def epoch_seconds(ts: Column) -> Column:
    """`export.interactions.epoch_seconds` of a timestamp column: nanoseconds as a double,
    divided by 1e9, so that both engines get the same floating-point seconds."""
    from pyspark.sql import functions as F

    return (F.unix_micros(ts) * 1000).cast("double") / 1e9


def in_time_order(events: DataFrame) -> pd.DataFrame:
    """The kept events on the driver, as the one-machine build holds them: in time order (equal
    times: file, then row order), indexed 0..n-1, without FILE and ROW. Sorted on the driver:
    a global sort on Spark shuffles the events into ranges, one task result each, which at
    ten million events outgrew the JVM's heap."""
    frame = as_one_machine_frame(to_pandas(events))
    frame = frame.sort_values(["ts", FILE, ROW], kind="stable", ignore_index=True)
    return frame.drop(columns=[FILE, ROW])


def to_pandas(frame: DataFrame) -> pd.DataFrame:
    """`frame` collected to the driver, through Arrow."""
    with warnings.catch_warnings():
        # PySpark's Arrow conversion still passes pandas the `copy` keyword pandas 3 deprecated.
        warnings.filterwarnings("ignore", message="The copy keyword is deprecated")
        return frame.toPandas()


def as_one_machine_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Validated events from Spark with the types the one-machine build gives them: times in
    nanoseconds, UTC; the local hour as int8; text as Python strings."""
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True).astype("datetime64[ns, UTC]")
    frame["local_hour"] = frame["local_hour"].astype("int8")
    text = [c for c in frame.columns if pd.api.types.is_string_dtype(frame[c])]
    return frame.astype(dict.fromkeys(text, object))  # as the one-machine build holds text
