"""One request from validated input to answer, on the small bundle (`tests.edge.small_bundle`),
whose ranker is a stated function of two features: the expected answers are computed here from
what that bundle was written with."""

import dataclasses
import math
import time

import numpy as np
import pytest

from edge.errors import ValidationError
from edge.recommend import Recommender
from edge.schemas import Context, RecommendRequest, Session, SessionEvent
from edge.scoring import RECENCY_DECAY
from tests.edge import small_bundle as shop


@pytest.fixture(scope="module")
def recommender(small_bundle):
    return Recommender(small_bundle, budget_ms=math.inf)


def regular_customer(bundle):
    profiles = bundle.profiles.as_dict()
    return max(profiles, key=lambda u: (len(profiles[u].bought_items), u))


def ids(response):
    return [item.item_id for item in response.items]


def expected_ranking(candidates, covis: np.ndarray) -> list[tuple[str, float]]:
    """`candidates` (item indices) by the small ranker's probability, best first."""
    scored = [(shop.ranker_score(shop.POP_OVERALL[i], covis[i]), i) for i in candidates]
    return [(shop.IDS[i], p) for p, i in sorted(scored, key=lambda s: (-s[0], s[1]))]


def test_a_known_customer_gets_k_personalized_items_never_ones_they_bought(
    small_bundle, recommender
):
    user = regular_customer(small_bundle)
    bought = set(small_bundle.profiles.get(user).bought_items)
    assert bought, "the fixture should pick a customer who bought something"
    response = recommender.recommend(RecommendRequest(user_id=user, k=10))
    assert len(response.items) == 10 and len(set(ids(response))) == 10
    assert not bought & set(ids(response))
    assert response.personalized and response.fallback is None
    assert response.bundle == small_bundle.build_id
    scores = [item.score for item in response.items]
    assert scores == sorted(scores, reverse=True)


def test_a_customers_answer_is_every_allowed_item_ranked_by_the_rankers_probability(
    small_bundle, recommender
):
    # The user vector's top 50 holds all 40 items, so every item in stock and not bought is a
    # candidate; the ranker orders them by popularity and co-visitation with recent items.
    profile = shop.PROFILES["u-regular"]
    recent = list(zip(profile.recent_items, profile.recent_weights))
    covis = shop.neighbour_scores(shop.COVISITATION_OFFSETS, recent, RECENCY_DECAY)
    allowed = [
        i
        for i in range(shop.N_ITEMS)
        if shop.IN_STOCK[i] and shop.IDS[i] not in profile.bought_items
    ]
    expected = expected_ranking(allowed, covis)[:10]
    response = recommender.recommend(RecommendRequest(user_id="u-regular", k=10))
    assert ids(response) == [item for item, _ in expected]
    got = [item.score for item in response.items]
    np.testing.assert_allclose(got, [p for _, p in expected], atol=2e-6)


def test_a_cold_visitor_gets_the_popular_heads_of_its_contexts_then_popular_top_ups(recommender):
    # Desktop, in a country and at an hour without tables of their own: the candidates are the
    # heads of the overall and desktop tables, ranked by popularity (no co-visitation); k asks
    # for more, so the desktop fallback content tops them up, scored 0.
    context = Context(device="desktop", country="fr", local_hour=9)
    response = recommender.recommend(RecommendRequest(k=30, context=context))
    heads = {
        *shop.ranked_by(shop.POP_OVERALL)[: shop.POPULAR_PER_SOURCE],
        *shop.ranked_by(shop.CONTEXT_POPULARITY["device=desktop"])[: shop.POPULAR_PER_SOURCE],
    }
    ranked = expected_ranking([i for i in heads if shop.IN_STOCK[i]], np.zeros(shop.N_ITEMS))
    top_up = [
        item for item, _ in shop.fallback_content()["device=desktop"] if item not in dict(ranked)
    ]
    assert ids(response) == [item for item, _ in ranked] + top_up[: 30 - len(ranked)]
    scores = [item.score for item in response.items]
    np.testing.assert_allclose(scores[: len(ranked)], [p for _, p in ranked], atol=2e-6)
    assert set(scores[len(ranked) :]) == {0.0} and not response.personalized


