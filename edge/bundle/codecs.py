"""The array files' contents as the build writes them and as the edge reads them back: each
file's tree (a msgpack map of arrays, `edge.arrays`) to the model's typed parts and back, with
the checks that every per-item array has one entry per item and every index is in range."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edge import arrays
from edge.bundle.files import CONTENT, COVISITATION, EMBEDDINGS, ITEMS, POPULARITY, REGRESSION
from edge.errors import BundleError
from edge.ids import encode_ids, is_sorted_and_unique
from edge.int8_scan import Int8Scan
from edge.model import Embeddings, ItemGraph, ItemTable, Model, Popularity, popular_by_category
from edge.ranker import Ranker


def items_from_tree(tree: dict[str, Any]) -> ItemTable:
    ids = tree["ids"]
    if not isinstance(ids, np.ndarray) or ids.dtype.kind != "S":
        raise ValueError("ids must be a byte-string array (format 4 and later)")
    if not is_sorted_and_unique(ids):
        raise ValueError("ids must be unique and sorted")
    return ItemTable(
        id_bytes=ids,
        category=tree["category"],
        category_names=list(tree["category_names"]),
        price=tree["price"],
        in_stock=tree["in_stock"],
        age_days=tree["age_days"],
        repeat_rate=tree["repeat_rate"],
        **_brands_and_tags(tree, ids.size),
        **_titles(tree, ids.size),
    )


def _titles(tree: dict[str, Any], n_items: int) -> dict[str, Any]:
    """Display titles (format 9), checked: one offset per item and one more, never going back,
    ending at the bytes' end, and the bytes UTF-8. Absent: no item has a title."""
    if "title_bytes" not in tree:
        return {}
    data, offsets = tree["title_bytes"], tree["title_offsets"]
    if data.dtype != np.uint8 or data.ndim != 1:
        raise ValueError(f"title_bytes must be one row of uint8, got {data.dtype} {data.shape}")
    if offsets.dtype.kind not in "iu" or offsets.shape != (n_items + 1,):
        raise ValueError(
            f"title_offsets must hold {n_items + 1} integers (one per item and one more), got "
            f"{offsets.dtype} {offsets.shape}"
        )
    steps = np.diff(offsets.astype(np.int64))
    if int(offsets[0]) != 0 or int(offsets[-1]) != data.size or (steps.size and steps.min() < 0):
        raise ValueError("title_offsets must start at 0, never go back and end at title_bytes' end")
    try:
        data.tobytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"title_bytes is not UTF-8 at byte {exc.start}") from exc
    return {"title_bytes": data, "title_offsets": offsets}


