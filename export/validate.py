"""Validation and normalization of the event log and catalog.

Timestamps become UTC, labels are trimmed and lower-cased, ids become strings. Rows that cannot
be used are dropped and counted by reason (first failing check wins); the counts, the input
files' sha256 and the rows kept form the data-quality report stored in the manifest."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy as np
import pandas as pd

from edge.bundle.manifest import FlaggedItems, InputFile, Lineage
from export.config import CANONICAL_EVENT_COLUMNS, CATALOG_COLUMNS, BuildConfig, DateColumns
from export.errors import DataQualityError
from export.non_products import catalog_flags

# Each reason a row is dropped for, in the order the checks run (the first failing one
# counts), with what it means to a reader of the build report.
DROP_REASON_MEANINGS = {
    "missing_item_id": "no item id",
    "missing_user_and_session": "neither a user id nor a session id",
    "bad_timestamp": "a time that does not parse, or outside the years 1678 to 2261",
    "future_timestamp": "a time ahead of the build's clock (input.max_future_skew_minutes)",
    "stray_timestamp": "a time months away from the rest of the log (a mistyped date)",
    "unknown_type": "an event type the config neither weighs nor maps",
    "negative_price": "a price below zero",
    "non_positive_qty": "a purchase or cart with a quantity of zero or less",
    "duplicate": "an exact copy of an earlier row, after normalization",
    "duplicate_event_id": "an event id seen before (a batch sent twice)",
}
DROP_REASONS = tuple(DROP_REASON_MEANINGS)
LABEL_COLUMNS = ("device", "country", "category", "brand")
_TZ_SUFFIX = r"(?:[zZ]|[+-]\d\d:?\d\d)$"


@dataclass
class QualityReport:
    files: list[InputFile] = field(default_factory=list)
    rows_read: int = 0
    rows_kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    # Informational, nothing dropped: anonymous events given to the customer their session
    # logged in as (`join_logins`), sessions left alone because they name two customers or more,
    # and the non-product items (`export.non_products`): how → (count, a few ids).
    logins_joined: int = 0
    logins_ambiguous: int = 0
    non_products: dict[str, tuple[int, list[str]]] = field(default_factory=dict)

    @property
    def drop_share(self) -> float:
        return 1.0 - self.rows_kept / self.rows_read if self.rows_read else 0.0

    def lineage(self) -> Lineage:
        """What the manifest's lineage says of the input and its validation."""
        return Lineage(
            files=list(self.files),
            rows_read=self.rows_read,
            rows_kept=self.rows_kept,
            rows_dropped=self.rows_read - self.rows_kept,
            dropped_by_reason=dict(self.dropped),
            anonymous_events_joined=self.logins_joined,
            non_products={
                how: FlaggedItems(n, list(examples))
                for how, (n, examples) in self.non_products.items()
            },
        )

    def table(self) -> str:
        lines = ["data quality", f"  {'rows read':<28}{self.rows_read:>12,}"]
        for reason in DROP_REASONS:
            count = self.dropped.get(reason, 0)
            if count:
                share = count / self.rows_read if self.rows_read else 0.0
                lines.append(f"  dropped: {reason:<19}{count:>12,}  ({share:.1%})")
        lines.append(f"  {'rows kept':<28}{self.rows_kept:>12,}  ({1 - self.drop_share:.1%})")
        if self.logins_joined or self.logins_ambiguous:
            lines.append(
                f"  {'joined to their login':<28}{self.logins_joined:>12,}  anonymous events "
                f"({self.logins_ambiguous:,} sessions with two customers or more left alone)"
            )
        for how, (n, examples) in self.non_products.items():
            lines.append(
                f"  {'non-products (' + how + ')':<28}{n:>12,}  never recommended: "
                + ", ".join(examples)
                + (", …" if n > len(examples) else "")
            )
        for f in self.files:
            lines.append(f"  {f.role}: {f.name} sha256 {f.sha256[:16]}… ({f.rows:,} rows)")
        return "\n".join(lines)


def per_distinct_value(
    normalize: Callable[[pd.Series], pd.Series],
) -> Callable[[pd.Series], pd.Series]:
    """`normalize`, a value-by-value text cleaning, run once per distinct value of the column
    rather than once per row: a log of 10M events has a few hundred thousand distinct ids, and
    each row then points at one shared str per value instead of a copy of its own."""

    def on_distinct(column: pd.Series) -> pd.Series:
        codes, distinct = pd.factorize(column)  # a missing value has code -1
        cleaned = normalize(pd.Series(distinct, dtype=column.dtype)).to_numpy(dtype=object)
        missing = normalize(pd.Series([None], dtype=object)).iat[0]
        cleaned = np.append(cleaned, np.array([missing], dtype=object))
        return pd.Series(cleaned.take(codes), index=column.index, dtype=object)

    return functools.wraps(normalize)(on_distinct)


