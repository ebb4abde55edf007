import math

import numpy as np
import pytest

from edge.errors import ValidationError
from edge.recommend import Recommender
from edge.schemas import Context, RecommendRequest, Session, SessionEvent


@pytest.fixture(scope="module")
def recommender(bundle):
    return Recommender(bundle, budget_ms=math.inf)


def regular_customer(bundle):
    profiles = bundle.profiles.as_dict()
    return max(profiles, key=lambda u: (len(profiles[u].bought_items), u))


def ids(response):
    return [item.item_id for item in response.items]


def test_a_known_customer_gets_k_personalized_items_never_ones_they_bought(bundle, recommender):
    user = regular_customer(bundle)
    bought = set(bundle.profiles.get(user).bought_items)
    assert bought, "the fixture should pick a customer who bought something"
    response = recommender.recommend(RecommendRequest(user_id=user, k=10))
    assert len(response.items) == 10 and len(set(ids(response))) == 10
    assert not bought & set(ids(response))
    assert response.personalized and response.fallback is None
    assert response.bundle == bundle.build_id
    scores = [item.score for item in response.items]
    assert scores == sorted(scores, reverse=True)


def test_excluded_cart_and_out_of_stock_items_are_never_returned(bundle, recommender):
    user = regular_customer(bundle)
    first = ids(recommender.recommend(RecommendRequest(user_id=user, k=20)))
    exclude, cart = first[:5], first[5:8]
    again = ids(
        recommender.recommend(
            RecommendRequest(user_id=user, k=20, exclude=exclude, context=Context(cart=cart))
        )
    )
    assert not set(exclude + cart) & set(again)
    out_of_stock = {bundle.model.items.ids[i] for i in np.flatnonzero(~bundle.model.items.in_stock)}
    assert out_of_stock, "the simulated catalog has out-of-stock items"
    for k in (10, 50):
        assert not out_of_stock & set(
            ids(recommender.recommend(RecommendRequest(user_id=user, k=k)))
        )


def test_an_anonymous_session_is_personalized_from_its_views(bundle, recommender):
    viewed = [item for item, _ in bundle.fallback["all"][10:13]]
    session = Session(events=[SessionEvent(type="view", item_id=i) for i in viewed])
    response = recommender.recommend(RecommendRequest(session=session, k=10))
    assert response.personalized and len(response.items) == 10
    cold = recommender.recommend(RecommendRequest(k=10))
    assert not cold.personalized and ids(cold) != ids(response)


def test_without_consent_the_answer_uses_only_the_context(bundle, recommender):
    user = regular_customer(bundle)
    context = Context(device="mobile", local_hour=20)
    refused = recommender.recommend(RecommendRequest(user_id=user, consent=False, context=context))
    anonymous = recommender.recommend(RecommendRequest(context=context))
    assert not refused.personalized
    assert ids(refused) == ids(anonymous)


def test_an_exhausted_budget_answers_with_contextual_fallback(bundle):
    response = Recommender(bundle, budget_ms=1e-9).recommend(
        RecommendRequest(user_id=regular_customer(bundle), k=5, context=Context(device="mobile"))
    )
    assert response.fallback.startswith("latency_budget")
    assert len(response.items) == 5
    expected = [i for i, _ in bundle.fallback.get("device=mobile", bundle.fallback["all"])]
    assert set(ids(response)) <= set(expected)


def test_time_waited_in_the_server_is_spent_from_the_budget(bundle):
    recommender = Recommender(bundle, budget_ms=50.0)
    request = RecommendRequest(user_id=regular_customer(bundle), k=5)
    late = recommender.recommend(request, {}, queued_ms=60.0)
    assert late.fallback == (
        "latency_budget: the request waited 60.0 ms in the server's queue, past its 50 ms budget"
    )
    assert len(late.items) == 5
    # What is left of the budget is the budget: a request that waited 49.999 ms has too little.
    assert recommender.recommend(request, {}, queued_ms=49.999).fallback.startswith(
        "latency_budget: latency budget ran out before step"
    )
    on_time = recommender.recommend(request, {}, queued_ms=1.0)
    assert on_time.fallback is None and on_time.personalized


