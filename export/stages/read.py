"""Read and validate: `Sources` (the input files) → `Dataset` (one validated event log
in time order, the item universe, the users' attributes, and the lineage the manifest keeps).

Also the simulated shop's truth file, which the visitors stage measures intent against."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import msgspec
import numpy as np
import pandas as pd
import scipy.sparse as sp

from edge.bundle import sha256_file
from edge.bundle.manifest import InputFile, Lineage
from export import cases
from export.config import BuildConfig
from export.errors import CannotTrainError, InputError
from export.interactions import (
    ItemUniverse,
    attach_item_codes,
    item_facts,
    universe_of,
    user_item_matrix,
)
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

    from export.spark.files import UrlInput


@dataclass(frozen=True)
class Sources:
    """The input files of a build."""

    events: tuple[Path | UrlInput, ...]  # URLs for a build on Spark only
    catalog: Path | None = None
    users: Path | None = None
    # What the lineage calls a file made from many (`export.sources`: a directory, a prefix).
    names: dict[Path, str] = field(default_factory=dict)

    def local(self) -> list[Path]:
        """The event files, when none is a URL (only a build on Spark is given those)."""
        local = [p for p in self.events if isinstance(p, Path)]
        assert len(local) == len(self.events), "a URL among events read on this machine"
        return local


@dataclass(frozen=True)
class LogSummary:
    """What the build asks of a whole event log without holding it: one pass with pandas, or
    one Spark job."""

    events: int
    first: pd.Timestamp | None  # None: no events
    last: pd.Timestamp | None
    sessions: int
    customers: int  # distinct known user ids
    types: frozenset[str]  # the event types present

    @property
    def days(self) -> float:
        """The log's span in days (0 without events)."""
        if self.first is None or self.last is None:
            return 0.0
        return float((self.last - self.first) / pd.Timedelta(days=1))


def summarize(events: pd.DataFrame) -> LogSummary:
    known = events.loc[events["user_id"] != "", "user_id"]
    present = events["type"].unique()  # a categorical's unused categories are not present
    empty = events.empty
    return LogSummary(
        len(events),
        None if empty else events["ts"].min(),
        None if empty else events["ts"].max(),
        int(events["session_id"].nunique()),
        int(known.nunique()),
        frozenset(str(t) for t in present),
    )


