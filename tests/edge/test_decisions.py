"""Decision ids: feedback teaches a bandit only about a choice this edge made, for the visitor
it made it for, once; anything else is stored and teaches nothing."""

import base64
import json
import os
import time

import msgspec
import numpy as np
import pytest
from starlette.testclient import TestClient

from edge.app import create_app
from edge.bandits import Bandit
from edge.config import Settings
from edge.decisions import (
    MAX_TOKEN_CHARS,
    DecisionSigner,
    FeedbackGate,
    names,
    parse_key,
)
from edge.schemas import (
    FeedbackEvent,
    RecommendRequest,
    RecommendResponse,
    ResolvedContext,
    SlotChoice,
)
from tests.edge.small_bundle import write_small_bundle

KEY = bytes(range(32))
SLOT, OTHER_SLOT = "home-banner", "footer"


def bandit(slot: str) -> Bandit:
    """Three arms; "spenders" (u-regular's segment) has a posterior of its own."""
    return msgspec.convert(
        {
            "slot": slot,
            "arms": [{"name": f"b{i}", "content": {"banner": f"b{i}"}} for i in range(3)],
            "priors": {s: [(1.0, 1.0)] * 3 for s in ("spenders", "")},
        },
        Bandit,
    )


def answer(slots: dict[str, str], segment: str | None = None) -> RecommendResponse:
    context = ResolvedContext("", "", 0, "night")
    choices = {slot: SlotChoice(arm, {}, 0.5) for slot, arm in slots.items()}
    return RecommendResponse([], "build-1", None, False, context, 0.1, segment, slots=choices)


def event(decision_id: str | None, **fields) -> FeedbackEvent:
    given = {"type": "click", "item_id": "-", "slot": SLOT, "variant": "b1", "session_id": "s1"}
    return msgspec.convert({**given, **fields, "decision_id": decision_id}, FeedbackEvent)


def test_a_key_is_read_as_hex_or_base64_and_a_short_or_garbled_one_is_refused():
    assert parse_key(KEY.hex()) == KEY
    assert parse_key(base64.b64encode(KEY).decode()) == KEY
    assert parse_key(base64.urlsafe_b64encode(KEY).decode().rstrip("=")) == KEY
    with pytest.raises(ValueError, match="has 8 bytes; it needs at least 16"):
        parse_key("00" * 8)
    with pytest.raises(ValueError, match="neither hex nor base64"):
        parse_key("not a key!")
    env = {"EDGEPERSO_DECISION_KEY": KEY.hex(), "EDGEPERSO_DECISION_TTL_SECONDS": "60"}
    settings = Settings.from_env(env)
    assert settings.decision_key == KEY and settings.decision_ttl_seconds == 60.0
    assert KEY.hex() not in repr(settings)  # a key never reaches a log line through repr
    with pytest.raises(ValueError, match="EDGEPERSO_DECISION_KEY has 1 bytes") as info:
        Settings.from_env({"EDGEPERSO_DECISION_KEY": "ab"})
    assert "'ab'" not in str(info.value)  # the value itself is not echoed


def test_a_decision_verifies_only_with_its_key_unaltered_and_within_its_ttl():
    signer = DecisionSigner(KEY, ttl_s=3600)
    now = 1_800_000_000.0
    token = signer.issue(RecommendRequest(session_id="s1"), answer({SLOT: "b1"}, "spenders"), now)
    decision, outcome = signer.verify(token, now + 10)
    assert outcome == "ok" and decision is not None
    assert decision.issued == int(now) and decision.build == "build-1"
    assert decision.segment == "spenders"
    assert names(decision, SLOT, "b1")
    assert not names(decision, SLOT, "b0") and not names(decision, OTHER_SLOT, "b1")
    assert DecisionSigner(bytes(32)).verify(token, now)[1] == "forged"
    payload, mac = token.split(".")
    altered = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    assert signer.verify(f"{altered}.{mac}", now)[1] == "forged"
    assert signer.verify(payload, now)[1] == "malformed"
    assert signer.verify("%%%.%%%", now)[1] == "malformed"
    assert signer.verify(token, now + 3601)[1] == "expired"
    assert signer.verify(token, now - 3600)[1] == "expired"  # from far in this clock's future
    # Two answers in the same second with the same choices are still two decisions.
    twin = signer.issue(RecommendRequest(session_id="s1"), answer({SLOT: "b1"}, "spenders"), now)
    assert twin != token


@pytest.mark.parametrize("key", [KEY, bytes(range(100))])  # a key longer than a block too
def test_the_mac_is_hmac_sha256_truncated_to_16_bytes(key):
    import hashlib
    import hmac

    token = DecisionSigner(key).issue(RecommendRequest(), answer({SLOT: "b1"}), time.time())
    payload, mac = (base64.urlsafe_b64decode(part + "==") for part in token.split("."))
    assert mac == hmac.new(key, payload, hashlib.sha256).digest()[:16]