def test_excluded_cart_and_out_of_stock_items_are_never_returned(small_bundle, recommender):
    user = regular_customer(small_bundle)
    first = ids(recommender.recommend(RecommendRequest(user_id=user, k=20)))
    exclude, cart = first[:5], first[5:8]
    again = ids(
        recommender.recommend(
            RecommendRequest(user_id=user, k=20, exclude=exclude, context=Context(cart=cart))
        )
    )
    assert not set(exclude + cart) & set(again)
    out_of_stock = {shop.IDS[i] for i in shop.OUT_OF_STOCK}
    for k in (10, 50):
        assert not out_of_stock & set(
            ids(recommender.recommend(RecommendRequest(user_id=user, k=k)))
        )


def test_items_a_sessions_events_left_in_the_cart_are_never_recommended(small_bundle, recommender):
    """No cart sent: the cart is what the session's add_to_cart events leave (minus removals
    and what a purchase emptied), in the ranked answer and in fallback content alike."""
    viewed = [item for item, _ in small_bundle.fallback["all"][10:13]]
    views = [SessionEvent(type="view", item_id=i) for i in viewed]
    plain = ids(recommender.recommend(RecommendRequest(session=Session(events=views), k=10)))
    carted, removed = plain[0], plain[1]
    events = views + [
        SessionEvent(type="add_to_cart", item_id=carted),
        SessionEvent(type="add_to_cart", item_id=removed),
        SessionEvent(type="remove_from_cart", item_id=removed),
    ]
    request = RecommendRequest(session=Session(events=events), k=10)
    answer = ids(recommender.recommend(request))
    assert carted not in answer and len(answer) == 10
    fallback = Recommender(small_bundle, budget_ms=0.0).recommend(request)
    assert fallback.fallback and carted not in ids(fallback)
    bought = events + [SessionEvent(type="purchase", item_id=viewed[0])]  # empties the cart
    after = ids(recommender.recommend(RecommendRequest(session=Session(events=bought), k=10)))
    assert viewed[0] not in after


def test_the_bundles_scorer_ranks_the_candidates(tmp_path):
    """A bundle whose selection guard chose a generator serves its candidates in that
    generator's order (ties by popularity), through the same candidate sources."""
    from edge.bundle import load_bundle
    from edge.bundle.manifest import Serving
    from edge.scoring import build_user_state, candidate_features, score_candidates

    bundle = load_bundle(shop.write_small_bundle(tmp_path / "b", serving=Serving(scorer="covis")))
    served = Recommender(bundle, budget_ms=math.inf)
    user = regular_customer(bundle)
    response = served.recommend(RecommendRequest(user_id=user, k=5))
    state = build_user_state(bundle.model, bundle.profiles.get(user))
    candidates = candidate_features(bundle.model, state, response.context)
    covis = candidates.features[:, 2]  # covis_score
    scores, order = score_candidates(None, candidates.features, "covis")
    assert ids(response) == bundle.model.items.ids_of(candidates.items[order[:5]])
    assert [it.score for it in response.items] == [round(float(s), 6) for s in covis[order[:5]]]
    assert list(covis[order[:5]]) == sorted(covis, reverse=True)[:5]


def test_an_anonymous_session_is_personalized_from_its_views(small_bundle, recommender):
    viewed = [item for item, _ in small_bundle.fallback["all"][10:13]]
    session = Session(events=[SessionEvent(type="view", item_id=i) for i in viewed])
    response = recommender.recommend(RecommendRequest(session=session, k=10))
    assert response.personalized and len(response.items) == 10
    cold = recommender.recommend(RecommendRequest(k=10))
    assert not cold.personalized and ids(cold) != ids(response)


def test_without_consent_the_answer_uses_only_the_context(small_bundle, recommender):
    user = regular_customer(small_bundle)
    context = Context(device="mobile", local_hour=20)
    refused = recommender.recommend(RecommendRequest(user_id=user, consent=False, context=context))
    anonymous = recommender.recommend(RecommendRequest(context=context))
    assert not refused.personalized
    assert ids(refused) == ids(anonymous)


