"""Purchase intent: the row of session signals the intent head reads, and the labels its
probability is given."""

import math

import msgspec
import pytest

from edge.intent import INTENT_FEATURES, IntentLabels, intent_features
from edge.signals import SessionSignals

SIGNALS = SessionSignals(
    events=9,
    items=5,
    categories=2,
    dwell_s=75.5,
    dwelled_views=3,
    cart_adds=2,
    cart_removes=1,
    purchases=0,
    spent=0.0,
)


def test_a_known_customers_row_names_each_signal_in_the_features_order():
    row = intent_features(SIGNALS, 30.0, 4, "tablet", 21)
    assert dict(zip(INTENT_FEATURES, row, strict=True)) == {
        "events": 9.0,
        "distinct_items": 5.0,
        "distinct_categories": 2.0,
        "dwell_s": 75.5,
        "cart_adds": 2.0,
        "cart_removes": 1.0,
        "hours_since_last_visit": 30.0,
        "returning": 1.0,
        "past_purchases": 4.0,
        "mobile": 0.0,
        "tablet": 1.0,
        "local_hour": 21.0,
    }


def test_an_anonymous_visitor_is_not_returning_and_has_no_past():
    row = dict(zip(INTENT_FEATURES, intent_features(SIGNALS, math.nan, None, "mobile", 8)))
    assert row["returning"] == 0.0 and row["past_purchases"] == 0.0
    assert math.isnan(row["hours_since_last_visit"])
    assert (row["mobile"], row["tablet"]) == (1.0, 0.0)
    # A known customer who never bought is returning, with no past purchases.
    never = dict(zip(INTENT_FEATURES, intent_features(SIGNALS, 2.0, 0, "desktop", 8)))
    assert never["returning"] == 1.0 and never["past_purchases"] == 0.0
    assert (never["mobile"], never["tablet"]) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("probability", "label"),
    [(1.0, "high intent"), (0.5, "high intent"), (0.4999, "browsing"), (0.1, "browsing")]
    + [(0.0999, "lurker"), (0.0, "lurker")],
)
def test_default_labels_start_at_their_thresholds(probability, label):
    assert IntentLabels().label(probability) == label


def test_a_shops_thresholds_move_the_labels():
    labels = IntentLabels(high=0.8, browsing=0.3)
    assert [labels.label(p) for p in (0.8, 0.79, 0.3, 0.29)] == [
        "high intent",
        "browsing",
        "browsing",
        "lurker",
    ]


def test_thresholds_outside_zero_to_one_are_refused_naming_the_field():
    assert msgspec.convert({"high": 0.7}, IntentLabels) == IntentLabels(high=0.7, browsing=0.1)
    with pytest.raises(msgspec.ValidationError, match="<= 1.0 - at `\\$.high`"):
        msgspec.convert({"high": 1.5}, IntentLabels)
    with pytest.raises(msgspec.ValidationError, match=">= 0.0 - at `\\$.browsing`"):
        msgspec.convert({"browsing": -0.1}, IntentLabels)
    with pytest.raises(msgspec.ValidationError, match="unknown field `low`"):
        msgspec.convert({"low": 0.1}, IntentLabels)
