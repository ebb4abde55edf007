"""The exported frames: the event log's input contract, and the sessions' ground truth."""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulator import COUNTRIES, UTC_OFFSET_H, SimulatedShop
from tests.simulator.conftest import DAYS, EVENT_COLUMNS, START

STRING_COLUMNS = ["user_id", "session_id", "item_id", "type", "device", "country"]


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
