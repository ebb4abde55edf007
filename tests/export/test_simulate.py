"""The simulated shop: its input contract, and that the effects benchmarks rely on are real."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from export.simulate import COUNTRIES, UTC_OFFSET_H, SimulatedShop, simulate_shop

EVENT_COLUMNS = [
    "ts",
    "user_id",
    "session_id",
    "item_id",
    "type",
    "qty",
    "price",
    "dwell_ms",
    "device",
    "country",
    "local_hour",
]
STRING_COLUMNS = ["user_id", "session_id", "item_id", "type", "device", "country"]
START = pd.Timestamp("2026-01-01", tz="UTC")
DAYS = 60


@pytest.fixture(scope="module")
def shop() -> SimulatedShop:
    return simulate_shop(seed=7)


@pytest.fixture(scope="module")
def big_shop() -> SimulatedShop:
    """Enough purchases per context cell (~7k in all, ~450 at night) for stable shares."""
    return simulate_shop(n_events=300_000, seed=3)


def _with_category(shop: SimulatedShop) -> pd.DataFrame:
    return shop.events.merge(shop.catalog[["item_id", "category"]], on="item_id", how="left")


def _tvd(a: pd.Series, b: pd.Series) -> float:
    """Total variation distance between the value distributions of two samples."""
    pa = a.value_counts(normalize=True)
    pb = b.value_counts(normalize=True)
    return 0.5 * float(pa.sub(pb, fill_value=0.0).abs().sum())


# ---------------------------------------------------------------- schema and ranges


def test_event_columns_and_dtypes(shop: SimulatedShop) -> None:
    events = shop.events
    assert list(events.columns) == EVENT_COLUMNS
    assert isinstance(events["ts"].dtype, pd.DatetimeTZDtype)
    assert str(events["ts"].dt.tz) == "UTC"
    for column in STRING_COLUMNS:
        assert pd.api.types.is_string_dtype(events[column]), column
    for column in ("qty", "dwell_ms", "local_hour"):
        assert pd.api.types.is_integer_dtype(events[column]), column
    assert pd.api.types.is_float_dtype(events["price"])
    assert not events.isna().any().any()


def test_event_values(shop: SimulatedShop) -> None:
    events = shop.events
    assert events["ts"].min() >= START
    assert events["ts"].max() < START + pd.Timedelta(days=DAYS)
    assert events["ts"].is_monotonic_increasing
    assert events["user_id"].str.fullmatch(r"u\d{7}").all()
    assert events["session_id"].str.fullmatch(r"s\d{8}").all()
    assert events["item_id"].str.fullmatch(r"i\d{6}").all()
    assert events["item_id"].isin(shop.catalog["item_id"]).all()
    assert set(events["type"]) == {"view", "add_to_cart", "remove_from_cart", "purchase"}
    assert set(events["device"]) == {"desktop", "mobile", "tablet"}
    assert set(events["country"]) <= set(COUNTRIES)
    assert events["country"].str.fullmatch(r"[a-z]{2}").all()
    views = events["type"] == "view"
    assert (events.loc[views, "qty"] == 1).all()
    assert (events.loc[~views, "qty"] >= 1).all()
    assert (events.loc[views, "dwell_ms"] >= 0).all()
    assert (events.loc[~views, "dwell_ms"] == 0).all()
    assert events["local_hour"].between(0, 23).all()
    catalog_price = events["item_id"].map(shop.catalog.set_index("item_id")["price"])
    assert (events["price"] > 0).all()
    assert np.array_equal(events["price"].to_numpy(), catalog_price.to_numpy())


def test_local_hour_is_utc_hour_plus_a_fixed_offset_per_country(shop: SimulatedShop) -> None:
    events = shop.events
    offset = (events["local_hour"] - events["ts"].dt.hour) % 24
    assert (offset.groupby(events["country"]).nunique() == 1).all()
    expected = dict(zip(COUNTRIES, UTC_OFFSET_H.tolist()))
    assert (offset == events["country"].map(expected) % 24).all()
    assert expected["us"] == -5 and expected["gb"] == 0 and expected["de"] == 1


def test_row_count_is_close_to_the_request() -> None:
    for n_events in (5_000, 50_000, 200_000):
        rows = len(simulate_shop(n_users=500, n_items=300, n_events=n_events, seed=1).events)
        assert 0.9 * n_events <= rows <= 1.1 * n_events, (n_events, rows)


def test_catalog_and_users(shop: SimulatedShop) -> None:
    catalog, users = shop.catalog, shop.users
    assert list(catalog.columns) == ["item_id", "title", "category", "price", "brand", "in_stock"]
    assert len(catalog) == 1_000 and catalog["item_id"].is_unique
    assert catalog["category"].nunique() == 20
    assert (catalog["price"] > 0).all()
    assert 0.01 <= 1 - catalog["in_stock"].mean() <= 0.06
    # Category sizes are skewed, and typical prices differ by category.
    sizes = catalog["category"].value_counts()
    assert sizes.iloc[0] > 3 * sizes.iloc[-1]
    median_price = catalog.groupby("category")["price"].median()
    assert median_price.max() > 3 * median_price.min()
    assert list(users.columns) == ["user_id", "loyalty_tier", "age_band", "region"]
    assert len(users) == 2_000 and users["user_id"].is_unique
    assert shop.events["user_id"].isin(users["user_id"]).all()
    assert set(users["loyalty_tier"]) == {"none", "silver", "gold", "platinum"}


def test_sessions_are_the_ground_truth_of_the_log(shop: SimulatedShop) -> None:
    sessions, events = shop.sessions, shop.events
    assert list(sessions.columns) == [
        "session_id",
        "user_id",
        "device",
        "country",
        "start_ts",
        "true_intent",
        "purchased",
    ]
    assert sessions["session_id"].is_unique
    assert set(sessions["session_id"]) == set(events["session_id"])
    assert sessions["true_intent"].between(0.0, 1.0).all()
    bought = set(events.loc[events["type"] == "purchase", "session_id"])
    assert set(sessions.loc[sessions["purchased"], "session_id"]) == bought
    # One user, device and country per session, as the truth says.
    per_session = events.groupby("session_id")[["user_id", "device", "country"]].nunique()
    assert (per_session == 1).all().all()
    first = events.groupby("session_id")[["user_id", "device", "ts"]].first()
    truth = sessions.set_index("session_id").loc[first.index]
    assert (truth["user_id"] == first["user_id"]).all()
    assert (truth["device"] == first["device"]).all()
    assert (truth["start_ts"] == first["ts"]).all()
    # Intent is a calibrated probability (noise on ~3.8k sessions is ~0.01), and higher
    # intent really converts more often.
    carted = sessions[sessions["true_intent"] > 0]
    assert abs(carted["purchased"].mean() - carted["true_intent"].mean()) < 0.03
    high = carted["true_intent"] > carted["true_intent"].median()
    assert carted.loc[high, "purchased"].mean() > carted.loc[~high, "purchased"].mean() + 0.1
    assert not sessions.loc[sessions["true_intent"] == 0, "purchased"].any()


def test_one_day_period_and_tz_aware_start_stay_in_range() -> None:
    shop = simulate_shop(n_users=50, n_items=40, n_events=3_000, days=1, start="2026-03-01T00:00Z")
    ts = shop.events["ts"]
    assert ts.min() >= pd.Timestamp("2026-03-01", tz="UTC")
    assert ts.max() < pd.Timestamp("2026-03-02", tz="UTC")


def test_tiny_and_invalid_arguments() -> None:
    tiny = simulate_shop(n_users=1, n_items=2, n_events=1, n_categories=2)
    assert 1 <= len(tiny.events) <= 60
    with pytest.raises(ValueError):
        simulate_shop(n_items=10, n_categories=20)
    with pytest.raises(ValueError):
        simulate_shop(n_events=0)


# ---------------------------------------------------------------- determinism and files


def test_same_seed_same_frames_and_other_seed_differs() -> None:
    a = simulate_shop(n_users=300, n_items=200, n_events=20_000, seed=11)
    b = simulate_shop(n_users=300, n_items=200, n_events=20_000, seed=11)
    for name in ("events", "catalog", "users", "sessions"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    c = simulate_shop(n_users=300, n_items=200, n_events=20_000, seed=12)
    assert not a.catalog["price"].equals(c.catalog["price"])
    assert not a.events["item_id"].head(1_000).equals(c.events["item_id"].head(1_000))


def test_write_parquet_and_csv(tmp_path, shop: SimulatedShop) -> None:
    paths = shop.write(tmp_path / "pq")
    assert set(paths) == {"events", "catalog", "users", "truth"}
    assert all(p.suffix == ".parquet" and p.exists() for p in paths.values())
    pd.testing.assert_frame_equal(pd.read_parquet(paths["events"]), shop.events)
    pd.testing.assert_frame_equal(pd.read_parquet(paths["catalog"]), shop.catalog)
    pd.testing.assert_frame_equal(pd.read_parquet(paths["truth"]), shop.sessions)
    csv = shop.write(tmp_path / "csv", fmt="csv")
    assert csv["users"].name == "users.csv"
    events = pd.read_csv(csv["events"])
    assert list(events.columns) == EVENT_COLUMNS and len(events) == len(shop.events)
    assert (pd.to_datetime(events["ts"]) == shop.events["ts"]).all()
    with pytest.raises(ValueError):
        shop.write(tmp_path / "x", fmt="json")


# ---------------------------------------------------------------- effects the product learns


def _permutation_null(values: pd.Series, labels: pd.Series, a: str, b: str) -> float:
    """Largest TVD between groups a and b over 20 label shuffles: sampling noise, ~95th pct."""
    rng = np.random.default_rng(0)
    nulls = []
    for _ in range(20):
        shuffled = pd.Series(rng.permutation(labels.to_numpy()), index=labels.index)
        nulls.append(_tvd(values[shuffled == a], values[shuffled == b]))
    return max(nulls)


def test_device_shifts_what_is_bought(big_shop: SimulatedShop) -> None:
    # Each device adds an N(0, 1) bias to every category logit, so mobile vs desktop purchase
    # mixes sit at a TVD of 0.2-0.4 over seeds 0-11, while shuffled labels give ~0.05.
    # Twice the noise ceiling and an absolute 0.15 both leave a wide margin.
    bought = _with_category(big_shop).query("type == 'purchase'")
    observed = _tvd(
        bought.loc[bought["device"] == "mobile", "category"],
        bought.loc[bought["device"] == "desktop", "category"],
    )
    null = _permutation_null(bought["category"], bought["device"], "mobile", "desktop")
    assert observed > 0.15
    assert observed > 2 * null


def test_hour_of_day_shifts_what_is_bought(big_shop: SimulatedShop) -> None:
    # Same N(0, 1) biases per hour bucket: night vs morning TVD is 0.25-0.41 over seeds 0-11;
    # night holds only ~450 purchases, so its noise ceiling is higher (~0.1).
    bought = _with_category(big_shop).query("type == 'purchase'")
    bucket = (bought["local_hour"] // 6).map(
        {0: "night", 1: "morning", 2: "afternoon", 3: "evening"}
    )
    observed = _tvd(
        bought.loc[bucket == "night", "category"], bought.loc[bucket == "morning", "category"]
    )
    null = _permutation_null(bought["category"], bucket, "night", "morning")
    assert observed > 0.15
    assert observed > 2 * null


def test_context_popularity_differs_from_overall(big_shop: SimulatedShop) -> None:
    bought = _with_category(big_shop).query("type == 'purchase'")
    night_mobile = bought[(bought["device"] == "mobile") & (bought["local_hour"] < 6)]
    morning_desktop = bought[(bought["device"] == "desktop") & bought["local_hour"].between(6, 11)]
    top_a = set(night_mobile["category"].value_counts().index[:10])
    top_b = set(morning_desktop["category"].value_counts().index[:10])
    assert len(top_a & top_b) <= 8
    assert _tvd(night_mobile["category"], morning_desktop["category"]) > 0.25
    assert _tvd(night_mobile["category"], bought["category"]) > 0.15


def test_sessions_start_in_the_local_evening_more_than_at_night(shop: SimulatedShop) -> None:
    start = shop.sessions.merge(
        shop.events.groupby("session_id", as_index=False)["local_hour"].first(), on="session_id"
    )
    for _, group in start.groupby("country"):
        evening = group["local_hour"].between(18, 23).sum()
        night = group["local_hour"].between(0, 5).sum()
        assert evening > 2 * night


def test_later_behaviour_is_predictable_from_earlier(shop: SimulatedShop) -> None:
    """Late-period views fall in a user's early top-3 categories far more than chance."""
    events = _with_category(shop)
    cutoff = START + pd.Timedelta(days=int(DAYS * 0.8))
    counts = [
        part.groupby(["user_id", "category"]).size().unstack(fill_value=0)
        for part in (events[events["ts"] < cutoff], events[events["ts"] >= cutoff])
    ]
    users = counts[0].index.intersection(counts[1].index)
    columns = counts[0].columns.union(counts[1].columns)
    early, late = (c.loc[users].reindex(columns=columns, fill_value=0).to_numpy() for c in counts)
    assert len(users) > 300
    top3 = np.argsort(-early, axis=1, kind="stable")[:, :3]
    own = (np.take_along_axis(late, top3, axis=1).sum(axis=1) / late.sum(axis=1)).mean()
    # Chance: the same late views scored against another user's early favourites.
    other = np.roll(top3, 1, axis=0)
    chance = (np.take_along_axis(late, other, axis=1).sum(axis=1) / late.sum(axis=1)).mean()
    assert own > 1.6 * chance
    assert own > 0.35