@per_distinct_value
def normalize_ids(column: pd.Series) -> pd.Series:
    """Ids as strings: trimmed, '17850.0' (a float-typed integer id) as '17850', missing as ''."""
    text = column.astype("string").str.strip()
    text = text.str.replace(r"^(-?\d+)\.0+$", r"\1", regex=True)
    return text.fillna("").astype(object)


@per_distinct_value
def normalize_labels(column: pd.Series) -> pd.Series:
    return column.astype("string").str.strip().str.lower().fillna("").astype(object)


@per_distinct_value
def normalize_tags(column: pd.Series) -> pd.Series:
    """A catalog's tags ("Sale | Vegan|sale") as labels, distinct and sorted, joined by "|"
    ("sale|vegan"); "" for none."""
    return (
        column.astype("string")
        .fillna("")
        .map(lambda text: "|".join(sorted({t.strip().lower() for t in text.split("|")} - {""})))
        .astype(object)
    )


@per_distinct_value
def normalize_text(column: pd.Series) -> pd.Series:
    return column.astype("string").str.strip().fillna("").astype(object)


# What a nanosecond timestamp holds: seconds either side of 1970, and the whole years inside.
NS_LIMIT_S = 9.2e9
NS_FIRST_YEAR, NS_LAST_YEAR = 1678, 2261


def parse_timestamps(column: pd.Series, timezone: str) -> pd.Series:
    """ISO 8601 (naive ones in `timezone`), epoch seconds or epoch milliseconds → UTC. Values
    that are none of these become NaT."""
    if pd.api.types.is_datetime64_any_dtype(column):
        ts = (
            column
            if column.dt.tz is not None
            else column.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="shift_forward")
        )
        ts = ts.where((ts.dt.year >= NS_FIRST_YEAR) & (ts.dt.year <= NS_LAST_YEAR))
        utc: pd.Series = ts.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
        return utc
    out = pd.Series(pd.NaT, index=column.index, dtype="datetime64[ns, UTC]")
    numeric = pd.to_numeric(column, errors="coerce")
    is_number = numeric.notna()
    if is_number.any():
        values = numeric[is_number]
        millis = values.abs() >= 1e11  # 1e11 s is the year 5138; in ms it is 1973
        # Past what a nanosecond timestamp holds (1677 to 2262), pandas fails instead of
        # giving NaT: such a value is no time of an event, and is dropped as unparseable.
        values = values.where(values.abs() < np.where(millis, NS_LIMIT_S * 1e3, NS_LIMIT_S))
        units: tuple[tuple[pd.Series, Literal["ms", "s"]], ...] = ((millis, "ms"), (~millis, "s"))
        for mask, unit in units:
            if mask.any():
                out.loc[values.index[mask]] = pd.to_datetime(
                    values[mask], unit=unit, utc=True, errors="coerce"
                )
    text = column[~is_number].astype("string").str.strip()
    text = text[text.fillna("") != ""]
    year = pd.to_numeric(text.str.extract(r"^([+-]?\d{4,})", expand=False), errors="coerce")
    text = text[~((year < NS_FIRST_YEAR) | (year > NS_LAST_YEAR)).fillna(False).astype(bool)]
    if not text.empty:
        aware = text.str.contains(_TZ_SUFFIX, regex=True).fillna(False).astype(bool)
        if aware.any():
            out.loc[text.index[aware]] = pd.to_datetime(
                text[aware], format="ISO8601", utc=True, errors="coerce"
            )
        if (~aware).any():
            naive = pd.to_datetime(text[~aware], format="ISO8601", errors="coerce")
            local = naive.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="shift_forward")
            out.loc[text.index[~aware]] = local.dt.tz_convert("UTC")
    return out


def _numeric(frame: pd.DataFrame, name: str) -> pd.Series:
    if name not in frame:
        return pd.Series(np.nan, index=frame.index, dtype="float64")
    return pd.to_numeric(frame[name], errors="coerce").astype("float64")