def test_a_request_with_less_budget_left_than_an_answer_takes_gets_fallback_at_once(bundle):
    recommender = Recommender(bundle, budget_ms=50.0)
    request = RecommendRequest(user_id=regular_customer(bundle), k=5)
    assert recommender.answer_ms == 0.0  # nothing measured yet: every request may start
    first = recommender.recommend(request, {}, queued_ms=0.0)
    assert first.fallback is None and recommender.answer_ms == first.took_ms  # the first sets it
    recommender.answer_ms = 8.0  # as if answers had been taking 8 ms
    late = recommender.recommend(request, {}, queued_ms=45.0)
    assert late.fallback == (
        "latency_budget: the request waited 45.0 ms in the server's queue; with the 8.0 ms an "
        "answer takes here, it would end past its 50 ms budget"
    )
    assert len(late.items) == 5 and recommender.answer_ms == 8.0  # a fallback teaches nothing
    on_time = recommender.recommend(request, {}, queued_ms=40.0)
    assert on_time.fallback is None
    # The newest answer weighs 5%: the mean moves a twentieth of the way towards it.
    assert recommender.answer_ms == pytest.approx(8.0 + (on_time.took_ms - 8.0) * 0.05)


def test_a_failing_step_answers_with_fallback_not_an_exception(bundle, monkeypatch, caplog):
    def broken(features):
        raise RuntimeError("onnxruntime exploded")

    monkeypatch.setattr(bundle.model.ranker, "predict", broken)
    response = Recommender(bundle).recommend(RecommendRequest(k=4))
    assert response.fallback == "error: step 'ranker' failed"
    assert len(response.items) == 4
    assert "onnxruntime exploded" in caplog.text


def test_without_a_bundle_every_request_still_gets_an_answer():
    response = Recommender(None, unavailable_reason="bundle refused: x").recommend(
        RecommendRequest(k=3, slots=["home-banner"])  # slots it cannot fill: still an answer
    )
    assert response.slots == {}
    assert response.items == [] and response.fallback.startswith("bundle_unavailable")


def test_an_unknown_session_event_type_names_the_field(recommender):
    session = Session(
        events=[SessionEvent(type="view", item_id="a"), SessionEvent(type="teleport", item_id="b")]
    )
    with pytest.raises(ValidationError, match="'teleport' is not one this bundle knows") as info:
        recommender.recommend(RecommendRequest(session=session))
    assert info.value.field == "$.session.events[1].type"


def test_unknown_items_in_a_session_are_ignored_not_an_error(recommender):
    session = Session(events=[SessionEvent(type="view", item_id="no-such-item")])
    response = recommender.recommend(RecommendRequest(session=session, k=3))
    assert len(response.items) == 3 and response.fallback is None


def test_a_failing_profile_store_still_gets_a_fallback_answer(bundle, caplog):
    import dataclasses

    class Down:
        def get(self, user_id):
            raise ConnectionError("profile store unreachable")

        def __len__(self):
            return 0

    broken = dataclasses.replace(bundle, profiles=Down())
    response = Recommender(broken).recommend(RecommendRequest(user_id="u1", k=3))
    assert response.fallback == "error: step 'profile' failed"
    assert len(response.items) == 3
    assert "profile store unreachable" in caplog.text


def test_too_few_candidates_are_topped_up_with_unranked_popular_items(recommender):
    # A cold visitor's candidates are the popular lists' heads; k=100 asks for more than that.
    response = recommender.recommend(RecommendRequest(k=100))
    ids = [item.item_id for item in response.items]
    scores = [item.score for item in response.items]
    assert len(ids) == len(set(ids)) and 0.0 in scores
    first_zero = scores.index(0.0)
    assert first_zero > 0 and all(s > 0 for s in scores[:first_zero])
    assert all(s == 0.0 for s in scores[first_zero:])


