"""The learned state the edge scores with, as plain arrays. `bundle.py` fills it from files;
`export` fills it straight from fitted models, so both halves score through the same code."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from edge.ids import find_ids
from edge.int8_scan import Int8Scan
from edge.ranker import Ranker

log = logging.getLogger("edgeperso.model")

SORT_BELOW = 512  # below this many scores one stable sort beats a partition and a sort


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, best first."""
    if scores.size <= max(k, SORT_BELOW):
        return np.argsort(-scores, kind="stable")[:k]
    part = np.argpartition(-scores, k)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


def _sorted_union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The distinct values of both, ascending. Not `np.union1d`: numpy 2's `unique` imports
    `numpy.ma` on its first call, a 30 ms stall for the first request that needs it."""
    both = np.concatenate([a, b])
    both.sort()
    distinct: np.ndarray = both[np.concatenate([[True], both[1:] != both[:-1]])]
    return distinct


_NO_CODES = np.empty(0, dtype=np.int8)
_NO_BYTES = np.empty(0, dtype=np.uint8)


@dataclass(frozen=True)
class ItemTable:
    """Per-item facts. Item i is the i-th id in UTF-8 byte order; ids are found by binary
    search in the id array, so a table of any size is ready as soon as its arrays are mapped."""

    id_bytes: np.ndarray  # |S<width>: UTF-8 ids, sorted and unique
    category: np.ndarray  # signed integer code per item (int8 to int32), -1 when unknown
    category_names: list[str]
    price: np.ndarray  # float32, NaN when unknown
    in_stock: np.ndarray  # bool
    age_days: np.ndarray  # float16 or 32: days from the item's first event to the end of training
    repeat_rate: np.ndarray  # float16 or 32: share of the item's buyers who bought it again
    # Brands and tags, for merchandising (`edge.merchandising`); format 8 and later. Left empty,
    # every item's brand is unknown (-1) and no item has tags.
    brand: np.ndarray = field(default_factory=lambda: _NO_CODES)  # signed code per item, -1
    brand_names: list[str] = field(default_factory=list)
    # Tags in CSR form: item i's tag codes are tag_codes[tag_indptr[i]:tag_indptr[i + 1]].
    tag_indptr: np.ndarray = field(default_factory=lambda: _NO_CODES)
    tag_codes: np.ndarray = field(default_factory=lambda: _NO_CODES)
    tag_names: list[str] = field(default_factory=list)
    # Display titles, for answers that ask for them (format 9): item i's UTF-8 title is
    # title_bytes[title_offsets[i]:title_offsets[i + 1]]. Left empty, no item has a title.
    title_bytes: np.ndarray = field(default_factory=lambda: _NO_BYTES)
    title_offsets: np.ndarray = field(default_factory=lambda: _NO_CODES)

    def __post_init__(self) -> None:
        n = self.id_bytes.size
        if self.brand.size == 0 and n:
            object.__setattr__(self, "brand", np.full(n, -1, dtype=np.int8))
        if self.tag_indptr.size == 0:
            object.__setattr__(self, "tag_indptr", np.zeros(n + 1, dtype=np.int64))

    def __len__(self) -> int:
        return self.id_bytes.size

    @property
    def ids(self) -> list[str]:
        """Every id, decoded (for tools, tests and benchmarks; requests use `positions`)."""
        return [b.decode() for b in self.id_bytes.tolist()]

    def id_of(self, i: int) -> str:
        id_: bytes = self.id_bytes[i]
        return id_.decode()

    def ids_of(self, indices: Iterable[int]) -> list[str]:
        ids = self.id_bytes
        return [ids[i].decode() for i in indices]

    def positions(self, item_ids: Sequence[str]) -> np.ndarray:
        """Index of each id, -1 for an id this bundle does not hold (aligned with the input)."""
        return find_ids(self.id_bytes, item_ids)

    def lookup(self, item_ids: Sequence[str]) -> np.ndarray:
        """Indices of the ids this bundle knows; unknown ids are skipped, not an error."""
        found = self.positions(item_ids)
        return found[found >= 0]

    def categories(self, item_ids: Sequence[str]) -> np.ndarray:
        """Category code of each id (-1 when unknown, or for an item this bundle lacks)."""
        found = self.positions(item_ids)
        return np.where(found >= 0, self.category[found], -1)

    def title(self, i: int) -> str | None:
        """Item i's display title; None when the bundle has none for it."""
        if self.title_offsets.size == 0:
            return None
        start, end = int(self.title_offsets[i]), int(self.title_offsets[i + 1])
        if end <= start:
            return None
        # Checked at load to be UTF-8; `replace` keeps a title from ever failing an answer.
        return bytes(self.title_bytes[start:end]).decode("utf-8", "replace")

    def prices(self, item_ids: Sequence[str]) -> np.ndarray:
        """Price of each id (0 when unknown, or for an item this bundle lacks)."""
        found = self.positions(item_ids)
        price = np.where(found >= 0, self.price[found], np.nan)
        return np.nan_to_num(price.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)