def _dates_from_parts(raw: pd.DataFrame, parts: DateColumns) -> pd.Series:
    """'YYYY-MM-DD' text from year, month and day columns (invalid dates parse to NaT later)."""
    names = {"year": parts.year, "month": parts.month, "day": parts.day}
    missing = [f"{k}={v!r}" for k, v in names.items() if v not in raw.columns]
    if missing:
        raise DataQualityError(
            f"input.date_columns names columns that are not in the file ({', '.join(missing)}); "
            f"its columns are {list(raw.columns)}"
        )
    numbers = {k: pd.to_numeric(raw[v], errors="coerce") for k, v in names.items()}
    text = (
        numbers["year"].map("{:04.0f}".format, na_action="ignore")
        + "-"
        + numbers["month"].map("{:02.0f}".format, na_action="ignore")
        + "-"
        + numbers["day"].map("{:02.0f}".format, na_action="ignore")
    )
    return text.fillna("")


def _order_as_seconds(
    frame: pd.DataFrame, raw: pd.DataFrame, column: str, timezone: str
) -> pd.Series:
    if column not in raw.columns:
        raise DataQualityError(
            f"input.order_column {column!r} is not in the file; its columns are {list(raw.columns)}"
        )
    if "ts" not in frame:
        raise DataQualityError("input.order_column needs a timestamp: map `ts` or date_columns")
    order = pd.to_numeric(raw[column], errors="coerce")
    ts = parse_timestamps(frame["ts"], timezone)
    # A missing or negative position leaves the time as it is rather than dropping the row.
    return ts + pd.to_timedelta(order.where(order >= 0, 0).fillna(0), unit="s")


def _rename(
    raw: pd.DataFrame, mapping: dict[str, str], allowed: tuple[str, ...], role: str
) -> pd.DataFrame:
    missing = {canon: src for canon, src in mapping.items() if src not in raw.columns}
    if missing:
        raise DataQualityError(
            f"{role}: mapped columns {missing} are not in the file; its columns are "
            f"{list(raw.columns)}"
        )
    renamed = raw.rename(columns={src: canon for canon, src in mapping.items()})
    return renamed[[c for c in allowed if c in renamed.columns]]


def _event_types(frame: pd.DataFrame, raw: pd.DataFrame, config: BuildConfig) -> pd.Series:
    types: pd.Series
    if "type" in frame:
        types = normalize_labels(frame["type"])
        if config.input.type_map:
            types = types.replace({k.strip().lower(): v for k, v in config.input.type_map.items()})
    elif config.input.type is not None:
        types = pd.Series(config.input.type, index=frame.index, dtype=object)
    else:
        raise DataQualityError(
            "events: no `type` column; map one with --map type=COLUMN or set input.type in the "
            "config when every row is the same kind of event"
        )
    for rule in config.input.type_from_prefix:
        if rule.column not in raw.columns:
            raise DataQualityError(
                f"input.type_from_prefix names column {rule.column!r}, which is not in the file"
            )
        starts = raw[rule.column].astype("string").str.strip().str.startswith(rule.prefix)
        types = types.where(~starts.fillna(False).astype(bool), rule.type)
    return types


def sessionize(user_ids: pd.Series, ts: pd.Series, gap_minutes: float) -> pd.Series:
    """Session ids for rows that have none: a user's events split at gaps over `gap_minutes`."""
    all_seconds = ts.astype("datetime64[ns, UTC]").to_numpy(dtype="int64") / 1e9
    order = np.lexsort((all_seconds, user_ids.to_numpy(dtype=object).astype(str)))
    users = user_ids.to_numpy(dtype=object)[order]
    seconds = all_seconds[order]
    new = np.ones(len(order), dtype=bool)
    if len(order) > 1:
        new[1:] = (users[1:] != users[:-1]) | (np.diff(seconds) > gap_minutes * 60)
    number = np.cumsum(new)
    ids = np.empty(len(order), dtype=object)
    ids[order] = [f"{u}#{n}" for u, n in zip(users, number)]
    return pd.Series(ids, index=user_ids.index, dtype=object)


# The checks one row can fail on its own, in the order they count (a row is counted under its
# first failure). `stray_timestamp`, which needs the whole file, counts between the fourth and
# the fifth of these: ROW_CHECKS_BEFORE_STRAY.
ROW_CHECKS = (
    "missing_item_id",
    "missing_user_and_session",
    "bad_timestamp",
    "future_timestamp",
    "unknown_type",
    "negative_price",
    "non_positive_qty",
)
ROW_CHECKS_BEFORE_STRAY = 4
FAILED = "failed"  # canonical_rows' column: a bit per failed ROW_CHECK (bit i: ROW_CHECKS[i])
# The columns two rows must share to be copies of each other (canonical_rows' own bookkeeping,
# the local hour that follows from the time, and the failures, do not count).
NOT_COMPARED = (FAILED, "local_hour")


