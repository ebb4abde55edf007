"""The Spark engine reads and validates an event log as the one-machine build does: the same
drop counts by reason and the same kept events, row for row (export/spark/validate.py against
export/validate.py), on the shipped sample, on a simulated log with every kind of fault split over
a CSV and a JSON-lines file, on Parquet with nanosecond times, and with logins joined."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from export.config import BuildConfig, load_config
from export.io import read_table
from export.validate import (
    QualityReport,
    drop_repeated_event_ids,
    join_logins,
    normalize_events,
)
from tests.conftest import SAMPLE, UCI_CONFIG
from tests.export.spark.conftest import NOW

pytestmark = [
    pytest.mark.slow,  # a Spark session (a JVM) on local[2]
    # py4j, PySpark's bridge to the JVM, leaves its sockets to the garbage collector.
    pytest.mark.filterwarnings("ignore:unclosed <socket:ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


def one_machine(paths: list[Path], config: BuildConfig) -> tuple[pd.DataFrame, QualityReport]:
    """What export.stages.read does with the files: each validated, then joined in time order
    and the repeated event ids dropped across them."""
    report = QualityReport()
    frames = [normalize_events(read_table(p), config, report, NOW) for p in paths]
    events = pd.concat(frames).sort_values("ts", kind="stable").reset_index(drop=True)
    return drop_repeated_event_ids(events, report), report


def on_spark(spark, paths: list[Path], config: BuildConfig) -> tuple[pd.DataFrame, QualityReport]:
    from export.spark.validate import in_time_order, read_events, validate_events

    validated = validate_events(read_events(spark, paths), config, NOW)
    return in_time_order(validated.events), validated.report


def assert_same(spark, paths: list[Path], config: BuildConfig) -> QualityReport:
    expected, expected_report = one_machine(paths, config)
    got, report = on_spark(spark, paths, config)
    assert report.dropped == expected_report.dropped
    assert (report.rows_read, report.rows_kept) == (
        expected_report.rows_read,
        expected_report.rows_kept,
    )
    assert list(got.columns) == list(expected.columns)
    # Text is text either way (pandas keeps a column of "" as its string type, Spark as object).
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert got["ts"].dtype == expected["ts"].dtype
    return report


def test_the_shipped_sample_validates_the_same_on_spark(spark):
    report = assert_same(spark, [SAMPLE], load_config(UCI_CONFIG))
    assert report.dropped["duplicate"] > 1000 and report.dropped["non_positive_qty"] > 200


def faulty_log(shop, tmp_path: Path) -> list[Path]:
    """Six thousand simulated events with every fault a row can have, in two files: a CSV
    without session ids (sessions are cut from the users' gaps) and a JSON-lines file with event
    ids, some repeated within it and some across the two files."""
    rng = np.random.default_rng(0)
    events = shop.events.head(6000).copy()
    events["ts"] = events["ts"].map(lambda t: t.isoformat())
    events["qty"] = events["qty"].astype(object)
    events["price"] = events["price"].astype(object)
    rows = rng.choice(len(events), size=40, replace=False)
    faults = {
        "item_id": (rows[0:5], ""),
        "ts": (rows[5:10], "not a time"),
        "type": (rows[10:14], "teleport"),
        "price": (rows[14:17], -3.0),
    }
    for column, (where, value) in faults.items():
        events.iloc[where, events.columns.get_loc(column)] = value
    nobody = rows[17:22]
    events.iloc[nobody, events.columns.get_loc("user_id")] = ""
    events.iloc[nobody, events.columns.get_loc("session_id")] = ""
    events.iloc[rows[22:25], events.columns.get_loc("ts")] = "2031-01-01T00:00:00+00:00"  # future
    events.iloc[rows[25:27], events.columns.get_loc("ts")] = "2019-03-01T00:00:00+00:00"  # stray
    buys = rows[27:30]
    events.iloc[buys, events.columns.get_loc("type")] = "purchase"
    events.iloc[buys, events.columns.get_loc("qty")] = 0
    first, second = events.iloc[:3000], events.iloc[3000:].copy()
    first = pd.concat([first, first.sample(10, random_state=0)])  # exact copies
    csv = tmp_path / "first.csv"
    first.drop(columns="session_id").to_csv(csv, index=False)
    second["event_id"] = [f"e{i}" for i in range(len(second))]
    second.iloc[100:130, second.columns.get_loc("event_id")] = "e7"  # a batch sent again
    jsonl = tmp_path / "second.jsonl"
    second.to_json(jsonl, orient="records", lines=True)
    return [csv, jsonl]


def test_a_faulty_log_in_two_files_validates_the_same_on_spark(spark, shop, tmp_path):
    report = assert_same(spark, faulty_log(shop, tmp_path), BuildConfig())
    for reason in ("missing_item_id", "missing_user_and_session", "bad_timestamp",
                   "future_timestamp", "stray_timestamp", "unknown_type", "negative_price",
                   "non_positive_qty", "duplicate", "duplicate_event_id"):  # fmt: skip
        assert report.dropped[reason] > 0, reason


def test_a_big_file_finds_the_same_stray_timestamps_on_spark(spark, shop, tmp_path):
    """A file big enough that its stray bounds are found between approximate quantiles
    (export/spark/order_statistics.py), not by sorting it in one task."""
    from export.spark.order_statistics import BRACKETED_FROM

    events = shop.events.copy()
    assert len(events) > 2 * BRACKETED_FROM
    events["ts"] = pd.to_datetime(events["ts"], utc=True)
    events.loc[events.index[::4000], "ts"] = pd.Timestamp("2019-03-01", tz="UTC")
    path = tmp_path / "events.parquet"
    events.to_parquet(path)
    report = assert_same(spark, [path], BuildConfig())
    assert report.dropped["stray_timestamp"] == len(events.index[::4000])


@pytest.mark.parametrize("zone", ["UTC", None])
def test_parquet_with_nanosecond_times_validates_the_same_on_spark(spark, shop, tmp_path, zone):
    """pandas writes Parquet times in nanoseconds, which Spark reads only as integers; with a
    time zone and without one (a time without one is read in input.timezone)."""
    events = shop.events.head(3000).copy()
    events["ts"] = pd.to_datetime(events["ts"], utc=True).dt.tz_convert(zone)
    if zone is None:
        events["ts"] = events["ts"].dt.tz_localize(None)
    path = tmp_path / "events.parquet"
    events.to_parquet(path)
    assert str(pd.read_parquet(path)["ts"].dtype).startswith("datetime64[ns")
    assert_same(spark, [path], BuildConfig())


def test_logins_are_joined_the_same_on_spark(spark, shop, tmp_path):
    """A session's anonymous events go to the one customer it names; one that names two is
    left alone, and counted."""
    from export.spark import validate

    events = shop.events.head(4000).copy()
    events.loc[events.index % 5 == 0, "user_id"] = ""
    sessions = events["session_id"].drop_duplicates().head(6).tolist()
    for n, session in enumerate(sessions[:3]):  # a second customer in three of them
        rows = events.index[events["session_id"] == session]
        events.loc[rows[-1], "user_id"] = f"someone-else-{n}"
    path = tmp_path / "events.csv"
    events.to_csv(path, index=False)
    config = BuildConfig()

    expected, report = one_machine([path], config)
    join_logins(expected, report)
    validated = validate.validate_events(validate.read_events(spark, [path]), config, NOW)
    on_spark = QualityReport()
    got = validate.in_time_order(validate.join_logins(validated.events, on_spark))
    assert (on_spark.logins_joined, on_spark.logins_ambiguous) == (
        report.logins_joined,
        report.logins_ambiguous,
    )
    assert report.logins_joined > 100 and report.logins_ambiguous >= 1
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
