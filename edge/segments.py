"""Micro-segments: the per-visitor features they are learned from and the rules a shop writes
over those features. `export` computes the features from the event log and fits the graph that
assigns a cluster (see `edge.visitor`); the edge computes them from a live session for visitors
without a profile."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Struct

from edge.conditions import bound_errors, holds
from edge.signals import SessionSignals

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


class SegmentRule(Struct, frozen=True, forbid_unknown_fields=True):
    """A named segment that wins over the clusters where every condition holds, e.g.
    name = "busy explorers", when = { sessions_per_week = { gt = 5 }, categories = { ge = 3 } }.
    A build config's [[segments.rules]] and the manifest's `models.segments.rules`."""

    name: Annotated[str, Meta(min_length=1, max_length=64)]
    when: dict[str, dict[str, float]]  # {feature: {operator: bound}}

    def matches(self, features: dict[str, float]) -> bool:
        return all(
            holds(op, features[name], bound)
            for name, bounds in self.when.items()
            for op, bound in bounds.items()
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
        for op, bound in bounds.items():
            errors += bound_errors(f"segment rule {name!r}, {feature}", op, bound, numeric=True)
    if not conditions:
        errors.append(f"segment rule {name!r} has no conditions")
    return errors


def session_segment_features(signals: SessionSignals) -> dict[str, float]:
    """The features of a visitor known only from this session."""
    return {
        "recency_days": 0.0,
        "sessions": 1.0,
        "monetary": signals.spent,
        "sessions_per_week": 1.0,
        "categories": float(signals.categories),
        "cart_abandon_share": 1.0 if signals.cart_adds and not signals.purchases else 0.0,
        "avg_dwell_s": signals.dwell_s / signals.dwelled_views if signals.dwelled_views else 0.0,
    }


def matching_rule(rules: list[SegmentRule], features: dict[str, float]) -> str | None:
    """The name of the first rule that matches: rules take precedence over clusters."""
    return next((rule.name for rule in rules if rule.matches(features)), None)
