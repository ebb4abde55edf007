"""Candidates and their features, on the small bundle (`tests.edge.small_bundle`): expected
values come from what that bundle was written with."""

import dataclasses

import numpy as np

from edge.schemas import Profile, ResolvedContext, SessionEvent
from edge.scoring import (
    FEATURES,
    LONG_DWELL_MS,
    RECENCY_DECAY,
    build_user_state,
    candidate_features,
    dwell_factor,
    fold_in,
)
from tests.edge import small_bundle as shop


def test_dwell_factor_rises_from_one_to_two_and_ignores_unknowns():
    got = dwell_factor(np.array([np.nan, 0, LONG_DWELL_MS / 2, LONG_DWELL_MS, 10 * LONG_DWELL_MS]))
    np.testing.assert_allclose(got, [1.0, 1.0, 1.5, 2.0, 2.0])


def test_user_state_merges_session_profile_cart_and_exclusions(small_bundle):
    ids = shop.IDS
    profile = Profile([ids[1], ids[2]], [1.0, 8.0], [ids[2]], 2, 1, 0.0, 10.0, 5.0)
    events = [
        SessionEvent(type="view", item_id=ids[3], dwell_ms=int(LONG_DWELL_MS)),
        SessionEvent(type="view", item_id="unknown"),
        SessionEvent(type="purchase", item_id=ids[4]),
    ]
    state = build_user_state(small_bundle.model, profile, events, cart=[ids[5]], exclude=[ids[6]])
    # most recent first: the session (newest first), then the cart, then the profile
    assert [ids[i] for i in state.recent[:5]] == [ids[4], ids[3], ids[5], ids[1], ids[2]]
    assert set(state.blocked.tolist()) == {2, 4, 5, 6}
    weights = dict(zip(state.items.tolist(), state.weights.tolist()))
    assert weights[3] == 2 * shop.EVENT_WEIGHTS["view"]
    assert (
        weights[4] == shop.EVENT_WEIGHTS["purchase"]
        and weights[5] == (shop.EVENT_WEIGHTS["add_to_cart"])
    )
    assert state.mean_price == 5.0


def brute_force_user(items: list[int], weights: list[float]) -> np.ndarray:
    """The ALS fold-in solved directly: argmin Σ c_i (p_i - u·y_i)² + λ|u|² over every item,
    with p = 1 and c = 1 + alpha·w on the user's items, p = 0 and c = 1 elsewhere."""
    y = shop.FACTORS.astype(np.float64)
    confidence = np.ones(shop.N_ITEMS)
    preference = np.zeros(shop.N_ITEMS)
    confidence[items] = shop.ALPHA * np.asarray(weights)
    preference[items] = 1.0
    a = (y.T * confidence) @ y + shop.REGULARIZATION * np.eye(shop.FACTOR_DIM)
    return np.linalg.solve(a, (y.T * confidence) @ preference)


def test_candidates_are_every_allowed_item_with_each_feature_of_its_source(small_bundle):
    profile = shop.PROFILES["u-regular"]
    state = build_user_state(small_bundle.model, profile)
    context = ResolvedContext("mobile", "de", 21, "evening")
    candidates = candidate_features(
        small_bundle.model, state, context, purchase_intent=0.25, segment=2
    )
    features = candidates.features
    assert features.shape == (candidates.items.size, len(FEATURES))
    # The user vector's top 50 reaches all 40 items: every item in stock and not bought is one.
    bought = {shop.IDS.index(i) for i in profile.bought_items}
    allowed = {i for i in range(shop.N_ITEMS) if shop.IN_STOCK[i] and i not in bought}
    assert set(candidates.items.tolist()) == allowed and candidates.items.size == len(allowed)
    assert np.isfinite(features).all()
    column = {name: features[:, FEATURES.index(name)] for name in FEATURES}
    items = candidates.items
    assert (column["purchase_intent"] == 0.25).all() and (column["segment"] == 2).all()
    np.testing.assert_array_equal(column["pop_overall"], shop.POP_OVERALL[items])
    np.testing.assert_array_equal(
        column["pop_device"], shop.CONTEXT_POPULARITY["device=mobile"][items]
    )
    np.testing.assert_array_equal(
        column["pop_country"], shop.CONTEXT_POPULARITY["country=de"][items]
    )
    np.testing.assert_array_equal(
        column["pop_hour"], shop.CONTEXT_POPULARITY["hour=evening"][items]
    )
    price = shop.PRICE[items].astype(np.float64)
    log_price = np.where(np.isnan(price), -1.0, np.log1p(price))  # i39's price is unknown: -1
    assert (column["log_price"] == -1.0).sum() == 1
    np.testing.assert_allclose(column["log_price"], log_price, rtol=1e-6)
    np.testing.assert_array_equal(column["age_days"], shop.AGE_DAYS[items])
    # The user's items weigh 8, 8 and 1 (i00, i05, i10: all bags).
    history = dict(zip(profile.recent_items, profile.recent_weights))
    expected_history = [history.get(shop.IDS[i], 0.0) for i in items]
    np.testing.assert_array_equal(column["history_weight"], expected_history)
    np.testing.assert_allclose(
        column["category_affinity"], np.where(shop.CATEGORY[items] == 0, 1.0, 0.0)
    )
    np.testing.assert_allclose(column["log_history"], np.log1p(3))
    # Co-visitation weighs the recent items by recency; the regression counts each item once.
    recent = list(zip(profile.recent_items, profile.recent_weights))
    covis = shop.neighbour_scores(shop.COVISITATION_OFFSETS, recent, RECENCY_DECAY)
    np.testing.assert_allclose(column["covis_score"], covis[items], rtol=1e-6)
    once = [(item, 1.0) for item in profile.recent_items]
    regression = shop.neighbour_scores(shop.REGRESSION_OFFSETS, once)
    np.testing.assert_array_equal(column["regression_score"], regression[items])
    # The folded-in vector's scores, and the reciprocal rank of each item among them.
    user = brute_force_user([0, 5, 10], [8.0, 8.0, 1.0])
    scores = shop.FACTORS.astype(np.float64) @ user
    np.testing.assert_allclose(column["als_score"], scores[items], rtol=1e-4, atol=1e-5)
    rank = {item: r for r, item in enumerate(np.argsort(-scores, kind="stable").tolist())}
    np.testing.assert_allclose(column["als_rr"], [1 / (rank[i] + 1) for i in items.tolist()])


