"""Build the ranker's rows and fit it: `RankingInput` (the events, the learned
segments, and the candidate models of the history when the evaluation already fitted them)
→ `FittedRanker` (the ranker's ONNX graph and what the manifest says of its training).

Its rows are the candidates the edge would score for each visitor of a label window at the
end of the log, described by models of the events before the window only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import pandas as pd

from edge.bundle import model_from_trees
from edge.bundle.manifest import RankerTraining
from edge.intent import IntentLabels
from edge.scoring import CONTEXT_FEATURES, FEATURES
from edge.visitor import SegmentHead, VisitorModel
from export.cases import time_split
from export.config import BuildConfig
from export.errors import CannotTrainError
from export.intent import fit_intent
from export.profiles import build_profiles
from export.ranker import fit_trees, ranker_to_onnx, training_rows
from export.stages.candidates import fit_candidates
from export.stages.read import Dataset
from export.stages.split import cases_for, ranker_label_days
from export.stages.visitors import LearnedSegments
from export.visitor import visitor_graph


@dataclass(frozen=True, eq=False)  # eq=False: DataFrames have no truth value to compare
class FittedBefore:
    """Candidate models and customers' segment features of the first `rows` events of a build's,
    in time order (a time split's training part). The evaluation computes them on its training
    part; when that part is the final ranker's history (the default holdout is the label
    window), the ranker reuses them: the same fit on the same events, once instead of twice.
    Two time splits of the same events that keep the same number of rows keep the same rows."""

    rows: int
    trees: dict[str, dict[str, Any]]
    segment_features: pd.DataFrame | None = None


@dataclass(frozen=True, eq=False)
class RankingInput:
    data: Dataset
    segments: LearnedSegments | None  # learned on all of `data` (the ones the bundle serves)
    fitted_before: FittedBefore | None = None


@dataclass(frozen=True)
class FittedRanker:
    onnx: bytes
    training: RankerTraining  # what the manifest says of its training


def fit_ranking(inputs: RankingInput, config: BuildConfig) -> FittedRanker:
    """The ranker, and what the manifest says of its training.

    Its visitor features come from models the label window cannot leak into: purchase intent
    from a classifier fitted on the part before it; the segment from the segments learned on
    all of the events (the ones the bundle serves, so their codes mean the same in training
    and serving), assigned from each customer's history before the window."""
    events, universe, segments = inputs.data.events, inputs.data.universe, inputs.segments
    weights = config.events.weights
    rc, ic = config.ranker, config.intent
    label_days = ranker_label_days(events, config)
    history, labels = time_split(events, label_days)
    reused = None
    if inputs.fitted_before is not None and inputs.fitted_before.rows == len(history):
        reused = inputs.fitted_before
    if reused is not None:
        trees = reused.trees
    else:
        trees = fit_candidates(inputs.data.with_events(history), config).trees
    model = model_from_trees(trees, weights, ranker=None)
    history_intent = None
    if rc.intent_feature:
        history_intent, _ = fit_intent(
            history, universe, ic.train_days, ic.eval_days, ic.max_sessions, config.seed
        )
    intent_labels = IntentLabels(ic.high, ic.browsing)
    profiles = build_profiles(history, weights, universe=universe)
    if segments is not None:
        if reused is not None and reused.segment_features is not None:
            segment_before = segments.assign(reused.segment_features)
        else:
            segment_before = segments.of(history)
        profiles = {
            user: msgspec.structs.replace(profile, segment=segment_before.get(user, ""))
            for user, profile in profiles.items()
        }
    visitor = _visitor_model(segments, history_intent, intent_labels)
    # Leave-last-out is an evaluation split; inside the training part, the window is a time one.
    protocol = config.evaluation.protocol.replace("leave_last_out", "users")
    protocol, cases = cases_for(protocol, history, labels, profiles, config, rc.max_cases)
    try:
        x, y, stats = training_rows(
            model,
            profiles,
            cases,
            rc.negatives_per_case,
            config.seed,
            config.serving.candidates,
            visitor,
        )
    except CannotTrainError as exc:
        raise CannotTrainError(f"{exc}. {_windows(history, labels, label_days)}") from exc
    # A constant column is one no tree can split on: how each ablation switch works.
    switched_off = [] if rc.context_features else list(CONTEXT_FEATURES)
    switched_off += [] if rc.intent_feature else ["purchase_intent"]
    switched_off += [] if rc.segment_feature else ["segment"]
    x[:, [FEATURES.index(f) for f in switched_off]] = 0.0
    ranker = fit_trees(x, y, rc.max_iter, rc.max_leaf_nodes, rc.learning_rate, config.seed)
    training = RankerTraining(
        **stats,
        protocol=protocol,
        label_days=round(label_days, 2),
        label_cut=labels["ts"].min().isoformat(),
        trees=int(ranker.n_iter_),
        features_switched_off=switched_off,
    )
    return FittedRanker(ranker_to_onnx(ranker), training)


def _windows(history: pd.DataFrame, labels: pd.DataFrame, label_days: float) -> str:
    """What the label window held, for an error that must say what in the data caused it."""
    first, cut, last = history["ts"].min(), labels["ts"].min(), labels["ts"].max()
    return (
        f"The label window is the last {label_days:.1f} days ({cut:%Y-%m-%d %H:%M} to "
        f"{last:%Y-%m-%d %H:%M}: {len(labels):,} events of {labels['user_id'].nunique():,} "
        f"customers), after {len(history):,} events from {first:%Y-%m-%d %H:%M}; set "
        "ranker.label_days to a window that holds a share of the visitors (the data-quality "
        "table counts the stray timestamps already dropped)"
    )


def _visitor_model(
    segments: LearnedSegments | None, intent_onnx: bytes | None, labels: IntentLabels
) -> VisitorModel | None:
    """The visitor graph the ranker's training rows are described with, as the edge runs it."""
    graph = visitor_graph(segments.onnx if segments else None, intent_onnx)
    if graph is None:
        return None
    head = None
    if segments is not None:
        head = SegmentHead(segments.segmenter.names_, segments.rules)
    return VisitorModel(graph, head, labels if intent_onnx else None)
