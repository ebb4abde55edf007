"""Each array file's encoder against its decoder: what goes in as plain arrays comes back as the
model's parts, through the file's own bytes. Expected values are computed here from the inputs."""

import numpy as np
import pytest

from edge import arrays
from edge.bundle import SCORE_LEVELS, BundleError, graph_from_tree, graph_to_tree
from edge.bundle.codecs import (
    embeddings_from_tree,
    embeddings_to_tree,
    items_from_tree,
    items_to_tree,
    model_from_trees,
    popularity_from_tree,
    popularity_to_tree,
)
from tests.edge import small_bundle as shop


def through_a_file(tree: dict) -> dict:
    """The tree as the edge reads it back: encoded to msgpack, decoded without a copy."""
    return arrays.loads(arrays.dumps(tree))


def test_items_come_back_with_every_per_item_fact():
    ids = ["a", "b", "c10", "c9", "é"]  # UTF-8 byte order
    category = np.array([2, -1, 0, 1, 2])
    price = np.array([1.5, np.nan, 3.0, 4.0, 5.25])
    in_stock = np.array([True, False, True, True, False])
    age = np.array([0.0, 1.5, 10.0, 200.0, 3.25])
    repeat = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    tree = items_to_tree(ids, category, ["x", "y", "z"], price, in_stock, age, repeat)
    # Category codes take the narrowest integer that holds them: one byte for three categories.
    known = items_to_tree(ids, category % 3, ["x", "y", "z"], price, in_stock, age, repeat)
    assert known["category"].itemsize == 1
    table = items_from_tree(through_a_file(tree))
    assert table.ids == ids and table.category_names == ["x", "y", "z"]
    assert table.category.tolist() == [2, -1, 0, 1, 2]
    np.testing.assert_array_equal(table.price, price.astype(np.float32))  # NaN stays unknown
    assert table.in_stock.tolist() == in_stock.tolist()
    np.testing.assert_array_equal(table.age_days, age)  # each exact in half precision
    np.testing.assert_array_equal(table.repeat_rate, repeat)
    assert table.positions(["c9", "é", "zz"]).tolist() == [3, 4, -1]


def test_titles_travel_as_bytes_and_offsets_and_unknown_ones_stay_unknown():
    ids, titles = ["a", "b", "c"], ["Mug", "", "Écharpe « laine »"]
    tree = items_to_tree(
        ids, np.zeros(3), [], np.zeros(3), np.ones(3, bool), *np.zeros((2, 3)), titles=titles
    )
    assert tree["title_offsets"].tolist() == [0, 3, 3, 3 + len(titles[2].encode())]
    table = items_from_tree(through_a_file(tree))
    assert [table.title(i) for i in range(3)] == ["Mug", None, "Écharpe « laine »"]
    untitled = items_from_tree(
        through_a_file(
            items_to_tree(
                ids,
                np.zeros(3),
                [],
                np.zeros(3),
                np.ones(3, bool),
                *np.zeros((2, 3)),
                titles=["", "", ""],
            )
        )
    )
    assert untitled.title_offsets.size == 0 and untitled.title(0) is None  # nothing stored


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.update(title_offsets=t["title_offsets"][:-1]), "one per item and one more"),
        (lambda t: t.update(title_offsets=t["title_offsets"][::-1].copy()), "never go back"),
        (
            lambda t: t.update(title_bytes=np.frombuffer(b"Mug\xffat", np.uint8)),
            "not UTF-8 at byte 3",
        ),
        (lambda t: t.update(title_bytes=t["title_bytes"].astype(np.int16)), "one row of uint8"),
    ],
)
def test_damaged_titles_are_refused_saying_how(change, message):
    tree = items_to_tree(
        ["a", "b"],
        np.zeros(2),
        [],
        np.zeros(2),
        np.ones(2, bool),
        *np.zeros((2, 2)),
        titles=["Mug", "Hat"],
    )
    change(tree)
    with pytest.raises(ValueError, match=message):
        items_from_tree(through_a_file(tree))


def test_items_out_of_byte_order_are_refused():
    with pytest.raises(ValueError, match="sorted"):
        items_to_tree(["b", "a"], np.zeros(2), [], np.zeros(2), np.ones(2, bool), *np.zeros((2, 2)))


def factors(seed: int, n: int = 30, k: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, k)).astype(np.float32)