def test_an_exhausted_budget_answers_with_contextual_fallback(small_bundle):
    user = regular_customer(small_bundle)
    response = Recommender(small_bundle, budget_ms=1e-9).recommend(
        RecommendRequest(user_id=user, k=5, context=Context(device="mobile"))
    )
    assert response.fallback.startswith("latency_budget")
    bought = set(shop.PROFILES[user].bought_items)
    mobile = [item for item, _ in shop.fallback_content()["device=mobile"]]
    assert ids(response) == [item for item in mobile if item not in bought][:5]


def test_time_waited_in_the_server_is_spent_from_the_budget(small_bundle):
    recommender = Recommender(small_bundle, budget_ms=50.0)
    request = RecommendRequest(user_id=regular_customer(small_bundle), k=5)
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


def test_a_request_with_less_budget_left_than_an_answer_takes_gets_fallback_at_once(small_bundle):
    recommender = Recommender(small_bundle, budget_ms=1000.0)
    request = RecommendRequest(user_id=regular_customer(small_bundle), k=5)
    assert recommender.answer_ms == 0.0  # nothing measured yet: every request may start
    first = recommender.recommend(request, {}, queued_ms=0.0)
    assert first.fallback is None and recommender.answer_ms == first.took_ms  # the first sets it
    recommender.answer_ms = 8.0  # as if answers had been taking 8 ms
    late = recommender.recommend(request, {}, queued_ms=995.0)
    assert late.fallback == (
        "latency_budget: the request waited 995.0 ms in the server's queue; with the 8.0 ms an "
        "answer takes here, it would end past its 1000 ms budget"
    )
    assert len(late.items) == 5 and recommender.answer_ms == 8.0  # a fallback teaches nothing
    on_time = recommender.recommend(request, {}, queued_ms=900.0)  # 92 ms to spare, when busy
    assert on_time.fallback is None
    # The newest answer weighs 5%: the mean moves a twentieth of the way towards it.
    assert recommender.answer_ms == pytest.approx(8.0 + (on_time.took_ms - 8.0) * 0.05)


def test_a_failing_step_answers_with_fallback_not_an_exception(small_bundle, monkeypatch, caplog):
    def broken(features):
        raise RuntimeError("onnxruntime exploded")

    monkeypatch.setattr(small_bundle.model.ranker, "predict", broken)
    response = Recommender(small_bundle).recommend(RecommendRequest(k=4))
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


def test_a_failing_profile_store_still_gets_a_fallback_answer(small_bundle, caplog):
    class Down:
        def get(self, user_id):
            raise ConnectionError("profile store unreachable")

        def __len__(self):
            return 0

    broken = dataclasses.replace(small_bundle, profiles=Down())
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


def test_a_category_cap_spreads_the_answer_over_categories(small_bundle, recommender):
    from collections import Counter

    user = regular_customer(small_bundle)
    items = small_bundle.model.items

    def per_category(response):
        return Counter(items.categories(ids(response)).tolist())

    # Five categories: a cap of 2 can fill k = 10.
    uncapped = recommender.recommend(RecommendRequest(user_id=user, k=10))
    assert max(per_category(uncapped).values()) > 2, "the fixture should favour a category"
    capped = recommender.recommend(RecommendRequest(user_id=user, k=10, max_per_category=2))
    assert len(capped.items) == 10 and max(per_category(capped).values()) <= 2
    # The cap keeps the ranker's order among what it keeps.
    kept = [i for i in ids(uncapped) if i in set(ids(capped))]
    assert kept == [i for i in ids(capped) if i in set(kept)]