def test_heavy_tailed_activity_and_long_tail_items(shop: SimulatedShop) -> None:
    per_user = shop.sessions["user_id"].value_counts()
    assert per_user.max() > 8 * per_user.median()
    views = shop.events.loc[shop.events["type"] == "view", "item_id"].value_counts()
    assert views.iloc[:10].sum() > 0.1 * views.sum()  # top 1% of items
    # Users come back over many days, which makes a temporal split meaningful.
    days = shop.events.groupby("user_id")["ts"].agg(lambda ts: ts.dt.floor("D").nunique())
    assert (days >= 10).mean() > 0.1


# ---------------------------------------------------------------- funnel


def test_funnel_counts_and_abandoned_carts(shop: SimulatedShop) -> None:
    counts = shop.events["type"].value_counts()
    assert counts["view"] > counts["add_to_cart"] > counts["purchase"] > 0
    assert counts["remove_from_cart"] < counts["add_to_cart"]
    carted = set(shop.events.loc[shop.events["type"] == "add_to_cart", "session_id"])
    bought = set(shop.events.loc[shop.events["type"] == "purchase", "session_id"])
    assert bought <= carted
    assert len(carted - bought) > 0.3 * len(carted)  # abandoned carts are common


def _first_ts(events: pd.DataFrame, kind: str) -> pd.Series:
    return events[events["type"] == kind].groupby(["session_id", "item_id"])["ts"].min()


