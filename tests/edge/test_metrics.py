"""GET /metrics: what a node did, in Prometheus's text format, with labels from small fixed
sets, and correct summed over `serve --workers N`."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from edge.app import create_app
from edge.config import Settings
from tests.servers import free_port, wait_for

JSON = {"content-type": "application/json"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def client(small_bundle_dir, tmp_path):
    settings = Settings(
        bundle_dir=str(small_bundle_dir),
        events_dir=str(tmp_path / "events"),
        reload_seconds=0,
        events_per_second=0.0,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_requests_answers_feedback_and_the_bundle_are_counted(client):
    before = client.get("/metrics").text
    assert client.post("/v1/recommend", json={"k": 3, "user_id": "u-loyal"}).status_code == 200
    assert client.post("/v1/recommend", json={"k": 0}).status_code == 422
    event = {"type": "view", "item_id": "i00", "session_id": "s"}
    assert client.post("/v1/events", json={"events": [event, event]}).status_code == 200
    assert client.post("/v1/events", content=b"{", headers=JSON).status_code == 400
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    after = response.text

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("edgeperso_requests_total", route="/v1/recommend", status="200") == 1
    assert grew("edgeperso_requests_total", route="/v1/recommend", status="422") == 1
    assert grew("edgeperso_requests_total", route="/v1/events", status="400") == 1
    assert grew("edgeperso_answer_seconds_count", route="/v1/recommend") == 2
    assert grew("edgeperso_feedback_events_total", outcome="accepted") == 2
    assert grew("edgeperso_feedback_events_total", outcome="refused") == 1
    assert grew("edgeperso_personalized_answers_total") == 1
    build = json.loads(client.get("/readyz").text)["bundle"]
    assert value(after, "edgeperso_bundle_info", build_id=build) == 1
    assert value(after, "edgeperso_bundle_built_timestamp_seconds") > 1.7e9


def test_a_path_a_client_makes_up_is_one_label_not_a_new_series(client):
    for n in range(5):
        assert client.get(f"/v1/items/{n}-{'x' * n}").status_code == 404
    text = client.get("/metrics").text
    routes = {
        dict(labels)["route"]
        for (name, labels) in samples(text)
        if name == "edgeperso_requests_total"
    }
    assert routes <= {
        "/v1/recommend",
        "/v1/events",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "other",
    }
    assert value(text, "edgeperso_requests_total", route="other", status="404") >= 5


def test_fallbacks_are_counted_by_their_reason_code(small_bundle_dir, tmp_path):
    settings = Settings(bundle_dir=str(tmp_path / "missing"), reload_seconds=0)
    with TestClient(create_app(settings)) as fallback_only:
        before = fallback_only.get("/metrics").text
        assert fallback_only.post("/v1/recommend", json={"k": 3}).json()["fallback"]
        after = fallback_only.get("/metrics").text
    reason = "bundle_unavailable"
    assert (
        value(after, "edgeperso_fallbacks_total", reason=reason)
        - value(before, "edgeperso_fallbacks_total", reason=reason)
        == 1
    )


@pytest.mark.slow
def test_with_two_workers_any_worker_answers_for_both(small_bundle_dir, tmp_path):
    port = free_port()
    command = [sys.executable, "-m", "edge", "serve", "--bundle", str(small_bundle_dir)]
    command += ["--port", str(port), "--workers", "2", "--log-level", "warning"]
    server = subprocess.Popen(command)
    try:
        wait_for(port, "/readyz", server, seconds=60)
        for _ in range(60):  # a new connection each: both workers take some
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("POST", "/v1/recommend", body=b'{"k": 2}', headers=JSON)
            assert connection.getresponse().status == 200
            connection.close()
        scraped = set()
        for _ in range(10):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", "/metrics")
            text = connection.getresponse().read().decode()
            connection.close()
            scraped.add(
                value(text, "edgeperso_requests_total", route="/v1/recommend", status="200")
            )
        assert scraped == {60.0}  # whichever worker answered the scrape
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def test_metrics_can_be_turned_off(small_bundle_dir):
    settings = Settings(bundle_dir=str(small_bundle_dir), reload_seconds=0, metrics=False)
    with TestClient(create_app(settings)) as off:
        assert off.post("/v1/recommend", json={"k": 3}).status_code == 200
        assert off.get("/metrics").status_code == 404
    assert Settings.from_env({"EDGEPERSO_METRICS": "0"}).metrics is False