@dataclass(frozen=True)
class Embeddings:
    """Item factors of an implicit-feedback ALS model, plus what folding a user in needs:
    the regularized Gram matrix YᵀY + λI and the confidence scale alpha.

    Factors are stored as int8 with a float32 scale per row (row ≈ int8 row × scale: a quarter
    of float32's size; export checks the top-100 against float32's), or as float32 with a scale
    of 1. Rows are stored by descending norm (`order[r]` is the item of row r), so the exact
    top-k inner products can stop early: no row whose norm × |u| is below the k-th best score
    found so far can enter the top k (Cauchy-Schwarz). Int8 rows are dequantized a block at a
    time, the first time a scan reaches the block, and kept: loading stays instant, and a
    node's steady state scans float32 (numpy's int8 products are several times slower). A
    search the bound leaves long (a user aligned with no strong item) goes instead to the int8
    scan of every row in onnxruntime (`scan`), so only the first EXACT_SCAN_ROWS rows are ever
    dequantized, and no search reads float32 rows past them.

    The rows may stop before the last item (`n_items` > rows): export leaves out the
    smallest-norm rows that no user's top-100 needs (`export.embeddings.rows_to_keep`). An item
    without a row is served as a zero vector, here and in the Gram matrix alike."""

    factors: np.ndarray  # int8 or float32 [rows, k], rows by descending norm
    scale: np.ndarray  # float32 [rows]: a row's factors are factors[r] * scale[r]
    order: np.ndarray  # int32 [rows]: item index of each row
    norms: np.ndarray  # float32 [rows], descending: norms of the dequantized rows
    gram: np.ndarray  # float64 [k, k]
    alpha: float
    scan: Int8Scan | None = None  # every int8 row in one onnxruntime call, for long scans
    n_items: int = -1  # items of the bundle; -1: one per row
    row_of_item: np.ndarray = field(init=False, repr=False)
    # Per item: its row's scale, 0 for an item without a row (whose row_of_item is 0).
    scale_of_item: np.ndarray = field(init=False, repr=False)
    # The norms negated, ascending for `searchsorted`; and the rows of each block as float32,
    # None until a scan first reaches it (`_block`).
    _negative_norms: np.ndarray = field(init=False, repr=False, compare=False)
    _blocks: list[np.ndarray | None] = field(init=False, repr=False, compare=False)
    # The thread building `scan` after a serving node's load (`edge.bundle`), if one is.
    scan_builder: threading.Thread | None = field(default=None, compare=False, repr=False)

    # Rows scored before the bound is computed. The k-th best of the first 1,024 rows (the
    # longest) bounds about as well as that of 4,096 (the 100,000-item simulator's median
    # scan: 5,486 rows against 5,468) and costs less to find: in two paired runs of
    # bench/bench_retrieval.py, top-100 took 0.58 of brute force's time against 0.70.
    FIRST_BLOCK = 1024
    BLOCK_ROWS = 8192  # rows dequantized together
    # Past this many rows, the int8 scan of every row plus an exact rescore is cheaper than
    # float32 products over the rows the bound leaves (bench/bench_recommend.py measures both).
    EXACT_SCAN_ROWS = 24_576
    RESCORED = 2  # the int8 scan returns k × this many rows; the exact products pick the k

    def __post_init__(self) -> None:
        n_items = self.order.size if self.n_items < 0 else self.n_items
        if n_items < self.order.size:
            raise ValueError(f"{self.order.size} embedding rows for {n_items} items")
        object.__setattr__(self, "n_items", n_items)
        rows = np.zeros(n_items, dtype=np.int64)
        rows[self.order] = np.arange(self.order.size)
        scale = np.zeros(n_items, dtype=np.float32)
        scale[self.order] = self.scale
        object.__setattr__(self, "row_of_item", rows)
        object.__setattr__(self, "scale_of_item", scale)
        object.__setattr__(self, "_negative_norms", -self.norms)
        n_blocks = -(-self.order.size // self.BLOCK_ROWS)
        object.__setattr__(self, "_blocks", [None] * n_blocks)

    def attach_scan(self, scan: Int8Scan) -> None:
        """Set once, after construction: the one field that may arrive late (see `scan`)."""
        object.__setattr__(self, "scan", scan)

    def build_scan_in_background(self, graph: bytes) -> None:
        """Build the int8 scan off the load's path (a transpose and an onnxruntime session that
        packs the rows: about 15 ms at 100,000 items). Until it is attached, long searches read
        float32 rows exactly; if it cannot be built, they always will, and the log says why."""

        def build() -> None:
            try:
                self.attach_scan(Int8Scan(graph, self.factors, self.scale))
            except Exception:  # onnxruntime raises its own untyped errors
                log.exception("the int8 scan could not be built; long top-k searches stay exact")

        # Not a daemon: an interpreter that exits mid-build waits for it (about 15 ms) instead
        # of tearing onnxruntime down under it, which aborts the process.
        thread = threading.Thread(target=build, name="edgeperso-int8-scan")
        object.__setattr__(self, "scan_builder", thread)
        thread.start()

    def wait_for_scan(self, timeout: float | None = None) -> None:
        """Block until a background build of the scan is over (benchmarks, tests)."""
        if self.scan_builder is not None:
            self.scan_builder.join(timeout)

    def _block(self, b: int) -> np.ndarray:
        """Block b's rows as float32: a view of float32 factors, else dequantized once (two
        threads may both dequantize a block; either result is the same)."""
        block = self._blocks[b]
        if block is None:
            start, stop = b * self.BLOCK_ROWS, (b + 1) * self.BLOCK_ROWS
            raw = self.factors[start:stop]
            if raw.dtype == np.float32:
                block = raw
            else:
                block = raw.astype(np.float32) * self.scale[start:stop, None]
            self._blocks[b] = block
        return block

    def _scores(self, user: np.ndarray, start: int, stop: int) -> np.ndarray:
        """user · row for rows start..stop."""
        size = self.BLOCK_ROWS
        parts = []
        for b in range(start // size, -(-stop // size)):
            lo, hi = max(start - b * size, 0), min(stop - b * size, size)
            parts.append(self._block(b)[lo:hi] @ user)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def rows(self, items: np.ndarray) -> np.ndarray:
        """Factor rows of these item indices (float32; zeros for an item without a row)."""
        r, scale = self.row_of_item[items], self.scale_of_item[items, None]
        rows: np.ndarray = self.factors[r].astype(np.float32, copy=False) * scale
        return rows

    def _stored_rows(self, r: np.ndarray) -> np.ndarray:
        """Rows r of the storage order, dequantized to float32."""
        rows: np.ndarray = self.factors[r].astype(np.float32, copy=False) * self.scale[r, None]
        return rows

    def _threshold(self, first_scores: np.ndarray, k: int) -> float | None:
        """The k-th best score of the first block, or None when that block is all there is
        to read (it holds every row, or no more than k)."""
        first = first_scores.size
        if first >= self.factors.shape[0] or k >= first:
            return None
        return float(np.partition(first_scores, first - k)[first - k])

    def _scan_end(self, user: np.ndarray, first: int, threshold: float | None) -> int:
        """How many rows must be scored: past it, norm × |u| is below the k-th best score of the
        first block, so no later row can enter the top k."""
        if threshold is None:
            return first
        user_norm = float(np.sqrt(user @ user))
        if threshold <= 0 or user_norm == 0:
            return len(self.factors)
        # A float32 needle (a Python float makes numpy convert all n norms on every call),
        # rounded up so that rounding can only make the scan longer, never drop a row.
        bound = np.nextafter(np.float32(-threshold / user_norm), np.float32(np.inf))
        end = int(np.searchsorted(self._negative_norms, bound))
        return max(end, first)

    def _first_block(self, user: np.ndarray, k: int) -> np.ndarray:
        first = min(self.factors.shape[0], max(self.FIRST_BLOCK, 4 * k))
        return self._scores(user, 0, first)

    def scan_length(self, user: np.ndarray, k: int) -> int:
        """Rows `top(user, k)` reads (for benchmarks)."""
        scores = self._first_block(user, k)
        return self._scan_end(user, scores.size, self._threshold(scores, k))

    def top(self, user: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k items with the largest user · item, best first: (items, exact scores). Exact
        when the early stop reads at most EXACT_SCAN_ROWS rows; past that, with an int8 scan,
        the k best of its k × RESCORED rows, rescored exactly (export measures the recall)."""
        scores = self._first_block(user, k)
        first, threshold = scores.size, self._threshold(scores, k)
        if threshold is None:
            best = top_k(scores, k)
            return self.order[best].astype(np.int64), scores[best]
        end = self._scan_end(user, first, threshold)
        # Only rows scoring at least the first block's k-th best can be in the top k: keep
        # those (ties included, so the result is the full sort's) and sort just them.
        rows = np.flatnonzero(scores >= threshold)
        exact = scores[rows]
        if end > self.EXACT_SCAN_ROWS and self.scan is not None:
            rows = _sorted_union(self.scan.top_rows(user, k * self.RESCORED), rows)
            exact = self._stored_rows(rows) @ user
        elif end > first:
            rest = self._scores(user, first, end)
            later = np.flatnonzero(rest >= threshold)
            rows = np.concatenate([rows, later + first])
            exact = np.concatenate([exact, rest[later]])
        best = top_k(exact, k)
        return self.order[rows[best]].astype(np.int64), exact[best]


@dataclass(frozen=True)
class ItemGraph:
    """Scored neighbours per item in CSR form: row i is indices[indptr[i]:indptr[i+1]]
    (co-visitation, item-to-item regression)."""

    indptr: np.ndarray  # int32 [n_items + 1]
    indices: np.ndarray  # int32
    scores: np.ndarray  # float32 (decoded from one-byte codes at load) or float16 (format 4)


@dataclass(frozen=True)
class Popularity:
    """Recency-weighted share of interactions per item, overall and per context key
    ("device=mobile", "country=de", "hour=evening"), scaled so that 1.0 is an average item."""

    overall: np.ndarray  # float32 [n_items]
    contexts: dict[str, np.ndarray]  # key -> float32 [n_items]
    top_overall: np.ndarray  # int32, best first
    top_contexts: dict[str, np.ndarray]  # key -> int32, best first
    category_top: ItemGraph  # category -> its most popular items, best first


@dataclass(frozen=True)
class Model:
    items: ItemTable
    embeddings: Embeddings
    covisitation: ItemGraph
    regression: ItemGraph
    popularity: Popularity
    event_weights: dict[str, float]
    ranker: Ranker | None = None  # attached by export once trained; always set in a bundle
    # Items without interactions next to the items they resemble (`content.msgpack`); None in
    # bundles written before it.
    content: ItemGraph | None = None
    category_lift: dict[str, np.ndarray] = field(init=False, repr=False)
    # Per item: popularity, log price (-1 unknown), age in days, repeat rate (float32 [n, 4]).
    static_features: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "category_lift", category_lift(self.items, self.popularity))
        price = self.items.price.astype(np.float64)
        log_price = np.where(np.isfinite(price), np.log1p(np.nan_to_num(price)), -1.0)
        static = [self.popularity.overall, log_price, self.items.age_days, self.items.repeat_rate]
        object.__setattr__(self, "static_features", np.column_stack(static).astype(np.float32))

    def category_top(self, category: int) -> np.ndarray:
        """The most popular items of a category, best first."""
        graph = self.popularity.category_top
        return graph.indices[graph.indptr[category] : graph.indptr[category + 1]]


def popular_by_category(
    category: np.ndarray, n_categories: int, overall: np.ndarray, n: int
) -> ItemGraph:
    """Per category, its `n` most popular items (best first), as a category → items table.
    Export writes it into popularity.msgpack ("category_top"), so the edge does not sort."""
    ranked = np.argsort(-overall, kind="stable")
    ranked = ranked[(category[ranked] >= 0) & (overall[ranked] > 0)]
    by_category = ranked[np.argsort(category[ranked], kind="stable")]
    cats = category[by_category]
    starts = np.searchsorted(cats, np.arange(n_categories))
    keep = (np.arange(cats.size) - starts[cats]) < n
    kept, kept_cats = by_category[keep], cats[keep]
    indptr = np.searchsorted(kept_cats, np.arange(n_categories + 1)).astype(np.int32)
    return ItemGraph(indptr, kept.astype(np.int32), overall[kept])


def category_lift(items: ItemTable, popularity: Popularity) -> dict[str, np.ndarray]:
    """Per context key and category: how much more of the category this context takes than all
    traffic does (1.0 = as much). Context shifts whole categories (evening buyers, mobile
    buyers), which item popularity alone is too sparse to show. One entry per category plus a
    last one of 1.0, so `lift[category[items]]` gives unknown categories (-1) no lift."""
    n_categories = len(items.category_names)
    known = items.category >= 0

    def shares(item_indices: np.ndarray, scores: np.ndarray) -> np.ndarray:
        codes = items.category[item_indices]
        mask = codes >= 0
        sums = np.bincount(codes[mask], weights=scores[mask], minlength=n_categories)
        total = sums.sum()
        return sums / total if total > 0 else sums

    overall = shares(np.flatnonzero(known), popularity.overall[known])
    lifts = {}
    for key, top in popularity.top_contexts.items():  # contexts are non-zero only on their top
        ratio = np.ones(n_categories + 1, dtype=np.float32)
        ratio[:n_categories] = np.divide(
            shares(top, popularity.contexts[key][top]),
            overall,
            out=np.ones(n_categories),
            where=overall > 0,
        )
        lifts[key] = ratio
    return lifts
