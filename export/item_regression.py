"""Item-to-item regression (EASE, Steck 2019) as a sparse neighbour table for the edge.

EASE learns, for every item, how the other items a visitor has predict it: the closed-form
ridge regression of the items × items co-occurrence with a zero diagonal. It is the strongest
simple item-based model on purchase data, and one dense inversion: so it is fitted on the
`max_items` most-taken items, and only each item's `neighbours` best positive weights travel."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack
from threadpoolctl import threadpool_limits

from edge.bundle import graph_to_tree


def ease_weights(binary: sp.csr_matrix, regularization: float) -> np.ndarray:
    """The dense items × items EASE weight matrix B of a binary users × items matrix:
    B = I - P·diag(1/diag(P)), P = (XᵀX + λI)⁻¹; row j says how much having j predicts i."""
    gram = np.asarray((binary.T @ binary).todense(), dtype=np.float64)
    gram[np.diag_indices_from(gram)] += regularization
    with threadpool_limits(2, "blas"):
        precision = symmetric_inverse(gram)
    weights = precision / (-np.diag(precision))
    weights[np.diag_indices_from(weights)] = 0.0
    return weights


def symmetric_inverse(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a symmetric positive definite matrix by Cholesky (LAPACK potrf + potri):
    half the time of a general LU inverse for the 5,000² Gram (4.9 s against 9.7 s, relative
    difference 1e-15); LU when the factorization fails (the matrix is not positive definite)."""
    factor, info = lapack.dpotrf(matrix, lower=1)
    if info != 0:
        return np.linalg.inv(matrix)
    inverse, info = lapack.dpotri(factor, lower=1)
    if info != 0:
        return np.linalg.inv(matrix)
    full: np.ndarray = np.tril(inverse) + np.tril(inverse, -1).T  # potri fills the lower half
    return full


class ItemRegression:
    def __init__(
        self, regularization: float = 300.0, neighbours: int = 40, max_items: int = 5_000
    ) -> None:
        self.regularization = regularization
        self.neighbours = neighbours
        self.max_items = max_items

    def fit(self, matrix: sp.csr_matrix) -> ItemRegression:
        n_items = matrix.shape[1]
        binary = (matrix > 0).astype(np.float32).tocsc()
        takers = np.asarray(binary.sum(axis=0)).ravel()
        taken = np.flatnonzero(takers > 0)
        kept = taken[np.argsort(-takers[taken], kind="stable")[: self.max_items]]
        kept.sort()
        src, dst, scores = [], [], []
        if kept.size > 1:
            weights = ease_weights(binary[:, kept].tocsr(), self.regularization)
            n = min(self.neighbours, kept.size - 1)
            best = np.argpartition(-weights, n - 1, axis=1)[:, :n] if n else np.empty((0, 0))
            for row, columns in enumerate(best):
                w = weights[row, columns]
                positive = w > 0
                order = np.argsort(-w[positive], kind="stable")
                src.append(np.full(order.size, kept[row]))
                dst.append(kept[columns[positive][order]])
                scores.append(w[positive][order])
        src_all = np.concatenate(src) if src else np.empty(0, dtype=np.int64)
        self.indptr_ = np.searchsorted(src_all, np.arange(n_items + 1)).astype(np.int32)
        self.indices_ = (np.concatenate(dst) if dst else np.empty(0)).astype(np.int32)
        self.scores_ = (np.concatenate(scores) if scores else np.empty(0)).astype(np.float16)
        self.items_fitted_ = int(kept.size)
        return self

    def to_tree(self) -> dict[str, object]:
        return graph_to_tree(self.indptr_, self.indices_, self.scores_, quantize=True)