def canonical_rows(raw: pd.DataFrame, config: BuildConfig, now: datetime) -> pd.DataFrame:
    """Each row of an event log on its own: mapped to the canonical columns, parsed, its local
    hour, and which row checks it fails (FAILED). Nothing here looks at another row, so a
    distributed build runs it a partition at a time and gets the same rows (export.spark)."""
    cfg = config.input
    frame = (
        _rename(raw, cfg.columns, CANONICAL_EVENT_COLUMNS, "events")
        if cfg.columns
        else raw[[c for c in CANONICAL_EVENT_COLUMNS if c in raw.columns]]
    )
    if cfg.date_columns is not None:
        frame = frame.assign(ts=_dates_from_parts(raw, cfg.date_columns))
    if cfg.order_column is not None:
        frame = frame.assign(ts=_order_as_seconds(frame, raw, cfg.order_column, cfg.timezone))
    if "item_id" not in frame or "ts" not in frame:
        raise DataQualityError(
            f"events need `ts` and `item_id` columns; the file has {list(raw.columns)}. Map "
            "foreign names with --map ts=COLUMN item_id=COLUMN or [input.columns] in the config"
        )
    if "user_id" not in frame and "session_id" not in frame:
        raise DataQualityError(
            "events need `user_id` or `session_id`; map one with --map user_id=COLUMN"
        )
    out = pd.DataFrame(index=frame.index)
    out["ts"] = parse_timestamps(frame["ts"], cfg.timezone)
    for name in ("user_id", "item_id", "session_id"):
        out[name] = normalize_ids(frame[name]) if name in frame else ""
    out["type"] = _event_types(frame, raw, config)
    out["qty"] = _numeric(frame, "qty").fillna(1.0)
    out["price"] = _numeric(frame, "price")
    out["dwell_ms"] = _numeric(frame, "dwell_ms")
    for name in LABEL_COLUMNS:
        out[name] = normalize_labels(frame[name]) if name in frame else ""
    out["title"] = normalize_text(frame["title"]) if "title" in frame else ""
    if "event_id" in frame:  # only then: a column of "" would cost 80 MB at 10M events
        out["event_id"] = normalize_ids(frame["event_id"])

    horizon = pd.Timestamp(now + timedelta(minutes=cfg.max_future_skew_minutes))
    checks = (
        out["item_id"] == "",
        (out["user_id"] == "") & (out["session_id"] == ""),
        out["ts"].isna(),
        out["ts"] > horizon,
        ~out["type"].isin(config.event_types),
        out["price"] < 0,
        (out["qty"] <= 0) & out["type"].isin(["purchase", "add_to_cart"]),
    )
    failed = np.zeros(len(out), dtype=np.uint8)
    for bit, bad in enumerate(checks):
        failed |= bad.to_numpy(dtype=bool, na_value=False).astype(np.uint8) << bit
    out[FAILED] = failed
    # The file's local hour where it has one in range, else the hour of the time in the shop's
    # timezone (0 for a row without a time, which is dropped).
    hours = _numeric(frame, "local_hour")
    derived = out["ts"].dt.tz_convert(cfg.timezone).dt.hour.fillna(0)
    out["local_hour"] = hours.where(hours.between(0, 23), derived).astype("int8")
    return out


def first_failures(failed: np.ndarray, stray: np.ndarray) -> np.ndarray:
    """Each row's drop reason as an index into DROP_REASONS (its first failed check, the stray
    check in its place), or -1 for a row every check passed."""
    order = [
        *(failed >> bit & 1 for bit in range(ROW_CHECKS_BEFORE_STRAY)),
        stray.astype(np.uint8),
        *(failed >> bit & 1 for bit in range(ROW_CHECKS_BEFORE_STRAY, len(ROW_CHECKS))),
    ]
    reason = np.full(len(failed), -1, dtype=np.int8)
    for index, bad in enumerate(order):
        reason[(reason < 0) & (bad == 1)] = index
    return reason