def _brands_and_tags(tree: dict[str, Any], n_items: int) -> dict[str, Any]:
    """Brands and tags (format 8), checked: codes in range of their names, a tag row per item.
    Absent (older bundles, a catalog without them): every brand unknown, no tags."""
    out: dict[str, Any] = {}
    if "brand" in tree:
        brand, names = tree["brand"], list(tree["brand_names"])
        _check_codes("brand", brand, len(names), allow_unknown=True)
        out |= {"brand": brand, "brand_names": names}
    if "tag_lengths" in tree:
        lengths, codes, names = tree["tag_lengths"], tree["tag_codes"], list(tree["tag_names"])
        if lengths.dtype.kind not in "iu" or (lengths.size and lengths.min() < 0):
            raise ValueError(f"tag_lengths must be counts, got {lengths.dtype}")
        if lengths.size != n_items or int(lengths.sum()) != codes.size:
            raise ValueError(
                f"tag_lengths has {lengths.size} rows summing to {int(lengths.sum())} for "
                f"{n_items} items and {codes.size} tag codes"
            )
        _check_codes("tag_codes", codes, len(names), allow_unknown=False)
        indptr = np.zeros(n_items + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        out |= {"tag_indptr": indptr, "tag_codes": codes, "tag_names": names}
    return out


def _check_codes(name: str, codes: np.ndarray, n_names: int, allow_unknown: bool) -> None:
    low = -1 if allow_unknown else 0
    if codes.dtype.kind not in "iu" or (
        codes.size and (int(codes.min()) < low or int(codes.max()) >= n_names)
    ):
        raise ValueError(f"{name} must be integer codes in {low}..{n_names - 1}")


def embeddings_from_tree(tree: dict[str, Any], scan_in_background: bool = False) -> Embeddings:
    """The embeddings of a decoded file (a bundle decodes only bytes it verified, so the scan's
    graph reaches onnxruntime only once its checksum passed)."""
    factors, scale, order, norms = tree["factors"], tree["scale"], tree["order"], tree["norms"]
    if factors.dtype not in (np.int8, np.float32) or factors.ndim != 2:
        raise ValueError(f"embeddings: factors must be int8 or float32 rows, got {factors.dtype}")
    if not (factors.shape[0] == scale.size == order.size == norms.size):
        raise ValueError(
            f"embeddings: {factors.shape[0]} rows, {scale.size} scales, {order.size} order "
            f"entries and {norms.size} norms should be equal"
        )
    embeddings = Embeddings(
        factors=factors,
        scale=scale,
        order=order,
        norms=norms,
        gram=tree["gram"],
        alpha=float(tree["alpha"]),
        n_items=int(tree.get("items", order.size)),  # fewer rows than items: see Embeddings
    )
    if "scan_onnx" in tree and factors.dtype == np.int8:
        graph = bytes(tree["scan_onnx"])
        if scan_in_background:
            embeddings.build_scan_in_background(graph)
        else:
            try:
                embeddings.attach_scan(Int8Scan(graph, factors, scale))
            except Exception as exc:  # onnxruntime raises its own untyped errors
                raise ValueError(
                    f"embeddings: its int8 scan graph cannot be loaded: {exc}"
                ) from exc
    return embeddings


SCORE_LEVELS = 256  # one byte per neighbour score


def graph_to_tree(
    indptr: np.ndarray, indices: np.ndarray, scores: np.ndarray, quantize: bool = False
) -> dict[str, Any]:
    """A neighbour graph as a bundle stores it: each row's length in the narrowest integer dtype
    (the offsets are their running sum, made at load: 0.3 MB less per graph at 100,000 items),
    then the neighbours and their scores. With `quantize`, positive scores travel as one byte
    each (`quantize_scores`), half of float16's size."""
    tree: dict[str, Any] = {"lengths": arrays.narrowest_int(np.diff(indptr)), "indices": indices}
    if quantize and scores.size and np.all(np.isfinite(scores)) and scores.min() > 0:
        tree["score_codes"], tree["score_levels"] = quantize_scores(scores)
    else:
        tree["scores"] = scores
    return tree


def quantize_scores(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positive scores as uint8 codes into SCORE_LEVELS levels evenly spaced in log between the
    smallest and the largest: each score within half a step of its level (about 2% for a
    range of 10,000), and the order of any two scores kept or tied, never reversed."""
    logs = np.log(scores.astype(np.float64))
    low, high = float(logs.min()), float(logs.max())
    if high == low:
        return np.zeros(scores.size, dtype=np.uint8), np.exp([low]).astype(np.float32)
    steps = SCORE_LEVELS - 1
    codes = np.rint((logs - low) / (high - low) * steps).astype(np.uint8)
    return codes, np.exp(np.linspace(low, high, SCORE_LEVELS)).astype(np.float32)


def graph_from_tree(tree: dict[str, Any]) -> ItemGraph:
    indices = tree["indices"]
    if "score_codes" in tree:  # one byte each: the levels are decoded once, here
        codes, levels = tree["score_codes"], tree["score_levels"]
        if codes.dtype != np.uint8 or (codes.size and int(codes.max()) >= levels.size):
            raise ValueError(f"score codes must be uint8 below {levels.size}, got {codes.dtype}")
        scores = levels.astype(np.float32)[codes]
    else:
        scores = tree["scores"]
    if "indptr" in tree:  # format 4
        return ItemGraph(indptr=tree["indptr"], indices=indices, scores=scores)
    lengths = tree["lengths"]
    if lengths.dtype.kind not in "iu" or (lengths.size and lengths.min() < 0):
        raise ValueError(f"row lengths must be counts, got {lengths.dtype}")
    indptr = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    if not indptr[-1] == indices.size == scores.size:
        raise ValueError(
            f"rows hold {indptr[-1]} neighbours, but there are {indices.size} indices and "
            f"{scores.size} scores"
        )
    return ItemGraph(indptr=indptr, indices=indices, scores=scores)


def _dense(n_items: int, sparse: dict[str, np.ndarray]) -> np.ndarray:
    dense = np.zeros(n_items, dtype=np.float32)
    dense[sparse["items"]] = sparse["scores"]
    return dense


def popularity_from_tree(tree: dict[str, Any], n_items: int) -> Popularity:
    """Context tables travel sparse (their top items) and are made dense once, at load."""
    contexts = {key: _dense(n_items, sparse) for key, sparse in tree["contexts"].items()}
    top_contexts = {key: sparse["items"] for key, sparse in tree["contexts"].items()}
    return Popularity(
        overall=tree["overall"],
        contexts=contexts,
        top_overall=tree["top_overall"],
        top_contexts=top_contexts,
        category_top=graph_from_tree(tree["category_top"]),
    )


def model_from_trees(
    trees: dict[str, dict[str, Any]],
    event_weights: dict[str, float],
    ranker: Ranker | None,
    scan_in_background: bool = False,
) -> Model:
    """Decode each file's tree; a missing or malformed field is a BundleError naming the file.
    A serving node builds the int8 scan in the background; export waits for it, so its training
    rows never depend on timing."""

    def part(name: str, build: Any, *args: Any) -> Any:
        try:
            return build(trees[name], *args)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise BundleError(
                f"{name} is missing or has a malformed field ({exc!r}); was it written by an "
                "edgeperso export of a different version?",
                file=name,
            ) from exc

    items = part(ITEMS, items_from_tree)
    model = Model(
        items=items,
        embeddings=part(
            EMBEDDINGS,
            embeddings_from_tree,
            scan_in_background,
        ),
        covisitation=part(COVISITATION, graph_from_tree),
        regression=part(REGRESSION, graph_from_tree),
        popularity=part(POPULARITY, popularity_from_tree, len(items)),
        event_weights=event_weights,
        ranker=ranker,
        content=part(CONTENT, graph_from_tree) if CONTENT in trees else None,
    )
    check_consistency(model)
    return model


def check_consistency(model: Model) -> None:
    """Every per-item array must have one entry per item, and every index must be in range."""
    n = len(model.items)
    sizes = {
        ITEMS: tuple(
            getattr(model.items, a).size
            for a in ("category", "price", "in_stock", "age_days", "repeat_rate", "brand")
        )
        + (model.items.tag_indptr.size - 1,),
        EMBEDDINGS: (model.embeddings.n_items,),
        COVISITATION: (model.covisitation.indptr.size - 1,),
        REGRESSION: (model.regression.indptr.size - 1,),
        POPULARITY: (model.popularity.overall.size,),
    }
    if model.content is not None:
        sizes[CONTENT] = (model.content.indptr.size - 1,)
    for name, counts in sizes.items():
        if any(count != n for count in counts):
            raise BundleError(f"{name} has {counts} rows but the bundle has {n} items", file=name)
    indices = [
        (EMBEDDINGS, model.embeddings.order),
        (COVISITATION, model.covisitation.indices),
        (REGRESSION, model.regression.indices),
        (POPULARITY, model.popularity.top_overall),
        *((POPULARITY, top) for top in model.popularity.top_contexts.values()),
        *([(CONTENT, model.content.indices)] if model.content is not None else []),
    ]
    for name, index in indices:
        if index.size and (index.min() < 0 or index.max() >= n):
            raise BundleError(f"{name} holds an item index outside 0..{n - 1}", file=name)


# ---------------------------------------------------------------- encoders: arrays to trees
# The direction the build writes in, from plain arrays, so that a bundle can be written without
# the build's libraries (tests write small ones). Each mirrors the tree the export writes.


def items_to_tree(
    ids: list[str],
    category: np.ndarray,
    category_names: list[str],
    price: np.ndarray,
    in_stock: np.ndarray,
    age_days: np.ndarray,
    repeat_rate: np.ndarray,
    *,
    brands: Sequence[str] | None = None,
    tags: Sequence[Sequence[str]] | None = None,
    titles: Sequence[str] | None = None,
) -> dict[str, Any]:
    """items.msgpack's tree. `ids` sorted in UTF-8 byte order (item i is the i-th id, the index
    every other file uses); `category` a code per item (-1 unknown) into `category_names`;
    `brands` a label per item ("" unknown) and `tags` a list of labels per item, when known."""
    tree = {
        "ids": encode_ids(ids),
        "category": arrays.narrowest_int(np.asarray(category)),  # int8 up to 127 categories
        "category_names": list(category_names),
        "price": np.asarray(price, dtype=np.float32),  # NaN: unknown
        "in_stock": np.asarray(in_stock, dtype=bool),
        # Ranker features, which split on them: half precision is plenty and half the size.
        "age_days": np.asarray(age_days, dtype=np.float16),
        "repeat_rate": np.asarray(repeat_rate, dtype=np.float16),
    }
    return tree | brands_and_tags_to_tree(len(ids), brands, tags) | titles_to_tree(len(ids), titles)


def titles_to_tree(n_items: int, titles: Sequence[str] | None) -> dict[str, Any]:
    """The items tree's display titles: every title's UTF-8 bytes end to end, and where each
    starts (one offset per item, and the end). Nothing when no item has a title."""
    if titles is None or not any(titles):
        return {}
    if len(titles) != n_items:
        raise ValueError(f"{len(titles)} titles for {n_items} items")
    encoded = [t.encode("utf-8") for t in titles]
    offsets = np.zeros(n_items + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    dtype = np.int32 if offsets[-1] <= np.iinfo(np.int32).max else np.int64
    return {
        "title_bytes": np.frombuffer(b"".join(encoded), dtype=np.uint8),
        "title_offsets": offsets.astype(dtype),
    }


def brands_and_tags_to_tree(
    n_items: int,
    brands: Sequence[str] | None = None,
    tags: Sequence[Sequence[str]] | None = None,
) -> dict[str, Any]:
    """The items tree's brand and tag entries: a code per item into the sorted distinct brand
    names (-1 unknown), and each item's tag codes as CSR (row lengths in the narrowest integer
    type, then the codes) into the sorted distinct tag names. Nothing for what is not given."""
    tree: dict[str, Any] = {}
    if brands is not None:
        if len(brands) != n_items:
            raise ValueError(f"{len(brands)} brands for {n_items} items")
        names = sorted({b for b in brands if b})
        code = {name: i for i, name in enumerate(names)}
        # Signed, -1 unknown: one byte up to 127 brands (`narrowest_int` takes -1 and 1 to int16).
        dtype = next(t for t in (np.int8, np.int16, np.int32) if len(names) <= np.iinfo(t).max)
        brand = np.array([code.get(b, -1) for b in brands], dtype=dtype)
        tree |= {"brand": brand, "brand_names": names}
    if tags is not None:
        if len(tags) != n_items:
            raise ValueError(f"{len(tags)} tag lists for {n_items} items")
        rows = [sorted(set(t) - {""}) for t in tags]
        names = sorted({t for row in rows for t in row})
        code = {name: i for i, name in enumerate(names)}
        codes = np.array([code[t] for row in rows for t in row], dtype=np.int64)
        lengths = np.array([len(row) for row in rows], dtype=np.int64)
        tree |= {
            "tag_lengths": arrays.narrowest_int(lengths),
            "tag_codes": arrays.narrowest_int(codes),
            "tag_names": names,
        }
    return tree


def embeddings_to_tree(
    factors: np.ndarray, regularization: float, alpha: float, rows: int | None = None
) -> dict[str, Any]:
    """embeddings.msgpack's tree for float32 factors (one row per item): rows by descending
    norm, for the edge's early-stopping top-k, with each norm rounded up so that the early
    stop can only read more rows, never fewer. With `rows`, only that many rows of largest
    norm are kept (the items past them are zero vectors to the edge), and the fold-in's Gram
    matrix is that of the rows kept."""
    factors = np.ascontiguousarray(factors, dtype=np.float32)
    if factors.ndim != 2:
        raise ValueError(f"factors must be [items, k] rows, got shape {factors.shape}")
    norms = np.nextafter(np.linalg.norm(factors, axis=1).astype(np.float32), np.inf)
    order = np.argsort(-norms, kind="stable").astype(np.int32)
    if rows is not None:
        order = order[:rows]
    kept = factors[order]
    y = kept.astype(np.float64)
    return {
        "factors": kept,
        "scale": np.ones(order.size, dtype=np.float32),
        "order": order,
        "norms": norms[order],
        "gram": y.T @ y + regularization * np.eye(factors.shape[1]),
        "alpha": float(alpha),
        "items": factors.shape[0],
        "quantization": {"dtype": "float32", "rows": int(order.size)},
    }


def _top_items(scores: np.ndarray, n: int) -> np.ndarray:
    """The n items of largest positive score, best first, ties by item index."""
    nonzero = np.flatnonzero(scores > 0)
    return nonzero[np.lexsort((nonzero, -scores[nonzero]))][:n].astype(np.int32)


def popularity_to_tree(
    overall: np.ndarray,
    contexts: dict[str, np.ndarray],
    category: np.ndarray,
    n_categories: int,
    top_n: int = 500,
    category_top_n: int = 50,
) -> dict[str, Any]:
    """popularity.msgpack's tree from popularity per item (1.0 = an average item), overall and
    per context key ("device=mobile", ...). Context tables travel sparse: their `top_n` items
    of positive score, best first; the rest is 0 to the edge. Each category's
    `category_top_n` most popular items travel too, so the edge does not sort."""
    overall = np.asarray(overall, dtype=np.float32)
    sparse = {}
    for key, scores in contexts.items():
        scores = np.asarray(scores, dtype=np.float32)
        if scores.shape != overall.shape:
            raise ValueError(f"context {key!r} has {scores.size} scores for {overall.size} items")
        top = _top_items(scores, top_n)
        sparse[key] = {"items": top, "scores": scores[top]}
    by_category = popular_by_category(np.asarray(category), n_categories, overall, category_top_n)
    return {
        "overall": overall,
        "top_overall": _top_items(overall, top_n),
        "contexts": sparse,
        "category_top": graph_to_tree(by_category.indptr, by_category.indices, by_category.scores),
    }
