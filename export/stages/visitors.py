"""Fit segments and intent: what the bundle knows of each visitor.

- `fit_segments`: `Dataset` → `LearnedSegments` (or None: too few known customers), the
  customers' segments; the ranking stage needs them, so they come first.
- `fit_visitors`: `Dataset` + `LearnedSegments` → `Visitors`: the purchase-intent model, the
  visitor graph the edge runs (segment and intent heads), and each known user's profile."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import pandas as pd

from edge.bundle.manifest import IntentInfo, SegmentsInfo, SegmentSummary
from edge.intent import IntentLabels
from edge.schemas import Profile
from edge.segments import SEGMENT_FEATURES, SegmentRule
from export.config import BuildConfig
from export.intent import fit_intent
from export.interactions import ItemUniverse
from export.profiles import build_profiles
from export.segments import Segmenter, apply_rules, user_features
from export.stages.read import Dataset
from export.visitor import visitor_graph


@dataclass(frozen=True, eq=False)  # eq=False: DataFrames have no truth value to compare
class LearnedSegments:
    onnx: bytes  # the segment graph (log, scaling, nearest reference point)
    description: SegmentsInfo  # what the manifest says of them
    segmenter: Segmenter
    rules: list[SegmentRule]
    universe: ItemUniverse  # the items' categories, for the customers' features
    fitted: dict[str, str]  # the segment of each customer they were learned from
    features: pd.DataFrame  # the features of those customers (`user_features`)

    def of(self, events: pd.DataFrame) -> dict[str, str]:
        """Each known customer's segment from their events in `events` (rules first), as the
        edge's graph assigns it."""
        return self.assign(user_features(events, self.universe))

    def assign(self, features: pd.DataFrame) -> dict[str, str]:
        """The segment of each customer of `features` (`user_features` of some events)."""
        return _assigned(features, self.segmenter, self.rules)


@dataclass(frozen=True)
class Visitors:
    profiles: dict[str, Profile]  # user id → profile, with the user's segment
    graph: bytes | None  # visitor.onnx: the segment and intent heads, when either was learned
    segments: SegmentsInfo | None  # what the manifest says of them
    intent: IntentInfo | None


def _assigned(
    features: pd.DataFrame, segmenter: Segmenter, rules: list[SegmentRule]
) -> dict[str, str]:
    if features.empty:
        return {}
    found = segmenter.assign(features[list(SEGMENT_FEATURES)].to_numpy())
    clusters = [segmenter.names_[c] for c in found]
    return dict(zip(features.index, apply_rules(features, rules, clusters)))


def fit_segments(data: Dataset, config: BuildConfig) -> LearnedSegments | None:
    """Segments of the known customers in `data`; None when there are too few of them to
    cluster (a log of anonymous sessions)."""
    sc = config.segments
    universe = data.universe
    features = customer_features(data)
    if len(features) < max(50, 2 * sc.k_max):
        return None
    segmenter = Segmenter(
        sc.k, (sc.k_min, sc.k_max), config.seed, sc.method, sc.eps, sc.min_samples
    ).fit(features)
    rules = list(sc.rules)
    fitted = _assigned(features, segmenter, rules)
    sizes = pd.Series(list(fitted.values())).value_counts()
    description = SegmentsInfo(
        clusters=segmenter.names_,
        rules=rules,
        features=list(SEGMENT_FEATURES),
        method=sc.method,
        k=segmenter.k_,
        k_chosen_by="density" if sc.method == "dbscan" else "config" if sc.k else "silhouette",
        silhouette=segmenter.silhouettes_,
        stability=segmenter.stability_,
        table=[SegmentSummary(**row) for row in segmenter.table_],
        rule_sizes={r.name: int(sizes.get(r.name, 0)) for r in rules},
    )
    onnx = segmenter.to_onnx()
    return LearnedSegments(onnx, description, segmenter, rules, universe, fitted, features)


def fit_visitors(
    data: Dataset,
    segments: LearnedSegments | None,
    config: BuildConfig,
    intent_truth: pd.Series | None = None,
) -> Visitors:
    """`intent_truth` (true purchase probability by session id, from a simulated shop) adds a
    comparison with the truth to the intent model's evaluation."""
    intent_onnx, intent = purchase_intent(data, config, intent_truth)
    if intent is not None:
        labels = IntentLabels(config.intent.high, config.intent.browsing)
        intent = msgspec.structs.replace(intent, labels=labels)
    segment_of = segments.fitted if segments is not None else {}
    built = customer_profiles(data, config.events.weights, data.users)
    profiles = {
        user: msgspec.structs.replace(profile, segment=segment_of.get(user, ""))
        for user, profile in built.items()
    }
    return Visitors(
        profiles,
        visitor_graph(segments.onnx if segments else None, intent_onnx),
        segments.description if segments else None,
        intent,
    )


def customer_features(data: Dataset) -> pd.DataFrame:
    """`user_features` of every known customer: on Spark when the events are there."""
    if data.on_spark is not None:
        from export.spark.customers import customer_features as on_spark

        return on_spark(data.on_spark, data.universe, len(data))
    return user_features(data.events, data.universe)


def customer_profiles(
    data: Dataset,
    weights: dict[str, float],
    attributes: dict[str, dict[str, str]] | None = None,
) -> dict[str, Profile]:
    """`build_profiles` of every known customer: on Spark when the events are there."""
    if data.on_spark is not None:
        from export.spark.customers import customer_profiles as on_spark

        return on_spark(data.on_spark, weights, data.universe, len(data), attributes)
    return build_profiles(data.events, weights, attributes, universe=data.universe)


def purchase_intent(
    data: Dataset, config: BuildConfig, truth: pd.Series | None = None
) -> tuple[bytes | None, IntentInfo | None]:
    """`fit_intent` on the events: on Spark when they are there."""
    ic = config.intent
    windows = (ic.train_days, ic.eval_days, ic.max_sessions, config.seed, truth)
    if data.on_spark is not None:
        from export.spark.sessions import fit_intent as on_spark

        return on_spark(data.on_spark, data.universe, *windows)
    return fit_intent(data.events, data.universe, *windows)
