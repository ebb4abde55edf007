"""Segment rules a shop writes over the segment features, and those features for a visitor
known only from this session."""

import msgspec
import pytest

from edge.segments import (
    SEGMENT_FEATURES,
    SegmentRule,
    matching_rule,
    rule_errors,
    session_segment_features,
)
from edge.signals import SessionSignals

BUSY = SegmentRule("busy explorers", {"sessions_per_week": {"gt": 5}, "categories": {"ge": 3}})
BIG = SegmentRule("big spenders", {"monetary": {"ge": 500}})


def visitor(**values: float) -> dict[str, float]:
    return dict.fromkeys(SEGMENT_FEATURES, 0.0) | values


def test_a_rule_matches_only_when_every_condition_holds_bounds_included():
    assert BUSY.matches(visitor(sessions_per_week=6, categories=3))
    assert not BUSY.matches(visitor(sessions_per_week=5, categories=3))  # gt: 5 is not over 5
    assert not BUSY.matches(visitor(sessions_per_week=6, categories=2))
    assert BIG.matches(visitor(monetary=500))  # ge: the bound itself matches


def test_the_first_matching_rule_in_order_names_the_segment():
    both = visitor(sessions_per_week=9, categories=4, monetary=900)
    assert matching_rule([BUSY, BIG], both) == "busy explorers"
    assert matching_rule([BIG, BUSY], both) == "big spenders"
    assert matching_rule([BUSY, BIG], visitor(monetary=600)) == "big spenders"
    assert matching_rule([BUSY, BIG], visitor()) is None
    assert matching_rule([], both) is None


def test_rule_errors_name_the_rule_the_feature_and_what_is_allowed():
    assert rule_errors("fine", {"recency_days": {"le": 7}, "sessions": {"ge": 2}}) == []
    # An unknown feature is the one error of its condition, whatever its operators.
    [unknown] = rule_errors("r1", {"age": {"above": 30}})
    assert unknown == (
        "segment rule 'r1': unknown feature 'age'; allowed: " + ", ".join(SEGMENT_FEATURES)
    )
    [operator] = rule_errors("r2", {"monetary": {"above": 10}})
    assert operator == "segment rule 'r2', monetary: unknown operator 'above'; allowed: " + (
        "gt, ge, lt, le, eq"
    )
    [bound] = rule_errors("r3", {"monetary": {"gt": "a lot"}})
    assert bound == "segment rule 'r3', monetary.gt: 'a lot' is not a number"
    assert rule_errors("r4", {}) == ["segment rule 'r4' has no conditions"]
    assert len(rule_errors("r5", {"age": {}, "monetary": {"gt": float("nan")}})) == 2


def test_a_rule_decodes_strictly_from_a_build_config():
    rule = msgspec.convert({"name": "vip", "when": {"monetary": {"gt": 100}}}, SegmentRule)
    assert rule == SegmentRule("vip", {"monetary": {"gt": 100.0}})
    with pytest.raises(msgspec.ValidationError, match="unknown field `colour`"):
        msgspec.convert({"name": "x", "when": {}, "colour": "red"}, SegmentRule)
    with pytest.raises(msgspec.ValidationError, match="length >= 1"):
        msgspec.convert({"name": "", "when": {}}, SegmentRule)


def signals(**values) -> SessionSignals:
    fields = dict.fromkeys(SessionSignals._fields, 0) | values
    return SessionSignals(**fields)


def test_a_session_visitor_is_a_one_session_visitor_seen_now():
    features = session_segment_features(
        signals(events=6, items=4, categories=3, dwell_s=50.0, dwelled_views=4, spent=42.5)
    )
    assert features == {
        "recency_days": 0.0,
        "sessions": 1.0,
        "monetary": 42.5,
        "sessions_per_week": 1.0,
        "categories": 3.0,
        "cart_abandon_share": 0.0,
        "avg_dwell_s": 12.5,  # 50 s over the 4 views that report a dwell
    }
    assert list(features) == list(SEGMENT_FEATURES)


def test_a_cart_without_a_purchase_is_an_abandoned_session():
    assert session_segment_features(signals(cart_adds=1))["cart_abandon_share"] == 1.0
    bought = session_segment_features(signals(cart_adds=1, purchases=1))
    assert bought["cart_abandon_share"] == 0.0
    assert session_segment_features(signals(purchases=1))["cart_abandon_share"] == 0.0


def test_a_session_without_dwell_times_has_no_average_dwell():
    assert session_segment_features(signals(events=3, dwell_s=0.0))["avg_dwell_s"] == 0.0