def test_embeddings_are_stored_by_descending_norm_and_give_back_each_items_row(seed):
    y = factors(seed)
    tree = embeddings_to_tree(y, regularization=0.1, alpha=3.0)
    embeddings = embeddings_from_tree(through_a_file(tree))
    norms = np.linalg.norm(y.astype(np.float64), axis=1)
    assert embeddings.order.tolist() == np.argsort(-norms, kind="stable").tolist()
    np.testing.assert_array_equal(embeddings.rows(np.arange(30)), y)  # float32, a scale of 1
    assert embeddings.factors.dtype == np.float32 and (embeddings.scale == 1.0).all()
    np.testing.assert_allclose(
        embeddings.gram, y.astype(np.float64).T @ y.astype(np.float64) + 0.1 * np.eye(4)
    )
    assert embeddings.alpha == 3.0 and embeddings.n_items == 30 and "scan_onnx" not in tree
    assert tree["quantization"] == {"dtype": "float32", "rows": 30}


def test_stored_norms_are_rounded_up_so_the_early_stop_never_skips_a_row(seed):
    y = factors(seed)
    embeddings = embeddings_from_tree(through_a_file(embeddings_to_tree(y, 0.1, 3.0)))
    stored = y[embeddings.order]
    assert embeddings.norms.dtype == np.float32
    assert (embeddings.norms > np.linalg.norm(stored, axis=1).astype(np.float32)).all()
    assert (embeddings.norms >= np.linalg.norm(stored.astype(np.float64), axis=1)).all()
    assert (np.diff(embeddings.norms) <= 0).all()
    user = np.random.default_rng(seed + 1).normal(size=4).astype(np.float32)
    items, _ = embeddings.top(user, 5)
    assert items.tolist() == np.argsort(-(y @ user), kind="stable")[:5].tolist()


def test_trimmed_embeddings_keep_the_longest_rows_and_their_gram_alone(seed):
    y = factors(seed)
    embeddings = embeddings_from_tree(through_a_file(embeddings_to_tree(y, 0.1, 3.0, rows=12)))
    longest = np.argsort(-np.linalg.norm(y.astype(np.float64), axis=1), kind="stable")[:12]
    assert embeddings.n_items == 30 and embeddings.order.tolist() == longest.tolist()
    left_out = np.setdiff1d(np.arange(30), longest)
    assert not embeddings.rows(left_out).any()  # zero vectors to the edge
    kept = y[longest].astype(np.float64)
    np.testing.assert_allclose(embeddings.gram, kept.T @ kept + 0.1 * np.eye(4))


def test_a_graph_travels_as_row_lengths_and_comes_back_as_offsets():
    indptr = np.array([0, 2, 2, 5, 300], dtype=np.int32)
    indices, scores = np.arange(300, dtype=np.int32), np.ones(300, dtype=np.float16)
    tree = graph_to_tree(indptr, indices, scores)
    assert tree["lengths"].dtype == np.uint16  # 295 does not fit in a byte
    assert graph_to_tree(indptr[:4], indices[:5], scores[:5])["lengths"].dtype == np.uint8
    graph = graph_from_tree(tree)
    np.testing.assert_array_equal(graph.indptr, indptr)
    assert graph.indices is indices and graph.scores is scores
    with pytest.raises(ValueError, match="rows hold 300 neighbours, but there are 299 indices"):
        graph_from_tree(dict(tree, indices=indices[1:]))
    with pytest.raises(ValueError, match="row lengths must be counts"):
        graph_from_tree(dict(tree, lengths=np.array([1.0, 2.0])))


def test_positive_scores_travel_as_one_byte_within_half_a_step_and_in_order(seed):
    rng = np.random.default_rng(seed)
    scores = np.exp(rng.uniform(np.log(1e-4), 0.0, 500)).astype(np.float16)
    indptr = np.array([0, 200, 500])
    tree = graph_to_tree(indptr, np.arange(500, dtype=np.int32), scores, quantize=True)
    assert "scores" not in tree and tree["score_codes"].dtype == np.uint8
    decoded = graph_from_tree(through_a_file(tree)).scores
    log_range = np.log(scores.max() / scores.min())
    half_step = np.exp(log_range / (SCORE_LEVELS - 1) / 2)
    ratio = decoded / scores.astype(np.float32)
    assert np.all((ratio <= half_step * 1.001) & (ratio >= 1 / half_step / 1.001))
    order = np.argsort(scores, kind="stable")
    assert np.all(np.diff(decoded[order]) >= 0)  # ties at most, never reversed
    # Zero or negative scores are not quantized: they travel as they are.
    mixed = np.array([0.0, 0.5], dtype=np.float16)
    plain = graph_to_tree(np.array([0, 2]), np.arange(2, dtype=np.int32), mixed, quantize=True)
    assert plain["scores"] is mixed
    with pytest.raises(ValueError, match="score codes must be uint8 below 2"):
        graph_from_tree(dict(tree, score_levels=tree["score_levels"][:2]))


