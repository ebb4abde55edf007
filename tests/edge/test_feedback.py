from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest

from edge.errors import ValidationError
from edge.feedback import feedback_records
from edge.schemas import FEEDBACK_TYPES, FeedbackBatch, ResolvedContext

CONTEXT = ResolvedContext("mobile", "de", 21, "evening")
RECEIVED = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)


def batch(*events: dict) -> FeedbackBatch:
    return msgspec.convert({"events": list(events)}, FeedbackBatch)


def test_records_use_the_export_columns_and_fill_the_context_from_the_request():
    later = datetime(2026, 11, 27, 13, 30, tzinfo=timezone(timedelta(hours=1)))
    records = feedback_records(
        batch(
            {
                "type": "impression",
                "item_id": "a",
                "session_id": "s1",
                "slot": "home",
                "experiment": "strip",
                "variant": "b",
                "propensity": 0.25,
                "event_id": "e1",
                "decision_id": "d.1",
            },
            {
                "type": "purchase",
                "item_id": "a",
                "user_id": "u1",
                "ts": later,
                "price": 9.5,
                "qty": 2,
                "device": "desktop",
            },
        ),
        FEEDBACK_TYPES,
        CONTEXT,
        RECEIVED,
        "build-1",
    )
    shown, bought = records
    assert shown["ts"] == "2026-11-27T12:00:00.000+00:00"  # no ts: when it was received
    assert (shown["device"], shown["country"], shown["local_hour"]) == ("mobile", "de", 21)
    assert shown["user_id"] == "" and shown["session_id"] == "s1"
    assert (shown["experiment"], shown["variant"], shown["propensity"]) == ("strip", "b", 0.25)
    assert (shown["decision_id"], bought["decision_id"]) == ("d.1", None)  # for offline checks
    assert bought["ts"] == "2026-11-27T12:30:00.000+00:00"  # the client's time, in UTC
    assert bought["device"] == "desktop" and bought["qty"] == 2 and bought["bundle"] == "build-1"


def test_a_batch_with_one_bad_event_is_refused_whole_naming_it():
    good = {"type": "click", "item_id": "a", "session_id": "s"}
    with pytest.raises(ValidationError) as caught:
        feedback_records(
            batch(good, {"type": "like", "item_id": "a", "session_id": "s"}),
            FEEDBACK_TYPES,
            CONTEXT,
            RECEIVED,
            None,
        )
    assert caught.value.field == "$.events[1].type"
    assert "'like' is not one this service logs; allowed: ['add_to_cart', 'click'" in str(
        caught.value
    )
    with pytest.raises(ValidationError, match="needs a user_id or a session_id") as caught:
        feedback_records(
            batch(good, {"type": "click", "item_id": "a"}), FEEDBACK_TYPES, CONTEXT, RECEIVED, None
        )
    assert caught.value.field == "$.events[1]"


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"type": "click", "item_id": "a", "session_id": "s", "propensity": 0}, "> 0.0"),
        (
            {"type": "click", "item_id": "a", "session_id": "s", "ts": "2026-11-27T12:00:00"},
            "timezone",
        ),
        ({"type": "click", "item_id": "a", "session_id": "s", "colour": "red"}, "colour"),
    ],
)
def test_the_schema_refuses_what_cannot_be_logged(event, message):
    with pytest.raises(msgspec.ValidationError, match=message):
        batch(event)
    with pytest.raises(msgspec.ValidationError, match=r"length >= 1 - at `\$.events`"):
        msgspec.convert({"events": []}, FeedbackBatch)


@pytest.mark.parametrize(
    "ts",
    [
        "9999-12-31T23:59:59-14:00",  # past year 9999 in UTC: overflowed, a 500, once
        "0001-01-01T00:00:00+14:00",  # before year 1 in UTC
        "1999-12-31T23:59:59.999+00:00",
        "2026-11-28T12:00:00.001+00:00",  # a day and a millisecond past the server's clock
        "2026-11-28T23:00:00+10:00",
    ],
)
def test_a_ts_outside_the_window_is_refused_naming_the_event_and_the_window(ts):
    good = {"type": "click", "item_id": "a", "session_id": "s"}
    with pytest.raises(ValidationError) as caught:
        feedback_records(batch(good, {**good, "ts": ts}), FEEDBACK_TYPES, CONTEXT, RECEIVED, None)
    assert caught.value.field == "$.events[1].ts"
    message = str(caught.value)
    assert "from 2000-01-01T00:00:00Z to one day past the server's clock" in message
    assert "2026-11-28T12:00:00+00:00" in message  # where the window ends now


@pytest.mark.parametrize(
    ("ts", "stored"),
    [
        ("2000-01-01T00:00:00Z", "2000-01-01T00:00:00.000+00:00"),
        ("2000-01-01T09:00:00+09:00", "2000-01-01T00:00:00.000+00:00"),
        ("2026-11-28T12:00:00Z", "2026-11-28T12:00:00.000+00:00"),  # a day ahead: clock drift
    ],
)
def test_the_window_edges_are_accepted(ts, stored):
    event = {"type": "click", "item_id": "a", "session_id": "s", "ts": ts}
    [record] = feedback_records(batch(event), FEEDBACK_TYPES, CONTEXT, RECEIVED, None)
    assert record["ts"] == stored


@pytest.mark.parametrize(
    ("device", "country", "logged"),
    [
        ("m" * 64, "de", ("m" * 64, "de")),
        ("m" * 65, "de", ("", "de")),  # longer than a body's label may be
        ("mobile", "d\x7fe", ("mobile", "")),
        ("mobile\x85", "d\te", ("", "")),
        ("mobile", "pl\u2028", ("mobile", "")),
    ],
)
def test_a_header_label_no_body_could_send_is_logged_unknown(device, country, logged):
    context = ResolvedContext(device, country, 21, "evening")
    event = {"type": "click", "item_id": "a", "session_id": "s"}
    [record] = feedback_records(batch(event), FEEDBACK_TYPES, context, RECEIVED, None)
    assert (record["device"], record["country"]) == logged
    given = {**event, "device": "tablet", "country": "fr"}  # the body's own labels win
    [record] = feedback_records(batch(given), FEEDBACK_TYPES, context, RECEIVED, None)
    assert (record["device"], record["country"]) == ("tablet", "fr")
