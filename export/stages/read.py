"""Read and validate: `Sources` (the input files) → `Dataset` (one validated event log
in time order, the item universe, the users' attributes, and the lineage the manifest keeps).

Also the simulated shop's truth file, which the visitors stage measures intent against."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import msgspec
import pandas as pd

from edge.bundle import sha256_file
from edge.bundle.manifest import InputFile, Lineage
from export.config import BuildConfig
from export.errors import CannotTrainError, InputError
from export.interactions import ItemUniverse, attach_item_codes, item_facts, universe_of
from export.io import read_table
from export.non_products import find_non_products, withhold
from export.progress import Say
from export.validate import (
    QualityReport,
    check_drop_share,
    drop_repeated_event_ids,
    join_logins,
    normalize_catalog,
    normalize_events,
    normalize_users,
    sorted_by_time,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


@dataclass(frozen=True)
class Sources:
    """The input files of a build."""

    events: tuple[Path, ...]
    catalog: Path | None = None
    users: Path | None = None
    # What the lineage calls a file made from many (`export.sources`: a directory, a prefix).
    names: dict[Path, str] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)  # eq=False: DataFrames have no truth value to compare
class Dataset:
    """What every later stage reads. `events`: validated, sorted by time, with item codes
    (`attach_item_codes`) and `type` as a categorical."""

    events: pd.DataFrame
    universe: ItemUniverse
    users: dict[str, dict[str, str]] = field(default_factory=dict)  # user id → attributes
    lineage: Lineage = Lineage()  # the manifest's data lineage
    # The same events on Spark (`export.spark`), when the build runs there: the stages that
    # have a Spark form sum their tables from these.
    on_spark: DataFrame | None = None

    def with_events(self, events: pd.DataFrame, on_spark: DataFrame | None = None) -> Dataset:
        """The same items, users and lineage over part of the events (a split's part), on
        this machine, and on Spark when given the same part there."""
        return dataclasses.replace(self, events=events, on_spark=on_spark)

    def before(self, events: pd.DataFrame, cut: pd.Timestamp) -> Dataset:
        """`with_events(events)`, where `events` are those before `cut`: on Spark too, when
        the events are there."""
        if self.on_spark is None:
            return self.with_events(events)
        from pyspark.sql import functions as F

        nanoseconds = F.unix_micros(F.col("ts")) * 1000
        return self.with_events(events, self.on_spark.filter(nanoseconds < cut.value))


def read_inputs(
    sources: Sources, config: BuildConfig, say: Say, spark: SparkSession | None = None
) -> Dataset:
    """Read and validate the inputs; `say` shows the data-quality table. `spark`: read and
    validate the events on Spark (`export.spark`), with the same result, and keep them there
    for the later stages."""
    report = QualityReport()

    def read(path: Path, role: Literal["events", "catalog", "users"]) -> pd.DataFrame:
        """Read one input file and record it (name, sha256, rows) in the lineage."""
        raw = read_table(path)
        name = sources.names.get(path, path.name)
        report.files.append(InputFile(role, name, sha256_file(path), len(raw)))
        return raw

    on_spark = None
    if spark is not None:
        events, on_spark = _events_on_spark(sources, config, report, spark)
    else:
        frames = [normalize_events(read(p, "events"), config, report) for p in sources.events]
        events = sorted_by_time(frames[0] if len(frames) == 1 else pd.concat(frames))
        del frames
        events = drop_repeated_event_ids(events, report)  # across files: a retry lands anywhere
    catalog = (
        None
        if sources.catalog is None
        else normalize_catalog(read(sources.catalog, "catalog"), config)
    )
    users = {} if sources.users is None else normalize_users(read(sources.users, "users"), config)
    if on_spark is None:
        join_logins(events, report)  # across files: a visit's two halves may be in two of them
    non_products = find_non_products(events, catalog, config.catalog)
    report.non_products = non_products.summary()
    say(report.table())
    check_drop_share(report, config)
    if events.empty:
        raise _nothing_kept(report)
    if on_spark is None:
        facts = item_facts(events)
    else:
        from export.spark.tables import item_facts as item_facts_on_spark

        facts = item_facts_on_spark(on_spark)
    universe = withhold(universe_of(facts, catalog), non_products)
    attach_item_codes(events, universe)
    # A handful of labels: as a categorical, each comparison with one (event weights, targets,
    # purchases; dozens per build) compares small integer codes, not ten million strings.
    events["type"] = events["type"].astype("category")
    t_min, t_max = events["ts"].min(), events["ts"].max()
    lineage = msgspec.structs.replace(
        report.lineage(),
        time_range=(t_min.isoformat(), t_max.isoformat()),
        items=len(universe.ids),
        users=int(events.loc[events["user_id"] != "", "user_id"].nunique()),
        users_with_attributes=len(users),
        config=msgspec.to_builtins(config),
    )
    return Dataset(events, universe, users, lineage, on_spark)


def _events_on_spark(
    sources: Sources, config: BuildConfig, report: QualityReport, spark: SparkSession
) -> tuple[pd.DataFrame, DataFrame]:
    """The events read and validated on Spark: kept there (cached), and on the driver in time
    order; `report` gets what validation counted and each file's lineage."""
    from export.spark import validate

    validated = validate.validate_events(validate.read_events(spark, sources.events), config)
    on_spark = validate.join_logins(validated.events, report).cache()
    events = validate.in_time_order(on_spark)
    counted = validated.report
    for index, path in enumerate(sources.events):
        name = sources.names.get(path, path.name)
        rows = validated.rows_per_file.get(index, 0)
        report.files.append(InputFile("events", name, sha256_file(path), rows))
    report.dropped = dict(counted.dropped)
    report.rows_read, report.rows_kept = counted.rows_read, counted.rows_kept
    return events, on_spark


def _nothing_kept(report: QualityReport) -> CannotTrainError:
    if not report.rows_read:
        return CannotTrainError(
            "the event files hold no rows; nothing to learn from. Pass --events files with "
            "at least one event"
        )
    worst = max(report.dropped, key=lambda r: report.dropped[r])
    return CannotTrainError(
        f"none of the {report.rows_read:,} event rows was kept (most were dropped for "
        f"{worst!r}); nothing to learn from. Check the column mapping (--map or "
        "[input.columns]) against the input; a lower events.max_drop_share stops such a "
        "build at validation"
    )


def read_intent_truth(path: str | Path) -> pd.Series:
    """A simulated shop's true purchase probability per session (session_id, true_intent)."""
    frame = read_table(path)
    missing = {"session_id", "true_intent"} - set(frame.columns)
    if missing:
        raise InputError(
            f"{path}: the truth file lacks {sorted(missing)}; it needs session_id and "
            "true_intent (as `edgeperso simulate` writes it)"
        )
    probability = pd.to_numeric(frame["true_intent"], errors="coerce")
    if probability.isna().any() or not probability.between(0.0, 1.0).all():
        raise InputError(f"{path}: true_intent must be a probability between 0 and 1 everywhere")
    return pd.Series(probability.to_numpy(), index=frame["session_id"].astype(str))