def test_a_category_cap_spreads_the_answer_over_categories(bundle, recommender):
    from collections import Counter

    user = regular_customer(bundle)
    items = bundle.model.items

    def per_category(response):
        return Counter(items.categories(ids(response)).tolist())

    uncapped = recommender.recommend(RecommendRequest(user_id=user, k=20))
    assert max(per_category(uncapped).values()) > 2, "the fixture should favour a category"
    capped = recommender.recommend(RecommendRequest(user_id=user, k=20, max_per_category=2))
    assert len(capped.items) == 20 and max(per_category(capped).values()) <= 2
    # The cap keeps the ranker's order among what it keeps.
    kept = [i for i in ids(uncapped) if i in set(ids(capped))]
    assert kept == [i for i in ids(capped) if i in set(kept)]


def test_the_bundle_sets_the_default_cap_and_a_request_can_lift_it(bundle):
    capped = Recommender(bundle, budget_ms=math.inf)
    capped.max_per_category = 1
    user = regular_customer(bundle)
    response = capped.recommend(RecommendRequest(user_id=user, k=10))
    categories = bundle.model.items.categories(ids(response)).tolist()
    assert len(categories) == len(set(categories))
    lifted = capped.recommend(RecommendRequest(user_id=user, k=10, max_per_category=0))
    assert len(lifted.items) == 10


def test_one_viewed_item_is_enough_to_personalize(bundle, recommender):
    cold = ids(recommender.recommend(RecommendRequest(k=10)))
    item = bundle.model.items.ids[int(bundle.model.popularity.top_overall[25])]
    session = Session(events=[SessionEvent(type="view", item_id=item)])
    response = recommender.recommend(RecommendRequest(session=session, k=10))
    assert response.personalized and ids(response) != cold


def test_every_answer_names_the_visitors_segment(bundle, recommender):
    user = regular_customer(bundle)
    stored = bundle.profiles.get(user).segment
    assert stored and recommender.recommend(RecommendRequest(user_id=user)).segment == stored
    viewed = [item for item, _ in bundle.fallback["all"][:3]]
    session = Session(
        events=[SessionEvent(type="view", item_id=i, dwell_ms=20_000) for i in viewed]
    )
    anonymous = recommender.recommend(RecommendRequest(session=session))
    assert anonymous.segment in bundle.visitor.segments.names
    hidden = recommender.recommend(RecommendRequest(user_id=user, consent=False))
    assert hidden.segment is None  # without consent nothing about the visitor is used


def test_every_answer_carries_purchase_intent(bundle, recommender):
    user = regular_customer(bundle)
    item = bundle.fallback["all"][0][0]
    events = [SessionEvent(type="view", item_id=item, dwell_ms=40_000)]
    events += [SessionEvent(type="add_to_cart", item_id=item)]
    for request in (
        RecommendRequest(),
        RecommendRequest(user_id=user, session=Session(events=events)),
    ):
        intent = recommender.recommend(request).intent
        assert intent is not None and 0.0 <= intent.probability <= 1.0
        assert intent.label == bundle.visitor.labels.label(intent.probability)
    assert recommender.recommend(RecommendRequest(consent=False)).intent is None
    assert "auc" in bundle.manifest.models["intent"]["evaluation"]


def test_warm_up_waits_for_the_int8_scan_being_built(bundle_dir, monkeypatch):
    # Without the scan, a long warm-up search would dequantize every row of the item matrix.
    import time

    from edge import model
    from edge.bundle import load_bundle

    real = model.Int8Scan

    def slow_scan(*args):
        time.sleep(0.3)
        return real(*args)

    monkeypatch.setattr(model, "Int8Scan", slow_scan)
    bundle = load_bundle(bundle_dir)
    assert bundle.model.embeddings.scan is None  # still being built
    Recommender(bundle, budget_ms=math.inf).warm_up()
    assert bundle.model.embeddings.scan is not None