def test_popularity_comes_back_dense_with_its_top_lists_best_first_ties_by_index():
    overall = np.array([0.5, 2.0, 0.0, 2.0, 0.5, 1.0, 0.25], dtype=np.float32)
    mobile = np.array([0.0, 0.0, 3.0, 1.0, 0.0, 2.0, 0.0], dtype=np.float32)
    category = np.array([0, 1, 1, 0, -1, 1, 1])
    tree = popularity_to_tree(overall, {"device=mobile": mobile}, category, 3, category_top_n=2)
    popularity = popularity_from_tree(through_a_file(tree), 7)
    np.testing.assert_array_equal(popularity.overall, overall)
    assert popularity.top_overall.tolist() == [1, 3, 5, 0, 4, 6]  # item 2 has no popularity
    np.testing.assert_array_equal(popularity.contexts["device=mobile"], mobile)
    assert popularity.top_contexts["device=mobile"].tolist() == [2, 5, 3]
    # Per category its 2 most popular (item 6, the third of category 1, is left out; an
    # unknown category has no row).
    graph = popularity.category_top
    rows = [graph.indices[graph.indptr[c] : graph.indptr[c + 1]].tolist() for c in range(3)]
    assert rows == [[3, 0], [1, 5], []]
    np.testing.assert_array_equal(graph.scores, [2.0, 0.5, 2.0, 1.0])


def test_a_context_table_travels_as_its_top_items_only():
    scores = np.array([1.0, 4.0, 2.0, 3.0], dtype=np.float32)
    tree = popularity_to_tree(scores, {"country=de": scores}, np.zeros(4, int), 1, top_n=2)
    popularity = popularity_from_tree(through_a_file(tree), 4)
    assert popularity.top_overall.tolist() == [1, 3]
    np.testing.assert_array_equal(popularity.contexts["country=de"], [0.0, 4.0, 0.0, 3.0])
    with pytest.raises(ValueError, match="context 'x' has 3 scores for 4 items"):
        popularity_to_tree(scores, {"x": scores[:3]}, np.zeros(4, int), 1)


def test_the_encoded_files_decode_into_one_consistent_model():
    trees = {name: through_a_file(tree) for name, tree in shop.array_trees().items()}
    model = model_from_trees(trees, shop.EVENT_WEIGHTS, ranker=None)
    assert model.items.ids == shop.IDS and len(model.items) == shop.N_ITEMS
    np.testing.assert_array_equal(model.embeddings.rows(np.arange(shop.N_ITEMS)), shop.FACTORS)
    for graph, offsets in (
        (model.covisitation, shop.COVISITATION_OFFSETS),
        (model.regression, shop.REGRESSION_OFFSETS),
    ):
        for i, expected in shop.neighbours(offsets).items():
            lo, hi = graph.indptr[i], graph.indptr[i + 1]
            # Powers of two from 1 to 8 sit on quantization levels: decoded exactly.
            assert dict(zip(graph.indices[lo:hi].tolist(), graph.scores[lo:hi].tolist())) == (
                expected
            )
    np.testing.assert_array_equal(model.popularity.overall, shop.POP_OVERALL)
    assert model.popularity.top_overall.tolist() == shop.ranked_by(shop.POP_OVERALL)
    for key, scores in shop.CONTEXT_POPULARITY.items():
        assert model.popularity.top_contexts[key].tolist() == shop.ranked_by(scores)
    assert model.category_top(1).tolist() == [1, 6, 11, 16, 21, 26, 31, 36]  # books, by rank


def test_trees_of_different_item_counts_are_refused_naming_the_file():
    trees = shop.array_trees()
    trees["embeddings.msgpack"] = embeddings_to_tree(shop.FACTORS[:-1], 0.05, 2.0)
    with pytest.raises(BundleError, match="embeddings.msgpack has \\(39,\\) rows") as info:
        model_from_trees(trees, shop.EVENT_WEIGHTS, ranker=None)
    assert info.value.file == "embeddings.msgpack"
