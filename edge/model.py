"""The learned state the edge scores with, as plain arrays. `bundle.py` fills it from files;
`export` fills it straight from fitted models, so both halves score through the same code."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge.ranker import Ranker


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, best first."""
    if scores.size <= k:
        return np.argsort(-scores, kind="stable")
    part = np.argpartition(-scores, k)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


@dataclass(frozen=True)
class ItemTable:
    ids: list[str]
    category: np.ndarray  # int32 code per item, -1 when unknown
    category_names: list[str]
    price: np.ndarray  # float32, NaN when unknown
    in_stock: np.ndarray  # bool
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {item_id: i for i, item_id in enumerate(self.ids)})

    def __len__(self) -> int:
        return len(self.ids)

    def lookup(self, item_ids: list[str]) -> np.ndarray:
        """Indices of the ids this bundle knows; unknown ids are skipped, not an error."""
        get = self.index.get
        found = np.array([get(i, -1) for i in item_ids], dtype=np.int64)
        return found[found >= 0]


@dataclass(frozen=True)
class Embeddings:
    """Item factors of an implicit-feedback ALS model, plus what folding a user in needs:
    the regularized Gram matrix YᵀY + λI and the confidence scale alpha.

    Rows are stored by descending norm (`order[r]` is the item of row r), so the exact top-k
    inner products can stop early: no row whose norm × |u| is below the k-th best score found
    so far can enter the top k (Cauchy-Schwarz)."""

    factors: np.ndarray  # float32 [n_items, k], rows by descending norm
    order: np.ndarray  # int32 [n_items]: item index of each row
    norms: np.ndarray  # float32 [n_items], descending
    gram: np.ndarray  # float64 [k, k]
    alpha: float
    row_of_item: np.ndarray = field(init=False, repr=False)

    FIRST_BLOCK = 4096  # rows scored before the bound is computed

    def __post_init__(self) -> None:
        rows = np.empty(self.order.size, dtype=np.int64)
        rows[self.order] = np.arange(self.order.size)
        object.__setattr__(self, "row_of_item", rows)
        object.__setattr__(self, "_negative_norms", -self.norms)

    def rows(self, items: np.ndarray) -> np.ndarray:
        """Factor rows of these item indices."""
        return self.factors[self.row_of_item[items]]

    def _scan_end(self, user: np.ndarray, first_scores: np.ndarray, k: int) -> int:
        """How many rows must be scored: past it, norm × |u| is below the k-th best score of the
        first block, so no later row can enter the top k."""
        n, first = self.factors.shape[0], first_scores.size
        if first >= n or k >= first:
            return first
        threshold = float(np.partition(first_scores, first - k)[first - k])
        user_norm = float(np.sqrt(user @ user))
        if threshold <= 0 or user_norm == 0:
            return n
        end = int(np.searchsorted(self._negative_norms, -threshold / user_norm))
        return max(end, first)

    def _first_block(self, user: np.ndarray, k: int) -> np.ndarray:
        first = min(self.factors.shape[0], max(self.FIRST_BLOCK, 4 * k))
        return self.factors[:first] @ user

    def scan_length(self, user: np.ndarray, k: int) -> int:
        """Rows `top(user, k)` reads (for benchmarks)."""
        return self._scan_end(user, self._first_block(user, k), k)

    def top(self, user: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k items with the largest user · item, exactly, best first: (items, scores)."""
        scores = self._first_block(user, k)
        first, end = scores.size, self._scan_end(user, scores, k)
        if end > first:
            scores = np.concatenate([scores, self.factors[first:end] @ user])
        best = top_k(scores, k)
        return self.order[best].astype(np.int64), scores[best]


@dataclass(frozen=True)
class CoVisitation:
    """Top neighbours per item in CSR form: row i is indices[indptr[i]:indptr[i+1]]."""

    indptr: np.ndarray  # int64 [n_items + 1]
    indices: np.ndarray  # int32
    scores: np.ndarray  # float32


@dataclass(frozen=True)
class Popularity:
    """Recency-weighted share of interactions per item, overall and per context key
    ("device=mobile", "country=de", "hour=evening"), scaled so that 1.0 is an average item."""

    overall: np.ndarray  # float32 [n_items]
    contexts: dict[str, np.ndarray]  # key -> float32 [n_items]
    top_overall: np.ndarray  # int32, best first
    top_contexts: dict[str, np.ndarray]  # key -> int32, best first


@dataclass(frozen=True)
class Model:
    items: ItemTable
    embeddings: Embeddings
    covisitation: CoVisitation
    popularity: Popularity
    event_weights: dict[str, float]
    ranker: Ranker | None = None  # attached by export once trained; always set in a bundle
