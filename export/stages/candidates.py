"""Fit the candidate models: `Dataset` → `CandidateModels` (the item table, item
embeddings, co-visitation, item regression and contextual popularity, as the msgpack trees
the bundle carries, and the fallback content popularity gives).

The ranking stage runs it too, on the events before its label window."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

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
class CandidateTables:
    """What the candidate models are fitted from, summed from the events on either engine."""

    matrix: sp.csr_matrix  # users × items, summed event weights, capped (`interaction_matrix`)
    statistics: dict[str, np.ndarray]  # the items' age and repeat rate (`item_statistics`)
    covisitation: CoVisitation
    popularity: Popularity


@dataclass(frozen=True)
class CandidateModels:
    trees: dict[str, dict[str, Any]]  # bundle file name → its msgpack tree
    fallback: dict[str, Any]  # context key → popular in-stock items: the edge's default content


def fit_candidates(data: Dataset, config: BuildConfig) -> CandidateModels:
    universe = data.universe
    emb = config.embeddings
    tables = candidate_tables(data, config)
    matrix = tables.matrix
    embeddings = ItemEmbeddings(
        emb.factors, emb.regularization, emb.alpha, emb.iterations, config.seed
    ).fit(matrix, item_metadata(universe))
    rc = config.regression
    regression = ItemRegression(rc.regularization, rc.neighbours, rc.max_items).fit(matrix)
    trees = {
        ITEMS: universe.to_tree() | tables.statistics,
        EMBEDDINGS: embeddings.to_tree(emb.quantize, emb.rows),
        COVISITATION: tables.covisitation.to_tree(),
        REGRESSION: regression.to_tree(),
        POPULARITY: tables.popularity.to_tree(),
        CONTENT: content_neighbours(universe, np.asarray(matrix.getnnz(axis=0)) > 0),
    }
    return CandidateModels(trees, tables.popularity.fallback(universe))


def candidate_tables(data: Dataset, config: BuildConfig) -> CandidateTables:
    """What the candidate models learn from the events: summed on Spark when the events are
    there (`export.spark.tables`), else here, with the same meaning."""
    universe = data.universe
    if data.on_spark is not None:
        from export.spark.tables import candidate_tables as on_spark

        return on_spark(data.on_spark, universe, config, len(data))
    events = data.events
    weights = config.events.weights
    cv, pc = config.covisitation, config.popularity
    return CandidateTables(
        interaction_matrix(events, universe, weights),
        item_statistics(events, universe),
        CoVisitation(cv.window, cv.neighbours, cv.min_count).fit(events, universe, weights),
        Popularity(
            pc.half_life_days, pc.context_top_n, pc.min_context_events, pc.fallback_items
        ).fit(events, universe, weights),
    )
