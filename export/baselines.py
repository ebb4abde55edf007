"""The public recommenders edgeperso is measured against: most popular, item-kNN (cosine),
implicit ALS, EASE and LightFM (when installed).

Each is fitted on a users × items matrix of summed event weights and scores a visitor from
their history (a weighted bag of item indices), so any of them can answer any `Case`: a known
customer's history is their row of the training matrix, an anonymous session's is its events.
Each names a small grid of hyperparameters; `evaluate` tunes them on a validation split carved
from the training part."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from edge.scoring import solve_user
from export.embeddings import ItemEmbeddings
from export.item_regression import ease_weights


@dataclass(frozen=True)
class History:
    """What a baseline knows of one visitor."""

    items: np.ndarray  # unique item indices
    weights: np.ndarray  # summed event weight per item
    row: int = -1  # their row in the training matrix; -1 when they are not in it


class Baseline(Protocol):
    name: str

    def fit(self, matrix: sp.csr_matrix) -> Baseline: ...

    def scores(self, history: History) -> np.ndarray:
        """A score per catalog item for this visitor."""
        ...


class MostPopular:
    name = "popular"
    personal = False  # the same scores for every visitor: evaluation ranks them once

    def fit(self, matrix: sp.csr_matrix) -> MostPopular:
        # Distinct users per item: one heavy buyer should not make an item "popular".
        self.counts_ = np.asarray((matrix > 0).sum(axis=0), dtype=np.float64).ravel()
        return self

    def scores(self, history: History) -> np.ndarray:
        return self.counts_


class ItemKNN:
    """Cosine similarity between items' user vectors, the `neighbours` most similar kept per
    item; a visitor's score is the similarity to their items, summed with log weights."""

    name = "item_knn"

    def __init__(self, neighbours: int = 100, shrink: float = 0.0) -> None:
        self.neighbours, self.shrink = neighbours, shrink

    def fit(self, matrix: sp.csr_matrix) -> ItemKNN:
        binary = (matrix > 0).astype(np.float32).tocsc()
        norms = np.sqrt(np.asarray(binary.sum(axis=0)).ravel())
        overlap = (binary.T @ binary).tocsr()
        overlap.setdiag(0)
        overlap.eliminate_zeros()
        rows = np.repeat(np.arange(overlap.shape[0]), np.diff(overlap.indptr))
        cols = overlap.indices
        sim = overlap.data / (norms[rows] * norms[cols] + self.shrink + 1e-9)
        self.similarity_ = _top_per_row(
            sp.csr_matrix((sim, (rows, cols)), shape=overlap.shape), self.neighbours
        )
        return self

    def scores(self, history: History) -> np.ndarray:
        if history.items.size == 0:
            return np.zeros(self.similarity_.shape[0])
        rows = self.similarity_[history.items]
        return np.asarray(rows.T @ np.log1p(history.weights)).ravel()


def _top_per_row(matrix: sp.csr_matrix, n: int) -> sp.csr_matrix:
    matrix = matrix.tocsr()
    rows, cols, vals = [], [], []
    for r in range(matrix.shape[0]):
        start, end = matrix.indptr[r], matrix.indptr[r + 1]
        if end == start:
            continue
        data = matrix.data[start:end]
        keep = np.argsort(-data, kind="stable")[:n]
        rows.append(np.full(keep.size, r))
        cols.append(matrix.indices[start:end][keep])
        vals.append(data[keep])
    if not rows:
        return sp.csr_matrix(matrix.shape, dtype=np.float32)  # type: ignore[arg-type]  # scipy-stubs: an empty matrix of a shape is float64 only
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=matrix.shape,
        dtype=np.float32,
    )