def test_the_bundle_sets_the_default_cap_and_a_request_can_lift_it(tmp_path):
    from edge.bundle import load_bundle
    from edge.bundle.manifest import Serving

    bundle = load_bundle(shop.write_small_bundle(tmp_path / "b", serving=Serving(1)))
    capped = Recommender(bundle, budget_ms=math.inf)
    response = capped.recommend(RecommendRequest(user_id="u-regular", k=10))
    categories = bundle.model.items.categories(ids(response)).tolist()
    assert len(categories) == len(shop.CATEGORY_NAMES) == len(set(categories))
    lifted = capped.recommend(RecommendRequest(user_id="u-regular", k=10, max_per_category=0))
    assert len(lifted.items) == 10


def test_one_viewed_item_is_enough_to_personalize(small_bundle, recommender):
    # A fixed hour: the hour's context popularity must not decide what this test sees.
    noon = Context(local_hour=12)
    cold = ids(recommender.recommend(RecommendRequest(k=20, context=noon)))
    viewed = int(small_bundle.model.popularity.top_overall[25])
    strongest = max(shop.COVISITATION_OFFSETS, key=shop.COVISITATION_OFFSETS.__getitem__)
    neighbour = shop.IDS[viewed + strongest]  # its strongest co-visitation neighbour
    session = Session(events=[SessionEvent(type="view", item_id=shop.IDS[viewed])])
    response = recommender.recommend(RecommendRequest(session=session, k=20, context=noon))
    assert response.personalized and neighbour in ids(response) and neighbour not in cold


def test_every_answer_names_the_visitors_segment(recommender):
    # u-regular's stored segment is not the cluster their spend would give: it wins.
    stored = shop.PROFILES["u-regular"].segment
    assert stored != shop.segment_of(shop.PROFILES["u-regular"].monetary)
    assert recommender.recommend(RecommendRequest(user_id="u-regular")).segment == stored
    viewed = [item for item, _ in shop.fallback_content()["all"][:3]]
    looks = [SessionEvent(type="view", item_id=i, dwell_ms=20_000) for i in viewed]
    anonymous = recommender.recommend(RecommendRequest(session=Session(events=looks)))
    assert anonymous.segment == shop.segment_of(0.0)  # nothing spent: the cluster's answer
    # The three dearest items (priced 41 to 43) bought: over the graph's threshold of 100.
    bought = [36, 37, 38]
    buys = [SessionEvent(type="purchase", item_id=shop.IDS[i]) for i in bought]
    spender = recommender.recommend(RecommendRequest(session=Session(events=buys)))
    assert spender.segment == shop.segment_of(float(shop.PRICE[bought].sum())) == "spenders"
    # A cart left without a purchase: the shop's rule wins over both clusters.
    added = [SessionEvent(type="add_to_cart", item_id=viewed[0])]
    abandoner = recommender.recommend(RecommendRequest(session=Session(events=added)))
    assert abandoner.segment == shop.SEGMENT_RULES[0].name
    hidden = recommender.recommend(RecommendRequest(user_id="u-regular", consent=False))
    assert hidden.segment is None  # without consent nothing about the visitor is used


def test_every_answer_carries_purchase_intent(recommender):
    item = shop.fallback_content()["all"][0][0]
    events = [SessionEvent(type="view", item_id=item, dwell_ms=40_000)]
    events += [SessionEvent(type="add_to_cart", item_id=item)]
    cold = recommender.recommend(RecommendRequest()).intent
    assert cold.probability == pytest.approx(shop.intent_probability(0, 0), abs=1e-4)
    assert cold.label == "browsing"  # 0.12: between the default thresholds 0.1 and 0.5
    keen = recommender.recommend(
        RecommendRequest(user_id="u-regular", session=Session(events=events))
    ).intent
    assert keen.probability == pytest.approx(shop.intent_probability(1, 40.0), abs=1e-4)
    assert keen.label == "high intent"  # 0.82
    assert recommender.recommend(RecommendRequest(consent=False)).intent is None