def normalize_events(
    raw: pd.DataFrame,
    config: BuildConfig,
    report: QualityReport,
    now: datetime | None = None,
) -> pd.DataFrame:
    """Map, parse and check the event log; returns the kept rows in canonical columns, sorted
    by time, and fills `report`."""
    rows = canonical_rows(raw, config, now or datetime.now(UTC))
    n = len(rows)
    failed = rows[FAILED].to_numpy()
    # Stray among the rows with a time, not ahead of the clock (bits 2 and 3: bad, future).
    dated = (failed & 0b1100) == 0
    stray = stray_timestamps(rows["ts"].where(dated)).to_numpy(dtype=bool, na_value=False)
    reason = first_failures(failed, stray)
    for index, name in enumerate(DROP_REASONS[: len(ROW_CHECKS) + 1]):
        report.dropped[name] = report.dropped.get(name, 0) + int((reason == index).sum())
    out = rows.drop(columns=FAILED)
    if (reason >= 0).any():  # a mask copies every column, a gigabyte at 10M events
        out = out[reason < 0]
    duplicate = duplicated_rows(out.drop(columns="local_hour"))
    report.dropped["duplicate"] = report.dropped.get("duplicate", 0) + int(duplicate.sum())
    if duplicate.any():
        out = out[~duplicate]
    missing_session = out["session_id"] == ""
    if missing_session.any():
        out.loc[missing_session, "session_id"] = sessionize(
            out.loc[missing_session, "user_id"],
            out.loc[missing_session, "ts"],
            config.events.session_gap_minutes,
        )
    report.rows_read += n
    report.rows_kept += len(out)
    return sorted_by_time(out)


STRAY_SHARE = 0.001  # at most this share of the events, at each end of the log, can be stray


def stray_timestamps(ts: pd.Series) -> pd.Series:
    """Events far from where the rest of the log is: before its 0.1% quantile or after its
    99.9% quantile (the second and the second-to-last event of a log under 2,000 events) by
    more than the whole time between those two (at least a day). One
    mistyped date months away from a week of events would otherwise stretch every window that
    is a share of the log's span (the ranker's label window, the evaluation's holdout) over
    nearly all of it, and move the time every recency is counted from. At most 0.2% of a log is
    ever stray; a shop whose events thin out gradually towards its start loses none."""
    valid = ts.dropna()
    n = len(valid)
    if n < 3:
        return pd.Series(False, index=ts.index)
    k = max(1, int(STRAY_SHARE * n))  # one event at each end of a small log may be stray
    order = np.partition(valid.dt.tz_convert(None).to_numpy(), [k, n - 1 - k])
    lo = pd.Timestamp(order[k]).tz_localize("UTC")
    hi = pd.Timestamp(order[n - 1 - k]).tz_localize("UTC")
    margin = max(hi - lo, pd.Timedelta(days=1))
    return (ts < lo - margin) | (ts > hi + margin)


def drop_repeated_event_ids(events: pd.DataFrame, report: QualityReport) -> pd.DataFrame:
    """`events` (in time order) without the later copies of an event id that repeats (a batch
    a client sent again after a timeout, a segment shipped twice), counted in the report; the
    column is dropped after. Events without an id are all kept."""
    if "event_id" not in events:
        return events
    ids = events["event_id"].fillna("")
    repeated = ((ids != "") & ids.duplicated(keep="first")).to_numpy()
    count = int(repeated.sum())
    report.dropped["duplicate_event_id"] = report.dropped.get("duplicate_event_id", 0) + count
    report.rows_kept -= count
    if count:
        events = events[~repeated].reset_index(drop=True)
    return events.drop(columns="event_id")


def sorted_by_time(events: pd.DataFrame) -> pd.DataFrame:
    """Rows in time order (equal times keep their order), indexed 0..n-1; a log that is already
    in order, as most are, is not copied."""
    if not events["ts"].is_monotonic_increasing:
        events = events.sort_values("ts", kind="stable")
    return events.reset_index(drop=True)


def duplicated_rows(frame: pd.DataFrame) -> np.ndarray:
    """`frame.duplicated(keep="first")`, without its integer codes for every column of every
    row at once: rows are hashed first, and only rows whose hash repeats are compared."""
    hashes = pd.util.hash_pandas_object(frame, index=False)
    candidates = hashes.duplicated(keep=False).to_numpy()
    duplicate = np.zeros(len(frame), dtype=bool)
    if candidates.any():
        duplicate[candidates] = frame[candidates].duplicated(keep="first").to_numpy()
    return duplicate


