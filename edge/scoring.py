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
from typing import Annotated, Literal, get_args, overload

import numpy as np
from msgspec import Meta, Struct

from edge.context import context_keys
from edge.errors import BudgetExceeded
from edge.model import ItemGraph, Model, top_k
from edge.ranker import Ranker
from edge.schemas import Profile, ResolvedContext, SessionEvent

FEATURES = (
    "als_score",  # folded-in user vector · item vector
    "als_rr",  # reciprocal rank among the vector's top candidates (0 if not among them)
    "covis_score",  # co-visitation with the recent items, recency-weighted
    "covis_rr",
    "regression_score",  # item-to-item regression (EASE) from everything the user has
    "regression_rr",
    "history_weight",  # how much the user already interacted with this item
    "pop_overall",  # recency-weighted popularity, 1.0 = average item
    "pop_device",  # popularity in this device's traffic (overall when unknown)
    "pop_country",
    "pop_hour",
    "category_lift_device",  # this device's traffic takes this much more of the item's category
    "category_lift_country",
    "category_lift_hour",
    "log_price",
    "price_ratio",  # item price / the user's usual price (1 when unknown)
    "category_affinity",  # share of the user's weight (profile + session) in this category
    "session_category_share",  # share of this session's events in this category
    "age_days",  # since the item's first event; new items are young
    "repeat_rate",  # share of the item's buyers who bought it again
    "log_history",  # log(1 + distinct items known for the user)
    "session_events",  # events in this session so far
    "purchase_intent",  # the intent model's probability for this visit (NaN: none, no consent)
    "segment",  # the visitor's segment code (`SegmentHead.code`; NaN: none, no consent)
    "content_score",  # resemblance of an item without interactions to the recent items
)
# What the visitor's context (device, country, local hour) adds; `ranker.context_features =
# false` trains without them, to measure what they are worth.
CONTEXT_FEATURES = (
    "pop_device",
    "pop_country",
    "pop_hour",
    "category_lift_device",
    "category_lift_country",
    "category_lift_hour",
)
COLUMN = {name: i for i, name in enumerate(FEATURES)}
# Features of the item alone, gathered in one step from `Model.static_features`.
STATIC_COLUMNS = [COLUMN[name] for name in ("pop_overall", "log_price", "age_days", "repeat_rate")]

# What the edge ranks candidates by: the composite ranker, or one of the generators alone by
# its own score (export's selection guard ships whichever answered its validation cases best).
Scorer = Literal["ranker", "als", "regression", "covis", "popular"]
SCORERS: tuple[Scorer, ...] = get_args(Scorer)
GENERATOR_COLUMN = {
    "als": COLUMN["als_score"],
    "regression": COLUMN["regression_score"],
    "covis": COLUMN["covis_score"],
    "popular": COLUMN["pop_overall"],
}

RECENT_ITEMS_FOR_COVIS = 10
LONG_DWELL_MS = 30_000.0  # a view this long counts twice as much as a glance
RECENCY_DECAY = 0.85
MAX_CONFIDENCE_WEIGHT = 50.0


@overload
def dwell_factor(dwell_ms: np.ndarray) -> np.ndarray: ...
@overload
def dwell_factor(dwell_ms: float) -> float: ...
def dwell_factor(dwell_ms: np.ndarray | float) -> np.ndarray | float:
    """1 for an unknown or zero dwell, rising linearly to 2 at LONG_DWELL_MS and capped there:
    a long look says more than a glance. Export weighs the event log with the same function
    (one event's dwell gives a numpy float)."""
    dwell = np.nan_to_num(np.asarray(dwell_ms, dtype=np.float64), nan=0.0)
    factor: np.ndarray | float = 1.0 + np.clip(dwell / LONG_DWELL_MS, 0.0, 1.0)
    return factor


Size = Annotated[int, Meta(ge=0, le=1000)]


