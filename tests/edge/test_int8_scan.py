import numpy as np
import pytest

from edge.bundle import embeddings_from_tree
from edge.int8_scan import USER_LEVELS, Int8Scan
from edge.model import Embeddings
from export.embeddings import quantize_rows, scan_graph


def heavy_tailed(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Factors with long-tailed norms, like ALS factors of a long-tail catalog."""
    return (rng.normal(size=(n, k)) * rng.pareto(2.0, size=(n, 1))).astype(np.float32)


def test_top_rows_are_the_top_of_the_quantized_product(seed):
    rng = np.random.default_rng(seed)
    rows, scale = quantize_rows(heavy_tailed(rng, 3000, 16))
    scan = Int8Scan(scan_graph(3000, 16), rows, scale)
    for _ in range(20):
        user = rng.normal(size=16).astype(np.float32)
        levels = np.rint(user * (USER_LEVELS / np.abs(user).max())).astype(np.int64)
        products = (rows.astype(np.int64) @ levels) * scale.astype(np.float64)
        expected = np.argsort(-products, kind="stable")[:40]
        got = scan.top_rows(user, 40)
        # float32 rounding may swap two nearly equal products at the edge of the list
        assert len(set(got.tolist()) & set(expected.tolist())) >= 39


def test_top_rows_of_a_zero_user_or_a_small_table():
    rows, scale = quantize_rows(np.eye(4, dtype=np.float32))
    scan = Int8Scan(scan_graph(4, 4), rows, scale)
    assert scan.top_rows(np.zeros(4, np.float32), 2).tolist() == [0, 1]
    assert sorted(scan.top_rows(np.ones(4, np.float32), 10).tolist()) == [0, 1, 2, 3]


def tree_with_scan(factors: np.ndarray) -> dict:
    """The tree export writes for int8 rows (by descending norm, with the scan graph)."""
    q, scale = quantize_rows(factors)
    norms = np.nextafter(np.linalg.norm(q * scale[:, None], axis=1).astype(np.float32), np.inf)
    order = np.argsort(-norms, kind="stable").astype(np.int32)
    return {
        "factors": q[order],
        "scale": scale[order],
        "order": order,
        "norms": norms[order],
        "gram": np.eye(factors.shape[1]),
        "alpha": 1.0,
        "scan_onnx": scan_graph(*factors.shape),
    }


def embeddings_with_scan(factors: np.ndarray) -> Embeddings:
    return embeddings_from_tree(tree_with_scan(factors))


def test_long_scans_go_through_the_int8_scan_and_keep_the_exact_top_k(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    emb = embeddings_with_scan(heavy_tailed(rng, 5000, 32))
    assert emb.scan is not None
    monkeypatch.setattr(Embeddings, "EXACT_SCAN_ROWS", 0)  # every search takes the scan
    held = emb.rows(np.arange(5000))
    shares = []
    for _ in range(50):
        user = rng.normal(size=32).astype(np.float32)
        items, scores = emb.top(user, 50)
        brute = held @ user
        np.testing.assert_allclose(brute[items], scores, rtol=1e-5, atol=1e-5)  # exact scores
        assert np.all(np.diff(scores) <= 0)  # best first
        shares.append(np.intersect1d(items, np.argsort(-brute)[:50]).size / 50)
    assert np.mean(shares) >= 0.99


def test_a_scan_graph_of_another_shape_is_refused():
    rows, scale = quantize_rows(np.ones((10, 4), dtype=np.float32))
    tree = {"factors": rows, "scale": scale, "order": np.arange(10), "norms": np.ones(10)}
    tree |= {"gram": np.eye(4), "alpha": 1.0, "scan_onnx": scan_graph(12, 4)}
    with pytest.raises(ValueError, match="int8 scan graph cannot be loaded.*do not match"):
        embeddings_from_tree(tree)


def test_a_serving_load_builds_the_scan_in_the_background(seed, caplog):
    rng = np.random.default_rng(seed)
    factors = heavy_tailed(rng, 500, 8)
    tree = tree_with_scan(factors)
    emb = embeddings_from_tree(tree, scan_in_background=True)
    emb.top(rng.normal(size=8).astype(np.float32), 5)  # answers while the scan is being built
    emb.wait_for_scan(timeout=30)
    assert emb.scan is not None
    # A graph that does not fit: logged, and searches stay exact instead of failing the load.
    tree["scan_onnx"] = scan_graph(600, 8)
    broken = embeddings_from_tree(tree, scan_in_background=True)
    broken.wait_for_scan(timeout=30)
    assert broken.scan is None
    assert "int8 scan could not be built" in caplog.text
    user = rng.normal(size=8).astype(np.float32)
    np.testing.assert_array_equal(broken.top(user, 5)[0], emb.top(user, 5)[0])


def test_the_scan_builder_is_waited_for_at_exit(seed):
    # A daemon thread inside onnxruntime's session set-up when the interpreter exits aborts the
    # process ("terminate called without an active exception", exit code 134: seen with a
    # served 100,000-item bundle stopped right after its load). Python joins the others.
    tree = tree_with_scan(heavy_tailed(np.random.default_rng(seed), 300, 8))
    emb = embeddings_from_tree(tree, scan_in_background=True)
    assert emb.scan_builder is not None and not emb.scan_builder.daemon
    emb.wait_for_scan(timeout=30)