class ALS:
    """implicit's ALS; a visitor is folded in by the exact least-squares step (as the edge does)."""

    name = "als"

    def __init__(
        self, factors: int = 64, regularization: float = 0.05, alpha: float = 2.0, seed: int = 0
    ) -> None:
        self.factors, self.regularization, self.alpha, self.seed = (
            factors,
            regularization,
            alpha,
            seed,
        )

    def fit(self, matrix: sp.csr_matrix) -> ALS:
        self.model_ = ItemEmbeddings(
            self.factors, self.regularization, self.alpha, iterations=15, seed=self.seed
        ).fit(matrix)
        return self

    def scores(self, history: History) -> np.ndarray:
        y = self.model_.item_factors_
        if history.items.size == 0:
            return np.zeros(y.shape[0])
        user = solve_user(y[history.items], history.weights, self.model_.gram_, self.alpha)
        scores: np.ndarray = y @ user
        return scores


class EASE:
    """Embarrassingly shallow autoencoder (Steck 2019): the closed-form item × item ridge
    regression, with a zero diagonal. Dense in the number of items, so only for small catalogs."""

    name = "ease"

    def __init__(self, regularization: float = 250.0) -> None:
        self.regularization = regularization

    def fit(self, matrix: sp.csr_matrix) -> EASE:
        binary = (matrix > 0).astype(np.float32).tocsr()
        self.weights_ = ease_weights(binary, self.regularization).astype(np.float32)
        return self

    def scores(self, history: History) -> np.ndarray:
        if history.items.size == 0:
            return np.zeros(self.weights_.shape[0])
        scores: np.ndarray = self.weights_[history.items].sum(axis=0)
        return scores


class LightFMBaseline:
    """LightFM with the WARP loss and its standard identity features. A visitor it was trained on
    is their own embedding; anyone else (an anonymous session) is the mean of the embeddings of
    the items in their history, as LightFM has no fold-in of its own."""

    name = "lightfm"
    # Learned by `fit` from LightFM's (untyped) model, as float32.
    item_vectors_: np.ndarray
    item_bias_: np.ndarray
    user_vectors_: np.ndarray

    def __init__(self, components: int = 64, epochs: int = 20, seed: int = 0) -> None:
        self.components, self.epochs, self.seed = components, epochs, seed

    def fit(self, matrix: sp.csr_matrix) -> LightFMBaseline:
        from lightfm import LightFM

        binary = (matrix > 0).astype(np.float32).tocoo()
        model = LightFM(no_components=self.components, loss="warp", random_state=self.seed)
        model.fit(binary, epochs=self.epochs, num_threads=2)
        self.item_vectors_ = model.item_embeddings.astype(np.float32)
        self.item_bias_ = model.item_biases.astype(np.float32)
        self.user_vectors_ = model.user_embeddings.astype(np.float32)
        return self

    def scores(self, history: History) -> np.ndarray:
        user: np.ndarray
        if history.row >= 0:
            user = self.user_vectors_[history.row]
        elif history.items.size:
            user = self.item_vectors_[history.items].mean(axis=0)
        else:
            return self.item_bias_
        scores: np.ndarray = self.item_vectors_ @ user + self.item_bias_
        return scores


def lightfm_available() -> bool:
    return importlib.util.find_spec("lightfm") is not None


def grids(n_items: int, ease_max_items: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """The hyperparameters each baseline is tuned over (small grids: every point is a fit)."""
    out: dict[str, list[dict[str, Any]]] = {
        "popular": [{}],
        "item_knn": [{"neighbours": n, "shrink": s} for n in (20, 100, 400) for s in (0.0, 10.0)],
        "als": [
            {"factors": f, "regularization": r, "alpha": a, "seed": seed}
            for f in (32, 128)
            for r in (0.01, 0.5)
            for a in (1.0, 8.0)
        ],
    }
    if n_items <= ease_max_items:
        out["ease"] = [{"regularization": r} for r in (20.0, 100.0, 500.0, 2000.0)]
    if lightfm_available():
        out["lightfm"] = [
            {"components": c, "epochs": e, "seed": seed} for c in (32, 96) for e in (10, 40)
        ]
    return out


BASELINES: dict[str, type] = {
    "popular": MostPopular,
    "item_knn": ItemKNN,
    "als": ALS,
    "ease": EASE,
    "lightfm": LightFMBaseline,
}
