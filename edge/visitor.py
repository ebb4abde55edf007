"""Who a visitor is and how likely they are to buy: the segment graph and the intent classifier
as two heads of one ONNX graph (`visitor.onnx`), so a request pays for one onnxruntime call
instead of two. Either head is absent when export could not learn it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edge.errors import BundleError
from edge.intent import INTENT_FEATURES, IntentLabels, intent_features
from edge.model import ItemTable
from edge.onnx_session import onnx_session
from edge.schemas import Intent, Profile, ResolvedContext, SessionEvent
from edge.segments import SEGMENT_FEATURES, SegmentRule, matching_rule, session_segment_features
from edge.signals import session_signals

# The graph's contract; export names the heads' inputs and outputs so.
SEGMENT_INPUT, SEGMENT_OUTPUT = "segment_features", "segment_label"
INTENT_INPUT, INTENT_OUTPUT = "intent_features", "intent_probabilities"


@dataclass(frozen=True)
class SegmentHead:
    names: list[str]  # the segment name of each cluster index
    rules: list[SegmentRule]  # checked before the clusters, in order
    codes: dict[str, float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # The ranker's number for each segment, built once: the cluster index, or after the
        # clusters the index of the rule that names it (the first wins, as in assignment).
        codes: dict[str, float] = {}
        for i, name in enumerate([*self.names, *(r.name for r in self.rules)]):
            codes.setdefault(name, float(i))
        object.__setattr__(self, "codes", codes)

    def code(self, segment: str | None) -> float:
        """The segment as a number for the ranker; NaN for none (or one this bundle does not
        know)."""
        return self.codes.get(segment, math.nan) if segment is not None else math.nan


class VisitorModel:
    """`visitor.onnx` in one onnxruntime session, built once, with what the manifest says of
    its heads: the segment names and rules, and the intent labels' thresholds."""

    def __init__(
        self,
        onnx_bytes: bytes,
        segments: SegmentHead | None,
        labels: IntentLabels | None,
        file: str = "visitor.onnx",
    ) -> None:
        self.session = onnx_session(onnx_bytes, file)
        inputs = {i.name: i.shape[-1] for i in self.session.get_inputs()}
        wanted = {}
        if segments is not None:
            wanted[SEGMENT_INPUT] = len(SEGMENT_FEATURES)
        if labels is not None:
            wanted[INTENT_INPUT] = len(INTENT_FEATURES)
        if inputs != wanted:
            raise BundleError(
                f"{file} takes inputs {inputs}, but the manifest describes {wanted}", file=file
            )
        self.segments, self.labels = segments, labels
        self.outputs = [SEGMENT_OUTPUT] if segments else []
        self.outputs += [INTENT_OUTPUT] if labels else []
        # Zeros for a head whose answer is not wanted (a known customer's stored segment).
        self.idle_segment_row = np.zeros((1, len(SEGMENT_FEATURES)), np.float32)

    def run(
        self, segment_rows: np.ndarray | None, intent_rows: np.ndarray | None
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(cluster index, purchase probability) per row, each None when this bundle lacks the
        head. Rows are float32 in `SEGMENT_FEATURES` and `INTENT_FEATURES` order."""
        feeds: dict[str, np.ndarray | None] = {}
        if self.segments is not None:
            feeds[SEGMENT_INPUT] = self.idle_segment_row if segment_rows is None else segment_rows
        if self.labels is not None:
            feeds[INTENT_INPUT] = intent_rows
        results = iter(self.session.run(self.outputs, feeds))
        clusters = next(results) if self.segments is not None else None
        probabilities = next(results)[:, 1] if self.labels is not None else None
        return clusters, probabilities

    def describe(
        self,
        stored_segment: str | None,
        segment_features: dict[str, float],
        intent_row: list[float],
    ) -> tuple[str | None, Intent | None]:
        """One visitor's segment (the stored one, else the first matching rule, else the
        nearest cluster) and (purchase probability, its label)."""
        segment, row = None, None
        if self.segments is not None:
            segment = stored_segment or matching_rule(self.segments.rules, segment_features)
            if segment is None:
                row = np.array([[segment_features[f] for f in SEGMENT_FEATURES]], np.float32)
        intent_rows = np.array([intent_row], np.float32) if self.labels is not None else None
        clusters, probabilities = None, None
        if row is not None or intent_rows is not None:  # else nothing is left to compute
            clusters, probabilities = self.run(row, intent_rows)
        if clusters is not None and row is not None and self.segments is not None:
            segment = self.segments.names[int(clusters[0])]
        intent = None
        if probabilities is not None and self.labels is not None:
            probability = float(probabilities[0])
            if not math.isfinite(probability):
                probability = 0.0
            intent = Intent(round(probability, 4), self.labels.label(probability))
        return segment, intent


def describe_visitor(
    visitor: VisitorModel,
    items: ItemTable,
    profile: Profile | None,
    events: Sequence[SessionEvent],
    context: ResolvedContext,
    now: float,
) -> tuple[str | None, Intent | None]:
    """A visitor's segment (a known customer's stored one, else from this session) and purchase
    intent at time `now` (epoch seconds), from one pass over the session and one onnxruntime
    call. The edge asks at the request's time; export, at each training case's."""
    signals = session_signals(events, items.categories, items.prices)
    hours, purchases = math.nan, None
    if profile is not None:
        hours = max(0.0, (now - profile.last_ts) / 3600.0)
        purchases = profile.n_purchases
    return visitor.describe(
        profile.segment if profile is not None else None,
        session_segment_features(signals),
        intent_features(signals, hours, purchases, context.device, context.local_hour),
    )


def visitor_features(
    visitor: VisitorModel | None, segment: str | None, intent: Intent | None
) -> tuple[float, float]:
    """(purchase_intent, segment): the ranker's visitor features, NaN where unknown."""
    probability = intent.probability if intent is not None else math.nan
    segments = visitor.segments if visitor is not None else None
    return probability, segments.code(segment) if segments is not None else math.nan
