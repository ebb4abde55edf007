"""Build the ranker's rows and fit it: `RankingInput` (the events, the learned
segments, and the candidate models of the history when the evaluation already fitted them)
→ `FittedRanker` (the ranker's ONNX graph and what the manifest says of its training).

Its rows are the candidates the edge would score for each visitor of a label window at the
end of the log, described by models of the events before the window only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import pandas as pd

from edge.bundle import model_from_trees
from edge.bundle.manifest import RankerTraining, ScorerSelection
from edge.intent import IntentLabels
from edge.ranker import Ranker
from edge.scoring import CONTEXT_FEATURES, FEATURES, SCORERS
from edge.visitor import SegmentHead, VisitorModel
from export.config import BuildConfig
from export.errors import CannotTrainError
from export.ranker import TrainingRows, fit_trees, ranker_to_onnx, training_rows
from export.selection import MIN_VALIDATION_CASES, ndcg_by_scorer, select_scorer
from export.stages.candidates import fit_candidates
from export.stages.read import Dataset
from export.stages.split import (
    Holdout,
    Split,
    cases_for,
    choose_holdout,
    holdout,
    ranker_label_days,
)
from export.stages.visitors import (
    LearnedSegments,
    customer_features,
    customer_profiles,
    purchase_intent,
)
from export.visitor import visitor_graph

VALIDATION_SHARE = 0.2  # of a large label part's cases, held out of the ranker's first fit
VALIDATION_CASES = 5_000  # at most: enough to tell scorers apart, little memory (full lists)
# Up to this many cases, all of them are validated, each by a ranker fitted without its fold:
# a fifth of a few hundred cases is too few to tell scorers apart, and small fits are cheap.
CROSS_VALIDATE_UP_TO = 2_500
FOLDS = 5


@dataclass(frozen=True, eq=False)  # eq=False: DataFrames have no truth value to compare
class FittedBefore:
    """Candidate models and customers' segment features of the training part of a build's
    events under a `split` ("time" or "random") that kept `rows` events. The evaluation
    computes them on its training part; when that part is the final ranker's history (the
    default holdout is the label part), the ranker reuses them: the same fit on the same events,
    once instead of twice. Two time splits of the same events that keep the same number of rows
    keep the same rows; so do two random ones (same seed, same share)."""

    split: str
    rows: int
    trees: dict[str, dict[str, Any]]
    segment_features: pd.DataFrame | None = None


@dataclass(frozen=True, eq=False)
class RankingInput:
    data: Dataset
    segments: LearnedSegments | None  # learned on all of `data` (the ones the bundle serves)
    fitted_before: FittedBefore | None = None
    # How the label part is cut, settled once on all of a build's events (`choose_labels`):
    # the evaluation's ranker, fitted on a training part, is then built as the shipped one is.
    labels: Holdout | None = None


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
    rc = config.ranker
    label_days = ranker_label_days(inputs.data, config)
    chosen = inputs.labels or choose_labels(inputs.data, config)
    try:
        part = _label_rows(inputs, config, chosen, label_days)
    except CannotTrainError as exc:
        other = _other_labels(chosen, config)
        if other is None:
            raise
        try:
            chosen = other
            part = _label_rows(inputs, config, chosen, label_days)
        except CannotTrainError:
            raise exc from None  # the construction the data asked for says most
    rows, label_split, protocol = part.rows, part.split, part.protocol
    labels = label_split.test
    # A constant column is one no tree can split on: how each ablation switch works.
    switched_off = [] if rc.context_features else list(CONTEXT_FEATURES)
    switched_off += [] if rc.intent_feature else ["purchase_intent"]
    switched_off += [] if rc.segment_feature else ["segment"]
    off = [FEATURES.index(f) for f in switched_off]
    rows.x[:, off] = 0.0
    for case in rows.held:
        case.features[:, off] = 0.0
    selection = _guard(rows, config)
    ranker = fit_trees(
        rows.x, rows.y, rc.max_iter, rc.max_leaf_nodes, rc.learning_rate, config.seed
    )
    onnx = ranker_to_onnx(ranker)
    is_time = label_split.description.split == "time"
    training = RankerTraining(
        **rows.stats,
        protocol=protocol,
        label_days=round(label_days, 2) if is_time else 0.0,
        label_cut=_first(labels).isoformat(),
        trees=int(ranker.n_iter_),
        features_switched_off=switched_off,
        labels=label_split.description.split,
        labels_chosen_because=chosen.reason,
        selection=selection,
    )
    return FittedRanker(onnx, training)


@dataclass(frozen=True, eq=False)
class _LabelRows:
    rows: TrainingRows
    split: Split  # the history (train) and the label part (test)
    protocol: str  # the cases' kind


def _label_rows(
    inputs: RankingInput, config: BuildConfig, chosen: Holdout, label_days: float
) -> _LabelRows:
    """The ranker's training rows from the label part `chosen` cuts, described by models of the
    history before it."""
    segments = inputs.segments
    weights = config.events.weights
    rc, ic = config.ranker, config.intent
    label_split = holdout(inputs.data, config, chosen.protocol, label_days)
    history, labels = label_split.train, label_split.test
    reused = None
    before = inputs.fitted_before
    if before and (before.split, before.rows) == (label_split.description.split, len(history)):
        reused = before
    if reused is not None:
        trees = reused.trees
    else:
        trees = fit_candidates(history, config).trees
    model = model_from_trees(trees, weights, ranker=None)
    history_intent = None
    if rc.intent_feature:
        history_intent, _ = purchase_intent(history, config)
    intent_labels = IntentLabels(ic.high, ic.browsing)
    profiles = customer_profiles(history, weights)
    if segments is not None:
        if reused is not None and reused.segment_features is not None:
            segment_before = segments.assign(reused.segment_features)
        else:
            segment_before = segments.assign(customer_features(history))
        profiles = {
            user: msgspec.structs.replace(profile, segment=segment_before.get(user, ""))
            for user, profile in profiles.items()
        }
    visitor = _visitor_model(segments, history_intent, intent_labels)
    protocol, cases = cases_for(chosen.protocol, history, labels, profiles, config, rc.max_cases)
    folds = _validation_folds(len(cases), config.seed)
    try:
        rows = training_rows(
            model,
            profiles,
            cases,
            rc.negatives_per_case,
            config.seed,
            config.serving.candidates,
            visitor,
            folds,
        )
    except CannotTrainError as exc:
        described = _windows(history, labels, label_days, chosen.protocol)
        raise CannotTrainError(f"{exc}. {described}") from exc
    return _LabelRows(rows, label_split, protocol)


def _other_labels(chosen: Holdout, config: BuildConfig) -> Holdout | None:
    """For `ranker.labels = "auto"`, the other construction than `chosen`, for a label part
    whose visitors took none of their candidates."""
    if config.ranker.labels != "auto":
        return None
    failed = f"{chosen.reason}; no visitor of that part took a candidate, so"
    if chosen.protocol == "random":
        return Holdout("temporal", f"{failed} a time window instead")
    return Holdout("random", f"{failed} a random share of each customer's items instead")


def choose_labels(data: Dataset, config: BuildConfig) -> Holdout:
    """How the ranker's label part is cut from `data` (`ranker.labels`, whatever the
    evaluation's protocol): a window at the end, a random share of each customer's items, or
    for `auto` the one `choose_holdout` finds asks enough questions. A build settles it once,
    on all of its events, so the bundle `edgeperso evaluate` measures is the one `export`
    ships: a training part near a threshold could otherwise settle it the other way."""
    protocol = {"auto": "auto", "window": "temporal", "random": "random"}[config.ranker.labels]
    return choose_holdout(data, config, protocol, ranker_label_days(data, config))


def _validation_folds(n_cases: int, seed: int) -> np.ndarray:
    """The validation fold of each case (-1: fit only): FOLDS folds of every case up to
    CROSS_VALIDATE_UP_TO cases, else one fold of a fifth (at most VALIDATION_CASES); none when
    that would be under the guard's minimum."""
    folds = np.full(n_cases, -1, dtype=np.int8)
    order = np.random.default_rng(seed + 1).permutation(n_cases)
    if n_cases <= CROSS_VALIDATE_UP_TO:
        if n_cases >= MIN_VALIDATION_CASES:
            folds[order] = np.arange(n_cases) % FOLDS
        return folds
    folds[order[: min(VALIDATION_CASES, round(VALIDATION_SHARE * n_cases))]] = 0
    return folds


