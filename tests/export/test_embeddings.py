"""Parity: the edge's fold-in must give the user vector implicit itself computes."""

import numpy as np
import scipy.sparse as sp

from edge.bundle import embeddings_from_tree
from edge.scoring import solve_user
from export.embeddings import (
    MIN_KEPT_ROWS_RECALL,
    ItemEmbeddings,
    rows_to_keep,
    top_k_recall,
)


def test_edge_fold_in_matches_implicit_recalculate_user(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items = 300, 120
    dense = (rng.random((n_users, n_items)) < 0.05) * rng.integers(1, 9, (n_users, n_items))
    user_items = sp.csr_matrix(dense.astype(np.float32))
    emb = ItemEmbeddings(factors=16, regularization=0.1, alpha=2.0, iterations=5, seed=seed).fit(
        user_items
    )
    tree = emb.to_tree(quantize="none")
    assert tree["quantization"] == {"dtype": "float32", "rows": n_items}  # too few to trim
    embeddings = embeddings_from_tree(tree)
    for user in range(10):
        row = user_items[user]
        if row.nnz == 0:
            continue
        expected = emb.model_.recalculate_user(user, row)
        got = solve_user(embeddings.rows(row.indices), row.data, embeddings.gram, embeddings.alpha)
        np.testing.assert_allclose(got, np.asarray(expected).ravel(), rtol=1e-3, atol=1e-4)


def fitted(seed: int, n_users: int = 2000, n_items: int = 600) -> ItemEmbeddings:
    rng = np.random.default_rng(seed)
    taste = rng.normal(size=(n_users, 8)) @ rng.normal(size=(8, n_items))
    dense = (taste > np.quantile(taste, 0.97)) * rng.integers(1, 5, (n_users, n_items))
    return ItemEmbeddings(factors=32, iterations=8, seed=seed).fit(
        sp.csr_matrix(dense.astype(np.float32))
    )


def test_int8_rows_keep_the_float32_top_100_and_the_tree_says_so(seed):
    emb = fitted(seed)
    tree = emb.to_tree()  # int8 is the default
    report = tree["quantization"]
    assert report["dtype"] == "int8" and report["recall_at_100"] >= 0.99
    assert tree["factors"].dtype == np.int8 and tree["scale"].dtype == np.float32
    embeddings = embeddings_from_tree(tree)
    # The rows the edge holds are within half a quantization step of float32's.
    exact = emb.item_factors_
    step = np.abs(exact).max(axis=1, keepdims=True) / 127
    assert np.all(np.abs(embeddings.rows(np.arange(exact.shape[0])) - exact) <= step / 2 + 1e-6)


def test_int8_is_refused_when_it_would_lose_the_top_100(seed, monkeypatch):
    import export.embeddings as module

    monkeypatch.setattr(module, "MIN_QUANTIZED_RECALL", 1.01)  # no quantization can keep it
    tree = fitted(seed).to_tree()
    assert tree["quantization"]["dtype"] == "float32" and tree["quantization"]["int8_refused"]
    assert tree["factors"].dtype == np.float32


def test_top_k_recall_counts_the_shared_share():
    from export.embeddings import top_k_recall

    exact = np.diag([4.0, 3.0, 2.0, 1.0]).astype(np.float32)
    users = np.ones((1, 4), np.float32)
    assert top_k_recall(exact, exact, users, 2) == 1.0
    swapped = np.diag([1.0, 3.0, 2.0, 4.0]).astype(np.float32)  # top 2 {0, 1} becomes {3, 1}
    assert top_k_recall(exact, swapped, users, 2) == 0.5


def test_an_item_without_interactions_gets_factors_from_its_metadata(seed):
    """Two categories bought by two groups of users; a new item of category B (no events)
    must land next to the B items, not at zero and not among the A items."""
    import pandas as pd

    from export.embeddings import cold_start_factors, item_metadata
    from export.interactions import ItemUniverse

    rng = np.random.default_rng(seed)
    n_users, per_category = 200, 10
    n_items = 2 * per_category + 1  # the last item is new
    dense = np.zeros((n_users, n_items), np.float32)
    for user in range(n_users):
        group = user % 2
        chosen = rng.choice(per_category, 4, replace=False) + group * per_category
        dense[user, chosen] = 1.0
    category = np.array([0] * per_category + [1] * per_category + [1], np.int32)
    universe = ItemUniverse(
        [f"i{i}" for i in range(n_items)],
        category,
        ["a", "b"],
        np.full(n_items, 10.0, np.float32),
        np.ones(n_items, bool),
        pd.Series(["x"] * n_items).to_numpy(dtype=object),
    )
    metadata = item_metadata(universe)
    emb = ItemEmbeddings(factors=8, regularization=0.1, alpha=2.0, iterations=10, seed=seed)
    emb.fit(sp.csr_matrix(dense), metadata)
    y = emb.item_factors_
    assert emb.cold_items_ == 1 and np.linalg.norm(y[-1]) > 0

    def cosine(u, v):
        return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))

    centre_a, centre_b = y[:per_category].mean(axis=0), y[per_category:-1].mean(axis=0)
    assert cosine(y[-1], centre_b) > 0.9 and cosine(y[-1], centre_a) < 0.3
    # Without metadata, or with every item warm, nothing changes.
    warm = np.ones(n_items, bool)
    np.testing.assert_array_equal(cold_start_factors(y, metadata, warm), y)


