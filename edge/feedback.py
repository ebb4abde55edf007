"""Feedback batches into log records: checked beyond what the schema can say, completed from the
request's context, and written in the columns `edgeperso export` reads, so the log of what
visitors did after seeing an answer is the next build's input."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime

from edge.errors import ValidationError
from edge.schemas import FeedbackBatch, ResolvedContext


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
    stamp = received.astimezone(UTC).isoformat(timespec="milliseconds")
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
            "device": e.device if e.device is not None else context.device,
            "country": e.country if e.country is not None else context.country,
            "local_hour": e.local_hour if e.local_hour is not None else context.local_hour,
            "event_id": e.event_id,
            "slot": e.slot,
            "experiment": e.experiment,
            "variant": e.variant,
            "propensity": e.propensity,
            "received_at": stamp,
            "bundle": bundle,
        }
        for e in batch.events
    ]
