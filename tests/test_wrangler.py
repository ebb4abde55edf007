"""wrangler.toml and the gateway Worker (worker/), run by wrangler itself: the committed config
passes `wrangler deploy --dry-run`, and `wrangler dev` on 127.0.0.1 in front of the app under
uvicorn answers through the app while it can and from the fallback content when it cannot.

The Worker's own logic is unit-tested by `node --test worker/test/` (part of `make test`)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.servers import free_port, start_edge_app, wait_for

ROOT = Path(__file__).resolve().parent.parent
WRANGLER = ROOT / "node_modules" / ".bin" / "wrangler"
IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile"
BUDGET_MS = 400
# What the test's `request.cf` says of every visitor (miniflare reads it from this file).
CF = {"country": "DE", "timezone": "Europe/Berlin", "colo": "FRA", "city": "Frankfurt"}

pytestmark = pytest.mark.slow


def wrangler_env(tmp: Path) -> dict[str, str]:
    cf = tmp / "cf.json"
    cf.write_text(json.dumps(CF))
    return os.environ | {
        "WRANGLER_SEND_METRICS": "false",
        "CLOUDFLARE_CF_FETCH_PATH": str(cf),
        "WRANGLER_LOG_PATH": str(tmp / "wrangler-logs"),
        "NO_COLOR": "1",
    }


def wrangler(*args: str, env: dict[str, str], timeout: float = 120) -> str:
    assert WRANGLER.exists(), f"{WRANGLER} is missing: `npm ci` installs it (`make test` does)"
    done = subprocess.run(
        [str(WRANGLER), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"wrangler {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_deploy_dry_run_passes_on_the_committed_config(tmp_path):
    out = wrangler(
        "deploy", "--dry-run", "--outdir", str(tmp_path / "dist"), env=wrangler_env(tmp_path)
    )
    bindings = ("env.APP (EdgeApp)", "env.FALLBACK", "env.APP_BUDGET_MS", "env.BUNDLE_URL")
    for binding in (*bindings, "env.BUNDLE_PUBLIC_KEY"):
        assert binding in out
    assert "edgeperso-gateway-edgeapp (edgeperso/edge:0.1.0)" in out
    assert (tmp_path / "dist" / "index.js").stat().st_size > 0


def test_the_container_image_is_tagged_with_the_project_version():
    config = tomllib.loads((ROOT / "wrangler.toml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    [container] = config["containers"]
    assert container["image"] == f"edgeperso/edge:{project['version']}"
    assert config["durable_objects"]["bindings"][0]["class_name"] == container["class_name"]


@pytest.fixture(scope="module")
def served(bundle_dir, tmp_path_factory):
    """The app under uvicorn, and `wrangler dev --env local` in front of it with the bundle's
    fallback content in its local KV."""
    tmp = tmp_path_factory.mktemp("gateway")
    env = wrangler_env(tmp)
    content, state = tmp / "content.json", tmp / "state"
    subprocess.run(
        [sys.executable, "-m", "edge", "gateway-content", str(bundle_dir), "--out", str(content)],
        check=True,
        capture_output=True,
    )
    wrangler(
        "kv", "key", "put", "fallback", "--path", str(content), "--binding", "FALLBACK",
        "--local", "--env", "local", "--persist-to", str(state), env=env,
    )  # fmt: skip
    app_port, gateway_port, events = free_port(), free_port(), tmp / "events"
    app = start_edge_app(bundle_dir, events, app_port)
    log_path = tmp / "wrangler-dev.log"
    log = log_path.open("w")
    gateway = subprocess.Popen(
        [
            str(WRANGLER), "dev", "--env", "local", "--ip", "127.0.0.1",
            "--port", str(gateway_port), "--inspector-port", str(free_port()),
            "--persist-to", str(state), "--show-interactive-dev-session=false",
            "--var", f"APP_ORIGIN:http://127.0.0.1:{app_port}",
            "--var", f"APP_BUDGET_MS:{BUDGET_MS}",
        ],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        try:
            wait_for(gateway_port, "/not-routed", gateway, want=(404,), seconds=90)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; wrangler dev said:\n{log_path.read_text()}") from exc
        yield {
            "app": app,
            "port": gateway_port,
            "events": events,
            "build_id": json.loads(content.read_text())["bundle"],
        }
    finally:
        for process in (gateway, app):
            process.send_signal(signal.SIGCONT)
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()


def post(port: int, path: str, body: dict, headers: dict | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        started = time.perf_counter()
        connection.request(
            "POST", path, json.dumps(body), {"content-type": "application/json", **(headers or {})}
        )
        response = connection.getresponse()
        payload = json.loads(response.read())
        return response.status, response.headers, payload, time.perf_counter() - started
    finally:
        connection.close()


def berlin_hours() -> set[int]:
    now = time.time()
    return {datetime.fromtimestamp(t, ZoneInfo("Europe/Berlin")).hour for t in (now - 60, now + 60)}


def test_a_recommendation_comes_back_through_the_gateway_with_its_context(served):
    status, headers, answer, _ = post(
        served["port"],
        "/v1/recommend",
        {"k": 5},
        {"user-agent": IPHONE, "x-edgeperso-country": "fr"},
    )
    assert status == 200, answer
    assert headers["x-edgeperso-source"] == "app"
    assert answer["fallback"] is None and answer["bundle"] == served["build_id"]
    assert len(answer["items"]) == 5
    context = answer["context"]
    assert (context["country"], context["device"]) == (
        "de",
        "mobile",
    )  # the CDN's, not the client's
    assert context["local_hour"] in berlin_hours()
    # What the page says in the body still wins.
    _, _, answer, _ = post(served["port"], "/v1/recommend", {"context": {"country": "pl"}})
    assert answer["context"]["country"] == "pl"


def test_feedback_goes_through_the_gateway_with_its_context(served):
    event = {"type": "view", "item_id": "i1", "session_id": "gw", "event_id": "gw-1"}
    status, _, answer, _ = post(
        served["port"], "/v1/events", {"events": [event]}, {"user-agent": IPHONE}
    )
    assert status == 200, answer
    logged = [
        json.loads(line)
        for segment in served["events"].glob("events-*.jsonl*")
        for line in segment.read_text().splitlines()
    ]
    [row] = [r for r in logged if r.get("event_id") == "gw-1"]
    assert (row["country"], row["device"]) == ("de", "mobile")


def test_an_app_slower_than_the_budget_gets_fallback_content_within_it(served):
    app = served["app"]
    app.send_signal(signal.SIGSTOP)  # the app takes requests and answers none
    try:
        status, headers, answer, took = post(served["port"], "/v1/recommend", {"k": 4})
    finally:
        app.send_signal(signal.SIGCONT)
    assert status == 200
    assert headers["x-edgeperso-source"] == "gateway-fallback"
    assert answer["fallback"] == f"gateway: the app did not answer within {BUDGET_MS} ms"
    assert len(answer["items"]) == 4 and answer["bundle"] == served["build_id"]
    assert answer["personalized"] is False
    # The budget plus the local proxy's hop; a busy machine gets a generous margin.
    assert BUDGET_MS / 1000 <= took < BUDGET_MS / 1000 + 1.0, took


def test_with_the_app_stopped_recommendations_fall_back_and_events_are_refused_to_retry(served):
    """Runs last in this module: it stops the app for good."""
    served["app"].terminate()
    served["app"].wait(timeout=15)
    status, headers, answer, took = post(
        served["port"], "/v1/recommend", {"k": 3}, {"user-agent": IPHONE}
    )
    assert status == 200
    assert answer["fallback"].startswith("gateway: the app is unreachable")
    assert len(answer["items"]) == 3 and answer["context"]["device"] == "mobile"
    assert took < BUDGET_MS / 1000 + 1.0
    event = {"type": "view", "item_id": "i1", "session_id": "gw", "event_id": "gw-2"}
    status, headers, answer, _ = post(served["port"], "/v1/events", {"events": [event]})
    assert status == 503 and headers["retry-after"] == "1"
    assert answer["error"]["code"] == "app_unavailable"


def test_every_variable_the_worker_gives_the_container_is_one_the_edge_reads():
    import re

    given = set(re.findall(r"EDGEPERSO_[A-Z_]+", (ROOT / "worker" / "index.js").read_text()))
    read = "".join((ROOT / "edge" / name).read_text() for name in ("config.py", "cli.py"))
    assert {"EDGEPERSO_BUNDLE_URL", "EDGEPERSO_PUBLIC_KEY"} <= given
    assert sorted(name for name in given if name not in read) == []


def test_feedback_through_the_queue_lands_in_r2_as_the_build_reads_it(tmp_path):
    """`wrangler dev --env local-queue` runs a Queue and R2 offline (miniflare): batches posted
    to the gateway are acknowledged once queued, and the consumer writes them to the bucket as
    JSON-lines objects under events/dt=<day>/queue/. (miniflare keeps its queue in memory: a
    message not delivered when wrangler dev stops is lost there, unlike on Cloudflare.)"""
    env, state, port = wrangler_env(tmp_path), tmp_path / "state", free_port()
    log_path = tmp_path / "wrangler-dev.log"
    with log_path.open("w") as log:
        gateway = subprocess.Popen(
            [
                str(WRANGLER), "dev", "--env", "local-queue", "--ip", "127.0.0.1",
                "--port", str(port), "--inspector-port", str(free_port()),
                "--persist-to", str(state), "--show-interactive-dev-session=false",
            ],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # wrangler runs workerd in children: stopped as a group
        )  # fmt: skip
    try:
        try:
            wait_for(port, "/not-routed", gateway, want=(404,), seconds=90)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; wrangler dev said:\n{log_path.read_text()}") from exc
        sent = []
        for n in range(5):
            events = [
                {"type": "view", "item_id": f"i{i}", "session_id": f"q{n}", "event_id": f"q{n}-{i}"}
                for i in range(30)
            ]
            status, headers, answer, _ = post(port, "/v1/events", {"events": events})
            assert (status, answer) == (200, {"accepted": 30})
            assert headers["x-edgeperso-source"] == "gateway-queue"
            sent += [e["event_id"] for e in events]
        status, _, answer, _ = post(port, "/v1/events", {"events": [{"type": "view"}]})
        assert status == 422 and answer["error"]["field"] == "$.events[0].item_id"
        blobs = state / "v3" / "r2" / "edgeperso-feedback" / "blobs"
        deadline = time.monotonic() + 30
        while True:
            try:
                records = [
                    json.loads(line)
                    for blob in (blobs.iterdir() if blobs.is_dir() else [])
                    for line in blob.read_text().splitlines()
                ]
            except ValueError:  # a blob miniflare is still writing: read it again
                records = []
            if (
                sorted(r["event_id"] for r in records) == sorted(sent)
                or time.monotonic() > deadline
            ):
                break
            time.sleep(0.2)
        assert sorted(r["event_id"] for r in records) == sorted(sent)
        assert {r["country"] for r in records} == {"de"}  # the gateway's context, from request.cf
        assert {r["via"] for r in records} == {"queue"}
    finally:
        os.killpg(gateway.pid, signal.SIGTERM)
        try:
            gateway.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(gateway.pid, signal.SIGKILL)
            gateway.wait()
