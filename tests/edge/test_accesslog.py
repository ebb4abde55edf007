"""The access log: a line per request with a request id, visitors only as pseudonyms, never
an address, a body or a raw id."""

from __future__ import annotations

import logging

import pytest
from starlette.testclient import TestClient

from edge.accesslog import pseudonym
from edge.app import create_app
from edge.config import Settings

SALT = bytes(range(32))


@pytest.fixture
def client(small_bundle_dir, tmp_path):
    settings = Settings(
        bundle_dir=str(small_bundle_dir),
        events_dir=str(tmp_path / "events"),
        reload_seconds=0,
        events_per_second=0.0,
        log_salt=SALT,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def access_lines(caplog) -> list[dict]:
    return [r.fields for r in caplog.records if r.name == "edgeperso.access"]


def test_a_recommendation_is_one_line_with_pseudonyms_and_no_raw_ids(client, caplog):
    caplog.set_level(logging.INFO, logger="edgeperso.access")
    body = {"k": 2, "user_id": "u-loyal", "session_id": "visit-42"}
    response = client.post("/v1/recommend", json=body)
    (line,) = access_lines(caplog)
    assert response.headers["x-request-id"] == line["request_id"]
    assert line["route"] == "/v1/recommend" and line["status"] == 200 and line["items"] == 2
    assert line["user"] == pseudonym(SALT, "u-loyal") != "u-loyal"
    assert line["session"] == pseudonym(SALT, "visit-42")
    text = repr(caplog.records[-1].__dict__)
    for secret in ("u-loyal", "visit-42", "testclient", "127.0.0.1"):
        assert secret not in text


def test_cloudflares_ray_is_the_request_id_when_it_is_well_formed(client, caplog):
    caplog.set_level(logging.INFO, logger="edgeperso.access")
    ray = "8c0f1a2b3c4d5e6f-FRA"
    assert client.get("/healthz", headers={"cf-ray": ray}).headers["x-request-id"] == ray
    made = client.get("/healthz", headers={"cf-ray": "x\\n{evil}"}).headers["x-request-id"]
    assert made != "x\\n{evil}" and len(made) == 16
    assert [line["request_id"] for line in access_lines(caplog)] == [ray, made]


def test_refusals_and_made_up_paths_are_logged_by_route(client, caplog):
    caplog.set_level(logging.INFO, logger="edgeperso.access")
    client.post("/v1/recommend", json={"k": 0})
    client.get("/v1/secret-admin-page?token=abc")
    lines = access_lines(caplog)
    assert [(line["route"], line["status"]) for line in lines] == [
        ("/v1/recommend", 422),
        ("other", 404),
    ]
    assert "token" not in repr(lines) and "secret-admin" not in repr(lines)


def test_the_access_log_can_be_turned_off(small_bundle_dir, caplog):
    caplog.set_level(logging.INFO, logger="edgeperso.access")
    settings = Settings(bundle_dir=str(small_bundle_dir), reload_seconds=0, access_log=False)
    with TestClient(create_app(settings)) as quiet:
        response = quiet.get("/healthz")
    assert "x-request-id" not in response.headers and access_lines(caplog) == []


def test_a_salt_that_is_not_hex_is_refused_without_repeating_it():
    with pytest.raises(ValueError, match="EDGEPERSO_LOG_SALT must be hex") as refused:
        Settings.from_env({"EDGEPERSO_LOG_SALT": "not-a-secret-salt"})
    assert "not-a-secret" not in str(refused.value)


def test_the_gateways_request_id_comes_first(client, caplog):
    caplog.set_level(logging.INFO, logger="edgeperso.access")
    ray, other = "8c0f1a2b3c4d5e6f-FRA", "0123456789abcdef"
    headers = {"x-edgeperso-request-id": ray, "cf-ray": other}
    assert client.get("/healthz", headers=headers).headers["x-request-id"] == ray


def test_buffered_lines_are_json_written_together_and_all_at_flush(tmp_path):
    import json
    import os

    from edge.accesslog import BufferedLines

    path = tmp_path / "stderr"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        lines = BufferedLines(fd)
        for n in range(3):
            lines({"request_id": str(n), "status": 200})
        assert path.read_bytes() == b""  # not on the request's path
        lines.flush()
    finally:
        os.close(fd)
    written = [json.loads(line) for line in path.read_text().splitlines()]
    assert [w["request_id"] for w in written] == ["0", "1", "2"]
    assert written[0]["logger"] == "edgeperso.access" and written[0]["ts"].endswith("Z")


def test_a_server_writes_its_access_lines_and_the_last_ones_at_shutdown(small_bundle_dir):
    import json
    import signal
    import subprocess
    import sys

    from tests.servers import free_port, wait_for

    port = free_port()
    command = [sys.executable, "-m", "edge", "serve", "--bundle", str(small_bundle_dir)]
    server = subprocess.Popen([*command, "--port", str(port)], stderr=subprocess.PIPE)
    try:
        wait_for(port, "/readyz", server, seconds=30)
        import http.client

        for _ in range(3):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", "/healthz")
            connection.getresponse().read()
            connection.close()
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=30)
    records = [json.loads(line) for line in err.decode().splitlines()]
    access = [r for r in records if r["logger"] == "edgeperso.access" and r["route"] == "/healthz"]
    assert len(access) == 3 and {r["status"] for r in access} == {200}
