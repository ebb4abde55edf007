"""Feedback batches into log records: checked beyond what the schema can say, completed from the
request's context, and written in the columns `edgeperso export` reads, so the log of what
visitors did after seeing an answer is the next build's input."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta

from edge.errors import ValidationError
from edge.json_text import FORBIDDEN_CHARACTERS
from edge.schemas import FeedbackBatch, ResolvedContext

# The window an event's own `ts` must fall in. Before it: a client clock at its epoch default,
# or a typo; past it: a clock set ahead, or a made-up date. Either would put the event in the
# wrong place of the next build's temporal split (or overflow turning it into UTC), so the
# batch is refused rather than the event stored with a time nobody meant.
EARLIEST_TS = datetime(2000, 1, 1, tzinfo=UTC)
MAX_TS_AHEAD = timedelta(days=1)  # clocks drift, and time zones are easy to get wrong
TS_WINDOW = "from 2000-01-01T00:00:00Z to one day past the server's clock"
# A context label from a header goes to the log as the build's device / country column; one
# longer than the body's own labels may be, or with a control character, is logged unknown.
MAX_HEADER_LABEL_CHARS = 64


def feedback_records(
    batch: FeedbackBatch,
    allowed_types: Collection[str],
    context: ResolvedContext,
    received: datetime,
    bundle: str | None,
) -> list[dict[str, object]]:
    """One record per event, in the export input contract's columns plus the decision fields.
    Raises `ValidationError` naming the first bad event; a batch is stored whole or not at all."""
    for i, event in enumerate(batch.events):
        if event.type not in allowed_types:
            raise ValidationError(
                f"event type {event.type!r} is not one this service logs; allowed: "
                f"{sorted(allowed_types)}",
                field=f"$.events[{i}].type",
            )
        if event.user_id is None and event.session_id is None:
            raise ValidationError(
                "an event needs a user_id or a session_id (or both), to know whose it is",
                field=f"$.events[{i}]",
            )
        if event.ts is not None and not EARLIEST_TS <= event.ts <= received + MAX_TS_AHEAD:
            latest = (received + MAX_TS_AHEAD).astimezone(UTC).isoformat(timespec="seconds")
            raise ValidationError(
                f"ts {event.ts.isoformat()} is outside the window this log accepts, {TS_WINDOW} "
                f"(it ends at {latest} now); send when the event happened, RFC 3339 with its "
                "offset, or leave ts out for the time it arrives",
                field=f"$.events[{i}].ts",
            )
    stamp = received.astimezone(UTC).isoformat(timespec="milliseconds")
    device, country = header_label(context.device), header_label(context.country)
    return [
        {
            "ts": (e.ts.astimezone(UTC).isoformat(timespec="milliseconds") if e.ts else stamp),
            "type": e.type,
            "item_id": e.item_id,
            "user_id": e.user_id or "",
            "session_id": e.session_id or "",
            "qty": e.qty,
            "price": e.price,
            "dwell_ms": e.dwell_ms,
            "device": e.device if e.device is not None else device,
            "country": e.country if e.country is not None else country,
            "local_hour": e.local_hour if e.local_hour is not None else context.local_hour,
            "event_id": e.event_id,
            "slot": e.slot,
            "experiment": e.experiment,
            "variant": e.variant,
            "propensity": e.propensity,
            "decision_id": e.decision_id,
            "received_at": stamp,
            "bundle": bundle,
        }
        for e in batch.events
    ]


def header_label(label: str) -> str:
    """A context label as the log keeps it: a header's value (the body's own labels were checked
    on arrival) that no body could have sent is logged unknown ("")."""
    if len(label) > MAX_HEADER_LABEL_CHARS or FORBIDDEN_CHARACTERS.search(label):
        return ""
    return label
