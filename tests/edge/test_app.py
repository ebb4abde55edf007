import json
import random
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from edge.app import create_app
from edge.config import Settings
from tests.edge import small_bundle as shop

# The answer's fields, shared with the gateway Worker's fallback answers (worker/test/).
RESPONSE_FIELDS = json.loads(
    (Path(__file__).parent.parent / "cases" / "recommend_response.json").read_text()
)["fields"]


def test_the_shared_response_fields_are_the_apps():
    from edge.schemas import RecommendResponse

    assert RESPONSE_FIELDS == list(RecommendResponse.__struct_fields__)


@pytest.fixture(scope="module")
def client(small_bundle_dir):
    app = create_app(Settings(bundle_dir=str(small_bundle_dir), max_body_bytes=32 * 1024))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def post(client, body, content_type="application/json"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/v1/recommend", content=data, headers={"content-type": content_type})


def test_health_and_readiness(client, small_bundle):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["bundle"] == small_bundle.build_id


def test_a_valid_request_answers_with_the_documented_shape(client):
    response = post(client, {"k": 3, "context": {"device": "mobile", "local_hour": 9}})
    assert response.status_code == 200
    body = response.json()
    assert list(body) == RESPONSE_FIELDS
    assert body["variants"] == {} and body["content"] == {}  # this bundle runs no experiment
    assert body["segment"] == shop.segment_of(0.0)  # a cold visitor: the graph's cluster
    assert body["intent"]["probability"] == pytest.approx(shop.intent_probability(0, 0), abs=1e-4)
    assert body["intent"]["label"] == "browsing"
    assert len(body["items"]) == 3 and set(body["items"][0]) == {"item_id", "score"}
    assert body["context"]["hour_bucket"] == "morning"


def test_cdn_headers_fill_the_context(client):
    response = client.post(
        "/v1/recommend",
        content=b"{}",
        headers={
            "content-type": "application/json",
            "cf-ipcountry": "PL",
            "user-agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Mobile",
        },
    )
    context = response.json()["context"]
    assert context["country"] == "pl" and context["device"] == "mobile"


@pytest.mark.parametrize(
    "body,status,field,needle",
    [
        (b'{"k": 3', 400, "$", "not valid JSON"),
        ({"k": "ten"}, 422, "$.k", "Expected `int`"),
        ({"k": -1}, 422, "$.k", ">= 1"),
        ({"k": 0}, 422, "$.k", ">= 1"),
        ({"k": 10_000}, 422, "$.k", "<= 100"),
        ({"colour": "red"}, 422, "$", "unknown field `colour`"),
        ({"context": {"local_hour": 24}}, 422, "$.context.local_hour", "<= 23"),
        ({"context": {"cart": "abc"}}, 422, "$.context.cart", "Expected `array`"),
        ({"exclude": [str(i) for i in range(1001)]}, 422, "$.exclude", "length <= 1000"),
        (
            {"session": {"events": [{"item_id": "x"}]}},
            422,
            "$.session.events[0]",
            "missing required field `type`",
        ),
        (
            {"session": {"events": [{"type": "fly", "item_id": "x"}]}},
            422,
            "$.session.events[0].type",
            "not one this bundle knows",
        ),
        ({"user_id": ""}, 422, "$.user_id", "length >= 1"),
        ({"fields": ["weight"]}, 422, "$.fields[0]", "allowed: title, price, category, brand"),
        ([1, 2], 422, "$", "Expected `object`"),
    ],
)
def test_bad_input_gets_a_4xx_naming_the_field(client, body, status, field, needle):
    response = post(client, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["field"] == field and needle in error["message"], error


def test_wrong_content_type_is_415(client):
    response = post(client, {"k": 1}, content_type="text/plain")
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]["message"]


def test_a_body_over_the_limit_is_413(client):
    response = post(client, {"exclude": ["x" * 100] * 400})
    assert response.status_code == 413 and "limit" in response.json()["error"]["message"]


def test_wrong_method_and_path_answer_json(client):
    assert client.get("/v1/recommend").status_code == 405
    missing = client.get("/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "http_error"


def test_random_garbage_never_gets_a_5xx(client, seed):
    rng = random.Random(seed)
    fragments = [
        b"{",
        b"}",
        b"[",
        b"]",
        b'"k"',
        b":",
        b",",
        b"-1",
        b"1e999",
        b"null",
        b'"\\u0000"',
        b'"session"',
        b'"events"',
        b'"user_id"',
        b"true",
        b"\xff",
        b'"exclude"',
    ]
    for _ in range(300):
        body = b"".join(rng.choice(fragments) for _ in range(rng.randint(0, 12)))
        response = post(client, body)
        assert response.status_code < 500, (body, response.text)
        assert "Traceback" not in response.text


def test_a_refused_bundle_keeps_the_service_answering(tmp_path):
    (tmp_path / "manifest.json").write_text('{"format_version": 99}')
    app = create_app(Settings(bundle_dir=str(tmp_path)))
    with TestClient(app) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "format_version 99" in ready.json()["reason"]
        answer = post(client, {"k": 3})
        assert answer.status_code == 200
        assert answer.json()["fallback"].startswith("bundle_unavailable")


def test_a_new_bundle_is_picked_up_and_a_bad_one_refused_while_the_old_serves(
    small_bundle_dir, tmp_path
):
    import shutil
    import time

    live = tmp_path / "live"
    shutil.copytree(small_bundle_dir, live)
    app = create_app(Settings(bundle_dir=str(live), reload_seconds=0.02))

    def wait_for(predicate, client):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            body = client.get("/readyz").json()
            if predicate(body):
                return body
            time.sleep(0.02)
        raise AssertionError(f"timed out; last /readyz: {body}")

    with TestClient(app) as client:
        old = client.get("/readyz").json()["bundle"]
        broken = tmp_path / "broken"
        shutil.copytree(small_bundle_dir, broken)
        (broken / "items.msgpack").write_bytes(b"tampered")
        manifest = json.loads((broken / "manifest.json").read_text())
        manifest["build_id"] = "broken-build"
        (broken / "manifest.json").write_text(json.dumps(manifest))
        shutil.rmtree(live)
        broken.rename(live)
        body = wait_for(lambda b: "reload_error" in b, client)
        assert body["bundle"] == old and "items.msgpack has 8 bytes" in body["reload_error"]
        assert post(client, {"k": 2}).json()["bundle"] == old

        fresh = tmp_path / "fresh"
        shutil.copytree(small_bundle_dir, fresh)
        manifest = json.loads((fresh / "manifest.json").read_text())
        manifest["build_id"] = "next-build"
        (fresh / "manifest.json").write_text(json.dumps(manifest))
        shutil.rmtree(live)
        fresh.rename(live)
        body = wait_for(lambda b: b["bundle"] == "next-build", client)
        assert "reload_error" not in body
        assert post(client, {"k": 2}).json()["bundle"] == "next-build"


def test_a_refused_bundle_still_serves_its_verified_fallback_content(small_bundle_dir, tmp_path):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(small_bundle_dir, copy)
    (copy / "embeddings.msgpack").write_bytes(b"corrupted")
    app = create_app(Settings(bundle_dir=str(copy), reload_seconds=0))
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 503
        body = post(client, {"k": 4, "exclude": []}).json()
        assert body["fallback"].startswith("bundle_unavailable: bundle refused: embeddings")
        assert len(body["items"]) == 4
    (copy / "fallback.json").write_text('{"contexts": {"all": [["forged", 1.0]]}}')
    with TestClient(create_app(Settings(bundle_dir=str(copy), reload_seconds=0))) as client:
        assert post(client, {"k": 4}).json()["items"] == []  # unverified content is not served


def send_events(client, body, headers=None):
    data = json.dumps(body).encode()
    return client.post(
        "/v1/events", content=data, headers={"content-type": "application/json", **(headers or {})}
    )


def test_feedback_is_stored_before_it_is_acknowledged(small_bundle_dir, tmp_path, small_bundle):
    events_dir = tmp_path / "events"
    app = create_app(Settings(bundle_dir=str(small_bundle_dir), events_dir=str(events_dir)))
    item = small_bundle.fallback["all"][0][0]
    with TestClient(app, raise_server_exceptions=False) as client:
        shown = {"type": "impression", "item_id": item, "session_id": "s1", "slot": "home"}
        response = send_events(
            client,
            {"events": [shown, {**shown, "type": "click"}]},
            {"cf-ipcountry": "DE", "user-agent": "Mozilla/5.0 (iPhone)"},
        )
        assert response.status_code == 200 and response.json() == {"accepted": 2}
        [open_segment] = events_dir.glob("*.jsonl.open")
        assert open_segment.read_text().count("\n") == 2  # fsynced before the answer
        bad = send_events(client, {"events": [{**shown, "type": "like"}]})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "$.events[0].type"
        assert "allowed" in bad.json()["error"]["message"]
    [segment] = events_dir.glob("*.jsonl")  # closed at shutdown
    records = [json.loads(line) for line in segment.read_text().splitlines()]
    assert [r["type"] for r in records] == ["impression", "click"]
    assert records[0]["country"] == "de" and records[0]["device"] == "mobile"
    assert records[0]["bundle"] == small_bundle.build_id


def test_without_an_event_log_feedback_is_refused_saying_how_to_get_one(client):
    response = send_events(client, {"events": [{"type": "click", "item_id": "a", "user_id": "u"}]})
    assert response.status_code == 503
    assert "EDGEPERSO_EVENTS_DIR" in response.json()["error"]["message"]
