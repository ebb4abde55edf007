import numpy as np

from edge.scoring import LONG_DWELL_MS, dwell_factor


def test_dwell_factor_rises_from_one_to_two_and_ignores_unknowns():
    got = dwell_factor(np.array([np.nan, 0, LONG_DWELL_MS / 2, LONG_DWELL_MS, 10 * LONG_DWELL_MS]))
    np.testing.assert_allclose(got, [1.0, 1.0, 1.5, 2.0, 2.0])


def test_user_state_merges_session_profile_cart_and_exclusions(bundle):
    from edge.schemas import Profile, SessionEvent
    from edge.scoring import build_user_state

    ids = bundle.model.items.ids
    profile = Profile([ids[1], ids[2]], [1.0, 8.0], [ids[2]], 2, 1, 0.0, 10.0, 5.0)
    events = [
        SessionEvent(type="view", item_id=ids[3], dwell_ms=int(LONG_DWELL_MS)),
        SessionEvent(type="view", item_id="unknown"),
        SessionEvent(type="purchase", item_id=ids[4]),
    ]
    state = build_user_state(bundle.model, profile, events, cart=[ids[5]], exclude=[ids[6]])
    # most recent first: the session (newest first), then the cart, then the profile
    assert [ids[i] for i in state.recent[:5]] == [ids[4], ids[3], ids[5], ids[1], ids[2]]
    assert set(state.blocked.tolist()) == {2, 4, 5, 6}
    weights = dict(zip(state.items.tolist(), state.weights.tolist()))
    assert weights[3] == 2 * bundle.model.event_weights["view"]
    assert state.mean_price == 5.0


def test_candidates_exclude_blocked_items_and_carry_every_feature(bundle):
    from edge.schemas import ResolvedContext
    from edge.scoring import FEATURES, build_user_state, candidate_features

    profiles = bundle.profiles.as_dict()
    user = max(profiles, key=lambda u: len(profiles[u].recent_items))
    state = build_user_state(bundle.model, profiles[user])
    context = ResolvedContext("mobile", "de", 21, "evening")
    candidates = candidate_features(bundle.model, state, context, purchase_intent=0.25, segment=2)
    assert candidates.features.shape == (candidates.items.size, len(FEATURES))
    assert candidates.items.size > 50 and np.isfinite(candidates.features).all()
    assert (candidates.features[:, FEATURES.index("purchase_intent")] == 0.25).all()
    assert (candidates.features[:, FEATURES.index("segment")] == 2).all()
    unknown = candidate_features(bundle.model, state, context).features  # no visitor: missing
    assert np.isnan(
        unknown[:, [FEATURES.index("purchase_intent"), FEATURES.index("segment")]]
    ).all()
    assert not np.isin(candidates.items, state.blocked).any()
    assert bundle.model.items.in_stock[candidates.items].all()
    # The user vector's best allowed item is a candidate, with its reciprocal rank.
    from edge.scoring import CandidateSizes, fold_in

    top, _ = bundle.model.embeddings.top(fold_in(bundle.model, state), CandidateSizes().als)
    allowed = [
        (rank, item)
        for rank, item in enumerate(top.tolist())
        if item not in set(state.blocked.tolist()) and bundle.model.items.in_stock[item]
    ]
    rank, item = allowed[0]
    row = candidates.items.tolist().index(item)
    assert candidates.features[row, FEATURES.index("als_rr")] == np.float32(1 / (rank + 1))


def test_a_user_none_of_whose_items_has_a_row_gets_no_vector_and_no_als_candidates(bundle):
    import dataclasses

    from edge.schemas import Profile, ResolvedContext
    from edge.scoring import FEATURES, build_user_state, candidate_features, fold_in

    emb = bundle.model.embeddings
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
    model = dataclasses.replace(bundle.model, embeddings=trimmed)
    ids = bundle.model.items.ids
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


def test_neighbour_scores_sum_weighted_neighbours_of_the_given_items(bundle):
    from edge.scoring import _neighbour_scores

    cv = bundle.model.covisitation
    item = int(np.argmax(np.diff(cv.indptr)))
    neighbours = cv.indices[cv.indptr[item] : cv.indptr[item + 1]]
    items, scores = _neighbour_scores(cv, np.array([item]), np.array([2.0]))
    assert set(items.tolist()) == set(neighbours.tolist())
    expected = dict(
        zip(neighbours.tolist(), (2.0 * cv.scores[cv.indptr[item] : cv.indptr[item + 1]]).tolist())
    )
    for i, s in zip(items.tolist(), scores.tolist()):
        assert np.isclose(s, expected[i])


def test_sums_by_item_keep_first_appearance_order_and_leave_the_scratch_clean():
    from edge.scoring import _distinct, _scratch, _sum_by_item

    items = np.array([7, 3, 7, 9, 3, 3])
    values = np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
    distinct, first, sums = _sum_by_item(10, items, values)
    assert distinct.tolist() == [7, 3, 9] and first.tolist() == [0, 1, 3]
    assert sums.tolist() == [5.0, 50.0, 8.0]
    assert not _scratch.get(10)[0].any()
    assert _distinct(10, np.array([4, 4, 1, 4, 0, 1])).tolist() == [4, 1, 0]
