"""Purchase intent: the session signals a visitor shows before buying, and the ONNX classifier
that turns them into the probability that this session ends in a purchase. `export` builds
training rows with `intent_features`, from the same code, so training and serving agree."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from edge.ranker import Ranker

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
    events: Sequence,
    category_of: Callable[[str], int],
    hours_since_last_visit: float,
    past_purchases: int | None,
    device: str,
    local_hour: int,
) -> list[float]:
    """One row of `INTENT_FEATURES` from this session's events so far (oldest first)."""
    kinds = [e.type for e in events]
    items = {e.item_id for e in events}
    categories = {category_of(i) for i in items} - {-1}
    dwell = sum(e.dwell_ms for e in events if e.type == "view" and e.dwell_ms) / 1000.0
    return [
        float(len(events)),
        float(len(items)),
        float(len(categories)),
        dwell,
        float(kinds.count("add_to_cart")),
        float(kinds.count("remove_from_cart")),
        hours_since_last_visit,
        0.0 if past_purchases is None else 1.0,
        float(past_purchases or 0),
        1.0 if device == "mobile" else 0.0,
        1.0 if device == "tablet" else 0.0,
        float(local_hour),
    ]


@dataclass(frozen=True)
class IntentLabels:
    """Probability thresholds, from the build config: at or over `high` is "high intent", at or
    over `browsing` is "browsing", below is "lurker"."""

    high: float = 0.5
    browsing: float = 0.1

    def label(self, probability: float) -> str:
        if probability >= self.high:
            return "high intent"
        return "browsing" if probability >= self.browsing else "lurker"


class IntentModel:
    def __init__(self, onnx_bytes: bytes, labels: IntentLabels) -> None:
        self.classifier = Ranker(onnx_bytes, INTENT_FEATURES, name="intent")
        self.labels = labels

    def predict(self, row: list[float]) -> tuple[float, str]:
        probability = float(self.classifier.predict(np.array([row], dtype=np.float32))[0])
        if not math.isfinite(probability):
            probability = 0.0
        return probability, self.labels.label(probability)
