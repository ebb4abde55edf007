"""The composite ranker: gradient-boosted trees over candidate × context features, trained on a
time split and exported to ONNX.

Training rows come from the edge's own `candidate_features`, run on models fitted before the
label window, so the ranker learns from exactly the features it will be served."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import skl2onnx.common.tree_ensemble as tree_ensemble
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from edge.model import Model
from edge.rules import cart_from
from edge.schemas import Profile
from edge.scoring import (
    FEATURES,
    NO_DEADLINE,
    CandidateSizes,
    build_user_state,
    candidate_features,
)
from edge.visitor import VisitorModel, describe_visitor, visitor_features
from export.cases import Case
from export.errors import CannotTrainError
from export.selection import HeldCase

ONNX_TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}


@contextlib.contextmanager
def _ints_for_missing_tracks() -> Iterator[None]:
    """skl2onnx 1.20 writes a Python bool into an ONNX int list for every HistGradientBoosting
    leaf ("Expected an int, got a boolean"); pass ints instead. The parity test guards it."""
    original = tree_ensemble.add_node

    def add_node(*args: Any, nodes_missing_value_tracks_true: int = 0, **kwargs: Any) -> Any:
        return original(
            *args, nodes_missing_value_tracks_true=int(nodes_missing_value_tracks_true), **kwargs
        )

    tree_ensemble.add_node = add_node
    try:
        yield
    finally:
        tree_ensemble.add_node = original


@dataclass(frozen=True)
class TrainingRows:
    x: np.ndarray  # float32 [rows, len(FEATURES)]
    y: np.ndarray  # int8 [rows]: the visitor took the item
    fold: np.ndarray  # int8 [rows]: the validation fold of the row's case, -1 for none
    held: list[HeldCase]  # the validation cases' full candidate lists
    stats: dict[str, int]


def training_rows(
    model: Model,
    profiles: dict[str, Profile],
    cases: list[Case],
    negatives_per_case: int,
    seed: int,
    sizes: CandidateSizes = CandidateSizes(),
    visitor: VisitorModel | None = None,
    folds: np.ndarray | None = None,
) -> TrainingRows:
    """One row per (case, candidate): features, and whether the visitor took that item.
    Negatives are subsampled per case; cases without a positive among their candidates give no
    rows (the ranker cannot fix what the candidate sources missed). With `visitor` (segments
    and an intent model the cases cannot leak into), each case's segment and purchase intent
    are features. `folds`, a validation fold per case (-1: none): the cases in one also keep
    every candidate, as the edge would rank them (`HeldCase`), with a positive or not: the
    selection guard's questions."""
    rng = np.random.default_rng(seed)
    xs, ys, row_folds = [], [], []
    held: list[HeldCase] = []
    stats = {"cases": len(cases), "cases_with_positive": 0, "rows": 0, "positives": 0}
    for position, case in enumerate(cases):
        profile = profiles.get(case.user_id) if case.user_id else None
        # As the edge answers: the cart the session's events leave is never a candidate.
        state = build_user_state(model, profile, case.session, exclude=cart_from(case.session))
        segment, intent = None, None
        if visitor is not None:
            segment, intent = describe_visitor(
                visitor, model.items, profile, case.session, case.context, case.ts
            )
        found = visitor_features(visitor, segment, intent)
        candidates = candidate_features(model, state, case.context, sizes, NO_DEADLINE, *found)
        wanted = model.items.lookup(list(case.relevant))
        label = np.isin(candidates.items, wanted)
        fold = -1 if folds is None else int(folds[position])
        if fold >= 0:
            held.append(HeldCase(candidates.features, label, len(case.relevant), fold))
        if not label.any():
            continue
        negatives = np.flatnonzero(~label)
        if negatives.size > negatives_per_case:
            negatives = rng.choice(negatives, negatives_per_case, replace=False)
        rows = np.concatenate([np.flatnonzero(label), negatives])
        xs.append(candidates.features[rows])
        ys.append(label[rows])
        row_folds.append(np.full(rows.size, fold, dtype=np.int8))
        stats["cases_with_positive"] += 1
    if not xs:
        raise CannotTrainError(
            f"no visitor in the label window ({len(cases):,} asked) took any of their "
            "candidates; the ranker cannot be trained. More history, a longer ranker.label_days "
            "or other evaluation.target_types may help"
        )
    x, y = np.concatenate(xs), np.concatenate(ys).astype(np.int8)
    stats["rows"], stats["positives"] = int(y.size), int(y.sum())
    return TrainingRows(x, y, np.concatenate(row_folds), held, stats)


def fit_trees(
    x: np.ndarray,
    y: np.ndarray,
    max_iter: int,
    max_leaf_nodes: int,
    learning_rate: float,
    seed: int,
) -> HistGradientBoostingClassifier:
    """Gradient-boosted trees for a binary label: the ranker, and the intent classifier."""
    model = HistGradientBoostingClassifier(
        max_iter=max_iter,
        max_leaf_nodes=max_leaf_nodes,
        learning_rate=learning_rate,
        early_stopping=y.size > 2_000,
        validation_fraction=0.15,
        n_iter_no_change=10,
        l2_regularization=1.0,
        random_state=seed,
    )
    # scikit-learn cannot bin a column without a single value (no intent model, or hours since
    # the last visit in a log of anonymous sessions); such a column says nothing: make it 0.
    empty = np.isnan(x).all(axis=0)
    if empty.any():
        x = x.copy()
        x[:, empty] = 0.0
    # One OpenMP thread: after implicit's own OpenMP runtime has run in this process, a second
    # runtime's spinning workers contend on 2 cores (fit times went from 0.5 s to 17 s).
    with threadpool_limits(1, "openmp"):
        return model.fit(x, y)


def ranker_to_onnx(model: HistGradientBoostingClassifier) -> bytes:
    return classifier_to_onnx(model, FEATURES, "edgeperso composite ranker")


def classifier_to_onnx(
    model: HistGradientBoostingClassifier, features: tuple[str, ...], title: str
) -> bytes:
    """Gradient-boosted trees to ONNX: float32 `features` [n, len(features)] in, `label` and
    `probabilities` out."""
    inputs = [("features", FloatTensorType([None, len(features)]))]
    with _ints_for_missing_tracks():
        graph = to_onnx(
            model,
            initial_types=inputs,
            options={id(model): {"zipmap": False}},
            target_opset=ONNX_TARGET_OPSET,
        )
    graph.doc_string = f"{title}; input: float32 [n, {len(features)}] in order " + ",".join(
        features
    )
    onnx.checker.check_model(graph)
    serialized: bytes = graph.SerializeToString()
    return serialized
