"""Content neighbours: a path into the candidates for items no one has interacted with yet.

Collaborative models learn nothing about an item without events, and popularity ranks it
last, so a new catalog item could only surface through its metadata-regressed factors
(`export.embeddings.cold_start_factors`), a blur of its category's. This graph links every item
to the few cold items (in stock, no events in the training data) that resemble it most: same
category, same brand, a similar price, words of the title in common. The edge follows it from a
visitor's recent items, as it follows co-visitation, and the ranker sees the resemblance as the
`content_score` feature; it learns what that is worth from the items that were new in its
label part."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

from edge.bundle import graph_to_tree
from export.interactions import ItemUniverse

NEIGHBOURS = 10  # cold items kept per item
SOURCES_PER_COLD = 20  # items kept per cold item
# Cold items considered per category: the resemblance is a dense block of sources × cold items.
MAX_COLD_PER_GROUP = 2_000
MAX_COLD_BY_TITLE = 20_000  # cold items reachable by their title alone
SOURCE_CHUNK = 4_096  # rows of a block computed at once (32 MB of float32 at most)
SAME_BRAND = 2.0  # a shared brand says more than a close price
TITLE = 3.0  # weight of the titles' cosine (TF-IDF of their words)
MIN_TITLE_COSINE = 0.3  # two items of no shared category or brand need this much title
UNKNOWN_PRICE_CLOSENESS = 0.5


def content_neighbours(
    universe: ItemUniverse, warm: np.ndarray, neighbours: int = NEIGHBOURS
) -> dict[str, Any]:
    """The graph's tree: per item, its `neighbours` most resembling cold items (each cold item
    kept by the SOURCES_PER_COLD items it resembles most). Within a
    category (or a brand, when the category is unknown) a pair scores 1 + SAME_BRAND for a
    shared brand + exp(-|log price difference|) (UNKNOWN_PRICE_CLOSENESS when either is
    unknown) + TITLE × the titles' cosine; any other pair whose titles' cosine reaches
    MIN_TITLE_COSINE scores TITLE × that cosine."""
    n = len(universe.ids)
    cold = ~warm & universe.in_stock
    titles = _title_vectors(universe, n)
    triples = [*_by_group(universe, cold, titles, neighbours)]
    if titles is not None:
        triples += _by_title(cold, titles, neighbours)
    r = np.concatenate([t[0] for t in triples] or [np.empty(0, dtype=np.int64)])
    c = np.concatenate([t[1] for t in triples] or [np.empty(0, dtype=np.int64)])
    s = np.concatenate([t[2] for t in triples] or [np.empty(0, dtype=np.float32)])
    if r.size == 0:  # no cold item, or none resembling anything
        empty = np.zeros(n + 1, dtype=np.int32)
        return graph_to_tree(empty, np.empty(0, dtype=np.int32), np.empty(0, dtype=np.float32))
    # A pair found both ways keeps its better score; then each row's best `neighbours`.
    order = np.lexsort((-s, c, r))
    r, c, s = r[order], c[order], s[order]
    first = np.r_[True, (r[1:] != r[:-1]) | (c[1:] != c[:-1])]
    r, c, s = r[first], c[first], s[first]
    # Each cold item keeps the SOURCES_PER_COLD items it resembles most: enough ways in, and
    # the graph grows with the cold items, not with the catalog times `neighbours`.
    order = np.lexsort((-s, c))
    r, c, s = r[order], c[order], s[order]
    keep = np.arange(c.size) - np.searchsorted(c, c) < SOURCES_PER_COLD
    r, c, s = r[keep], c[keep], s[keep]
    order = np.lexsort((-s, r))
    r, c, s = r[order], c[order], s[order]
    keep = np.arange(r.size) - np.searchsorted(r, r) < neighbours
    r, c, s = r[keep], c[keep], s[keep]
    indptr = np.searchsorted(r, np.arange(n + 1)).astype(np.int32)
    return graph_to_tree(indptr, c.astype(np.int32), s.astype(np.float32), quantize=True)


Triples = tuple[np.ndarray, np.ndarray, np.ndarray]  # source, target, score


def _title_vectors(universe: ItemUniverse, n: int) -> sp.csr_matrix | None:
    """L2-normalized TF-IDF rows of the items' titles (None when no item has one)."""
    if universe.title is None or not any(universe.title):
        return None
    vectorizer = TfidfVectorizer(lowercase=True, token_pattern=r"(?u)\b\w\w+\b", dtype=np.float32)
    try:
        vectors: sp.csr_matrix = vectorizer.fit_transform(universe.title.tolist()).tocsr()
    except ValueError:  # titles of no word of two letters or more
        return None
    return vectors


