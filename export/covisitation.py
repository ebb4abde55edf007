"""Co-visitation neighbours: items that appear close together in the same sessions, scored by
a lag-weighted count normalized like a cosine, so best-sellers do not neighbour everything."""

from __future__ import annotations

import numpy as np
import pandas as pd

from export.interactions import ItemUniverse, epoch_seconds, event_weights


class CoVisitation:
    def __init__(self, window: int = 8, neighbours: int = 40, min_count: int = 1) -> None:
        self.window = window
        self.neighbours = neighbours
        self.min_count = min_count  # pairs seen fewer times are dropped as noise

    def fit(
        self, events: pd.DataFrame, universe: ItemUniverse, weights: dict[str, float]
    ) -> CoVisitation:
        n_items = len(universe.ids)
        positive = event_weights(events, weights) > 0
        frame = pd.DataFrame(
            {
                "session": pd.factorize(events["session_id"][positive])[0],
                "item": universe.codes(events["item_id"][positive]),
                "t": epoch_seconds(events["ts"][positive]),
            }
        )
        frame = frame.sort_values(["session", "t"], kind="stable")
        session = frame["session"].to_numpy()
        item = frame["item"].to_numpy().astype(np.int64)
        # Repeated views of one item in a row say nothing about pairs.
        keep = np.ones(item.size, dtype=bool)
        keep[1:] = (item[1:] != item[:-1]) | (session[1:] != session[:-1])
        session, item = session[keep], item[keep]

        keys: list[np.ndarray] = []
        values: list[np.ndarray] = []
        for lag in range(1, self.window + 1):
            same = session[lag:] == session[:-lag]
            a, b = item[:-lag][same], item[lag:][same]
            differ = a != b
            a, b = a[differ], b[differ]
            keys += [a * n_items + b, b * n_items + a]
            values += [np.full(2 * a.size, 1.0 / lag)]
        key = np.concatenate(keys) if keys else np.empty(0, dtype=np.int64)
        value = np.concatenate(values) if values else np.empty(0)
        unique, inverse, seen = np.unique(key, return_inverse=True, return_counts=True)
        counts = np.bincount(inverse, weights=value)
        unique, counts = unique[seen >= self.min_count], counts[seen >= self.min_count]
        src, dst = unique // n_items, unique % n_items
        frequency = np.bincount(item, minlength=n_items).astype(np.float64)
        scores = counts / np.sqrt(frequency[src] * frequency[dst])

        order = np.lexsort((-scores, src))
        src, dst, scores = src[order], dst[order], scores[order]
        starts = np.searchsorted(src, np.arange(n_items))
        rank = np.arange(src.size) - starts[src]
        top = rank < self.neighbours
        src, dst, scores = src[top], dst[top], scores[top]
        self.indptr_ = np.searchsorted(src, np.arange(n_items + 1)).astype(np.int32)
        self.indices_ = dst.astype(np.int32)
        self.scores_ = scores.astype(np.float16)  # ranks and a feature: 3 digits are plenty
        return self

    def to_tree(self) -> dict[str, object]:
        return {"indptr": self.indptr_, "indices": self.indices_, "scores": self.scores_}
