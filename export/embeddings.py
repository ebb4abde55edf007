"""Item embeddings by implicit-feedback matrix factorization (ALS, Hu, Koren & Volinsky 2008).

Only item factors go in the bundle; a user is folded in at request time from their recent items
by the same least-squares step ALS itself uses (`edge.scoring.fold_in`), so the bundle does not
grow with the number of users."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits


class NotFittedError(RuntimeError):
    pass


class ItemEmbeddings:
    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 2.0,
        iterations: int = 15,
        seed: int = 0,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.seed = seed

    def fit(self, user_items: sp.csr_matrix) -> ItemEmbeddings:
        if not sp.isspmatrix_csr(user_items) or user_items.shape[1] == 0:
            raise ValueError(f"user_items must be a non-empty CSR matrix, got {type(user_items)}")
        # implicit parallelizes itself; BLAS threads on top of it only contend (and it warns).
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                random_state=self.seed,
                calculate_training_loss=False,
            )
            model.fit(user_items, show_progress=False)
        self.model_ = model
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        y = self.item_factors_.astype(np.float64)
        self.gram_ = y.T @ y + self.regularization * np.eye(self.factors)
        return self

    def to_tree(self) -> dict[str, object]:
        """Rows by descending norm, for the edge's early-stopping exact top-k."""
        if not hasattr(self, "item_factors_"):
            raise NotFittedError("ItemEmbeddings is not fitted yet; call fit(user_items) first")
        norms = np.linalg.norm(self.item_factors_, axis=1).astype(np.float32)
        order = np.argsort(-norms, kind="stable").astype(np.int32)
        return {
            "factors": np.ascontiguousarray(self.item_factors_[order]),
            "order": order,
            "norms": norms[order],
            "gram": self.gram_,
            "alpha": self.alpha,
        }
