"""Item embeddings by implicit-feedback matrix factorization (ALS, Hu, Koren & Volinsky 2008).

Only item factors go in the bundle; a user is folded in at request time from their recent items
by the same least-squares step ALS itself uses (`edge.scoring.fold_in`), so the bundle does not
grow with the number of users."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from onnx import TensorProto, helper
from threadpoolctl import threadpool_limits

from edge.bundle import embeddings_from_tree
from edge.model import Embeddings
from export.interactions import ItemUniverse


class NotFittedError(RuntimeError):
    pass


class ItemEmbeddings:
    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 2.0,
        iterations: int = 15,
        seed: int = 0,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.seed = seed

    def fit(
        self, user_items: sp.csr_matrix, metadata: sp.csr_matrix | None = None
    ) -> ItemEmbeddings:
        """Factor `user_items`; with `metadata` (one row per item), items without interactions
        get factors from it (`cold_start_factors`) instead of zeros."""
        if not sp.isspmatrix_csr(user_items) or user_items.shape[1] == 0:
            raise ValueError(f"user_items must be a non-empty CSR matrix, got {type(user_items)}")
        # implicit parallelizes itself; BLAS threads on top of it only contend (and it warns).
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                random_state=self.seed,
                calculate_training_loss=False,
            )
            model.fit(user_items, show_progress=False)
        self.model_ = model
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        warm = np.asarray(user_items.getnnz(axis=0)) > 0
        self.cold_items_ = int((~warm).sum())
        if metadata is not None:
            self.item_factors_ = cold_start_factors(self.item_factors_, metadata, warm)
        y = self.item_factors_.astype(np.float64)
        self.gram_ = y.T @ y + self.regularization * np.eye(self.factors)
        return self

    def to_tree(self, quantize: str = "int8", rows: str = "needed") -> dict[str, object]:
        """Rows by descending norm, for the edge's early-stopping exact top-k; int8 with a scale
        per row when its top-100 keeps MIN_QUANTIZED_RECALL of float32's for this shop's users,
        else float32 (the tree's "quantization" entry says which, and why). With `rows` =
        "needed", only the rows those users' top-100 reaches (`rows_to_keep`). Int8 rows come
        with the graph of the edge's int8 scan of every row (`scan_onnx`), used for long
        searches."""
        if not hasattr(self, "item_factors_"):
            raise NotFittedError("ItemEmbeddings is not fitted yet; call fit(user_items) first")
        exact = self.item_factors_
        factors, scale = exact, np.ones(exact.shape[0], dtype=np.float32)
        users = sample_rows(self.model_.user_factors, RECALL_USERS, self.seed)
        # A user with no interactions has a zero vector: every item ties, and which 100 of
        # them a top-k returns is arbitrary, not a matter of recall.
        users = users[np.linalg.norm(users, axis=1) > 0]
        report: dict[str, object] = {"dtype": "float32"}
        if quantize == "int8":
            q, q_scale = quantize_rows(exact)
            recall = top_k_recall(exact, q.astype(np.float32) * q_scale[:, None], users, 100)
            report = {"recall_at_100": round(recall, 4), "users": int(users.shape[0])}
            if recall >= MIN_QUANTIZED_RECALL:
                factors, scale = q, q_scale
                report = {"dtype": "int8", **report}
            else:
                report = {"dtype": "float32", "int8_refused": True, **report}
        dequantized = factors.astype(np.float32) * scale[:, None]
        # Rounded up: the edge's early stop may only ever read more rows, never fewer.
        norms = np.nextafter(np.linalg.norm(dequantized, axis=1).astype(np.float32), np.inf)
        order = np.argsort(-norms, kind="stable").astype(np.int32)
        if rows == "needed":
            order = order[: rows_to_keep(exact[order], users, 100)]
        report["rows"] = int(order.size)
        y = dequantized[order].astype(np.float64)  # the fold-in's Gram of the rows the edge holds
        tree = {
            "factors": np.ascontiguousarray(factors[order]),
            "scale": scale[order],
            "order": order,
            "norms": norms[order],
            "gram": y.T @ y + self.regularization * np.eye(self.factors),
            "alpha": self.alpha,
            "items": exact.shape[0],
            "quantization": report,
        }
        if factors.dtype == np.int8:
            # What the edge serves (early stop, else the int8 scan and an exact rescore) against
            # float32; the scan goes in only when it keeps the bar the rows themselves passed.
            tree["scan_onnx"] = scan_graph(*tree["factors"].shape)
            served = served_recall(exact, embeddings_from_tree(tree), users, 100)
            report["served_recall_at_100"] = round(served, 4)
            if served < MIN_QUANTIZED_RECALL:
                del tree["scan_onnx"]
                report["int8_scan_refused"] = True
        return tree


def scan_graph(n_rows: int, dim: int) -> bytes:
    """The ONNX graph `edge.int8_scan.Int8Scan` runs: the top k of scale × (rows · user) for a
    user split into two uint8 rows (positive and negative parts). The rows and scales are
    external initializers the edge supplies from this same file at load."""

    def supplied_at_load(name: str, dtype: int, dims: list[int]) -> TensorProto:
        tensor = TensorProto(name=name, data_type=dtype, dims=dims)
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", "supplied-at-load"), ("offset", "0"), ("length", "0")):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        return tensor

    nodes = [
        helper.make_node("MatMulInteger", ["user", "rows_t"], ["parts"]),  # int32 [2, n]
        helper.make_node("Split", ["parts"], ["positive", "negative"], axis=0),
        helper.make_node("Sub", ["positive", "negative"], ["dots"]),
        helper.make_node("Cast", ["dots"], ["dots_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["dots_f", "scale"], ["scores"]),  # [1, n]
        helper.make_node("TopK", ["scores", "k"], ["values", "rows"]),
    ]
    graph = helper.make_graph(
        nodes,
        "int8_scan",
        [
            helper.make_tensor_value_info("user", TensorProto.UINT8, [2, dim]),
            helper.make_tensor_value_info("k", TensorProto.INT64, [1]),
        ],
        [
            helper.make_tensor_value_info("values", TensorProto.FLOAT, [1, None]),
            helper.make_tensor_value_info("rows", TensorProto.INT64, [1, None]),
        ],
        [
            supplied_at_load("rows_t", TensorProto.INT8, [dim, n_rows]),
            supplied_at_load("scale", TensorProto.FLOAT, [n_rows]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    serialized: bytes = model.SerializeToString()
    return serialized


def served_recall(exact: np.ndarray, served: Embeddings, users: np.ndarray, k: int) -> float:
    """Mean share of each user's float32 top-k that the edge's `Embeddings.top` returns."""
    k = min(k, exact.shape[0])
    if users.shape[0] == 0 or k == 0:
        return 1.0
    truth = np.argpartition(-(users @ exact.T), k - 1, axis=1)[:, :k]
    shares = [
        np.intersect1d(t, served.top(u.astype(np.float32), k)[0]).size / k
        for t, u in zip(truth, users)
    ]
    return float(np.mean(shares))


MIN_QUANTIZED_RECALL = 0.99  # top-100 overlap with float32's, below which int8 is refused
RECALL_USERS = 500  # users the overlap is measured on
# Top-100 overlap the rows kept by `rows_to_keep` must give on their own, before quantization:
# stricter than int8's bar, so that both losses together stay above it.
MIN_KEPT_ROWS_RECALL = 0.999
# Never fewer rows than this: 8,192 int8 rows are half a megabyte, and below that the saving is
# not worth the als_score the left-out items would lose as candidates of other sources (UCI
# Online Retail, 4,000 items, trimmed to 1,024 rows: NDCG@10 0.0997 against 0.1036).
MIN_KEPT_ROWS = 8192


def rows_to_keep(rows_by_norm: np.ndarray, users: np.ndarray, k: int) -> int:
    """The fewest leading rows (of rows sorted by descending norm) whose top-k keeps, on average
    over the sampled users, MIN_KEPT_ROWS_RECALL of the top-k over all rows. Most items of a long
    tail have small norms and reach no one's top-k: they need not travel to the edge. Found
    by bisection over the row count (the recall grows with it)."""
    n: int = rows_by_norm.shape[0]
    if n <= MIN_KEPT_ROWS or users.shape[0] == 0:
        return n
    truth = top_k_rows(rows_by_norm, users, k)  # once; each step scores only its prefix

    def enough(count: int) -> bool:
        found = top_k_rows(rows_by_norm[:count], users, k)
        shares = [np.intersect1d(t, f).size / t.size for t, f in zip(truth, found)]
        return float(np.mean(shares)) >= MIN_KEPT_ROWS_RECALL

    low, high = MIN_KEPT_ROWS, n  # the answer is in (low, high], or low itself
    if enough(low):
        return low
    while high - low > max(n // 256, 64):
        middle = (low + high) // 2
        if enough(middle):
            high = middle
        else:
            low = middle
    return high


def quantize_rows(factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per row: row ≈ q × scale, |q| ≤ 127, scale = max |row| / 127."""
    peak = np.abs(factors).max(axis=1)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(factors / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def sample_rows(matrix: np.ndarray, n: int, seed: int) -> np.ndarray:
    rows = np.asarray(matrix, dtype=np.float32)
    if rows.shape[0] <= n:
        return rows
    return rows[np.random.default_rng(seed).choice(rows.shape[0], n, replace=False)]


def top_k_rows(rows: np.ndarray, users: np.ndarray, k: int) -> np.ndarray:
    """Each user's k rows with the largest user · row, in no order ([users, k]), 64 users at a
    time so that the score matrix stays small."""
    k = min(k, rows.shape[0])
    parts = [
        np.argpartition(-(users[start : start + 64] @ rows.T), k - 1, axis=1)[:, :k]
        for start in range(0, users.shape[0], 64)
    ]
    return np.concatenate(parts) if parts else np.empty((0, k), dtype=np.int64)


def top_k_recall(exact: np.ndarray, approx: np.ndarray, users: np.ndarray, k: int) -> float:
    """Mean share of each user's exact top-k (largest user · item) that `approx` also ranks in
    its top k."""
    k = min(k, exact.shape[0])
    if users.shape[0] == 0 or k == 0:
        return 1.0
    truth, found = top_k_rows(exact, users, k), top_k_rows(approx, users, k)
    return float(np.mean([np.intersect1d(t, f).size / k for t, f in zip(truth, found)]))


PRICE_BANDS = 5


def item_metadata(universe: ItemUniverse, max_brands: int = 2_000) -> sp.csr_matrix:
    """One-hot item metadata: category, brand (the most common `max_brands`) and price band
    (quintiles of the known prices; unknown prices are a band of their own)."""
    n = len(universe.ids)
    blocks = []
    category = universe.category
    known = category >= 0
    blocks.append(_one_hot(np.flatnonzero(known), category[known], len(universe.category_names), n))
    if universe.brand is not None:
        brands = pd.Series(universe.brand)
        common = brands[brands != ""].value_counts().index[:max_brands]
        codes = pd.Index(common).get_indexer(brands)
        blocks.append(_one_hot(np.flatnonzero(codes >= 0), codes[codes >= 0], len(common), n))
    price = universe.price.astype(np.float64)
    has_price = np.isfinite(price)
    band = np.full(n, PRICE_BANDS)
    if has_price.any():
        edges = np.quantile(price[has_price], np.linspace(0, 1, PRICE_BANDS + 1)[1:-1])
        band[has_price] = np.searchsorted(edges, price[has_price], side="right")
    blocks.append(_one_hot(np.arange(n), band, PRICE_BANDS + 1, n))
    features: sp.csr_matrix = sp.hstack(blocks, format="csr", dtype=np.float64)
    return features


def _one_hot(rows: np.ndarray, codes: np.ndarray, width: int, n: int) -> sp.csr_matrix:
    return sp.csr_matrix((np.ones(rows.size), (rows, codes)), shape=(n, max(width, 0)))


def cold_start_factors(
    factors: np.ndarray, metadata: sp.csr_matrix, warm: np.ndarray, regularization: float = 1.0
) -> np.ndarray:
    """Factors for the items no one interacted with (`~warm`): a ridge regression from item
    metadata to the learned factors of the warm items, applied to the cold ones. A new item
    then sits next to the items it resembles, so it can be recommended from its first day."""
    out = factors.copy()
    cold = ~warm
    if not cold.any() or warm.sum() < 2 or metadata.shape[1] == 0:
        return out
    m_warm = metadata[warm]
    gram = (m_warm.T @ m_warm).toarray() + regularization * np.eye(metadata.shape[1])
    weights = np.linalg.solve(gram, m_warm.T @ factors[warm].astype(np.float64))
    out[cold] = (metadata[cold] @ weights).astype(factors.dtype)
    return out
