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
