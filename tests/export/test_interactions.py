import numpy as np
import pandas as pd

from edge import arrays
from edge.bundle.codecs import items_from_tree
from edge.scoring import MAX_CONFIDENCE_WEIGHT
from export.interactions import build_universe, interaction_matrix

WEIGHTS = {"view": 1.0, "purchase": 8.0, "cancel": 0.0}


def events(rows):
    frame = pd.DataFrame(
        rows, columns=["user_id", "session_id", "item_id", "type", "price", "category", "dwell_ms"]
    )
    return frame.assign(ts=pd.Timestamp("2026-01-01", tz="UTC"))


def test_universe_takes_catalog_facts_and_fills_gaps_from_events():
    log = events(
        [
            ("u", "s", "a", "view", 2.0, "hats", np.nan),
            ("u", "s", "a", "view", 4.0, "hats", np.nan),
            ("u", "s", "b", "view", 9.0, "shoes", np.nan),
        ]
    )
    catalog = pd.DataFrame(
        {
            "item_id": ["b", "c"],
            "price": [10.0, np.nan],
            "category": ["", "coats"],
            "in_stock": [False, True],
        }
    )
    universe = build_universe(log, catalog)
    assert universe.ids == ["a", "b", "c"]
    assert universe.category_names == ["coats", "hats", "shoes"]
    assert [universe.category_names[c] for c in universe.category] == ["hats", "shoes", "coats"]
    assert universe.price[0] == 3.0 and universe.price[1] == 10.0 and np.isnan(universe.price[2])
    assert universe.in_stock.tolist() == [True, False, True]


def test_the_items_file_carries_the_catalogs_titles_else_the_events():
    log = events([("u", "s", "a", "view", 2.0, "hats", np.nan)]).assign(title="Sun hat")
    catalog = pd.DataFrame({"item_id": ["b", "c"], "title": ["Boots", ""]})
    tree = build_universe(log, catalog).to_tree()
    tree |= {"age_days": np.zeros(3), "repeat_rate": np.zeros(3)}  # added by the item stats
    table = items_from_tree(arrays.loads(arrays.dumps(tree)))
    assert [table.title(i) for i in range(3)] == ["Sun hat", "Boots", None]


def test_interaction_matrix_sums_weights_caps_them_and_keeps_anonymous_sessions():
    log = events(
        [("u1", "s1", "a", "view", 1.0, "", 30_000.0)]
        + [("u1", "s1", "b", "purchase", 1.0, "", np.nan)] * 10
        + [("", "s9", "a", "view", 1.0, "", np.nan), ("u2", "s2", "a", "cancel", 1.0, "", np.nan)]
    )
    universe = build_universe(log, None)
    matrix = interaction_matrix(log, universe, WEIGHTS).toarray()
    assert matrix.shape == (2, 2)  # u1 and the anonymous session; a zero-weight row adds no user
    assert matrix[0].tolist() == [2.0, MAX_CONFIDENCE_WEIGHT]  # a long view counts double
    assert matrix[1].tolist() == [1.0, 0.0]