class CandidateSizes(Struct, frozen=True, forbid_unknown_fields=True):
    """How many candidates each source gives the ranker: a build config's [serving.candidates]
    and the manifest's `models.serving.candidates`, since the ranker is trained with the sizes it
    serves with. Its cost grows with their sum (a few µs a row). The defaults were chosen on the
    simulator and both UCI sets: they beat twice as many on NDCG@10 on all three and halve the
    ranker's cost."""

    als: Size = 50
    covis: Size = 25
    regression: Size = 25
    popular: Size = 10
    category: Annotated[int, Meta(ge=0, le=50)] = 5  # of each of the user's two top categories
    history: Size = 20
    content: Size = 10  # items without interactions that resemble the recent items


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
    items: np.ndarray  # distinct item indices the user interacted with, most recent first
    weights: np.ndarray  # summed event weight per item in `items`
    recent: np.ndarray  # distinct item indices, most recent first
    recent_weights: np.ndarray
    blocked: np.ndarray  # items never to recommend: bought, in the cart, excluded (repeats ok)
    mean_price: float
    session: np.ndarray  # item indices of this session's events (cart included)

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
        weights.get(e.type, 0.0)
        * (1.0 + min(e.dwell_ms / LONG_DWELL_MS, 1.0) if e.dwell_ms else 1.0)
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
    blocked_ids = bought_ids + list(cart) + list(exclude)
    session_ids = [e.item_id for e in session_events] + list(cart)
    # One search for every id this request names: the history, what is blocked, the session.
    everything = model.items.positions(ids + blocked_ids + session_ids)
    found = everything[: len(ids)]
    blocked = everything[len(ids) : len(ids) + len(blocked_ids)]
    blocked = blocked[blocked >= 0]
    session = everything[len(ids) + len(blocked_ids) :]
    session = session[session >= 0]
    given = np.asarray(w, dtype=np.float64)
    keep = (found >= 0) & (given > 0)
    if keep.any():
        idx, wts = found[keep], given[keep]
        # Distinct items in first-seen order = most recent first.
        items, first, summed = _sum_by_item(len(model.items), idx, wts)
        recent = items[:RECENT_ITEMS_FOR_COVIS]
        recent_weights = wts[first[:RECENT_ITEMS_FOR_COVIS]] * RECENCY_DECAY ** np.arange(
            recent.size
        )
    else:
        items = recent = np.empty(0, dtype=np.int64)
        summed = recent_weights = np.empty(0, dtype=np.float64)
    if math.isnan(mean_price) and items.size:
        prices = model.items.price[items]
        prices = prices[np.isfinite(prices)]
        mean_price = float(prices.mean()) if prices.size else math.nan
    return UserState(items, summed, recent, recent_weights, blocked, mean_price, session)


def fold_in(model: Model, state: UserState) -> np.ndarray | None:
    """The user's factor vector by one exact ALS least-squares step over their items
    (the same solve implicit's `recalculate_user` does), so no user vector is stored. None
    without history, or when none of the user's items has a row in the bundle (export leaves
    out rows no one's top 100 needs): their vector would be zero, and its top-k arbitrary."""
    emb = model.embeddings
    if not state.has_history or not emb.scale_of_item[state.items].any():
        return None
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
    """Zeroed buffers per thread and catalog size, so sparse lookups and sums are a scatter, a
    gather and a reset instead of a sort or a search (and no request allocates n_items)."""

    buffer: np.ndarray = np.zeros(0)  # float64, all zeros between uses
    marks: np.ndarray = np.zeros(0, dtype=np.int64)  # any values; only read where just written

    def get(self, n_items: int) -> tuple[np.ndarray, np.ndarray]:
        if self.buffer.size != n_items:
            self.buffer = np.zeros(n_items, dtype=np.float64)
            self.marks = np.zeros(n_items, dtype=np.int64)
        return self.buffer, self.marks


_scratch = _Scratch()


def _lookup(
    n_items: int, keys: np.ndarray, values: np.ndarray | float, query: np.ndarray
) -> np.ndarray:
    """values[j] where keys[j] == query[i], else 0. `keys` are item indices, unique unless
    `values` is one number for all of them."""
    if keys.size == 0:
        return np.zeros(query.size, dtype=np.float64)
    buffer, _ = _scratch.get(n_items)
    buffer[keys] = values
    out: np.ndarray = buffer[query]
    buffer[keys] = 0.0
    return out


