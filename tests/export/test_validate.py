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
    join_logins,
    normalize_catalog,
    normalize_events,
    normalize_ids,
    normalize_labels,
    parse_timestamps,
    stray_timestamps,
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


@pytest.mark.parametrize(
    "raw",
    [
        ["9999999999", "99999999999", "-10000000000"],  # epoch seconds past 2262 or before 1677
        [9_999_999_999, 9.3e12, -1e10],  # the same as numbers, and milliseconds past 2262
        ["9999-12-31T23:59:59Z", "9999-12-31 10:00", "+12345-01-01", "1000-01-01"],
        np.array(["9999-12-31", "1000-01-01", "2262-06-01"], dtype="datetime64[s]"),
    ],
    ids=["epoch text", "epoch numbers", "iso text", "datetime column"],
)
def test_times_a_nanosecond_timestamp_cannot_hold_are_unparseable_not_a_crash(raw):
    good = pd.Series([pd.Timestamp("2026-01-02T03:04:05")], dtype="datetime64[s]")
    column = pd.concat(
        [
            pd.Series(raw),
            good if isinstance(raw, np.ndarray) else pd.Series(["2026-01-02T03:04:05"]),
        ],
        ignore_index=True,
    )
    ts = parse_timestamps(column, "UTC")
    assert ts.iloc[:-1].isna().all()
    assert str(ts.iloc[-1]) == "2026-01-02 03:04:05+00:00"


def test_a_stray_timestamp_far_from_the_rest_of_the_log_is_dropped_and_counted():
    """One event two months before a week of events (a mistyped date) would stretch every window
    that is a share of the log's span over nearly all of it."""
    hours = pd.date_range("2026-03-01", periods=7 * 24, freq="h").strftime("%Y-%m-%dT%H:%M:%S")
    ts = ["2026-01-01T09:00:00", *hours, "2026-05-20T09:00:00"]
    raw = events(ts=ts, user_id=[f"u{i % 9}" for i in range(len(ts))], item_id="a", type="view")
    report = QualityReport()
    out = normalize_events(raw, BuildConfig(), report, now=NOW)
    assert report.dropped["stray_timestamp"] == 2
    assert str(out["ts"].min()) == "2026-03-01 00:00:00+00:00" and len(out) == 7 * 24
    assert "dropped: stray_timestamp" in report.table()


def test_a_log_thinning_out_towards_its_start_has_no_stray_timestamp():
    rng = np.random.default_rng(0)
    start = pd.Timestamp("2025-01-01", tz="UTC")
    early = start + pd.to_timedelta(rng.uniform(0, 365, 50), unit="D")
    busy = start + pd.to_timedelta(rng.uniform(365, 730, 20_000), unit="D")
    assert not stray_timestamps(pd.Series([*early, *busy])).any()


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
        "stray_timestamp": 0,
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


def test_a_purchase_or_cart_add_of_zero_or_fewer_items_is_dropped():
    raw = events(
        ts=["2026-01-01T10:00:00"] * 6,
        user_id=["u1"] * 6,
        item_id=["a", "b", "c", "d", "e", "f"],
        type=["purchase", "purchase", "add_to_cart", "view", "purchase", "add_to_cart"],
        qty=["0", "-1", "0", "0", "1", ""],  # no quantity: one item
    )
    report = QualityReport()
    out = normalize_events(raw, BuildConfig(), report, now=NOW)
    assert report.dropped["non_positive_qty"] == 3
    assert list(out["item_id"]) == ["d", "e", "f"]  # a view's quantity is not checked
    assert list(out["qty"]) == [0.0, 1.0, 1.0]


def test_the_logs_local_hour_is_kept_and_derived_from_the_time_only_where_unusable():
    raw = events(
        ts=["2026-01-01T10:00:00"] * 6,  # 10:00 in the configured zone (UTC by default)
        user_id=["u1"] * 6,
        item_id=["a", "b", "c", "d", "e", "f"],
        type=["view"] * 6,
        local_hour=["22", "0", "23", "", "24", "-1"],
    )
    out = normalize_events(raw, BuildConfig(), QualityReport(), now=NOW)
    assert list(out["local_hour"]) == [22, 0, 23, 10, 10, 10]


