"""The three default rules and the guardrails, driven through POST /v1/recommend, on the small
bundle (`tests.edge.small_bundle`), which carries the default rules."""

import json
import math
import time
from datetime import UTC, datetime

import msgspec
import pytest
from starlette.testclient import TestClient

from edge.app import create_app
from edge.config import Settings
from edge.rules import DEFAULT_RULES, RuleBook, epoch_of, rule_book_errors
from tests.edge import small_bundle as shop


@pytest.fixture(scope="module")
def client(small_bundle_dir):
    with TestClient(create_app(Settings(bundle_dir=str(small_bundle_dir)))) as client:
        yield client


def iso(minutes_ago: float) -> str:
    return datetime.fromtimestamp(time.time() - 60 * minutes_ago, UTC).isoformat()


def ask(client, body: dict) -> dict:
    response = client.post(
        "/v1/recommend", content=json.dumps(body), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    return response.json()


def fired(answer: dict) -> dict[str, dict]:
    return {r["rule"]: r for r in answer["rules_fired"]}


def held(answer: dict) -> dict[str, str]:
    return {r["rule"]: r["why"] for r in answer["rules_held_back"]}


@pytest.fixture(scope="module")
def items(small_bundle):
    return [item for item, _ in small_bundle.fallback["all"][:6]]


def cart_session(item: str, idle_minutes: float) -> dict:
    return {
        "events": [
            {"type": "view", "item_id": item, "ts": iso(idle_minutes + 3), "dwell_ms": 8_000},
            {"type": "add_to_cart", "item_id": item, "ts": iso(idle_minutes)},
        ]
    }


def test_a_cart_left_idle_15_minutes_brings_the_offer_with_its_items(client, items):
    answer = ask(client, {"session_id": "s1", "session": cart_session(items[0], 20)})
    offer = fired(answer)["abandoned-cart"]
    assert offer["offer"] == {"discount_percent": 10.0, "code": "CART10", "with_cart_items": True}
    assert offer["items"] == [items[0]]
    assert "cart_idle_minutes 20" in offer["why"] and "cart_value" in offer["why"]
    fresh = ask(client, {"session_id": "s1", "session": cart_session(items[0], 5)})
    assert "abandoned-cart" not in fired(fresh) and "abandoned-cart" not in held(fresh)


def test_a_product_viewed_over_30_seconds_brings_its_accessories(client, items):
    long_look = {
        "events": [
            {"type": "view", "item_id": items[1], "dwell_ms": 45_000},
            {"type": "view", "item_id": items[2], "dwell_ms": 5_000},
        ]
    }
    rule = fired(ask(client, {"session": long_look}))["long-dwell"]
    assert rule["why"].startswith("dwell_seconds 45 > 30") and items[1] in rule["why"]
    # Its regression neighbours, then its co-visitation ones, each by score, in stock: four.
    looked = shop.IDS.index(items[1])
    accessories = [
        shop.IDS[j]
        for table in (shop.REGRESSION_OFFSETS, shop.COVISITATION_OFFSETS)
        for j, _ in sorted(shop.neighbours(table)[looked].items(), key=lambda n: -n[1])
        if shop.IN_STOCK[j] and j != looked
    ]
    assert rule["items"] == list(dict.fromkeys(accessories))[:4]
    glance = {"events": [{"type": "view", "item_id": items[1], "dwell_ms": 12_000}]}
    assert "long-dwell" not in fired(ask(client, {"session": glance}))


def test_a_third_visit_without_a_purchase_brings_the_loyalty_discount(client):
    assert fired(ask(client, {"context": {"visits": 3}}))["loyalty"]["offer"]["code"] == (
        "WELCOMEBACK5"
    )
    assert "loyalty" not in fired(ask(client, {"context": {"visits": 2}}))
    # u-loyal's profile counts 3 visits since a purchase: this one is the fourth.
    assert shop.PROFILES["u-loyal"].visits_since_purchase == 3
    answer = ask(client, {"user_id": "u-loyal"})
    assert "visits_without_purchase 4 >= 3" in fired(answer)["loyalty"]["why"]
    assert "loyalty" not in fired(ask(client, {"user_id": "u-regular"}))  # their second


def test_one_offer_per_session_by_priority(client, items):
    both = ask(client, {"session": cart_session(items[0], 30), "context": {"visits": 4}})
    assert "abandoned-cart" in fired(both) and "loyalty" not in fired(both)
    assert "max_offers_per_session" in held(both)["loyalty"]
    shown_before = {**cart_session(items[0], 30), "rules_shown": ["loyalty"]}
    later = ask(client, {"session": shown_before})
    assert "abandoned-cart" not in fired(later)
    assert "1 offer(s) this session already" in held(later)["abandoned-cart"]


def test_no_offer_to_someone_who_just_bought(client, items):
    session = cart_session(items[0], 40)
    session["events"].append({"type": "purchase", "item_id": items[3], "ts": iso(35)})
    answer = ask(client, {"session": session, "context": {"cart": [items[0]], "visits": 5}})
    assert not [r for r in answer["rules_fired"] if r.get("offer")]
    assert "just bought" in held(answer)["abandoned-cart"]


def test_a_rule_shows_once_per_session_and_never_without_consent(client, items):
    look = {"events": [{"type": "view", "item_id": items[1], "dwell_ms": 45_000}]}
    again = ask(client, {"session": {**look, "rules_shown": ["long-dwell"]}})
    assert "cap_per_session" in held(again)["long-dwell"]
    private = ask(client, {"session": look, "consent": False})
    assert private["rules_fired"] == [] and private["rules_held_back"] == []


def test_the_defaults_are_a_valid_rule_book_and_bad_rules_are_named():
    assert rule_book_errors(DEFAULT_RULES) == []
    bad = msgspec.convert(
        {
            "rules": [
                {"name": "x", "when": {"cart_age": {"gt": 1}}, "content": {"banner": "b"}},
                {"name": "y", "when": {"intent": {"above": 0.5}}, "content": {}},
                {"name": "z", "when": {"device": {"in": "mobile"}}},
                {
                    "name": "w",
                    "when": {"dwell_seconds": {"gt": 1}},
                    "offer": {"discount_percent": 50, "code": "BIG"},
                },
            ]
        },
        RuleBook,
    )
    errors = rule_book_errors(bad)
    assert "rule 'x', when.cart_age: unknown signal; allowed: cart_idle_minutes" in errors[0]
    assert "rule 'y', when.intent: unknown operator 'above'; allowed: gt, ge" in errors[1]
    assert any("rule 'z' has 0 actions" in e for e in errors)
    assert any("rule 'z', when.device.in: 'mobile' is not a list of labels" in e for e in errors)
    assert any(
        "rule 'w', offer.discount_percent: 50 is over guardrails.max_discount_percent" in e
        for e in errors
    )


def test_event_times_are_read_in_every_form_a_page_sends():
    assert epoch_of("2026-11-27T10:00:00Z") == datetime(2026, 11, 27, 10, tzinfo=UTC).timestamp()
    assert epoch_of(1_795_000_000) == 1_795_000_000.0
    assert epoch_of(1_795_000_000_000) == 1_795_000_000.0  # milliseconds
    assert epoch_of("2026-11-27T10:00:00") is None  # no offset: cannot tell when
    assert epoch_of("yesterday") is None and epoch_of(None) is None


def test_an_experiment_variant_switches_the_rule_set(small_bundle, items):
    import dataclasses

    from edge.experiments import Experiment
    from edge.recommend import Recommender
    from edge.rules import Rule
    from edge.schemas import RecommendRequest, Session, SessionEvent

    night = Rule(
        name="night-owl", when={"local_hour": {"ge": 0}}, content={"banner": "moon"}, sets=["night"]
    )
    book = msgspec.structs.replace(small_bundle.rules, rules=[*small_bundle.rules.rules, night])
    test = msgspec.convert(
        {
            "key": "offers",
            "variants": [
                {"name": "off", "rules": "none", "weight": 1e9},
                {"name": "on", "weight": 1e-9},
            ],
        },
        Experiment,
    )
    look = Session(events=[SessionEvent("view", items[1], dwell_ms=45_000)])
    request = RecommendRequest(user_id=None, session_id="s1", session=look)
    plain = Recommender(dataclasses.replace(small_bundle, rules=book)).recommend(request)
    assert [r.rule for r in plain.rules_fired] == ["long-dwell"]  # default set: not night-owl
    held_out = Recommender(dataclasses.replace(small_bundle, rules=book, experiments=(test,)))
    answer = held_out.recommend(request)
    assert answer.variants == {"offers": "off"} and answer.rules_fired == []
    night_test = msgspec.structs.replace(
        test, variants=[msgspec.structs.replace(test.variants[0], rules="night"), test.variants[1]]
    )
    night_answer = Recommender(
        dataclasses.replace(small_bundle, rules=book, experiments=(night_test,))
    ).recommend(request)
    assert [r.rule for r in night_answer.rules_fired] == ["night-owl"]


def profile_store(profiles):
    """An embedded profile store holding `profiles`, through the bundle file's own encoding."""
    from edge import arrays
    from edge.profiles import EmbeddedProfileStore, encode_profiles

    return EmbeddedProfileStore.from_tree(arrays.loads(encode_profiles(profiles)))


@pytest.mark.parametrize(("hours_ago", "quiet"), [(23, True), (25, False)])
def test_a_customer_whose_profile_bought_within_the_quiet_period_gets_no_offer(
    small_bundle, items, hours_ago, quiet
):
    """The profile's last purchase keeps offers quiet for quiet_after_purchase_hours (24 h),
    though this session shows no purchase; an hour past it, the offers come back."""
    import dataclasses

    from edge.recommend import Recommender
    from edge.rules import Guardrails
    from edge.schemas import Profile, RecommendRequest, Session, SessionEvent

    bought_at = time.time() - hours_ago * 3600
    customer = Profile(
        recent_items=[items[4]],
        recent_weights=[1.0],
        bought_items=[items[4]],
        n_events=9,
        n_purchases=1,
        last_ts=bought_at,
        monetary=20.0,
        mean_price=20.0,
        visits_since_purchase=4,  # this visit is the fifth without a purchase: loyalty matches
        last_purchase_ts=bought_at,
    )
    book = msgspec.structs.replace(
        DEFAULT_RULES, guardrails=Guardrails(quiet_after_purchase_hours=24.0)
    )
    patched = dataclasses.replace(
        small_bundle, profiles=profile_store({"c1": customer}), rules=book
    )
    added = SessionEvent("add_to_cart", items[0], ts=iso(20))  # an abandoned cart, too
    answer = Recommender(patched, budget_ms=math.inf).recommend(
        RecommendRequest(user_id="c1", session=Session(events=[added]))
    )
    offers = [r.rule for r in answer.rules_fired if r.offer is not None]
    held_back = {r.rule: r.why for r in answer.rules_held_back}
    if quiet:
        assert offers == []
        assert "the visitor just bought" in held_back["abandoned-cart"]
        assert "quiet_after_purchase_hours" in held_back["abandoned-cart"]
    else:
        assert offers == ["abandoned-cart"]  # the first offer by priority; one per session
        assert "max_offers_per_session" in held_back["loyalty"]


# ---------------------------------------------------------------- the rules without a bundle
NOW = 1_796_000_000.0  # epoch seconds; every event below is timed from it
PRICES = {"a": 12.5, "b": 40.0, "c": 99.0}


def visit(events=(), cart=(), profile=None, device="mobile", country="de", **known):
    from edge.rules import visit_signals
    from edge.schemas import ResolvedContext, SessionEvent

    return visit_signals(
        [SessionEvent(*event) for event in events],
        list(cart),
        profile,
        ResolvedContext(device=device, country=country, local_hour=21, hour_bucket="evening"),
        known.get("visits"),
        known.get("segment"),
        known.get("intent"),
        known.get("shown", []),
        lambda ids: [PRICES[i] for i in ids],
        NOW,
        24.0,
    )


def returning(visits_since_purchase: int):
    from edge.schemas import Profile

    return Profile(
        [], [], [], 3, 1, NOW - 9e5, 10.0, 10.0, visits_since_purchase=visits_since_purchase
    )


def test_the_rules_see_what_the_visit_shows():
    from edge.schemas import Intent

    shown = visit(
        events=[
            ("view", "a", NOW - 1500, 12_000),
            ("view", "b", NOW - 1400, 40_000),
            ("add_to_cart", "a", NOW - 1200),
            ("add_to_cart", "c", NOW - 1020),
            ("remove_from_cart", "c", NOW - 960),  # the cart's last touch: 16 minutes ago
        ],
        visits=2,
        segment="bargain-hunter",
        intent=Intent(0.7, "high intent"),
    )
    assert shown.values == {
        "cart_idle_minutes": 16.0,
        "dwell_seconds": 40.0,
        "visits_without_purchase": 2.0,
        "cart_value": 12.5,
        "intent": 0.7,
        "local_hour": 21.0,
        "segment": "bargain-hunter",
        "intent_label": "high intent",
        "device": "mobile",
        "country": "de",
    }
    assert shown.cart == ["a"] and shown.dwelled_item == "b" and not shown.just_bought
    # A purchase empties the cart the events build and makes this a visit with a purchase.
    bought = visit(
        events=[("add_to_cart", "a"), ("purchase", "a"), ("add_to_cart", "b")],
        profile=returning(visits_since_purchase=5),
        visits=6,
        device="",
        country="",
    )
    assert bought.cart == ["b"] and bought.just_bought
    assert bought.values["visits_without_purchase"] == 1.0  # counted afresh from this one
    assert bought.values["cart_idle_minutes"] is None  # the events carry no times
    assert bought.values["device"] is None and bought.values["country"] is None
    # The profile's count, this visit included, when it is over the page's.
    counted = visit(profile=returning(visits_since_purchase=2), visits=1)
    assert counted.values["visits_without_purchase"] == 3.0
    assert counted.values["cart_value"] == 0.0 and counted.values["intent"] is None
    assert visit(cart=["a", "c", "a"]).values["cart_value"] == 111.5  # each item once
    # Taking out what was never put in is no error, and a page clock ahead of ours is idle 0.
    ahead = visit(events=[("remove_from_cart", "b"), ("add_to_cart", "a", NOW + 120)])
    assert ahead.cart == ["a"] and ahead.values["cart_idle_minutes"] == 0.0


def plan(*rules, **guardrails):
    from edge.rules import Guardrails, RulePlan

    book = msgspec.convert({"rules": list(rules)}, RuleBook)
    assert rule_book_errors(book) == []
    return RulePlan(msgspec.structs.replace(book, guardrails=Guardrails(**guardrails)))


def accessories_of(item: str, k: int) -> list[str]:
    return [f"{item}-goes-with-{i}" for i in range(k)]


def test_conditions_on_labels_pick_the_visitors_they_name():
    from edge.schemas import Intent

    rules = plan(
        {
            "name": "mobile-germany",
            "when": {"device": {"eq": "mobile"}, "country": {"in": ["de", "at"]}},
            "content": {"banner": "de-mobile"},
        },
        {
            "name": "not-bargains",
            "when": {"segment": {"not_in": ["bargain-hunter"]}},
            "content": {"banner": "new-in"},
        },
        {
            "name": "keen",
            "when": {"intent_label": {"eq": "high intent"}, "intent": {"ge": 0.5}},
            "content": {"banner": "free-shipping"},
        },
    )
    keen = Intent(0.7, "high intent")
    outcome = rules.evaluate(visit(segment="bargain-hunter", intent=keen), accessories_of)
    assert [(f.rule, f.content) for f in outcome.fired] == [
        ("mobile-germany", {"banner": "de-mobile"}),
        ("keen", {"banner": "free-shipping"}),
    ]
    assert "device 'mobile' == 'mobile', country 'de' in ['de', 'at']" == outcome.fired[0].why
    other = rules.evaluate(
        visit(country="fr", segment="loyal", intent=Intent(0.4, "high intent")), accessories_of
    )
    assert [f.rule for f in other.fired] == ["not-bargains"]
    unknown = rules.evaluate(visit(device="", country=""), accessories_of)
    assert unknown.fired == []  # nothing known: no condition holds, not even not_in


def test_accessories_go_with_the_last_cart_item_or_wait_for_a_dwelled_one():
    rules = plan(
        {
            "name": "dwelled",
            "when": {"cart_value": {"gt": 0}},
            "priority": 1,
            "accessories": {"of": "dwelled_item", "k": 2},
        },
        {
            "name": "carted",
            "when": {"cart_value": {"gt": 0}},
            "priority": 2,
            "accessories": {"of": "cart_item", "k": 2},
        },
        {
            "name": "carted-at-night",
            "when": {"local_hour": {"ge": 21}},
            "priority": 3,
            "accessories": {"of": "cart_item", "k": 2},
        },
    )
    outcome = rules.evaluate(visit(cart=["a", "b", "c"]), accessories_of)
    assert [(f.rule, f.why) for f in outcome.held_back] == [
        ("dwelled", "cart_value 151.5 > 0; held back: no dwelled item")
    ]
    carted = outcome.fired[0]  # the rule after one held back is still evaluated
    assert carted.rule == "carted" and carted.items == ["c-goes-with-0", "c-goes-with-1"]
    assert carted.why == "cart_value 151.5 > 0; accessories of c"
    empty = rules.evaluate(visit(), accessories_of)
    assert [(f.rule, f.why) for f in empty.held_back] == [
        ("carted-at-night", "local_hour 21 >= 21; held back: no cart item")
    ]
    # A rule set no rule belongs to (a variant's typo) holds every rule out, without an error.
    nothing = rules.evaluate(visit(cart=["a"]), accessories_of, "no-such-set")
    assert nothing.fired == [] and nothing.held_back == []


def test_only_offers_count_towards_the_offers_per_session():
    def offer(name, priority, with_cart_items=False):
        return {
            "name": name,
            "when": {"cart_value": {"gt": 0}},
            "priority": priority,
            "offer": {"discount_percent": 5, "code": name, "with_cart_items": with_cart_items},
        }

    banner = {"name": "banner", "when": {"cart_value": {"gt": 0}}, "content": {"b": "x"}}
    rules = plan(
        offer("first", 1, True),
        offer("second", 2),
        offer("third", 3),
        banner,
        max_offers_per_session=2,
    )
    # A banner shown before is not an offer: two offers may still show.
    outcome = rules.evaluate(visit(cart=["a"], shown=["banner"]), accessories_of)
    fired = {f.rule: f.items for f in outcome.fired}
    assert fired == {"first": ["a"], "second": []}  # the cart's items only where asked
    assert "2 offer(s) this session already" in {f.rule: f.why for f in outcome.held_back}["third"]
    assert "cap_per_session" in {f.rule: f.why for f in outcome.held_back}["banner"]
    after_one = rules.evaluate(visit(cart=["a"], shown=["first"]), accessories_of)
    assert [f.rule for f in after_one.fired if f.offer] == ["second"]


def test_a_rule_book_names_duplicates_bad_accessories_and_rules_without_conditions():
    book = msgspec.convert(
        {
            "rules": [
                {"name": "twin", "when": {"intent": {"gt": 0.5}}, "content": {"b": "1"}},
                {"name": "twin", "when": {"intent": {"gt": 0.6}}, "content": {"b": "2"}},
                {"name": "odd", "when": {"intent": {"gt": 0.5}}, "accessories": {"of": "page"}},
                {"name": "always", "when": {}, "content": {"b": "3"}},
                {
                    "name": "at-the-limit",
                    "when": {"intent": {"gt": 0.5}},
                    "offer": {"discount_percent": 30, "code": "MAX"},
                },
            ]
        },
        RuleBook,
    )
    assert rule_book_errors(book) == [
        "rule 'twin' is defined twice; rule names must be unique",
        "rule 'odd', accessories.of: 'page'; allowed: dwelled_item, cart_item",
        "rule 'always' has no conditions (when = {...})",
    ]  # 30% is the default guardrail's maximum itself: allowed