def test_fallback_content_never_offers_a_customer_what_they_bought(small_bundle):
    from edge import arrays
    from edge.profiles import EmbeddedProfileStore, encode_profiles
    from edge.schemas import Profile

    popular = [item for item, _ in small_bundle.fallback["all"][:6]]
    customer = Profile(
        recent_items=[popular[0], popular[2]],
        recent_weights=[1.0, 1.0],
        bought_items=[popular[0], popular[2]],
        n_events=4,
        n_purchases=2,
        last_ts=1_790_000_000.0,
        monetary=30.0,
        mean_price=15.0,
    )
    store = EmbeddedProfileStore.from_tree(arrays.loads(encode_profiles({"c1": customer})))
    content = {"all": [(item, 10.0 - n) for n, item in enumerate(popular)]}
    patched = dataclasses.replace(small_bundle, profiles=store, fallback=content)
    answer = Recommender(patched, budget_ms=1e-9).recommend(RecommendRequest(user_id="c1", k=3))
    assert answer.fallback.startswith("latency_budget")
    assert ids(answer) == [popular[1], popular[3], popular[4]]  # the two bought ones skipped
    # Without consent the profile is not read, and nothing is left out on its account.
    private = Recommender(patched, budget_ms=1e-9).recommend(
        RecommendRequest(user_id="c1", k=3, consent=False)
    )
    assert ids(private) == popular[:3]
    # What the request excludes and the cart's items stay out too, with what was bought.
    all_three = Recommender(patched, budget_ms=1e-9).recommend(
        RecommendRequest(
            user_id="c1", k=3, exclude=[popular[1]], context=Context(cart=[popular[3]])
        )
    )
    assert ids(all_three) == [popular[4], popular[5]]  # the two of six left


def test_fallback_content_comes_from_the_most_specific_context_country_device_then_hour():
    content = {
        "country=de": [("de-1", 3.0), ("de-2", 2.0)],
        "device=mobile": [("mobile-1", 3.0), ("mobile-2", 2.0)],
        "hour=evening": [("evening-1", 3.0), ("evening-2", 2.0)],
        "all": [("all-1", 3.0), ("all-2", 2.0)],
    }
    recommender = Recommender(None, fallback_content=content)

    def first(**context):
        answer = recommender.recommend(RecommendRequest(k=1, context=Context(**context)))
        assert answer.fallback.startswith("bundle_unavailable") and answer.personalized is False
        assert (answer.context.country, answer.context.device) == (
            context["country"],
            context["device"],
        )
        return ids(answer)

    assert first(country="de", device="mobile", local_hour=20) == ["de-1"]
    assert first(country="fr", device="mobile", local_hour=20) == ["mobile-1"]
    assert first(country="fr", device="desktop", local_hour=20) == ["evening-1"]
    assert first(country="fr", device="desktop", local_hour=9) == ["all-1"]


def test_a_request_that_waited_its_whole_budget_is_answered_at_once_one_that_fits_is_not(
    small_bundle,
):
    recommender = Recommender(small_bundle, budget_ms=1000.0)
    request = RecommendRequest(user_id="u-regular", k=3)
    spent = recommender.recommend(request, {}, queued_ms=1000.0)
    assert spent.fallback == (
        "latency_budget: the request waited 1000.0 ms in the server's queue, past its 1000 ms "
        "budget"
    )
    recommender.answer_ms = 100.0  # as if answers took 100 ms: 900 waited + 100 ends on time
    assert recommender.recommend(request, {}, queued_ms=900.0).fallback is None
    # A budget that runs out on the way names the step it ran out before.
    out = Recommender(small_bundle, budget_ms=1e-9).recommend(request)
    assert out.fallback == "latency_budget: latency budget ran out before step 'candidates'"


def test_every_answer_says_which_bundle_and_context_it_answered_in_and_if_personal(
    small_bundle, monkeypatch
):
    from edge.schemas import ResolvedContext

    request = RecommendRequest(
        user_id="u-regular", k=3, context=Context(device="Mobile", country="DE", local_hour=20)
    )
    resolved = ResolvedContext(device="mobile", country="de", local_hour=20, hour_bucket="evening")
    served = Recommender(small_bundle, budget_ms=math.inf).recommend(request)
    late = Recommender(small_bundle, budget_ms=1e-9).recommend(request)

    def broken(features):
        raise RuntimeError("onnxruntime exploded")

    monkeypatch.setattr(small_bundle.model.ranker, "predict", broken)
    failed = Recommender(small_bundle, budget_ms=math.inf).recommend(request)
    answers = [
        (a.fallback is None, a.bundle, a.context, a.personalized) for a in (served, late, failed)
    ]
    assert answers == [
        (True, small_bundle.build_id, resolved, True),
        (False, small_bundle.build_id, resolved, False),
        (False, small_bundle.build_id, resolved, False),
    ]