def test_every_file_of_a_log_adds_to_one_report():
    report = QualityReport()
    first = events(ts=["2026-01-01T10:00:00"] * 2, user_id=["u1", ""], item_id=["a", "b"])
    second = events(ts=["2026-01-02T10:00:00", "x"], user_id=["u2", "u3"], item_id=["c", "d"])
    for frame in (first, second):
        normalize_events(frame.assign(type="view"), BuildConfig(), report, now=NOW)
    assert (report.rows_read, report.rows_kept) == (4, 2)
    assert report.dropped["missing_user_and_session"] == 1 and report.dropped["bad_timestamp"] == 1
    assert report.dropped["duplicate"] == 0 and report.drop_share == 0.5


def test_a_free_item_and_a_clock_a_few_minutes_ahead_are_kept():
    raw = events(
        ts=[
            "2026-05-31T23:00:00Z",
            "2026-06-01T00:04:00Z",  # 4 minutes past the build's now: within the 5 allowed
            "2026-06-01T00:06:00Z",
        ],
        user_id=["u1", "u2", "u3"],
        item_id=["a", "b", "c"],
        type=["purchase"] * 3,
        price=["0", "3", "3"],
    )
    report = QualityReport()
    out = normalize_events(raw, BuildConfig(), report, now=NOW)
    assert list(out["item_id"]) == ["a", "b"]
    assert report.dropped["future_timestamp"] == 1 and report.dropped["negative_price"] == 0


def test_sessions_are_cut_per_user_at_gaps_over_30_minutes():
    raw = events(
        ts=[
            "2026-01-01T10:00:00",
            "2026-01-01T10:30:00",  # 30 minutes later: the same session
            "2026-01-01T11:00:01",  # 30 minutes and a second: a new one
            "2026-01-01T10:10:00",  # another user, in between
        ],
        user_id=["u1", "u1", "u1", "u2"],
        item_id=["a", "b", "c", "d"],
        type=["view"] * 4,
    )
    out = normalize_events(raw, BuildConfig(), QualityReport(), now=NOW)
    assert dict(zip(out["item_id"], out["session_id"])) == {
        "a": "u1#1",
        "d": "u2#3",
        "b": "u1#1",
        "c": "u1#2",
    }


def test_type_labels_map_and_dwell_and_title_come_along():
    config = msgspec.convert({"input": {"type_map": {" PageView ": "view"}}}, BuildConfig)
    raw = events(
        ts=["2026-01-01T10:00:00", "2026-01-01T10:01:00"],
        session_id=["s1", "s1"],
        item_id=["a", "b"],
        type=["pageview", "purchase"],
        dwell_ms=["1500", "oops"],
        title=["  Red Hat ", None],
    )
    out = normalize_events(raw, config, QualityReport(), now=NOW)
    assert list(out["type"]) == ["view", "purchase"]
    assert out["dwell_ms"].iloc[0] == 1500.0 and np.isnan(out["dwell_ms"].iloc[1])
    assert list(out["title"]) == ["Red Hat", ""]
    assert list(out["device"]) == ["", ""]  # a label column the log lacks: empty, not missing


def test_a_log_without_a_time_or_an_item_column_names_what_it_has():
    for missing in ("ts", "item_id"):
        columns = {"ts": ["2026-01-01"], "item_id": ["a"], "user_id": ["u"], "type": ["view"]}
        del columns[missing]
        with pytest.raises(DataQualityError, match=r"events need `ts` and `item_id` columns; "):
            normalize_events(events(**columns), BuildConfig(), QualityReport(), now=NOW)
    with pytest.raises(DataQualityError, match="events need `user_id` or `session_id`"):
        normalize_events(
            events(ts=["2026-01-01"], item_id=["a"], type=["view"]), BuildConfig(), QualityReport()
        )


