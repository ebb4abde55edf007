from edge.schemas import SessionEvent
from edge.signals import SessionSignals, session_signals


def test_one_pass_counts_what_the_segment_and_intent_features_need():
    events = [
        SessionEvent("view", "a", dwell_ms=20_000),
        SessionEvent("view", "b"),  # no dwell reported: not in the dwell average
        SessionEvent("view", "b", dwell_ms=40_000),
        SessionEvent("add_to_cart", "b"),
        SessionEvent("remove_from_cart", "b"),
        SessionEvent("view", "unknown", dwell_ms=1_000),
        SessionEvent("purchase", "a"),
    ]
    categories = {"a": 0, "b": 1}
    prices = {"a": 12.5}
    signals = session_signals(
        events,
        lambda ids: [categories.get(i, -1) for i in ids],
        lambda ids: [prices.get(i, 0.0) for i in ids],
    )
    assert signals == SessionSignals(
        events=7,
        items=3,
        categories=2,  # the unknown item's category is not counted
        dwell_s=61.0,
        dwelled_views=3,
        cart_adds=1,
        cart_removes=1,
        purchases=1,
        spent=12.5,
    )
    assert session_signals(events, lambda ids: [0] * len(ids)).spent == 0.0  # no prices


def test_no_events_signal_nothing():
    signals = session_signals([], lambda ids: [0] * len(ids), lambda ids: [1.0] * len(ids))
    assert signals == SessionSignals(0, 0, 0, 0.0, 0, 0, 0, 0, 0.0)