def _sum_by_item(
    n_items: int, items: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct items in order of first appearance, the position of that first appearance,
    the sum of their values): linear, no sort."""
    buffer, _ = _scratch.get(n_items)
    np.add.at(buffer, items, values)
    first = _first_positions(n_items, items)
    distinct = items[first].astype(np.int64)
    sums = buffer[distinct]
    buffer[distinct] = 0.0
    return distinct, first, sums


def _distinct(n_items: int, items: np.ndarray) -> np.ndarray:
    """The distinct items, in order of first appearance (linear; `np.unique` sorts)."""
    distinct: np.ndarray = items[_first_positions(n_items, items)].astype(np.int64)
    return distinct


def _first_positions(n_items: int, items: np.ndarray) -> np.ndarray:
    """Where each distinct item first appears in `items`, in order (linear, no sort)."""
    _, marks = _scratch.get(n_items)
    positions = np.arange(items.size)
    marks[items] = items.size
    np.minimum.at(marks, items, positions)  # ufunc.at, unlike `=`, defines repeated indices
    return np.flatnonzero(marks[items] == positions)


def _neighbour_scores(
    graph: ItemGraph, items: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Neighbours of `items` in `graph` with weight-summed scores."""
    if items.size == 0:
        return np.empty(0, dtype=np.int64), np.empty(0)
    starts, ends = graph.indptr[items], graph.indptr[items + 1]
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64), np.empty(0)
    offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(total)
    neighbours = graph.indices[offsets]
    scores = graph.scores[offsets] * np.repeat(weights, lengths)
    distinct, _, sums = _sum_by_item(len(graph.indptr) - 1, neighbours, scores)
    return distinct, sums