def test_int8_rows_come_with_the_edge_scan_and_its_served_recall(seed, monkeypatch):
    import export.embeddings as module
    from edge.model import Embeddings

    emb = fitted(seed)
    monkeypatch.setattr(Embeddings, "EXACT_SCAN_ROWS", 0)  # every search takes the scan
    tree = emb.to_tree()
    assert tree["quantization"]["served_recall_at_100"] >= 0.99
    assert embeddings_from_tree(tree).scan is not None
    # What the edge would serve loses the top 100: the scan is left out, and the tree says so.
    monkeypatch.setattr(module, "served_recall", lambda *args: 0.5)
    tree = emb.to_tree()
    assert "scan_onnx" not in tree and tree["quantization"]["int8_scan_refused"]
    assert tree["quantization"]["served_recall_at_100"] == 0.5
    assert embeddings_from_tree(tree).scan is None


def test_rows_no_top_100_reaches_are_left_out(seed, monkeypatch):
    import export.embeddings as module

    monkeypatch.setattr(module, "MIN_KEPT_ROWS", 1024)
    rng = np.random.default_rng(seed)
    head = rng.normal(size=(3000, 16)).astype(np.float32)
    tail = 0.01 * rng.normal(size=(9000, 16)).astype(np.float32)  # a long tail of weak items
    rows = np.concatenate([head, tail])
    rows = rows[np.argsort(-np.linalg.norm(rows, axis=1), kind="stable")]
    users = rng.normal(size=(200, 16)).astype(np.float32)
    keep = rows_to_keep(rows, users, 100)
    assert keep < 3000 + 12000 // 256 + 64  # the tail stays home
    assert top_k_recall(rows, rows[:keep], users, 100) >= MIN_KEPT_ROWS_RECALL
    # Bisection returns a count within one step of the fewest that keep the recall.
    fewer = keep - 12000 // 256 - 1
    assert top_k_recall(rows, rows[:fewer], users, 100) < MIN_KEPT_ROWS_RECALL
    monkeypatch.setattr(module, "MIN_KEPT_ROWS", 8192)  # the floor: never fewer rows
    assert rows_to_keep(rows, users, 100) == 8192
    assert rows_to_keep(rows[:8192], users, 100) == 8192  # a small catalog keeps every row


def test_an_item_without_a_row_is_served_as_a_zero_vector(seed, monkeypatch):
    import export.embeddings as module

    monkeypatch.setattr(module, "MIN_KEPT_ROWS", 256)
    emb = fitted(seed, n_users=3000, n_items=4000)
    trimmed = emb.to_tree()
    n_rows = trimmed["quantization"]["rows"]
    assert n_rows == trimmed["factors"].shape[0] < 4000 and trimmed["items"] == 4000
    everything = emb.to_tree(rows="all")
    assert everything["quantization"]["rows"] == everything["factors"].shape[0] == 4000
    embeddings = embeddings_from_tree(trimmed)
    left_out = np.setdiff1d(np.arange(4000), trimmed["order"])
    assert embeddings.n_items == 4000 and left_out.size == 4000 - n_rows
    assert not embeddings.rows(left_out).any()
    held = embeddings.rows(trimmed["order"])
    assert np.allclose(held, embeddings_from_tree(everything).rows(trimmed["order"]))
    # The Gram matrix is the held rows' own, so the fold-in treats the others as zeros.
    expected = held.astype(np.float64).T @ held + emb.regularization * np.eye(32)
    np.testing.assert_allclose(embeddings.gram, expected, rtol=1e-6)
    assert trimmed["quantization"]["served_recall_at_100"] >= 0.99
    user = emb.model_.user_factors[0].astype(np.float32)
    assert not np.isin(embeddings.top(user, 50)[0], left_out).any()