def test_a_decision_is_bound_to_the_user_else_the_session_it_was_issued_to():
    signer, now = DecisionSigner(KEY), time.time()
    for_user = signer.issue(RecommendRequest(user_id="u1", session_id="s1"), answer({}), now)
    decision = signer.verify(for_user, now)[0]
    assert decision is not None
    assert signer.issued_to(decision, event(for_user, user_id="u1", session_id=None))
    assert not signer.issued_to(decision, event(for_user, user_id="u2", session_id="s1"))
    for_session = signer.issue(RecommendRequest(session_id="s1"), answer({}), now)
    decision = signer.verify(for_session, now)[0]
    assert decision is not None
    assert signer.issued_to(decision, event(for_session, session_id="s1", user_id="u9"))
    assert not signer.issued_to(decision, event(for_session, session_id="s2"))
    anonymous = signer.verify(signer.issue(RecommendRequest(), answer({}), now), now)[0]
    assert anonymous is not None and signer.issued_to(anonymous, event(None, session_id="s7"))


def test_the_longest_decision_fits_the_feedback_schema():
    slots = {"s" * 60 + f"{i:04d}": "a" * 64 for i in range(20)}  # the request's limits
    response = answer(slots, segment="é" * 64)  # 128 bytes of UTF-8: the longest kept
    response = msgspec.structs.replace(response, bundle="\U0001f600" * 500)  # 4 bytes each
    request = RecommendRequest(user_id="u" * 128, session_id="s" * 128)
    signer = DecisionSigner(KEY)
    token = signer.issue(request, response, time.time())
    assert len(token) <= MAX_TOKEN_CHARS
    assert event(token).decision_id == token  # the schema takes it
    decision = signer.verify(token, time.time())[0]
    assert decision is not None and decision.segment == "é" * 64
    longer = msgspec.structs.replace(response, segment="é" * 65)
    assert signer.verify(signer.issue(request, longer, time.time()), time.time())[0].segment == ""


def test_the_gate_counts_each_decision_slot_and_type_once_and_stays_bounded():
    signer, now = DecisionSigner(KEY, ttl_s=100), 1_800_000_000.0
    gate = FeedbackGate(signer, capacity=3)
    tokens = [signer.issue(RecommendRequest(), answer({SLOT: "b1"}), now) for _ in range(4)]
    assert gate.admit(event(tokens[0]), now) is not None
    assert gate.admit(event(tokens[0]), now) is None  # the same click again
    assert gate.admit(event(tokens[0], type="impression"), now) is not None  # another type
    assert gate.outcomes == {"ok": 2, "replayed": 1}
    for token in tokens[1:]:
        assert gate.admit(event(token), now) is not None
    assert len(gate) == 3  # the oldest went first
    # Past its decision's life an entry is forgotten, and the decision refused as expired.
    assert gate.admit(event(tokens[1]), now + 101) is None
    assert gate.outcomes["expired"] == 1


# ---------------------------------------------------------------- through the app
@pytest.fixture(scope="module")
def bandit_bundle(tmp_path_factory):
    directory = tmp_path_factory.mktemp("decisions") / "bundle"
    return write_small_bundle(directory, bandits=[bandit(SLOT), bandit(OTHER_SLOT)])


