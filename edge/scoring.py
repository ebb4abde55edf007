"""Candidates and the composite score: the hot path of one request.

A user is folded into the item-factor space from their recent items (profile + this session),
candidates come from that vector, from co-visitation of the recent items, from what they looked
at before and from contextual popularity; one ONNX ranker scores candidate × context features.
`export` calls `candidate_features` with the same code to build the ranker's training rows."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

import numpy as np

from edge.context import context_keys
from edge.errors import BudgetExceeded
from edge.model import Model, top_k
from edge.schemas import Profile, ResolvedContext, SessionEvent

FEATURES = (
    "als_score",  # folded-in user vector · item vector
    "als_rr",  # reciprocal rank among the vector's top candidates (0 if not among them)
    "covis_score",  # co-visitation with the recent items, recency-weighted
    "covis_rr",
    "history_weight",  # how much the user already interacted with this item
    "pop_overall",  # recency-weighted popularity, 1.0 = average item
    "pop_device",  # popularity in this device's traffic (overall when unknown)
    "pop_country",
    "pop_hour",
    "log_price",
    "price_ratio",  # item price / the user's usual price (1 when unknown)
    "category_affinity",  # share of the user's recent weight in this item's category
    "log_history",  # log(1 + distinct items known for the user)
)

RECENT_ITEMS_FOR_COVIS = 10
LONG_DWELL_MS = 30_000.0  # a view this long counts twice as much as a glance
RECENCY_DECAY = 0.85
MAX_CONFIDENCE_WEIGHT = 50.0


def dwell_factor(dwell_ms: np.ndarray) -> np.ndarray:
    """1 for an unknown or zero dwell, rising linearly to 2 at LONG_DWELL_MS and capped there:
    a long look says more than a glance. Export weighs the event log with the same function."""
    dwell = np.nan_to_num(np.asarray(dwell_ms, dtype=np.float64), nan=0.0)
    return 1.0 + np.clip(dwell / LONG_DWELL_MS, 0.0, 1.0)


@dataclass(frozen=True)
class CandidateSizes:
    # Sized for latency: the ranker's cost grows with the candidate count (about 2 µs a row).
    als: int = 80
    covis: int = 40
    popular: int = 20
    history: int = 20


class Deadline:
    """The latency budget of one request, checked between steps (the steps are short and
    synchronous, so checking between them bounds the overrun to one step)."""

    def __init__(self, budget_ms: float) -> None:
        self.expires = time.perf_counter() + budget_ms / 1000.0

    def check(self, step: str) -> None:
        if time.perf_counter() > self.expires:
            raise BudgetExceeded(f"latency budget ran out before step '{step}'")


NO_DEADLINE = Deadline(float("inf"))


@dataclass(frozen=True)
class UserState:
    items: np.ndarray  # sorted unique item indices the user interacted with
    weights: np.ndarray  # summed event weight per item in `items`
    recent: np.ndarray  # distinct item indices, most recent first
    recent_weights: np.ndarray
    blocked: np.ndarray  # items never to recommend: bought, in the cart, excluded
    mean_price: float

    @property
    def has_history(self) -> bool:
        return self.items.size > 0


def build_user_state(
    model: Model,
    profile: Profile | None,
    session_events: list[SessionEvent] | tuple[SessionEvent, ...] = (),
    cart: list[str] | tuple[str, ...] = (),
    exclude: list[str] | tuple[str, ...] = (),
) -> UserState:
    """Merge the stored profile with this session. Session events are in the order they
    happened (oldest first); profile items are most recent first."""
    weights = model.event_weights
    ids: list[str] = [e.item_id for e in reversed(session_events)] + list(reversed(cart))
    w: list[float] = [
        weights.get(e.type, 0.0) * (float(dwell_factor(e.dwell_ms)) if e.dwell_ms else 1.0)
        for e in reversed(session_events)
    ]
    w += [weights.get("add_to_cart", 1.0)] * len(cart)
    bought_ids = [e.item_id for e in session_events if e.type == "purchase"]
    mean_price = math.nan
    if profile is not None:
        ids += profile.recent_items
        w += profile.recent_weights
        bought_ids += profile.bought_items
        mean_price = profile.mean_price
    index = model.items.index
    known = [(index[i], wt) for i, wt in zip(ids, w) if i in index and wt > 0]
    if known:
        idx = np.fromiter((i for i, _ in known), dtype=np.int64, count=len(known))
        wts = np.fromiter((wt for _, wt in known), dtype=np.float64, count=len(known))
        items, first, inverse = np.unique(idx, return_index=True, return_inverse=True)
        summed = np.bincount(inverse, weights=wts)
        # Distinct items in first-seen order = most recent first.
        order = np.sort(first)[:RECENT_ITEMS_FOR_COVIS]
        recent = idx[order]
        recent_weights = wts[order] * RECENCY_DECAY ** np.arange(order.size)
    else:
        items = recent = np.empty(0, dtype=np.int64)
        summed = recent_weights = np.empty(0, dtype=np.float64)
    blocked = model.items.lookup(bought_ids + list(cart) + list(exclude))
    if math.isnan(mean_price) and items.size:
        prices = model.items.price[items]
        prices = prices[np.isfinite(prices)]
        mean_price = float(prices.mean()) if prices.size else math.nan
    return UserState(items, summed, recent, recent_weights, np.unique(blocked), mean_price)


def fold_in(model: Model, state: UserState) -> np.ndarray | None:
    """The user's factor vector by one exact ALS least-squares step over their items
    (the same solve implicit's `recalculate_user` does), so no user vector is stored."""
    if not state.has_history:
        return None
    emb = model.embeddings
    return solve_user(emb.rows(state.items), state.weights, emb.gram, emb.alpha)


def solve_user(
    factors: np.ndarray, weights: np.ndarray, gram: np.ndarray, alpha: float
) -> np.ndarray:
    """argmin over u of Σ c_i (p_i - u·y_i)² + λ|u|², with p_i = 1 and c_i = alpha·w_i on the
    user's items (p_i = 0 and c_i = 1 elsewhere); `gram` is YᵀY + λI over all items."""
    factors = factors.astype(np.float64)
    confidence = alpha * np.minimum(weights, MAX_CONFIDENCE_WEIGHT)
    a = gram + (factors.T * (confidence - 1.0)) @ factors
    b = confidence @ factors
    return np.linalg.solve(a, b).astype(np.float32)


class _Scratch(threading.local):
    """One zeroed buffer per thread and catalog size, so sparse lookups are a scatter, a gather
    and a reset instead of a sort or a search (and no request allocates n_items floats)."""

    buffer: np.ndarray = np.zeros(0)


_scratch = _Scratch()


def _lookup(n_items: int, keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """values[j] where keys[j] == query[i], else 0. `keys` must be unique item indices."""
    if keys.size == 0:
        return np.zeros(query.size, dtype=np.float64)
    if _scratch.buffer.size != n_items:
        _scratch.buffer = np.zeros(n_items, dtype=np.float64)
    buffer = _scratch.buffer
    buffer[keys] = values
    out = buffer[query]
    buffer[keys] = 0.0
    return out


def _covisited(model: Model, state: UserState) -> tuple[np.ndarray, np.ndarray]:
    """Neighbours of the recent items with summed, recency-weighted scores (sorted by index)."""
    if state.recent.size == 0:
        return np.empty(0, dtype=np.int64), np.empty(0)
    cv = model.covisitation
    starts, ends = cv.indptr[state.recent], cv.indptr[state.recent + 1]
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64), np.empty(0)
    offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(total)
    neighbours = cv.indices[offsets]
    scores = cv.scores[offsets] * np.repeat(state.recent_weights, lengths)
    items, inverse = np.unique(neighbours, return_inverse=True)
    return items.astype(np.int64), np.bincount(inverse, weights=scores)


def _reciprocal_ranks(ranked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return ranked, 1.0 / np.arange(1.0, ranked.size + 1.0)


@dataclass(frozen=True)
class Candidates:
    items: np.ndarray  # int64 item indices
    features: np.ndarray  # float32 [n, len(FEATURES)]


def candidate_features(
    model: Model,
    state: UserState,
    context: ResolvedContext,
    sizes: CandidateSizes = CandidateSizes(),
    deadline: Deadline = NO_DEADLINE,
) -> Candidates:
    pop = model.popularity
    keys = context_keys(context)
    ctx_pop = {dim: pop.contexts.get(key, pop.overall) for dim, key in keys.items()}

    sources = [pop.top_overall[: sizes.popular]]
    sources += [
        pop.top_contexts[k][: sizes.popular] for k in keys.values() if k in pop.top_contexts
    ]

    user_vector = fold_in(model, state)
    deadline.check("candidates")
    als_keys = als_rr = np.empty(0, dtype=np.int64)
    if user_vector is not None:
        als_top, _ = model.embeddings.top(user_vector, sizes.als)
        sources.append(als_top)
        als_keys, als_rr = _reciprocal_ranks(als_top)
    covis_items, covis_scores = _covisited(model, state)
    covis_keys = covis_rr = np.empty(0, dtype=np.int64)
    if covis_items.size:
        covis_top = covis_items[top_k(covis_scores, sizes.covis)]
        sources.append(covis_top)
        covis_keys, covis_rr = _reciprocal_ranks(covis_top)
    if state.recent.size:
        sources.append(state.recent[: sizes.history])

    items = np.unique(np.concatenate(sources).astype(np.int64))
    blocked = state.blocked
    if blocked.size:
        n_items = len(model.items)
        ones = np.ones(blocked.size)
        items = items[_lookup(n_items, blocked, ones, items) == 0.0]
    items = items[model.items.in_stock[items]]
    deadline.check("features")

    n, n_items = items.size, len(model.items)
    features = np.zeros((n, len(FEATURES)), dtype=np.float32)
    if user_vector is not None:
        features[:, 0] = model.embeddings.rows(items) @ user_vector
        features[:, 1] = _lookup(n_items, als_keys, als_rr, items)
    features[:, 2] = _lookup(n_items, covis_items, covis_scores, items)
    features[:, 3] = _lookup(n_items, covis_keys, covis_rr, items)
    features[:, 4] = _lookup(n_items, state.items, state.weights, items)
    features[:, 5] = pop.overall[items]
    features[:, 6] = ctx_pop["device"][items]
    features[:, 7] = ctx_pop["country"][items]
    features[:, 8] = ctx_pop["hour"][items]
    price = model.items.price[items]
    known_price = np.isfinite(price)
    features[:, 9] = np.where(known_price, np.log1p(np.where(known_price, price, 0.0)), -1.0)
    if math.isfinite(state.mean_price) and state.mean_price > 0:
        features[:, 10] = np.where(known_price, price / state.mean_price, 1.0)
    else:
        features[:, 10] = 1.0
    if state.has_history:
        categories = model.items.category
        n_categories = len(model.items.category_names)
        cats = categories[state.items]
        known_cat = cats >= 0
        affinity = np.bincount(
            cats[known_cat], weights=state.weights[known_cat], minlength=n_categories
        )
        total = affinity.sum()
        if total > 0:
            cand_cats = categories[items]
            features[:, 11] = np.where(cand_cats >= 0, affinity[cand_cats.clip(0)] / total, 0.0)
    features[:, 12] = math.log1p(state.items.size)
    return Candidates(items, features)


def rank(
    model: Model, candidates: Candidates, k: int, deadline: Deadline = NO_DEADLINE
) -> tuple[np.ndarray, np.ndarray]:
    """The top k candidates by the ranker's purchase probability: (item indices, scores)."""
    if candidates.items.size == 0:
        return candidates.items, np.empty(0, dtype=np.float32)
    deadline.check("ranker")
    if model.ranker is None:
        raise RuntimeError("this model has no ranker; export attaches one before serving")
    scores = model.ranker.predict(candidates.features)
    top = top_k(scores, k)
    return candidates.items[top], scores[top]
