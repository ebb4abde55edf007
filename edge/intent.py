"""Purchase intent: the session signals a visitor shows before buying, which a classifier (run
by `edge.visitor`) turns into the probability that this session ends in a purchase, and the
labels that probability is given. `export` builds training rows with `intent_features`, from
the same code, so training and serving agree."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Struct

from edge.signals import SessionSignals

INTENT_FEATURES = (
    "events",  # events so far in this session
    "distinct_items",
    "distinct_categories",
    "dwell_s",  # seconds spent on viewed items, summed (0 when unknown)
    "cart_adds",
    "cart_removes",
    "hours_since_last_visit",  # NaN for a first visit or an anonymous visitor
    "returning",  # 1 when the visitor is a known customer
    "past_purchases",  # purchases before this session (known customers)
    "mobile",
    "tablet",
    "local_hour",
)


def intent_features(
    signals: SessionSignals,
    hours_since_last_visit: float,
    past_purchases: int | None,
    device: str,
    local_hour: int,
) -> list[float]:
    """One row of `INTENT_FEATURES` from this session's signals so far."""
    return [
        float(signals.events),
        float(signals.items),
        float(signals.categories),
        signals.dwell_s,
        float(signals.cart_adds),
        float(signals.cart_removes),
        hours_since_last_visit,
        0.0 if past_purchases is None else 1.0,
        float(past_purchases or 0),
        1.0 if device == "mobile" else 0.0,
        1.0 if device == "tablet" else 0.0,
        float(local_hour),
    ]


class IntentLabels(Struct, frozen=True, forbid_unknown_fields=True):
    """Probability thresholds, from the build config (the manifest's `models.intent.labels`):
    at or over `high` is "high intent", at or over `browsing` is "browsing", below is "lurker"."""

    high: Annotated[float, Meta(ge=0.0, le=1.0)] = 0.5
    browsing: Annotated[float, Meta(ge=0.0, le=1.0)] = 0.1

    def label(self, probability: float) -> str:
        if probability >= self.high:
            return "high intent"
        return "browsing" if probability >= self.browsing else "lurker"