def test_the_time_an_answer_took_is_in_milliseconds(small_bundle, monkeypatch):
    import time

    real = small_bundle.model.ranker.predict

    def slow(features):
        time.sleep(0.05)
        return real(features)

    monkeypatch.setattr(small_bundle.model.ranker, "predict", slow)
    took = Recommender(small_bundle, budget_ms=math.inf).recommend(RecommendRequest(k=3)).took_ms
    assert 50.0 <= took < 5_000.0


def test_the_rules_see_the_visitors_segment_and_intent(small_bundle):
    from edge.rules import Rule, RuleBook

    book = RuleBook(
        rules=[
            Rule(name="by-segment", when={"segment": {"eq": "spenders"}}, content={"b": "s"}),
            Rule(name="by-intent", when={"intent": {"ge": 0.5}}, content={"b": "i"}),
        ]
    )
    recommender = Recommender(dataclasses.replace(small_bundle, rules=book), budget_ms=math.inf)
    # The three dearest items bought (a spender), then one long look and a cart add (keen).
    events = [SessionEvent(type="purchase", item_id=shop.IDS[i]) for i in (36, 37, 38)]
    events += [
        SessionEvent(type="view", item_id=shop.IDS[3], dwell_ms=40_000),
        SessionEvent(type="add_to_cart", item_id=shop.IDS[3]),
    ]
    answer = recommender.recommend(RecommendRequest(session=Session(events=events)))
    assert answer.segment == "spenders" and answer.intent.probability >= 0.5
    assert [r.rule for r in answer.rules_fired] == ["by-segment", "by-intent"]


@pytest.mark.parametrize(
    ("step", "name"),
    [
        ("segment and intent", "describe_visitor"),
        ("experiments", "treatment"),
        ("rules", "visit_signals"),
        ("slots", "choose"),
        ("candidates", "candidate_features"),
    ],
)
def test_a_failing_step_is_named_in_the_fallback_reason(small_bundle, monkeypatch, step, name):
    import msgspec

    from edge import recommend
    from edge.bandits import Bandit, BanditPolicy
    from edge.experiments import Experiment

    def broken(*args, **kwargs):
        raise RuntimeError(f"{name} broke")

    monkeypatch.setattr(BanditPolicy if name == "choose" else recommend, name, broken)
    split = msgspec.convert({"key": "e", "variants": [{"name": "a"}, {"name": "b"}]}, Experiment)
    banner = msgspec.convert(
        {"slot": "home-banner", "arms": [{"name": "b0"}, {"name": "b1"}], "by_segment": False},
        Bandit,
    )
    bundle = dataclasses.replace(small_bundle, experiments=(split,), bandits=(banner,))
    answer = Recommender(bundle, budget_ms=math.inf).recommend(
        RecommendRequest(user_id="u-regular", k=2, slots=["home-banner"])
    )
    assert answer.fallback == f"error: step '{step}' failed"