@pytest.fixture
def app_client(bandit_bundle, tmp_path):
    settings = Settings(
        bundle_dir=str(bandit_bundle),
        events_dir=str(tmp_path / "events"),
        reload_seconds=0,
        decision_key=KEY,
        decision_ttl_seconds=3600,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def ask(client, **body) -> dict:
    response = client.post("/v1/recommend", content=json.dumps(body).encode(), headers=JSON)
    assert response.status_code == 200, response.text
    return response.json()


def report(client, *events: dict) -> None:
    body = json.dumps({"events": list(events)}).encode()
    response = client.post("/v1/events", content=body, headers=JSON)
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": len(events)}


JSON = {"content-type": "application/json"}


def learned(client) -> dict:
    """What the node's policy has counted so far, per (slot, segment)."""
    return {key: seen.tolist() for key, seen in client.app.state.recommender.bandits.seen.items()}


def shown(decision: dict, **fields) -> dict:
    """An impression of what `decision` (an answer) chose for SLOT, by u-regular."""
    arm = decision["slots"][SLOT]["arm"]
    base = {"type": "impression", "item_id": "-", "user_id": "u-regular", "slot": SLOT}
    return {**base, "variant": arm, "decision_id": decision["decision_id"], **fields}


def test_every_answer_carries_a_decision_id_naming_its_choices(app_client):
    plain = ask(app_client, k=2)
    assert plain["decision_id"] and plain["slots"] == {}
    decision = ask(app_client, user_id="u-regular", slots=[SLOT], k=2)
    verified, outcome = DecisionSigner(KEY).verify(decision["decision_id"], time.time())
    assert outcome == "ok" and verified is not None
    assert names(verified, SLOT, decision["slots"][SLOT]["arm"])
    assert verified.segment == decision["segment"] == "spenders"


def test_a_genuine_impression_and_click_move_the_posterior_once(app_client):
    decision = ask(app_client, user_id="u-regular", slots=[SLOT])
    arm = int(decision["slots"][SLOT]["arm"][1:])
    policy = app_client.app.state.recommender.bandits
    before = policy.posterior(SLOT, "spenders")
    report(app_client, shown(decision), shown(decision, type="click"))
    expected = np.zeros((3, 2))
    expected[arm] = [1.0, 1.0]  # one impression, one click, of the arm shown
    assert learned(app_client) == {(SLOT, "spenders"): expected.tolist()}
    after = policy.posterior(SLOT, "spenders")
    assert after[arm].tolist() == [before[arm, 0] + 1.0, before[arm, 1]]  # alpha +1, beta +0
    report(app_client, shown(decision), shown(decision, type="click"))  # replayed
    assert learned(app_client) == {(SLOT, "spenders"): expected.tolist()}


def forged(decision: dict) -> dict:
    other = DecisionSigner(bytes(32)).issue(
        RecommendRequest(user_id="u-regular"),
        answer({SLOT: decision["slots"][SLOT]["arm"]}, "spenders"),
        time.time(),
    )
    return shown(decision, decision_id=other)


def altered(decision: dict) -> dict:
    payload, mac = decision["decision_id"].split(".")
    flipped = mac[:3] + ("A" if mac[3] != "A" else "B") + mac[4:]
    return shown(decision, decision_id=f"{payload}.{flipped}")


def expired(decision: dict) -> dict:
    old = DecisionSigner(KEY).issue(
        RecommendRequest(user_id="u-regular"),
        answer({SLOT: decision["slots"][SLOT]["arm"]}, "spenders"),
        time.time() - 3601,
    )
    return shown(decision, decision_id=old)


def wrong_arm(decision: dict) -> dict:
    arm = decision["slots"][SLOT]["arm"]
    return shown(decision, variant=next(f"b{i}" for i in range(3) if f"b{i}" != arm))


FORGERIES = {
    "no decision id": lambda d: {k: v for k, v in shown(d).items() if k != "decision_id"},
    "forged with another key": forged,
    "altered": altered,
    "expired": expired,
    "another slot": lambda d: shown(d, slot=OTHER_SLOT),
    "another arm": wrong_arm,
    "another user": lambda d: shown(d, user_id="u-loyal"),
}


@pytest.mark.parametrize("kind", FORGERIES)
def test_feedback_that_does_not_match_a_decision_is_stored_but_teaches_nothing(
    app_client, kind, tmp_path
):
    decision = ask(app_client, user_id="u-regular", slots=[SLOT])
    bad = FORGERIES[kind](decision)
    report(app_client, bad, {**bad, "type": "click"})
    assert learned(app_client) == {}
    log = app_client.app.state.event_log
    [segment] = log.root.glob("*.jsonl.open")
    assert len(segment.read_text().splitlines()) == 2  # the shop's data all the same
    assert app_client.app.state.feedback_gate.outcomes["ok"] == 0


def test_nodes_sharing_a_key_verify_each_others_decisions(bandit_bundle, tmp_path):
    def node(key: bytes) -> TestClient:
        settings = Settings(bundle_dir=str(bandit_bundle), reload_seconds=0, decision_key=key)
        return TestClient(create_app(settings))

    with node(KEY) as one, node(KEY) as two, node(os.urandom(32)) as stranger:
        decision = ask(one, user_id="u-regular", slots=[SLOT])
        gate_two = two.app.state.feedback_gate
        event = msgspec.convert(shown(decision, type="click"), FeedbackEvent)
        assert gate_two.admit(event, time.time()) is not None
        assert stranger.app.state.feedback_gate.admit(event, time.time()) is None


def test_serve_gives_every_worker_the_same_generated_key_unless_one_is_set(
    small_bundle_dir, monkeypatch
):
    import uvicorn

    from edge.cli import main

    monkeypatch.setattr(uvicorn, "run", lambda app, **options: None)
    monkeypatch.setenv("EDGEPERSO_DECISION_KEY", "")
    args = ["serve", "--bundle", str(small_bundle_dir), "--workers", "2"]
    assert main(args) == 0
    generated = os.environ["EDGEPERSO_DECISION_KEY"]  # workers inherit the environment
    assert len(bytes.fromhex(generated)) == 32
    assert Settings.from_env().decision_key == bytes.fromhex(generated)
    monkeypatch.setenv("EDGEPERSO_DECISION_KEY", KEY.hex())
    assert main(args) == 0
    assert os.environ["EDGEPERSO_DECISION_KEY"] == KEY.hex()  # a key that is set is kept
