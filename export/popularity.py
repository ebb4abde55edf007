"""Recency-weighted popularity, overall and per context (device, country, hour bucket), and the
fallback content the edge and the gateway serve when anything is late or wrong."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from edge.bundle import graph_to_tree
from edge.context import HOUR_BUCKETS
from edge.model import popular_by_category
from export.interactions import ItemUniverse, epoch_seconds, event_weights, item_codes

CONTEXT_DIMENSIONS = ("device", "country", "hour")


@dataclass(frozen=True)
class PopularitySums:
    """What popularity is fitted from: the recency-weighted event weights summed per item
    (`overall`), and per context dimension, per value with at least `min_context_events`
    events (others may be left out): its count of events and its per-item sums."""

    overall: np.ndarray  # float64 per item
    contexts: dict[str, dict[str, tuple[int, np.ndarray]]]


def recency_weights(
    weights: np.ndarray, seconds: np.ndarray, end: float, half_life_days: float
) -> np.ndarray:
    """Each event's weight, halved for every `half_life_days` before `end` (the log's last
    event)."""
    age_days = (end - seconds) / 86_400
    decayed: np.ndarray = weights * 0.5 ** (age_days / half_life_days)
    return decayed


def hour_buckets(local_hour: np.ndarray) -> np.ndarray:
    """The context's name for each local hour (0-23): its quarter of the day."""
    names: np.ndarray = np.array(HOUR_BUCKETS, dtype=object)[np.asarray(local_hour) // 6]
    return names


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
        seconds = epoch_seconds(events["ts"])
        end = seconds.max() if seconds.size else 0.0
        w = recency_weights(event_weights(events, weights), seconds, end, self.half_life_days)
        items = item_codes(events, universe)
        n_items = len(universe.ids)
        values = {
            "device": events["device"].to_numpy(dtype=object),
            "country": events["country"].to_numpy(dtype=object),
            "hour": hour_buckets(events["local_hour"].to_numpy()),
        }
        contexts: dict[str, dict[str, tuple[int, np.ndarray]]] = {}
        for dimension in CONTEXT_DIMENSIONS:
            # Each value's events found by its integer code: one hashing pass over the labels,
            # not one string comparison per value (15 of them over every event).
            codes, labels = pd.factorize(values[dimension])
            counts = np.bincount(codes, minlength=len(labels))
            contexts[dimension] = {}
            for code, value in enumerate(labels):
                if value == "" or counts[code] < self.min_context_events:
                    continue
                mask = codes == code
                summed = np.bincount(items[mask], weights=w[mask], minlength=n_items)
                contexts[dimension][value] = (int(counts[code]), summed)
        overall = np.bincount(items, weights=w, minlength=n_items)
        return self.fit_sums(PopularitySums(overall, contexts), universe)

    def fit_sums(self, sums: PopularitySums, universe: ItemUniverse) -> Popularity:
        """From the recency-weighted sums per item, overall and per context value (the Spark
        build sums them on Spark)."""
        self.category_ = universe.category
        self.n_categories_ = len(universe.category_names)
        self.overall_ = _scaled(sums.overall)
        # The candidate lists hold only what can be served: an out-of-stock or non-product item
        # (postage tops UCI's lists) would take a place the edge then filters out.
        self.available_ = universe.in_stock
        self.top_overall_ = _top(self.overall_ * self.available_, self.context_top_n)
        self.contexts_: dict[str, dict[str, np.ndarray]] = {}
        for dimension in CONTEXT_DIMENSIONS:
            values = sums.contexts.get(dimension, {})
            # Most events first, ties by label (a stated order, where `value_counts` left ties
            # in an order of its own).
            ordered = sorted(values, key=lambda value: (-values[value][0], value))
            for value in ordered:
                count, summed = values[value]
                if count < self.min_context_events:
                    continue
                scores = _scaled(summed)
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