@dataclass(frozen=True, eq=False)  # eq=False: DataFrames have no truth value to compare
class Dataset:
    """What every later stage reads: the validated events, the item universe, the users'
    attributes, and the lineage the manifest keeps.

    The events are in time order, with item codes (`attach_item_codes`) and `type` as a
    categorical. On one machine they are `held`. On Spark (`on_spark`) they stay there: the
    stages sum their tables from them there, every split cuts them there (`before`, `since`,
    `export.spark.holdout`), and the cases ask a part what `export.cases.Window` asks. The
    events reach this machine only when `events` is asked for, which no stage of a build
    does."""

    held: pd.DataFrame | None
    universe: ItemUniverse
    users: dict[str, dict[str, str]] = field(default_factory=dict)  # user id → attributes
    lineage: Lineage = Lineage()  # the manifest's data lineage
    on_spark: DataFrame | None = None

    @cached_property
    def events(self) -> pd.DataFrame:
        """The events on this machine: collected from Spark the first time they are asked."""
        if self.held is not None:
            return self.held
        from export.spark.dataset import collected

        return collected(self._spark(), self.universe)

    @cached_property
    def summary(self) -> LogSummary:
        if self.held is not None:
            return summarize(self.held)
        from export.spark.dataset import summarize as on_spark

        return on_spark(self._spark())

    def __len__(self) -> int:
        return self.summary.events

    def with_events(self, events: pd.DataFrame) -> Dataset:
        """The same items, users and lineage over part of the events (a split's part), on
        this machine."""
        return dataclasses.replace(self, held=events, on_spark=None)

    def on(self, events: DataFrame) -> Dataset:
        """The same items, users and lineage over part of the events, on Spark."""
        return dataclasses.replace(self, held=None, on_spark=events)

    def before(self, cut: pd.Timestamp) -> Dataset:
        """The events before `cut`: on Spark too when they are there."""
        on_spark = None
        if self.on_spark is not None:
            from export.spark.dataset import before

            on_spark = before(self.on_spark, cut)
        held = None if self.held is None else _split_at(self.held, cut)[0]
        return dataclasses.replace(self, held=held, on_spark=on_spark)

    def since(self, cut: pd.Timestamp) -> Dataset:
        """The events from `cut` on: on Spark too when they are there."""
        on_spark = None
        if self.on_spark is not None:
            from export.spark.dataset import since

            on_spark = since(self.on_spark, cut)
        held = None if self.held is None else _split_at(self.held, cut)[1]
        return dataclasses.replace(self, held=held, on_spark=on_spark)

    @cached_property
    def customers(self) -> pd.Index:
        """The known customers with an event here (one row per customer, as profiles are)."""
        if self.held is not None:
            ids = pd.unique(self.held["user_id"])  # a hash table, not a set of Python strings
            known: pd.Index = pd.Index(ids[ids != ""], dtype=object)
            return known
        from export.spark.dataset import customers

        return customers(self._spark())

    def known_customers(self, user_ids: pd.Series) -> np.ndarray:
        """Whether each of `user_ids` is a known customer with an event here."""
        known: np.ndarray = user_ids.isin(self.customers).to_numpy()
        return known

    def customers_with_items(self, types: list[str], at_least: int) -> int:
        """The known customers with events of `types` on at least `at_least` distinct items."""
        if self.held is not None:
            events = self.held
            known = events[(events["user_id"] != "") & events["type"].isin(types)]
            distinct = known.drop_duplicates(["user_id", "item_id"]).groupby("user_id").size()
            return int((distinct >= at_least).sum())
        from export.spark.dataset import customers_with_items

        return customers_with_items(self._spark(), types, at_least)

    def user_item_matrix(self, weights: dict[str, float]) -> tuple[sp.csr_matrix, pd.Index]:
        """`export.interactions.user_item_matrix` of these events: summed on Spark when they
        are only there."""
        if self.held is not None:
            return user_item_matrix(self.held, self.universe, weights)
        from export.spark.dataset import user_item_matrix as on_spark

        return on_spark(self._spark(), self.universe, weights)

    def items_seen(self) -> pd.Index:
        """The ids of the items with an event here."""
        if self.held is not None:
            return pd.Index(pd.unique(self.held["item_id"]))
        from export.spark.dataset import items_seen

        return items_seen(self._spark())

    def events_per_visitor(self) -> pd.Series:
        """The events of each user id ("" for the anonymous ones together), in no set order."""
        if self.held is not None:
            return self.held["user_id"].value_counts(sort=False)
        from export.spark.dataset import events_per_visitor

        return events_per_visitor(self._spark())

    def anonymous_sessions(self) -> int:
        """The sessions with an anonymous event."""
        if self.held is not None:
            return int(self.held.loc[self.held["user_id"] == "", "session_id"].nunique())
        from export.spark.dataset import anonymous_sessions

        return anonymous_sessions(self._spark())

    def sessions_with_targets(self, target_types: list[str]) -> int:
        """The sessions of two events or more with an event of `target_types`."""
        if self.held is not None:
            events = self.held
            hits = events[events["type"].isin(target_types)]
            sizes = events.groupby("session_id", sort=False).size()
            return int(hits.loc[hits["session_id"].map(sizes) >= 2, "session_id"].nunique())
        from export.spark.dataset import sessions_with_targets

        return sessions_with_targets(self._spark(), target_types)

    # What the cases ask of a window (`export.cases.Window`).

    def customer_targets(self, target_types: list[str]) -> pd.DataFrame:
        if self.held is not None:
            return cases.customer_targets(self.held, target_types)
        from export.spark.dataset import customer_targets

        return customer_targets(self._spark(), target_types)

    def sessions_of_two_or_more(self) -> np.ndarray:
        if self.held is not None:
            return cases.sessions_of_two_or_more(self.held)
        from export.spark.dataset import sessions_of_two_or_more

        return sessions_of_two_or_more(self._spark())

    def events_of_sessions(self, session_ids: np.ndarray) -> pd.DataFrame:
        if self.held is not None:
            return cases.events_of_sessions(self.held, session_ids)
        from export.spark.dataset import events_of_sessions

        return events_of_sessions(self._spark(), session_ids, self.universe)

    def _spark(self) -> DataFrame:
        if self.on_spark is None:
            raise ValueError("a Dataset holds its events here, on Spark, or both")
        return self.on_spark