def _reciprocal_ranks(ranked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return ranked, 1.0 / np.arange(1.0, ranked.size + 1.0)


@dataclass(frozen=True)
class Candidates:
    items: np.ndarray  # int64 item indices
    features: np.ndarray  # float32 [n, len(FEATURES)]


def _category_shares(model: Model, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Share of `weights` in each category (zeros when none is known), plus a last entry of 0,
    so `shares[category]` gives an unknown category (-1) no share."""
    n_categories = len(model.items.category_names)
    cats = model.items.category[items]
    known = cats >= 0
    sums = np.bincount(cats[known], weights=weights[known], minlength=n_categories + 1)
    total = sums.sum()
    return sums / total if total > 0 else sums


def candidate_features(
    model: Model,
    state: UserState,
    context: ResolvedContext,
    sizes: CandidateSizes = CandidateSizes(),
    deadline: Deadline = NO_DEADLINE,
    purchase_intent: float = math.nan,
    segment: float = math.nan,
) -> Candidates:
    """Candidates from every source, merged, filtered by the business rules (in stock, not
    blocked), and their features in `FEATURES` order."""
    pop = model.popularity
    keys = context_keys(context)
    ctx_pop = {dim: pop.contexts.get(key, pop.overall) for dim, key in keys.items()}

    sources = [pop.top_overall[: sizes.popular]]
    sources += [
        pop.top_contexts[k][: sizes.popular] for k in keys.values() if k in pop.top_contexts
    ]

    user_vector = fold_in(model, state)
    deadline.check("candidates")
    ranked: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if user_vector is not None:
        als_top, _ = model.embeddings.top(user_vector, sizes.als)
        sources.append(als_top)
        ranked["als"] = _reciprocal_ranks(als_top)
    neighbours = {
        "covis": _neighbour_scores(model.covisitation, state.recent, state.recent_weights),
        # EASE is a regression on binary histories: every item the user has counts once.
        "regression": _neighbour_scores(model.regression, state.items, np.ones(state.items.size)),
    }
    if model.content is not None:
        neighbours["content"] = _neighbour_scores(model.content, state.recent, state.recent_weights)
    for name, (found, scores) in neighbours.items():
        if found.size:
            best = found[top_k(scores, getattr(sizes, name))]
            sources.append(best)
            if name != "content":
                ranked[name] = _reciprocal_ranks(best)
    affinity = None
    if state.has_history:
        affinity = _category_shares(model, state.items, state.weights)
        for category in top_k(affinity[:-1], 2):
            if affinity[category] > 0:
                sources.append(model.category_top(int(category))[: sizes.category])
        sources.append(state.recent[: sizes.history])

    n_items = len(model.items)
    items = _distinct(n_items, np.concatenate(sources))
    keep = model.items.in_stock[items]
    if state.blocked.size:
        keep &= _lookup(n_items, state.blocked, 1.0, items) == 0.0
    items = items[keep]
    cats = model.items.category[items]  # -1 (unknown) picks the last entry of per-category rows
    deadline.check("features")

    features = np.zeros((items.size, len(FEATURES)), dtype=np.float32)
    column = COLUMN
    if user_vector is not None:
        features[:, column["als_score"]] = model.embeddings.rows(items) @ user_vector
    for name, (keys_ranked, rr) in ranked.items():
        features[:, column[f"{name}_rr"]] = _lookup(n_items, keys_ranked, rr, items)
    for name, (found, scores) in neighbours.items():
        features[:, column[f"{name}_score"]] = _lookup(n_items, found, scores, items)
    features[:, column["history_weight"]] = _lookup(n_items, state.items, state.weights, items)
    features[:, STATIC_COLUMNS] = model.static_features[items]
    for dim, key in keys.items():
        features[:, column[f"pop_{dim}"]] = ctx_pop[dim][items]
        lift = model.category_lift.get(key)  # None: a context too rare to have its own table
        features[:, column[f"category_lift_{dim}"]] = 1.0 if lift is None else lift[cats]
    if math.isfinite(state.mean_price) and state.mean_price > 0:
        ratio = model.items.price[items] / np.float32(state.mean_price)
        # An unknown price (NaN) compares as 1; a plain `where` is a third of `nan_to_num`'s cost.
        features[:, column["price_ratio"]] = np.where(np.isfinite(ratio), ratio, np.float32(1.0))
    else:
        features[:, column["price_ratio"]] = 1.0
    if affinity is not None:
        features[:, column["category_affinity"]] = affinity[cats]
    if state.session.size:
        session_shares = _category_shares(model, state.session, np.ones(state.session.size))
        features[:, column["session_category_share"]] = session_shares[cats]
    features[:, column["log_history"]] = math.log1p(state.items.size)
    features[:, column["session_events"]] = state.session.size
    features[:, column["purchase_intent"]] = purchase_intent
    features[:, column["segment"]] = segment
    return Candidates(items, features)


def score_candidates(
    ranker: Ranker | None, features: np.ndarray, scorer: Scorer = "ranker"
) -> tuple[np.ndarray, np.ndarray]:
    """(score per candidate row, the rows best first). A generator alone ranks by its own score,
    ties (a visitor it knows nothing of scores 0 everywhere) going to the more popular item."""
    if scorer == "ranker":
        if ranker is None:
            raise RuntimeError("this model has no ranker; export attaches one before serving")
        scores = ranker.predict(features)
        return scores, np.argsort(-scores, kind="stable")
    scores = features[:, GENERATOR_COLUMN[scorer]]
    return scores, np.lexsort((-features[:, COLUMN["pop_overall"]], -scores))


def rank(
    model: Model,
    candidates: Candidates,
    k: int,
    deadline: Deadline = NO_DEADLINE,
    max_per_category: int = 0,
    scorer: Scorer = "ranker",
    boost: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The top k candidates by `scorer` (the ranker's purchase probability by default): (item
    indices, scores). With `max_per_category`, no category fills more than that many of the k
    places (items of an unknown category are not capped). `boost`, a factor per candidate
    (merchandising), multiplies its score before the top k (divides a negative one)."""
    if candidates.items.size == 0:
        return candidates.items, np.empty(0, dtype=np.float32)
    deadline.check("ranker")
    scores, order = score_candidates(model.ranker, candidates.features, scorer)
    if boost is not None:
        scores = np.where(scores >= 0, scores * boost, scores / boost)
        order = order[np.argsort(-scores[order], kind="stable")]  # ties keep the scorer's order
    if max_per_category <= 0:
        top = order[:k]
        return candidates.items[top], scores[top]
    categories = model.items.category[candidates.items[order]]
    # Rank of each candidate within its category, in score order: keep the first N of each.
    by_category = np.argsort(categories, kind="stable")
    sorted_categories = categories[by_category]
    starts = np.searchsorted(sorted_categories, sorted_categories)
    within = np.empty(order.size, dtype=np.int64)
    within[by_category] = np.arange(order.size) - starts
    keep = order[(within < max_per_category) | (categories < 0)][:k]
    return candidates.items[keep], scores[keep]


def accessories(model: Model, item_id: str, k: int, blocked: np.ndarray) -> list[str]:
    """What goes with an item, best first: its item-to-item regression neighbours (bought
    together), then its co-visitation neighbours; never the item itself, a blocked item or one
    out of stock."""
    [i] = model.items.positions([item_id]).tolist()
    if i < 0:
        return []
    skip = {i, *blocked.tolist()}
    out: list[int] = []
    for graph in (model.regression, model.covisitation):
        lo, hi = int(graph.indptr[i]), int(graph.indptr[i + 1])
        for j in graph.indices[lo:hi][np.argsort(-graph.scores[lo:hi], kind="stable")].tolist():
            if j not in skip and model.items.in_stock[j]:
                out.append(j)
                skip.add(j)
                if len(out) == k:
                    return model.items.ids_of(out)
    return model.items.ids_of(out)
