"""Micro-segments: the per-visitor features they are learned from, the rules a shop writes over
those features, and the ONNX graph (log transform, scaling and K-Means in one) that assigns a
cluster. `export` computes the same features from the event log and fits the graph; the edge
computes them from a live session for visitors without a profile."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from edge.errors import BundleError
from edge.ranker import session_options

# Per-visitor features, in real units (what a rule's thresholds are written in).
SEGMENT_FEATURES = (
    "recency_days",  # days since the last event (0 for a live session)
    "sessions",  # sessions seen
    "monetary",  # total spent on purchases
    "sessions_per_week",  # over the weeks between the first and the last event (at least one)
    "categories",  # distinct categories touched
    "cart_abandon_share",  # share of sessions with a cart add and no purchase
    "avg_dwell_s",  # mean seconds on a viewed item (0 when the log has no dwell)
)
# Skewed counts are clustered on log(1 + x); the graph applies it, so callers pass real units.
LOG_FEATURES = ("recency_days", "sessions", "monetary", "categories", "avg_dwell_s")

OPERATORS = {
    "gt": lambda x, v: x > v,
    "ge": lambda x, v: x >= v,
    "lt": lambda x, v: x < v,
    "le": lambda x, v: x <= v,
}


@dataclass(frozen=True)
class SegmentRule:
    """A named segment: every condition must hold ({feature: {operator: value}})."""

    name: str
    conditions: dict[str, dict[str, float]]

    def matches(self, features: dict[str, float]) -> bool:
        return all(
            OPERATORS[op](features[name], value)
            for name, bounds in self.conditions.items()
            for op, value in bounds.items()
        )


def rule_errors(name: str, conditions: dict[str, dict[str, float]]) -> list[str]:
    """What is wrong with a rule, naming the rule, the field and what is allowed."""
    errors = []
    for feature, bounds in conditions.items():
        if feature not in SEGMENT_FEATURES:
            errors.append(
                f"segment rule {name!r}: unknown feature {feature!r}; allowed: "
                f"{', '.join(SEGMENT_FEATURES)}"
            )
            continue
        for op, value in bounds.items():
            if op not in OPERATORS:
                errors.append(
                    f"segment rule {name!r}, {feature}: unknown operator {op!r}; allowed: "
                    f"{', '.join(OPERATORS)}"
                )
            elif not isinstance(value, int | float) or not math.isfinite(value):
                errors.append(f"segment rule {name!r}, {feature}.{op}: {value!r} is not a number")
    if not conditions:
        errors.append(f"segment rule {name!r} has no conditions")
    return errors


def session_segment_features(
    events: list, category_of: Callable[[str], int], price_of: Callable[[str], float]
) -> dict[str, float]:
    """The features of a visitor known only from this session (oldest event first), with the
    bundle's item table behind `category_of` (-1 unknown) and `price_of` (0 unknown)."""
    kinds = [e.type for e in events]
    carted, bought = "add_to_cart" in kinds, "purchase" in kinds
    dwells = [e.dwell_ms / 1000.0 for e in events if e.type == "view" and e.dwell_ms]
    touched = {category_of(e.item_id) for e in events} - {-1}
    return {
        "recency_days": 0.0,
        "sessions": 1.0,
        "monetary": sum(price_of(e.item_id) for e in events if e.type == "purchase"),
        "sessions_per_week": 1.0,
        "categories": float(len(touched)),
        "cart_abandon_share": 1.0 if carted and not bought else 0.0,
        "avg_dwell_s": sum(dwells) / len(dwells) if dwells else 0.0,
    }


class SegmentAssigner:
    """Rules first (in their order), then the nearest K-Means centre."""

    def __init__(self, onnx_bytes: bytes, names: list[str], rules: list[SegmentRule]) -> None:
        try:
            self.session = ort.InferenceSession(
                onnx_bytes, sess_options=session_options(), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise BundleError(f"segments.onnx cannot be loaded: {exc}", file="segments.onnx")
        self.input_name = self.session.get_inputs()[0].name
        self.names = names
        self.rules = rules

    def clusters(self, rows: np.ndarray) -> np.ndarray:
        """Cluster index of each row of real-unit features (float32 [n, len(SEGMENT_FEATURES)])."""
        (labels,) = self.session.run(["label"], {self.input_name: rows.astype(np.float32)})
        return labels.astype(np.int64)

    def assign(self, features: dict[str, float]) -> str:
        for rule in self.rules:
            if rule.matches(features):
                return rule.name
        row = np.array([[features[name] for name in SEGMENT_FEATURES]], dtype=np.float32)
        return self.names[int(self.clusters(row)[0])]
