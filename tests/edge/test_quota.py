"""Quotas on POST /v1/events: a token bucket per client counting events, 429 with Retry-After
past it, a bounded table of clients, and who a client is."""

import json

import pytest
from starlette.testclient import TestClient

from edge.app import create_app
from edge.config import Settings
from edge.errors import PayloadTooLarge, TooManyEvents
from edge.quota import EventQuota, client_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_client_gets_its_burst_then_its_rate_counting_events_not_requests():
    clock = Clock()
    quota = EventQuota(rate=10.0, burst=100, clock=clock)
    quota.charge("a", 60)
    quota.charge("a", 40)  # two requests, 100 events: the whole burst
    with pytest.raises(TooManyEvents) as refused:
        quota.charge("a", 5)
    assert refused.value.retry_after == 1  # 5 events at 10 a second
    assert "quota of 10 events a second (bursts of up to 100)" in refused.value.message
    quota.charge("b", 100)  # another client has its own bucket
    clock.now += 2.0  # 20 events back
    with pytest.raises(TooManyEvents) as refused:
        quota.charge("a", 50)
    assert refused.value.retry_after == 3  # 30 missing at 10 a second
    quota.charge("a", 20)  # a refused charge took nothing
    clock.now += 1_000.0
    quota.charge("a", 100)  # refilled, never past the burst
    with pytest.raises(TooManyEvents):
        quota.charge("a", 1)


def test_a_batch_larger_than_the_burst_is_refused_as_too_large_not_retried():
    with pytest.raises(PayloadTooLarge, match="at most 10 at once from one client"):
        EventQuota(rate=1.0, burst=10).charge("a", 11)


def test_the_table_of_clients_is_bounded_and_forgets_the_least_recently_seen():
    clock = Clock()
    quota = EventQuota(rate=1.0, burst=10, max_clients=3, clock=clock)
    for client in ("a", "b", "c"):
        quota.charge(client, 10)
    quota.charge("d", 1)  # "a", seen longest ago, is forgotten
    assert len(quota) == 3
    quota.charge("a", 10)  # back with a full bucket
    with pytest.raises(TooManyEvents):
        quota.charge("d", 10)  # remembered: 9 left


def test_the_client_is_the_gateways_header_only_when_trusted():
    headers = {"x-edgeperso-client": "203.0.113.7"}
    assert client_key(headers, ("10.0.0.1", 5000), trust_header=True) == "h:203.0.113.7"
    assert client_key(headers, ("10.0.0.1", 5000), trust_header=False) == "a:10.0.0.1"
    assert client_key({}, ("10.0.0.1", 5000), trust_header=True) == "a:10.0.0.1"
    assert client_key({"x-edgeperso-client": "x" * 999}, None, True) == "h:" + "x" * 256
    assert client_key({}, None, trust_header=False) == "a:unknown"


def test_quota_settings_are_read_and_checked():
    settings = Settings.from_env(
        {
            "EDGEPERSO_EVENTS_PER_SECOND": "0",
            "EDGEPERSO_EVENTS_BURST": "20",
            "EDGEPERSO_TRUST_CLIENT_HEADER": "true",
        }
    )
    assert (settings.events_per_second, settings.events_burst) == (0.0, 20)
    assert settings.trust_client_header
    defaults = Settings.from_env({})
    assert (defaults.events_per_second, defaults.events_burst) == (50.0, 1000)
    assert not defaults.trust_client_header
    with pytest.raises(ValueError, match="EDGEPERSO_EVENTS_BURST must be at least 1, got 0"):
        Settings.from_env({"EDGEPERSO_EVENTS_BURST": "0"})
    with pytest.raises(ValueError, match="EDGEPERSO_EVENTS_PER_SECOND must not be negative"):
        Settings.from_env({"EDGEPERSO_EVENTS_PER_SECOND": "-1"})


def batch(n: int) -> bytes:
    events = [{"type": "view", "item_id": "i00", "session_id": f"s{i}"} for i in range(n)]
    return json.dumps({"events": events}).encode()


def send(client, body: bytes, **headers: str):
    return client.post(
        "/v1/events", content=body, headers={"content-type": "application/json", **headers}
    )


@pytest.mark.parametrize("trusted", [True, False])
def test_the_endpoint_answers_429_with_retry_after_past_a_clients_quota(
    small_bundle_dir, tmp_path, trusted
):
    settings = Settings(
        bundle_dir=str(small_bundle_dir),
        events_dir=str(tmp_path / "events"),
        events_per_second=1.0,
        events_burst=10,
        trust_client_header=trusted,
        reload_seconds=0,
    )
    me, other = {"x-edgeperso-client": "198.51.100.1"}, {"x-edgeperso-client": "198.51.100.2"}
    with TestClient(create_app(settings)) as client:
        assert send(client, batch(6), **me).status_code == 200
        refused = send(client, batch(6), **me)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "2"  # 2 events short, at 1 a second
        error = refused.json()["error"]
        assert (
            error["code"] == "too_many_events" and "quota of 1 events a second" in error["message"]
        )
        # Behind the gateway, another visitor's header is another client; untrusted, the
        # header is the client's own word and both are the same socket peer.
        assert send(client, batch(5), **other).status_code == (200 if trusted else 429)
        garbage = send(client, b"{", **me)  # a body that does not parse costs an event too
        assert garbage.status_code in (400, 429)
        too_big = send(client, batch(11), **{"x-edgeperso-client": "198.51.100.3"})
        assert too_big.status_code == 413 and too_big.json()["error"]["field"] == "$.events"
    written = sum(len(p.read_text().splitlines()) for p in (tmp_path / "events").glob("*.jsonl"))
    assert written == (11 if trusted else 6)  # refused batches left nothing behind


def test_quotas_off_take_any_rate(small_bundle_dir, tmp_path):
    settings = Settings(
        bundle_dir=str(small_bundle_dir),
        events_dir=str(tmp_path / "events"),
        events_per_second=0.0,
        events_burst=5,
        reload_seconds=0,
    )
    with TestClient(create_app(settings)) as client:
        assert client.app.state.quota is None
        assert all(send(client, batch(50)).status_code == 200 for _ in range(5))
