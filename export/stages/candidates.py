"""Fit the candidate models: `Dataset` → `CandidateModels` (the item table, item
embeddings, co-visitation, item regression and contextual popularity, as the msgpack trees
the bundle carries, and the fallback content popularity gives).

The ranking stage runs it too, on the events before its label window."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.bundle import CONTENT, COVISITATION, EMBEDDINGS, ITEMS, POPULARITY, REGRESSION
from export.config import BuildConfig
from export.content import content_neighbours
from export.covisitation import CoVisitation
from export.embeddings import ItemEmbeddings, item_metadata
from export.interactions import interaction_matrix, item_statistics
from export.item_regression import ItemRegression
from export.popularity import Popularity
from export.stages.read import Dataset


@dataclass(frozen=True)
class CandidateModels:
    trees: dict[str, dict[str, Any]]  # bundle file name → its msgpack tree
    fallback: dict[str, Any]  # context key → popular in-stock items: the edge's default content


def fit_candidates(data: Dataset, config: BuildConfig) -> CandidateModels:
    events, universe = data.events, data.universe
    weights = config.events.weights
    emb = config.embeddings
    matrix = interaction_matrix(events, universe, weights)
    embeddings = ItemEmbeddings(
        emb.factors, emb.regularization, emb.alpha, emb.iterations, config.seed
    ).fit(matrix, item_metadata(universe))
    rc = config.regression
    regression = ItemRegression(rc.regularization, rc.neighbours, rc.max_items).fit(matrix)
    cv = config.covisitation
    covisitation = CoVisitation(cv.window, cv.neighbours, cv.min_count).fit(
        events, universe, weights
    )
    pc = config.popularity
    popularity = Popularity(
        pc.half_life_days, pc.context_top_n, pc.min_context_events, pc.fallback_items
    ).fit(events, universe, weights)
    trees = {
        ITEMS: universe.to_tree() | item_statistics(events, universe),
        EMBEDDINGS: embeddings.to_tree(emb.quantize, emb.rows),
        COVISITATION: covisitation.to_tree(),
        REGRESSION: regression.to_tree(),
        POPULARITY: popularity.to_tree(),
        CONTENT: content_neighbours(universe, np.asarray(matrix.getnnz(axis=0)) > 0),
    }
    return CandidateModels(trees, popularity.fallback(universe))