def _guard(rows: TrainingRows, config: BuildConfig) -> ScorerSelection:
    """The selection guard's figures: each fold's cases asked of a ranker fitted on the other
    rows (through its ONNX graph, as the edge scores), and of each generator alone."""
    rc, k = config.ranker, config.evaluation.k
    n_folds = int(rows.fold.max()) + 1 if rows.fold.size else 0
    per_fold: list[dict[str, np.ndarray]] = []
    for fold in range(n_folds):
        fit = rows.fold != fold
        if not rows.y[fit].any():  # every positive is in this fold: no ranker to ask
            continue
        trees = fit_trees(
            rows.x[fit], rows.y[fit], rc.max_iter, rc.max_leaf_nodes, rc.learning_rate, config.seed
        )
        held = [case for case in rows.held if case.fold == fold]
        per_fold.append(ndcg_by_scorer(Ranker(ranker_to_onnx(trees), FEATURES), held, k))
    per_case: dict[str, np.ndarray] = {}
    if per_fold:
        per_case = {s: np.concatenate([f[s] for f in per_fold]) for s in SCORERS}
    return select_scorer(per_case, k, config.serving.scorer, n_folds)


def _first(part: Dataset) -> pd.Timestamp:
    first = part.summary.first
    assert first is not None  # a label part without events stops the build before
    return first


def _windows(history: Dataset, labels: Dataset, label_days: float, protocol: str) -> str:
    """What the label part held, for an error that must say what in the data caused it."""
    who = _count(labels.summary.customers, "customer")
    anonymous = labels.anonymous_sessions()
    if anonymous:
        who += " and " + _count(anonymous, "anonymous session")
    if protocol == "random":
        return (
            f"The labels are a random share of each customer's items ({len(labels):,} events "
            f"of {who}), beside {len(history):,} events; a log of more "
            "customers with two items or more, or other evaluation.target_types, may help"
        )
    first, cut, last = history.summary.first, labels.summary.first, labels.summary.last
    since = "" if first is None else f" from {first:%Y-%m-%d %H:%M}"
    return (
        f"The label window is the last {label_days:.1f} days ({cut:%Y-%m-%d %H:%M} to "
        f"{last:%Y-%m-%d %H:%M}: {len(labels):,} events of {who}), after "
        f"{len(history):,} events{since}; set "
        "ranker.label_days to a window that holds a share of the visitors (the data-quality "
        "table counts the stray timestamps already dropped)"
    )


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


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