def _by_group(
    universe: ItemUniverse, cold: np.ndarray, titles: sp.csr_matrix | None, neighbours: int
) -> list[Triples]:
    n = len(universe.ids)
    brand = _brand_codes(universe, n)
    category = universe.category
    price = universe.price.astype(np.float64)
    known = np.isfinite(price) & (price >= 0)
    log_price = np.log1p(np.where(known, price, 0.0))
    log_price[~known] = np.nan
    # Items are grouped by category, or by brand when the category is unknown.
    group = np.where(category >= 0, category, -2 - brand)  # -1: neither known
    found = []
    for key in np.unique(group[cold & (group != -1)]):
        targets = np.flatnonzero(cold & (group == key))[:MAX_COLD_PER_GROUP]
        sources = np.flatnonzero(group == key)
        for start in range(0, sources.size, SOURCE_CHUNK):
            chunk = sources[start : start + SOURCE_CHUNK]
            same_brand = (brand[chunk, None] == brand[None, targets]) & (brand[chunk, None] >= 0)
            gap = np.abs(log_price[chunk, None] - log_price[None, targets])
            close = np.where(np.isnan(gap), UNKNOWN_PRICE_CLOSENESS, np.exp(-np.nan_to_num(gap)))
            score = 1.0 + SAME_BRAND * same_brand + close
            if titles is not None:
                score += TITLE * (titles[chunk] @ titles[targets].T).toarray()
            found.append(_best(chunk, targets, score.astype(np.float32), neighbours))
    return found


def _by_title(cold: np.ndarray, titles: sp.csr_matrix, neighbours: int) -> list[Triples]:
    targets = np.flatnonzero(cold)[:MAX_COLD_BY_TITLE]
    if targets.size == 0:
        return []
    target_rows = titles[targets].T.tocsc()
    found = []
    for start in range(0, titles.shape[0], SOURCE_CHUNK):
        cosine = (titles[start : start + SOURCE_CHUNK] @ target_rows).tocoo()
        strong = cosine.data >= MIN_TITLE_COSINE
        rows = cosine.row[strong].astype(np.int64) + start
        cols, values = targets[cosine.col[strong]], cosine.data[strong]
        mine = rows != cols
        # The best `neighbours` per source, kept sparse (most pairs share no word).
        rows, cols, values = rows[mine], cols[mine], values[mine]
        order = np.lexsort((-values, rows))
        rows, cols, values = rows[order], cols[order], values[order]
        keep = np.arange(rows.size) - np.searchsorted(rows, rows) < neighbours
        found.append((rows[keep], cols[keep], (TITLE * values[keep]).astype(np.float32)))
    return found


def _brand_codes(universe: ItemUniverse, n: int) -> np.ndarray:
    if universe.brand is None:
        return np.full(n, -1, dtype=np.int64)
    labels = pd.Series(universe.brand, dtype=object).fillna("")
    codes, _ = pd.factorize(labels.where(labels != "", None))
    return codes.astype(np.int64)


def _best(sources: np.ndarray, targets: np.ndarray, score: np.ndarray, neighbours: int) -> Triples:
    """(source, target, score) of each source's best `neighbours` targets of positive score,
    never itself."""
    score[sources[:, None] == targets[None, :]] = 0.0
    keep = min(neighbours, targets.size)
    best = np.argpartition(-score, keep - 1, axis=1)[:, :keep]
    picked = np.take_along_axis(score, best, axis=1)
    valid = picked > 0
    source_rows = np.repeat(sources, keep).reshape(-1, keep)
    return source_rows[valid], targets[best][valid], picked[valid]