def _split_at(events: pd.DataFrame, cut: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The events before `cut`, and those from it on."""
    if events["ts"].is_monotonic_increasing:
        # Sorted by time, as read_inputs leaves it: two slices that share the events' memory,
        # where masks copied every column (a gigabyte at 10M events).
        at = int(events["ts"].searchsorted(cut, side="left"))
        return events.iloc[:at], events.iloc[at:]
    return events[events["ts"] < cut], events[events["ts"] >= cut]


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

    on_spark, events = None, None
    if spark is not None:
        on_spark = _events_on_spark(sources, config, report, spark)
    else:
        frames = [normalize_events(read(p, "events"), config, report) for p in sources.local()]
        events = sorted_by_time(frames[0] if len(frames) == 1 else pd.concat(frames))
        del frames
        events = drop_repeated_event_ids(events, report)  # across files: a retry lands anywhere
        join_logins(events, report)  # across files: a visit's two halves may be in two of them
    catalog = (
        None
        if sources.catalog is None
        else normalize_catalog(read(sources.catalog, "catalog"), config)
    )
    users = {} if sources.users is None else normalize_users(read(sources.users, "users"), config)
    if on_spark is None:
        assert events is not None
        facts = item_facts(events)
        summary = summarize(events)
    else:
        from export.spark.dataset import summarize as summarize_on_spark
        from export.spark.tables import item_facts as item_facts_on_spark

        facts, summary = item_facts_on_spark(on_spark), summarize_on_spark(on_spark)
    non_products = find_non_products(facts, summary.sessions, catalog, config.catalog)
    report.non_products = non_products.summary()
    say(report.table())
    check_drop_share(report, config)
    if not summary.events:
        raise _nothing_kept(report)
    universe = withhold(universe_of(facts, catalog), non_products)
    if events is not None:
        attach_item_codes(events, universe)
        # A handful of labels: as a categorical, each comparison with one (event weights,
        # targets, purchases; dozens per build) compares small integer codes, not ten million
        # strings.
        events["type"] = events["type"].astype("category")
    assert summary.first is not None and summary.last is not None  # there are events
    lineage = msgspec.structs.replace(
        report.lineage(),
        time_range=(summary.first.isoformat(), summary.last.isoformat()),
        items=len(universe.ids),
        users=summary.customers,
        users_with_attributes=len(users),
        config=msgspec.to_builtins(config),
    )
    data = Dataset(events, universe, users, lineage, on_spark)
    data.__dict__["summary"] = summary  # known already: the cached property need not count again
    return data


def _events_on_spark(
    sources: Sources, config: BuildConfig, report: QualityReport, spark: SparkSession
) -> DataFrame:
    """The events read and validated on Spark, kept there (cached); `report` gets what
    validation counted and each file's lineage."""
    from export.spark import validate
    from export.spark.files import input_sha256s

    validated = validate.validate_events(validate.read_events(spark, sources.events), config)
    on_spark = validate.join_logins(validated.events, report).cache()
    counted = validated.report
    hashes = input_sha256s(spark, sources.events)
    for index, source in enumerate(sources.events):
        if isinstance(source, Path):
            name, sha256 = sources.names.get(source, source.name), sha256_file(source)
        else:
            name, sha256 = source.name, hashes[source]
        rows = validated.rows_per_file.get(index, 0)
        report.files.append(InputFile("events", name, sha256, rows))
    report.dropped = dict(counted.dropped)
    report.rows_read, report.rows_kept = counted.rows_read, counted.rows_kept
    return on_spark


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
