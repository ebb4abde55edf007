"""Content neighbours: every item links to the cold items that resemble it, so a new catalog
item reaches the candidates of a visitor who looked at its kind."""

import numpy as np

from edge.bundle import graph_from_tree
from export.content import content_neighbours
from export.interactions import ItemUniverse


def _universe(categories, brands, prices, in_stock=None):
    n = len(categories)
    return ItemUniverse(
        ids=[f"i{i}" for i in range(n)],
        category=np.array(categories, dtype=np.int32),
        category_names=["shoes", "hats"],
        price=np.array(prices, dtype=np.float32),
        in_stock=np.ones(n, dtype=bool) if in_stock is None else np.array(in_stock),
        brand=np.array(brands, dtype=object),
    )


def neighbours_of(graph, i):
    row = slice(graph.indptr[i], graph.indptr[i + 1])
    return list(zip(graph.indices[row].tolist(), graph.scores[row].tolist()))


def test_items_link_to_cold_items_of_their_category_same_brand_and_close_price_first():
    #            0 warm  1 warm  2 cold  3 cold  4 cold  5 cold (hat)  6 cold, out of stock
    universe = _universe(
        [0, 0, 0, 0, 0, 1, 0],
        ["acme", "zed", "acme", "zed", "acme", "acme", "acme"],
        [50, 50, 55, 52, 500, 50, 50],
        in_stock=[True] * 6 + [False],
    )
    warm = np.array([True, True, False, False, False, False, False])
    graph = graph_from_tree(content_neighbours(universe, warm, neighbours=2))
    assert [j for j, _ in neighbours_of(graph, 0)] == [2, 4]  # acme first, the closer price first
    assert [j for j, _ in neighbours_of(graph, 1)] == [3, 2]  # zed, then the nearest price
    assert 5 not in graph.indices and 6 not in graph.indices  # another category; out of stock
    assert all(j != 2 for j, _ in neighbours_of(graph, 2))  # never itself
    scores = dict(neighbours_of(graph, 0))
    assert scores[2] > scores[4] > 1.0


def test_without_cold_items_the_graph_is_empty_and_an_unknown_category_groups_by_brand():
    universe = _universe([0, 0], ["acme", "acme"], [1, 2])
    graph = graph_from_tree(content_neighbours(universe, np.array([True, True])))
    assert graph.indices.size == 0 and graph.indptr.size == 3
    # Cold items whose only kin is themselves: triples found, none kept.
    alone = _universe([0, 1], ["acme", "zed"], [1, 2])
    graph = graph_from_tree(content_neighbours(alone, np.array([False, False])))
    assert graph.indices.size == 0
    by_brand = _universe([-1, -1, -1], ["acme", "acme", ""], [1, 2, 3])
    graph = graph_from_tree(content_neighbours(by_brand, np.array([True, False, False])))
    assert [j for j, _ in neighbours_of(graph, 0)] == [1]  # no category, no brand: nothing


def test_a_new_catalog_item_reaches_the_candidates_of_a_session_of_its_kind(shop, tmp_path):
    """An item in the catalog with no events at all: a session that looked at items of its
    category and brand gets it as a candidate, through its content neighbours."""
    from edge.bundle import load_bundle
    from edge.schemas import SessionEvent
    from edge.scoring import COLUMN, build_user_state, candidate_features
    from export.cases import context_from
    from export.config import BuildConfig
    from export.pipeline import export_bundle

    catalog = shop.catalog
    sizes = catalog.groupby(["category", "brand"])["item_id"].transform("size")
    new = catalog[sizes >= 4].iloc[0]
    events = shop.events[shop.events["item_id"] != new["item_id"]]
    kin = catalog[
        (catalog["category"] == new["category"])
        & (catalog["brand"] == new["brand"])
        & (catalog["item_id"] != new["item_id"])
        & catalog["item_id"].isin(events["item_id"])
    ]
    assert len(kin) >= 2
    events.to_parquet(tmp_path / "events.parquet")
    catalog.to_parquet(tmp_path / "catalog.parquet")
    export_bundle(
        [tmp_path / "events.parquet"],
        tmp_path / "bundle",
        BuildConfig(),
        catalog_path=tmp_path / "catalog.parquet",
        evaluate=False,
        quiet=True,
        report=False,
    )
    bundle = load_bundle(tmp_path / "bundle")
    model = bundle.model
    session = [SessionEvent(type="view", item_id=i) for i in kin["item_id"][:3]]
    state = build_user_state(model, None, session)
    candidates = candidate_features(model, state, context_from("mobile", "de", 20))
    [position] = model.items.positions([new["item_id"]]).tolist()
    found = np.flatnonzero(candidates.items == position)
    assert found.size == 1
    assert candidates.features[found[0], COLUMN["content_score"]] > 1.0


def test_titles_link_items_of_no_known_category_or_brand():
    """UCI Online Retail's shape: ids and titles only."""
    universe = _universe([-1, -1, -1, -1], ["", "", "", ""], [2.0, 2.0, 2.0, 2.0])
    universe = ItemUniverse(
        **{
            **universe.__dict__,
            "title": np.array(
                [
                    "WHITE HANGING HEART T-LIGHT HOLDER",
                    "PINK HANGING HEART T-LIGHT HOLDER",
                    "JUMBO BAG RED RETROSPOT",
                    "SET OF 3 CAKE TINS",
                ],
                dtype=object,
            ),
        }
    )
    warm = np.array([True, False, True, False])
    graph = graph_from_tree(content_neighbours(universe, warm))
    assert [j for j, _ in neighbours_of(graph, 0)] == [1]  # the pink one, by its words
    assert neighbours_of(graph, 2) == []  # nothing new shares its words