def test_a_catalog_maps_its_columns_and_reads_stock_prices_and_labels():
    config = msgspec.convert(
        {"input": {"catalog_columns": {"item_id": "sku", "price": "Preis", "brand": "Marke"}}},
        BuildConfig,
    )
    raw = pd.DataFrame(
        {
            "sku": ["a", "b", "c", "d", "e", "f", "g"],
            "Preis": ["0", "-2", "3.5", "4", "5", "6", "7"],
            "Marke": [" ACME ", None, "acme", "x", "x", "x", "x"],
            "title": [" Red Hat ", None, "c", "d", "e", "f", "g"],
            "in_stock": ["no", "N", " f ", "0", "FALSE", "yes", None],
            "unused": ["?"] * 7,
        }
    )
    out = normalize_catalog(raw, config)
    assert list(out.columns) == ["item_id", "title", "category", "brand", "price", "in_stock"]
    assert list(out.index) == list(range(7))
    assert out["price"].iloc[0] == 0.0 and np.isnan(out["price"].iloc[1])  # free, not negative
    assert list(out["brand"][:3]) == ["acme", "", "acme"] and list(out["category"]) == [""] * 7
    assert list(out["title"][:2]) == [" Red Hat ", ""]  # titles are shown as the shop wrote them
    assert list(out["in_stock"]) == [False, False, False, False, False, True, True]
    assert normalize_catalog(pd.DataFrame({"item_id": ["a"]}), BuildConfig())["in_stock"].all()


def test_datetime_columns_are_read_in_the_configured_zone_or_their_own():
    naive = pd.Series(pd.to_datetime(["2026-07-01 12:00", "2026-10-25 01:30", "2026-03-29 01:30"]))
    ts = parse_timestamps(naive, "Europe/London")
    assert str(ts.iloc[0]) == "2026-07-01 11:00:00+00:00"  # summer time
    assert pd.isna(ts.iloc[1])  # 01:30 happens twice as the clocks go back: which one is unknown
    assert str(ts.iloc[2]) == "2026-03-29 01:00:00+00:00"  # never happened: moved to 02:00 BST
    aware = pd.Series(pd.to_datetime(["2026-07-01 12:00+02:00"], utc=True))
    assert str(parse_timestamps(aware, "Europe/London").iloc[0]) == "2026-07-01 10:00:00+00:00"
    # From 1e11 on, a number is epoch milliseconds (as seconds it would be the year 5138).
    assert str(parse_timestamps(pd.Series(["100000000000"]), "UTC").iloc[0]) == (
        "1973-03-03 09:46:40+00:00"
    )


def test_a_session_that_logs_in_gives_its_anonymous_events_to_its_customer():
    log = pd.DataFrame(
        {
            "user_id": ["", "", "u1", "", "u2", "u3", "", "u4"],
            "session_id": ["s1", "s1", "s1", "s2", "s2", "s2", "s3", "s4"],
        }
    )
    report = QualityReport()
    join_logins(log, report)
    # s2 names two customers: whose its anonymous event was is unknown; s3 never logged in
    assert log["user_id"].tolist() == ["u1", "u1", "u1", "", "u2", "u3", "", "u4"]
    assert (report.logins_joined, report.logins_ambiguous) == (2, 1)
    assert "joined to their login" in report.table()
    assert report.lineage().anonymous_events_joined == 2


def test_after_export_a_customer_who_logged_in_mid_visit_has_the_visits_start(shop, tmp_path):
    from edge.bundle import load_bundle
    from export.pipeline import export_bundle

    events = shop.events.head(3_000)
    start = events["ts"].max() + pd.Timedelta(minutes=1)
    visit = pd.DataFrame(
        {
            "ts": [start, start + pd.Timedelta(minutes=1), start + pd.Timedelta(minutes=2)],
            "user_id": ["", "", "u-new"],
            "session_id": ["s-login"] * 3,
            "item_id": ["i000001", "i000002", "i000003"],
            "type": ["view", "add_to_cart", "purchase"],
        }
    )
    path = tmp_path / "events.csv"
    pd.concat([events, visit]).to_csv(path, index=False)
    manifest = export_bundle(
        [path], tmp_path / "b", BuildConfig(), quiet=True, report=False, evaluate=False
    )
    assert manifest.lineage.anonymous_events_joined == 2
    profile = load_bundle(tmp_path / "b").profiles.get("u-new")
    assert profile is not None
    assert sorted(profile.recent_items) == ["i000001", "i000002", "i000003"]
    assert profile.n_events == 3