def join_logins(events: pd.DataFrame, report: QualityReport) -> None:
    """In place: a session's anonymous events given to the one customer its other events
    name, so a visitor who logs in mid-visit keeps what they did before. A session that names
    two customers or more is left alone (counted in `report.logins_ambiguous`)."""
    users = events["user_id"].to_numpy(dtype=object)
    anonymous = users == ""
    if anonymous.all() or not anonymous.any():
        return
    sessions = events["session_id"].to_numpy(dtype=object)
    # Only sessions with anonymous events are looked at: in most logs, a handful.
    mixed = ~anonymous & pd.Series(sessions).isin(pd.unique(sessions[anonymous])).to_numpy()
    if not mixed.any():
        return
    pairs = pd.DataFrame({"session": sessions[mixed], "user": users[mixed]}).drop_duplicates()
    customers = pairs.groupby("session")["user"].agg(["first", "size"])
    report.logins_ambiguous += int((customers["size"] > 1).sum())
    one = customers.loc[customers["size"] == 1, "first"]
    rows = np.flatnonzero(anonymous)
    found = pd.Series(sessions[rows]).map(one).to_numpy(dtype=object)
    joined = pd.notna(found)
    if joined.any():
        users = users.copy()
        users[rows[joined]] = found[joined]
        events["user_id"] = users
        report.logins_joined += int(joined.sum())


def check_drop_share(report: QualityReport, config: BuildConfig) -> None:
    limit = config.events.max_drop_share
    if report.drop_share > limit:
        worst = max(report.dropped, key=lambda r: report.dropped[r])
        raise DataQualityError(
            f"{report.drop_share:.1%} of the event rows were dropped (most for {worst!r}: "
            f"{report.dropped[worst]:,}), over the limit of {limit:.0%}. Check the column "
            "mapping (--map) and the input, or raise events.max_drop_share in the config.\n"
            + report.table()
        )


def normalize_users(raw: pd.DataFrame, config: BuildConfig) -> dict[str, dict[str, str]]:
    """user id → attributes (every other column, as lower-cased labels; empty ones left out)."""
    column = config.input.users_columns.get("user_id", "user_id")
    if column not in raw.columns:
        raise DataQualityError(
            f"users file needs a `{column}` column; it has {list(raw.columns)}. Map it with "
            "[input.users_columns] in the config"
        )
    ids = normalize_ids(raw[column])
    names = {c: canon for canon, c in config.input.users_columns.items() if canon != "user_id"}
    attributes = {
        names.get(c, str(c).strip().lower()): normalize_labels(raw[c])
        for c in raw.columns
        if c != column
    }
    # Plain lists: a pandas scalar lookup per user and attribute took 10 s at 200,000 users.
    values = {name: labels.tolist() for name, labels in attributes.items()}
    out: dict[str, dict[str, str]] = {}
    for i, user in enumerate(ids.tolist()):
        if user:
            out[user] = {name: column[i] for name, column in values.items() if column[i]}
    return out


def normalize_catalog(raw: pd.DataFrame, config: BuildConfig) -> pd.DataFrame:
    frame = (
        _rename(raw, config.input.catalog_columns, CATALOG_COLUMNS, "catalog")
        if config.input.catalog_columns
        else raw[[c for c in CATALOG_COLUMNS if c in raw.columns]]
    )
    if "item_id" not in frame:
        raise DataQualityError(
            f"catalog needs an `item_id` column; it has {list(raw.columns)}. Map it with "
            "[input.catalog_columns] in the config"
        )
    out = pd.DataFrame({"item_id": normalize_ids(frame["item_id"])})
    out["title"] = (
        frame["title"].astype("string").fillna("").astype(object) if "title" in frame else ""
    )
    for name in ("category", "brand"):
        out[name] = normalize_labels(frame[name]) if name in frame else ""
    out["price"] = _numeric(frame, "price").where(lambda p: p >= 0)
    if "in_stock" in frame:
        text = frame["in_stock"].astype("string").str.strip().str.lower()
        out["in_stock"] = ~text.isin(["0", "false", "no", "n", "f"])
    else:
        out["in_stock"] = True
    if "non_product" in frame:  # absent: no item is flagged by the catalog
        out["non_product"] = catalog_flags(frame["non_product"])
    if "tags" in frame:
        out["tags"] = normalize_tags(frame["tags"])
    out = out[out["item_id"] != ""]
    return out.drop_duplicates("item_id", keep="last").reset_index(drop=True)
