import numpy as np
import pytest

from edge.model import Embeddings, ItemTable


def embeddings(factors: np.ndarray) -> Embeddings:
    norms = np.linalg.norm(factors, axis=1).astype(np.float32)
    order = np.argsort(-norms, kind="stable").astype(np.int32)
    k = factors.shape[1]
    return Embeddings(factors[order], order, norms[order], np.eye(k), 1.0)


@pytest.mark.parametrize("n,k,first", [(5000, 16, 64), (300, 8, 4096), (2000, 8, 16)])
def test_top_is_exactly_the_brute_force_top_k(seed, n, k, first, monkeypatch):
    rng = np.random.default_rng(seed)
    # Heavy-tailed norms, like ALS factors of a long-tail catalog.
    factors = (rng.normal(size=(n, k)) * rng.pareto(2.0, size=(n, 1))).astype(np.float32)
    emb = embeddings(factors)
    monkeypatch.setattr(Embeddings, "FIRST_BLOCK", first)
    for _ in range(50):
        user = rng.normal(size=k).astype(np.float32)
        for top_k in (1, 10, 100):
            items, scores = emb.top(user, top_k)
            brute = factors @ user
            expected = np.sort(brute)[::-1][:top_k]
            np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(brute[items], scores, rtol=1e-5, atol=1e-6)


def test_top_with_more_wanted_than_items_and_a_zero_user():
    emb = embeddings(np.eye(3, dtype=np.float32))
    items, scores = emb.top(np.array([0.0, 2.0, 1.0], dtype=np.float32), 10)
    assert items.tolist() == [1, 2, 0] and scores.tolist() == [2.0, 1.0, 0.0]
    items, _ = emb.top(np.zeros(3, dtype=np.float32), 2)
    assert len(items) == 2


def test_rows_follow_item_indices_not_storage_order():
    factors = np.array([[0.1, 0], [5, 0], [0, 1]], dtype=np.float32)
    emb = embeddings(factors)
    np.testing.assert_array_equal(emb.rows(np.array([0, 2])), factors[[0, 2]])


def test_item_table_lookup_skips_unknown_ids():
    ones = np.ones(2, np.float32)
    table = ItemTable(["a", "b"], np.zeros(2, np.int32), ["c"], ones, np.ones(2, bool), ones, ones)
    assert table.lookup(["b", "zzz", "a"]).tolist() == [1, 0]


def test_item_table_answers_category_and_price_by_id():
    ones = np.ones(2, np.float32)
    price = np.array([2.5, np.nan], np.float32)
    table = ItemTable(["a", "b"], np.array([0, -1], np.int32), ["c"], price, ones > 0, ones, ones)
    assert [table.category_of(i) for i in ("a", "b", "zzz")] == [0, -1, -1]
    assert [table.price_of(i) for i in ("a", "b", "zzz")] == [2.5, 0.0, 0.0]