def test_every_step_follows_the_previous_one_for_the_same_item(shop: SimulatedShop) -> None:
    events = shop.events
    viewed = _first_ts(events, "view")
    carted = _first_ts(events, "add_to_cart")
    for kind, earlier in (("add_to_cart", viewed), ("purchase", viewed), ("purchase", carted)):
        later = events[events["type"] == kind].set_index(["session_id", "item_id"])["ts"]
        before = earlier.reindex(later.index)
        assert before.notna().all(), kind
        assert (before.to_numpy() < later.to_numpy()).all(), kind
    removed = events[events["type"] == "remove_from_cart"].set_index(["session_id", "item_id"])
    assert (carted.reindex(removed.index).to_numpy() < removed["ts"].to_numpy()).all()


def test_repeat_purchases_are_possible_but_rare(big_shop: SimulatedShop) -> None:
    bought = big_shop.events[big_shop.events["type"] == "purchase"]
    repeats = bought.duplicated(["user_id", "item_id"]).mean()
    assert 0 < repeats < 0.06


# ---------------------------------------------------------------- scale


@pytest.mark.slow
def test_a_million_events() -> None:
    shop = simulate_shop(n_users=20_000, n_items=10_000, n_events=1_000_000, seed=5)
    events = shop.events
    assert 900_000 <= len(events) <= 1_100_000
    assert events["ts"].is_monotonic_increasing
    assert events["item_id"].isin(shop.catalog["item_id"]).all()
    assert events["session_id"].nunique() == len(shop.sessions)
    assert re.fullmatch(r"s\d{8}", events["session_id"].iloc[-1])
