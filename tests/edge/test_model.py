import numpy as np
import pytest

from edge.ids import encode_ids
from edge.model import Embeddings, ItemTable


def embeddings(factors: np.ndarray, quantized: bool = False) -> Embeddings:
    """Embeddings as export writes them: float32 rows, or int8 rows with a scale each."""
    from export.embeddings import quantize_rows

    stored, scale = factors, np.ones(factors.shape[0], dtype=np.float32)
    if quantized:
        stored, scale = quantize_rows(factors)
    rows = stored.astype(np.float32) * scale[:, None]
    norms = np.nextafter(np.linalg.norm(rows, axis=1).astype(np.float32), np.inf)
    order = np.argsort(-norms, kind="stable").astype(np.int32)
    k = factors.shape[1]
    return Embeddings(stored[order], scale[order], order, norms[order], np.eye(k), 1.0)


@pytest.mark.parametrize("quantized", [False, True])
@pytest.mark.parametrize("n,k,first", [(5000, 16, 64), (300, 8, 4096), (2000, 8, 16)])
def test_top_is_exactly_the_brute_force_top_k(seed, n, k, first, quantized, monkeypatch):
    rng = np.random.default_rng(seed)
    # Heavy-tailed norms, like ALS factors of a long-tail catalog.
    factors = (rng.normal(size=(n, k)) * rng.pareto(2.0, size=(n, 1))).astype(np.float32)
    monkeypatch.setattr(Embeddings, "FIRST_BLOCK", first)
    monkeypatch.setattr(Embeddings, "BLOCK_ROWS", 100)  # scans cross many dequantized blocks
    emb = embeddings(factors, quantized)
    held = emb.rows(np.arange(n))  # what the bundle holds: exact top-k is over these rows
    for _ in range(50):
        user = rng.normal(size=k).astype(np.float32)
        for top_k in (1, 10, 100):
            items, scores = emb.top(user, top_k)
            brute = held @ user
            expected = np.sort(brute)[::-1][:top_k]
            np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(brute[items], scores, rtol=1e-5, atol=1e-5)


def test_top_with_more_wanted_than_items_and_a_zero_user():
    emb = embeddings(np.eye(3, dtype=np.float32))
    items, scores = emb.top(np.array([0.0, 2.0, 1.0], dtype=np.float32), 10)
    assert items.tolist() == [1, 2, 0] and scores.tolist() == [2.0, 1.0, 0.0]
    items, _ = emb.top(np.zeros(3, dtype=np.float32), 2)
    assert len(items) == 2


def test_rows_follow_item_indices_not_storage_order():
    factors = np.array([[0.1, 0], [5, 0], [0, 1]], dtype=np.float32)
    np.testing.assert_array_equal(embeddings(factors).rows(np.array([0, 2])), factors[[0, 2]])
    quantized = embeddings(factors, quantized=True).rows(np.array([0, 2]))
    np.testing.assert_allclose(quantized, factors[[0, 2]], atol=5 / 127 / 2)


def table(ids, category=None, price=None) -> ItemTable:
    n, ones = len(ids), np.ones(len(ids), np.float32)
    category = np.zeros(n, np.int32) if category is None else np.asarray(category, np.int32)
    price = ones if price is None else np.asarray(price, np.float32)
    return ItemTable(encode_ids(ids), category, ["c"], price, ones > 0, ones, ones)


def test_items_past_the_stored_rows_are_zero_vectors_and_never_found(seed):
    rng = np.random.default_rng(seed)
    full = embeddings(rng.normal(size=(500, 8)).astype(np.float32), quantized=True)
    kept = 120  # export keeps the rows of largest norm

    def first_rows(n_items: int) -> Embeddings:
        head = (full.factors[:kept], full.scale[:kept], full.order[:kept], full.norms[:kept])
        return Embeddings(*head, np.eye(8), 1.0, n_items=n_items)

    emb = first_rows(500)
    held, left_out = full.order[:kept], full.order[kept:]
    np.testing.assert_array_equal(emb.rows(held), full.rows(held))
    assert not emb.rows(left_out).any()
    for _ in range(20):
        user = rng.normal(size=8).astype(np.float32)
        items, scores = emb.top(user, 50)
        assert np.isin(items, held).all()
        np.testing.assert_allclose(np.sort(full.rows(held) @ user)[::-1][:50], scores, rtol=1e-5)
    with pytest.raises(ValueError, match="120 embedding rows for 100 items"):
        first_rows(100)


def test_item_table_lookup_skips_unknown_ids():
    items = table(["a", "b", "ü-9"])
    assert items.lookup(["b", "zzz", "a", "ü-9"]).tolist() == [1, 0, 2]
    # Longer than every stored id, empty, or a stored id plus a NUL: unknown, not a match.
    assert items.positions(["a-much-longer-id", "", "a\0", "b"]).tolist() == [-1, -1, -1, 1]
    assert items.ids == ["a", "b", "ü-9"] and items.ids_of([2, 0]) == ["ü-9", "a"]


def test_item_table_answers_category_and_price_by_id():
    items = table(["a", "b"], category=[0, -1], price=[2.5, np.nan])
    assert items.categories(["a", "b", "zzz"]).tolist() == [0, -1, -1]
    assert items.prices(["a", "b", "zzz"]).tolist() == [2.5, 0.0, 0.0]


@pytest.mark.parametrize(
    "ids,message", [(["b", "a"], "unique and sorted"), (["a", "a"], "unique"), (["x\0"], "NUL")]
)
def test_ids_must_be_sorted_unique_and_free_of_trailing_nuls(ids, message):
    with pytest.raises(ValueError, match=message):
        encode_ids(ids)