def test_without_a_visitor_model_intent_and_segment_are_missing(small_bundle):
    state = build_user_state(small_bundle.model, shop.PROFILES["u-regular"])
    context = ResolvedContext("mobile", "de", 21, "evening")
    unknown = candidate_features(small_bundle.model, state, context).features
    assert np.isnan(
        unknown[:, [FEATURES.index("purchase_intent"), FEATURES.index("segment")]]
    ).all()


def test_a_user_none_of_whose_items_has_a_row_gets_no_vector_and_no_als_candidates(small_bundle):
    emb = small_bundle.model.embeddings
    kept = emb.order.size // 2  # as export writes a trimmed file: the rows of largest norm
    trimmed = dataclasses.replace(
        emb,
        factors=emb.factors[:kept],
        scale=emb.scale[:kept],
        order=emb.order[:kept],
        norms=emb.norms[:kept],
        scan=None,
        n_items=emb.n_items,
    )
    model = dataclasses.replace(small_bundle.model, embeddings=trimmed)
    ids = shop.IDS
    left_out = [ids[i] for i in emb.order[kept:][:3]]
    profile = Profile(left_out, [1.0] * 3, [], 3, 0, 0.0, 0.0, 5.0)
    state = build_user_state(model, profile)
    assert state.has_history and fold_in(model, state) is None
    context = ResolvedContext("mobile", "de", 21, "evening")
    features = candidate_features(model, state, context).features
    assert not features[:, [FEATURES.index("als_score"), FEATURES.index("als_rr")]].any()
    held = build_user_state(
        model, Profile([ids[emb.order[0]], *left_out], [1.0] * 4, [], 4, 0, 0.0, 0.0, 5.0)
    )
    assert fold_in(model, held) is not None


def test_neighbour_scores_sum_weighted_neighbours_of_the_given_items(small_bundle):
    from edge.scoring import _neighbour_scores

    cv = small_bundle.model.covisitation
    table = shop.neighbours(shop.COVISITATION_OFFSETS)
    items, scores = _neighbour_scores(cv, np.array([0, 5]), np.array([2.0, 0.5]))
    expected: dict[int, float] = {}
    for item, weight in ((0, 2.0), (5, 0.5)):
        for neighbour, score in table[item].items():
            expected[neighbour] = expected.get(neighbour, 0.0) + weight * score
    assert dict(zip(items.tolist(), scores.tolist())) == expected


def test_sums_by_item_keep_first_appearance_order_and_leave_the_scratch_clean():
    from edge.scoring import _distinct, _scratch, _sum_by_item

    items = np.array([7, 3, 7, 9, 3, 3])
    values = np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
    distinct, first, sums = _sum_by_item(10, items, values)
    assert distinct.tolist() == [7, 3, 9] and first.tolist() == [0, 1, 3]
    assert sums.tolist() == [5.0, 50.0, 8.0]
    assert not _scratch.get(10)[0].any()
    assert _distinct(10, np.array([4, 4, 1, 4, 0, 1])).tolist() == [4, 1, 0]
