"""Recency-weighted popularity, overall and per context (device, country, hour bucket), and the
fallback content the edge and the gateway serve when anything is late or wrong."""

from __future__ import annotations

import numpy as np
import pandas as pd

from edge.bundle import graph_to_tree
from edge.context import HOUR_BUCKETS
from edge.model import popular_by_category
from export.interactions import ItemUniverse, epoch_seconds, event_weights, item_codes

CONTEXT_DIMENSIONS = ("device", "country", "hour")


def _scaled(sums: np.ndarray) -> np.ndarray:
    """Scale so that 1.0 is an average item: comparable across contexts of any size."""
    total = sums.sum()
    return (sums * (sums.size / total) if total > 0 else sums).astype(np.float32)


def _top(scores: np.ndarray, n: int) -> np.ndarray:
    nonzero = np.flatnonzero(scores > 0)
    order = nonzero[np.lexsort((nonzero, -scores[nonzero]))]
    return order[:n].astype(np.int32)


class Popularity:
    def __init__(
        self,
        half_life_days: float = 21.0,
        context_top_n: int = 500,
        min_context_events: int = 50,
        fallback_items: int = 50,
        category_top_n: int = 50,
    ) -> None:
        self.category_top_n = category_top_n  # popular items kept per category
        self.half_life_days = half_life_days
        self.context_top_n = context_top_n
        self.min_context_events = min_context_events
        self.fallback_items = fallback_items

    def fit(
        self, events: pd.DataFrame, universe: ItemUniverse, weights: dict[str, float]
    ) -> Popularity:
        n_items = len(universe.ids)
        self.category_ = universe.category
        self.n_categories_ = len(universe.category_names)
        seconds = epoch_seconds(events["ts"])
        age_days = (seconds.max() - seconds) / 86_400 if seconds.size else seconds
        w = event_weights(events, weights) * 0.5 ** (age_days / self.half_life_days)
        items = item_codes(events, universe)
        self.overall_ = _scaled(np.bincount(items, weights=w, minlength=n_items))
        # The candidate lists hold only what can be served: an out-of-stock or non-product item
        # (postage tops UCI's lists) would take a place the edge then filters out.
        self.available_ = universe.in_stock
        self.top_overall_ = _top(self.overall_ * self.available_, self.context_top_n)
        hours = events["local_hour"].to_numpy() // 6
        values = {
            "device": events["device"].to_numpy(dtype=object),
            "country": events["country"].to_numpy(dtype=object),
            "hour": np.array(HOUR_BUCKETS, dtype=object)[hours],
        }
        self.contexts_: dict[str, dict[str, np.ndarray]] = {}
        for dimension in CONTEXT_DIMENSIONS:
            # Each value's events found by its integer code: one hashing pass over the labels,
            # not one string comparison per value (15 of them over every event).
            codes, labels = pd.factorize(values[dimension])
            # Most events first, ties by label (a stated order, where `value_counts` left ties
            # in an order of its own).
            counts = pd.Series(np.bincount(codes, minlength=len(labels)), index=labels)
            counts = counts[counts.index != ""].sort_index()
            counts = counts.sort_values(ascending=False, kind="stable")
            code_of = {label: code for code, label in enumerate(labels)}
            for value in counts[counts >= self.min_context_events].index:
                mask = codes == code_of[value]
                scores = _scaled(np.bincount(items[mask], weights=w[mask], minlength=n_items))
                top = _top(scores * self.available_, self.context_top_n)
                self.contexts_[f"{dimension}={value}"] = {"items": top, "scores": scores[top]}
        return self

    def to_tree(self) -> dict[str, object]:
        top = popular_by_category(
            self.category_, self.n_categories_, self.overall_ * self.available_, self.category_top_n
        )
        return {
            "overall": self.overall_,
            "top_overall": self.top_overall_,
            "contexts": self.contexts_,
            "category_top": graph_to_tree(top.indptr, top.indices, top.scores),
        }

    def fallback(self, universe: ItemUniverse) -> dict[str, list[list[object]]]:
        """Popular in-stock items per context key, as JSON-ready [item_id, score] pairs."""

        def ranked(top: np.ndarray, scores: np.ndarray) -> list[list[object]]:
            keep = universe.in_stock[top]
            top, scores = top[keep][: self.fallback_items], scores[keep][: self.fallback_items]
            return [[universe.ids[i], round(float(s), 4)] for i, s in zip(top, scores)]

        out = {"all": ranked(self.top_overall_, self.overall_[self.top_overall_])}
        for key, table in self.contexts_.items():
            out[key] = ranked(table["items"], table["scores"])
        return out