def test_a_top_up_keeps_the_category_cap_and_leaves_out_what_the_customer_bought(small_bundle):
    from collections import Counter

    from edge.scoring import CandidateSizes

    recommender = Recommender(small_bundle, budget_ms=math.inf)
    # One candidate a source: most of each answer comes from the popular top-up.
    recommender.sizes = CandidateSizes(
        als=1, covis=1, regression=1, popular=1, category=0, history=1
    )
    # 40 items in 5 categories, 3 out of stock, 2 bought: a cap of 3 leaves room for 15.
    capped = recommender.recommend(RecommendRequest(user_id="u-regular", k=20, max_per_category=3))
    categories = small_bundle.model.items.categories(ids(capped)).tolist()
    assert len(capped.items) == 15 and set(Counter(categories).values()) == {3}
    assert len(recommender.recommend(RecommendRequest(k=10, max_per_category=3)).items) == 10
    everything = recommender.recommend(RecommendRequest(user_id="u-regular", k=40))
    assert 0.0 in [item.score for item in everything.items]  # the top-up was reached
    left_out = {"i00", "i05"} | {shop.IDS[i] for i in shop.OUT_OF_STOCK}  # bought, out of stock
    assert set(ids(everything)) == set(shop.IDS) - left_out


def test_the_events_route_takes_the_feedback_types_and_the_bundles_own(small_bundle):
    from edge.schemas import FEEDBACK_TYPES

    assert Recommender(None).feedback_types == frozenset(FEEDBACK_TYPES)
    assert Recommender(small_bundle).feedback_types == frozenset(FEEDBACK_TYPES)
    weights = {**shop.EVENT_WEIGHTS, "wishlist": 2.0}
    model = dataclasses.replace(small_bundle.model, event_weights=weights)
    own = Recommender(dataclasses.replace(small_bundle, model=model)).feedback_types
    assert own == frozenset(FEEDBACK_TYPES) | {"wishlist"}


def test_a_slot_no_bandit_fills_names_the_field(small_bundle):
    import msgspec

    from edge.bandits import Bandit

    arms = [{"name": "b0"}, {"name": "b1"}]
    banner = msgspec.convert({"slot": "home-banner", "arms": arms}, Bandit)
    recommender = Recommender(dataclasses.replace(small_bundle, bandits=(banner,)))
    with pytest.raises(ValidationError, match="slot 'footer' is not one this bundle's") as info:
        recommender.recommend(RecommendRequest(slots=["home-banner", "footer"]))
    assert info.value.field == "$.slots[1]"


def test_an_answer_gives_the_display_fields_asked_for_of_every_item_it_names(small_bundle):
    recommender = Recommender(small_bundle, budget_ms=math.inf)
    long_look = SessionEvent(type="view", item_id="i05", dwell_ms=40_000)
    request = RecommendRequest(
        session=Session(events=[long_look]), k=len(shop.IDS), fields=["title", "price", "category"]
    )
    answer = recommender.recommend(request)
    [accessories] = [f for f in answer.rules_fired if f.rule == "long-dwell"]
    named = {it.item_id for it in answer.items} | set(accessories.items)
    assert set(answer.details) == named and shop.IDS[3] in named and shop.IDS[-1] in named
    for item_id, details in answer.details.items():
        i = shop.IDS.index(item_id)
        assert details.title == (shop.TITLES[i] or None)  # i03 has no title: left out
        price = float(shop.PRICE[i])
        assert details.price == (None if math.isnan(price) else round(price, 2))
        assert details.category == shop.CATEGORY_NAMES[shop.CATEGORY[i]]
        assert details.brand is None  # not asked for
    assert recommender.recommend(RecommendRequest(k=3)).details == {}  # asked for nothing


@pytest.mark.parametrize(
    ("page_minus_server_s", "fires"),
    [(None, False), (16 * 60, True), (-3600, False), (3 * 24 * 3600, False)],
)
def test_a_carts_idle_time_is_measured_on_the_pages_clock_when_it_sends_one(
    recommender, page_minus_server_s, fires
):
    """The cart was touched by the page's clock at `added`; the page says it is now 16 minutes
    later while the edge's clock says no time passed: the page's clock times the offer. A clock
    more than a day off is not believed."""
    added = time.time()
    now = None if page_minus_server_s is None else added + page_minus_server_s
    request = RecommendRequest(
        session_id="s-clock",
        session=Session(events=[SessionEvent(type="add_to_cart", item_id="i04", ts=added)]),
        context=Context(cart=["i04"], now=now),
    )
    fired = [f.rule for f in recommender.recommend(request).rules_fired]
    assert ("abandoned-cart" in fired) is fires
