"""Co-visitation neighbours: items that appear close together in the same sessions, scored by
a lag-weighted count normalized like a cosine, so best-sellers do not neighbour everything."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import scipy.sparse as sp

from edge.bundle import graph_to_tree
from export.interactions import ItemUniverse, epoch_seconds, event_weights, item_codes


class CoVisitation:
    def __init__(self, window: int = 8, neighbours: int = 40, min_count: int = 1) -> None:
        self.window = window
        self.neighbours = neighbours
        self.min_count = min_count  # pairs seen fewer times are dropped as noise

    def fit(
        self, events: pd.DataFrame, universe: ItemUniverse, weights: dict[str, float]
    ) -> CoVisitation:
        positive = event_weights(events, weights) > 0
        session = pd.factorize(events["session_id"][positive])[0]
        item = item_codes(events, universe)[positive].astype(np.int32)
        t = epoch_seconds(events["ts"][positive])
        order = np.lexsort((t, session))  # by session, then time; stable for equal times
        session, item = session[order], item[order]
        del order, t
        summed, seen, frequency = session_pairs(
            session, item, len(universe.ids), self.window, self.min_count > 1
        )
        # Both ways: (a, b) and (b, a) are one pair, counted in each row.
        summed = (summed + summed.T).tocsr()
        summed.sort_indices()
        if seen is not None:
            seen = (seen + seen.T).tocsr()
            seen.sort_indices()
            # Built from the same (a, b) pairs, both matrices have the same entries in order.
            summed.data[seen.data < self.min_count] = 0.0
            summed.eliminate_zeros()
        del seen
        n_items = len(universe.ids)
        src = np.repeat(np.arange(n_items), np.diff(summed.indptr))
        units = lag_units(self.window)
        scores = summed.data / units / np.sqrt(frequency[src] * frequency[summed.indices])
        del src
        self.indptr_, self.indices_, self.scores_ = _top_per_row(
            summed.indptr, summed.indices, scores, self.neighbours
        )
        return self

    def fit_top(
        self, src: np.ndarray, dst: np.ndarray, scores: np.ndarray, n_items: int
    ) -> CoVisitation:
        """From each item's best-scored neighbours, computed elsewhere (`export.spark.tables`):
        (src, dst, score) entries, at least `neighbours` per item where it has that many."""
        matrix = sp.csr_matrix((scores, (src, dst)), shape=(n_items, n_items))
        matrix.sort_indices()
        self.indptr_, self.indices_, self.scores_ = _top_per_row(
            matrix.indptr, matrix.indices, matrix.data, self.neighbours
        )
        return self

    def to_tree(self) -> dict[str, object]:
        return graph_to_tree(self.indptr_, self.indices_, self.scores_, quantize=True)


def session_pairs(
    session: np.ndarray, item: np.ndarray, n_items: int, window: int, count_seen: bool
) -> tuple[sp.csr_matrix, sp.csr_matrix | None, np.ndarray]:
    """The co-visitation counts of events in session, then time order (`session`: any
    integer label per session; `item`: item codes): one way, each pair (a, b) with b up to
    `window` places after a in its session summed as 1/lag, in `lag_units`; the times each was
    seen, when `count_seen`; and each item's count of events. Repeated views of one item in a
    row are counted once, and say nothing about pairs. The Spark build runs it on each
    partition of whole sessions, and sums what the partitions give."""
    keep = np.ones(item.size, dtype=bool)
    keep[1:] = (item[1:] != item[:-1]) | (session[1:] != session[:-1])
    session, item = session[keep], item[keep]
    # One-way pair sums, lag by lag into a sparse matrix: scipy adds up repeated (a, b)
    # pairs by a counting sort, where one np.unique over every pair's key (100M+ at 10M
    # events) sorted them all and held them all at once.
    shape, units = (n_items, n_items), lag_units(window)
    summed = sp.csr_matrix(shape, dtype=np.float64)
    seen = sp.csr_matrix(shape, dtype=np.float64) if count_seen else None
    for lag in range(1, window + 1):
        same = session[lag:] == session[:-lag]
        a, b = item[:-lag][same], item[lag:][same]
        differ = a != b
        a, b = a[differ], b[differ]
        summed = summed + _summed_pairs(a, b, np.full(a.size, float(units // lag)), shape)
        if seen is not None:
            seen = seen + _summed_pairs(a, b, np.ones(a.size), shape)
    frequency = np.bincount(item, minlength=n_items).astype(np.float64)
    return summed, seen, frequency


def lag_units(window: int) -> int:
    """How many units make a weight of 1: the least common multiple of the lags 1..`window`,
    so that 1/lag is a whole number of units. Sums of whole numbers are exact in a float64 (up
    to 2**53), so they are the same in any order (the Spark build sums its partitions' counts
    in an order of its own) and equal wherever the fractions are (three pairs at lag 3 weigh
    what one at lag 1 does), where sums of 1/3 and 1/7 differ in their last bits."""
    return math.lcm(*range(1, window + 1))


def _summed_pairs(
    a: np.ndarray, b: np.ndarray, value: np.ndarray, shape: tuple[int, int]
) -> sp.csr_matrix:
    """`value` summed per (a, b) pair, as a CSR matrix."""
    return sp.coo_matrix((value, (a, b)), shape=shape).tocsr()


def _top_per_row(
    indptr: np.ndarray, indices: np.ndarray, scores: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The `k` best entries of each CSR row, by score descending, then column ascending."""
    counts = np.minimum(np.diff(indptr), k)
    out_indptr = np.r_[0, np.cumsum(counts)]
    out_indices = np.empty(out_indptr[-1], dtype=np.int32)
    out_scores = np.empty(out_indptr[-1], dtype=np.float16)  # ranks and a feature: 3 digits
    for row in np.flatnonzero(counts):
        start, stop = indptr[row], indptr[row + 1]
        s, d = scores[start:stop], indices[start:stop]
        if s.size > k:
            # Only entries tied with or above the k-th best score can be in the top k.
            kth = np.partition(s, s.size - k)[s.size - k]
            inside = np.flatnonzero(s >= kth)
            s, d = s[inside], d[inside]
        best = np.lexsort((d, -s))[:k]
        out_indices[out_indptr[row] : out_indptr[row + 1]] = d[best]
        out_scores[out_indptr[row] : out_indptr[row + 1]] = s[best]
    return out_indptr.astype(np.int32), out_indices, out_scores
