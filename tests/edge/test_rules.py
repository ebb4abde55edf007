"""The three default rules and the guardrails, driven through POST /v1/recommend."""

import json
import time
from datetime import UTC, datetime

import msgspec
import pytest
from starlette.testclient import TestClient

from edge.app import create_app
from edge.config import Settings
from edge.rules import DEFAULT_RULES, RuleBook, epoch_of, rule_book_errors


@pytest.fixture(scope="module")
def client(bundle_dir):
    with TestClient(create_app(Settings(bundle_dir=str(bundle_dir)))) as client:
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
def items(bundle):
    return [item for item, _ in bundle.fallback["all"][:6]]


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


def test_a_product_viewed_over_30_seconds_brings_its_accessories(client, bundle, items):
    long_look = {
        "events": [
            {"type": "view", "item_id": items[1], "dwell_ms": 45_000},
            {"type": "view", "item_id": items[2], "dwell_ms": 5_000},
        ]
    }
    rule = fired(ask(client, {"session": long_look}))["long-dwell"]
    assert rule["why"].startswith("dwell_seconds 45 > 30") and items[1] in rule["why"]
    assert 1 <= len(rule["items"]) <= 4 and items[1] not in rule["items"]
    stock = bundle.model.items.in_stock
    assert all(stock[bundle.model.items.positions(rule["items"])])
    glance = {"events": [{"type": "view", "item_id": items[1], "dwell_ms": 12_000}]}
    assert "long-dwell" not in fired(ask(client, {"session": glance}))


def test_a_third_visit_without_a_purchase_brings_the_loyalty_discount(client, bundle):
    assert fired(ask(client, {"context": {"visits": 3}}))["loyalty"]["offer"]["code"] == (
        "WELCOMEBACK5"
    )
    assert "loyalty" not in fired(ask(client, {"context": {"visits": 2}}))
    profiles = bundle.profiles.as_dict()
    regular = next(u for u, p in profiles.items() if p.visits_since_purchase >= 2)
    answer = ask(client, {"user_id": regular})
    assert "visits_without_purchase" in fired(answer)["loyalty"]["why"]


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
    assert "rule 'y', when.intent.above: unknown operator; allowed: gt, ge" in errors[1]
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


def test_an_experiment_variant_switches_the_rule_set(bundle, items):
    import dataclasses

    from edge.experiments import Experiment
    from edge.recommend import Recommender
    from edge.rules import Rule
    from edge.schemas import RecommendRequest, Session, SessionEvent

    night = Rule(
        name="night-owl", when={"local_hour": {"ge": 0}}, content={"banner": "moon"}, sets=["night"]
    )
    book = msgspec.structs.replace(bundle.rules, rules=[*bundle.rules.rules, night])
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
    plain = Recommender(dataclasses.replace(bundle, rules=book)).recommend(request)
    assert [r.rule for r in plain.rules_fired] == ["long-dwell"]  # default set: not night-owl
    held_out = Recommender(dataclasses.replace(bundle, rules=book, experiments=(test,)))
    answer = held_out.recommend(request)
    assert answer.variants == {"offers": "off"} and answer.rules_fired == []
    night_test = msgspec.structs.replace(
        test, variants=[msgspec.structs.replace(test.variants[0], rules="night"), test.variants[1]]
    )
    night_answer = Recommender(
        dataclasses.replace(bundle, rules=book, experiments=(night_test,))
    ).recommend(request)
    assert [r.rule for r in night_answer.rules_fired] == ["night-owl"]
