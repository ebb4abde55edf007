from datetime import UTC, datetime

import msgspec
import numpy as np
import pandas as pd
import pytest

from export.config import BuildConfig, load_config
from export.validate import (
    DataQualityError,
    QualityReport,
    check_drop_share,
    duplicated_rows,
    normalize_catalog,
    normalize_events,
    normalize_ids,
    normalize_labels,
    parse_timestamps,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def events(**columns):
    return pd.DataFrame(columns)


def test_timestamps_iso_naive_aware_and_epochs_become_utc():
    raw = pd.Series(
        [
            "2026-01-02T03:04:05",
            "2026-01-02T03:04:05+02:00",
            "2026-01-02 03:04:05Z",
            "1767323045",
            "1767323045000",
            "not a time",
            "",
        ],
        dtype=object,
    )
    ts = parse_timestamps(raw, "UTC")
    assert str(ts.iloc[0]) == "2026-01-02 03:04:05+00:00"
    assert str(ts.iloc[1]) == "2026-01-02 01:04:05+00:00"
    assert str(ts.iloc[2]) == "2026-01-02 03:04:05+00:00"
    assert ts.iloc[3] == ts.iloc[4] == pd.Timestamp(1767323045, unit="s", tz="UTC")
    assert ts.iloc[5:].isna().all()


def test_naive_timestamps_are_read_in_the_configured_zone():
    ts = parse_timestamps(pd.Series(["2026-07-01 12:00:00"]), "Europe/London")
    assert str(ts.iloc[0]) == "2026-07-01 11:00:00+00:00"


def test_each_bad_row_is_dropped_and_counted_by_reason():
    raw = events(
        ts=[
            "2026-01-01T10:00:00",
            "2026-01-01T10:00:00",
            "garbage",
            "2030-01-01T00:00:00",
            "2026-01-01T11:00:00",
            "2026-01-01T12:00:00",
            "2026-01-01T12:00:00",
            "2026-01-01T13:00:00",
            "2026-01-01T14:00:00",
        ],
        user_id=["u1", "u1", "u2", "u3", "u4", "u5", "", "u6", "u7"],
        item_id=["a", "a", "b", "c", "d", "e", "f", "", "g"],
        type=[" VIEW", "view", "view", "view", "teleport", "purchase", "view", "view", "view"],
        price=["1", "1", "1", "1", "1", "-5", "1", "1", "2.5"],
    )
    report = QualityReport()
    out = normalize_events(raw, BuildConfig(), report, now=NOW)
    assert report.dropped == {
        "missing_item_id": 1,
        "missing_user_and_session": 1,
        "bad_timestamp": 1,
        "future_timestamp": 1,
        "unknown_type": 1,
        "negative_price": 1,
        "non_positive_qty": 0,
        "duplicate": 1,
    }
    assert report.rows_read == 9 and report.rows_kept == 2
    assert list(out["item_id"]) == ["a", "g"] and list(out["type"]) == ["view", "view"]
    assert "dropped: duplicate" in report.table()


def test_ids_are_strings_and_labels_lower_case():
    raw = events(
        ts=["2026-01-01T10:00:00"],
        user_id=[17850.0],
        item_id=["  007 "],
        type=["Purchase"],
        device=[" Mobile "],
        country=["United Kingdom"],
    )
    out = normalize_events(raw, BuildConfig(), QualityReport(), now=NOW)
    row = out.iloc[0]
    assert (row["user_id"], row["item_id"], row["device"], row["country"]) == (
        "17850",
        "007",
        "mobile",
        "united kingdom",
    )
    assert row["session_id"] == "17850#1"  # sessions are cut when the file has none


@pytest.mark.parametrize(
    "values",
    [
        [17850.0, None, 17850.0, 12.5, float("nan"), -3.0],
        [17850, 17850, 7, 7, 0, 12],
        [" A1 ", "a1", None, "A1", "007", " 007", "", "17850.00"],
        pd.array(["X ", None, "x", "X "], dtype="str"),
    ],
)
def test_ids_and_labels_are_cleaned_once_per_distinct_value_as_row_by_row(values):
    column = pd.Series(values)
    ids, labels = normalize_ids(column), normalize_labels(column)
    one_by_one = [normalize_ids(column.iloc[[i]]).iat[0] for i in range(len(column))]
    assert ids.tolist() == one_by_one
    assert labels.tolist() == [
        normalize_labels(column.iloc[[i]]).iat[0] for i in range(len(column))
    ]
    assert ids.dtype == object and ids.index.equals(column.index)
    # Rows with one raw value share one str: a 10M-row log holds each distinct id once.
    codes = pd.factorize(column)[0]
    first = {}
    assert all(first.setdefault(c, v) is v for c, v in zip(codes, ids))


def test_foreign_columns_map_and_a_prefix_sets_the_type():
    config = msgspec.convert(
        {
            "input": {
                "columns": {
                    "user_id": "CustomerID",
                    "item_id": "StockCode",
                    "ts": "InvoiceDate",
                    "session_id": "InvoiceNo",
                },
                "type": "purchase",
                "type_from_prefix": [{"column": "InvoiceNo", "prefix": "C", "type": "view"}],
            }
        },
        BuildConfig,
    )
    raw = events(
        InvoiceNo=["1", "C2"],
        StockCode=["a", "b"],
        CustomerID=["9", "9"],
        InvoiceDate=["2026-01-01 10:00:00", "2026-01-01 11:00:00"],
    )
    out = normalize_events(raw, config, QualityReport(), now=NOW)
    assert list(out["type"]) == ["purchase", "view"]


def test_a_missing_mapped_column_names_the_columns_the_file_has():
    config = load_config(None, {"user_id": "Customer"})
    with pytest.raises(DataQualityError, match=r"mapped columns \{'user_id': 'Customer'\}"):
        normalize_events(
            events(ts=["2026-01-01"], item_id=["a"], type=["view"]), config, QualityReport()
        )


def test_the_build_stops_when_too_much_is_dropped():
    report = QualityReport(rows_read=100, rows_kept=40, dropped={"bad_timestamp": 60})
    with pytest.raises(DataQualityError, match="60.0% of the event rows were dropped"):
        check_drop_share(report, BuildConfig())


def test_catalog_normalization():
    raw = pd.DataFrame(
        {
            "item_id": ["a", "b", "b", ""],
            "category": [" Shoes", "HATS", "hats", "x"],
            "price": ["10", "-1", "3", "1"],
            "in_stock": ["yes", "0", "false", "1"],
        }
    )
    out = normalize_catalog(raw, BuildConfig())
    assert list(out["item_id"]) == ["a", "b"]
    assert list(out["category"]) == ["shoes", "hats"]
    assert list(out["in_stock"]) == [True, False]
    assert out["price"].iloc[1] == 3


def test_users_attributes_are_labels_and_the_id_column_is_required():
    from export.validate import normalize_users

    raw = pd.DataFrame({"user_id": ["1.0", "2", ""], "Tier": ["Gold ", "", "x"]})
    assert normalize_users(raw, BuildConfig()) == {"1": {"tier": "gold"}, "2": {}}
    with pytest.raises(DataQualityError, match="users file needs a `user_id` column"):
        normalize_users(pd.DataFrame({"id": ["1"]}), BuildConfig())


def test_dates_split_over_columns_and_click_order_make_timestamps():
    config = msgspec.convert(
        {
            "input": {
                "type": "view",
                "date_columns": {"year": "y", "month": "m", "day": "d"},
                "order_column": "pos",
                "columns": {"session_id": "sid", "item_id": "sku"},
            }
        },
        BuildConfig,
    )
    raw = events(
        y=["2008", "2008", "2008", "2008"],
        m=["4", "4", "13", "4"],
        d=["1", "1", "1", "2"],
        pos=["2", "1", "1", ""],
        sid=["s1", "s1", "s2", "s3"],
        sku=["b", "a", "c", "d"],
    )
    report = QualityReport()
    out = normalize_events(raw, config, report, now=NOW)
    assert report.dropped["bad_timestamp"] == 1  # month 13
    assert list(out["item_id"]) == ["a", "b", "d"]  # ordered by position within the day
    assert str(out["ts"].iloc[1]) == "2008-04-01 00:00:02+00:00"
    assert str(out["ts"].iloc[2]) == "2008-04-02 00:00:00+00:00"  # no position: the date


def test_date_columns_that_are_missing_are_named():
    config = msgspec.convert(
        {"input": {"type": "view", "date_columns": {"year": "y", "month": "m", "day": "day"}}},
        BuildConfig,
    )
    with pytest.raises(DataQualityError, match="day='day'"):
        normalize_events(
            events(y=["2008"], m=["4"], item_id=["a"], session_id=["s"]),
            config,
            QualityReport(),
            now=NOW,
        )


def test_duplicated_rows_are_those_pandas_finds(seed):
    rng = np.random.default_rng(seed)
    n = 2_000
    frame = pd.DataFrame(
        {
            "ts": pd.to_datetime(rng.integers(0, 5, n), unit="s", utc=True),
            "user_id": rng.choice(["a", "b", ""], n).astype(object),
            "price": rng.choice([1.0, np.nan, 2.5], n),
            "title": pd.array(rng.choice(["x", "y"], n), dtype="str"),
        }
    )
    assert duplicated_rows(frame).tolist() == frame.duplicated(keep="first").tolist()
    assert not duplicated_rows(frame.drop_duplicates()).any()
