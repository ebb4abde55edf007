"""observability/: the alert rules and the scrape config pass promtool, and a real Prometheus
(Debian's package, on 127.0.0.1) scraping two nodes while they serve has data for every query
the Grafana dashboard and the alert rules use, and evaluates every rule without error."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import msgspec
import pytest
import yaml

from edge.bandits import Bandit
from edge.experiments import Experiment
from tests.edge.small_bundle import write_small_bundle
from tests.servers import answers, free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "observability"
INSTALL = "scripts/install-system-packages.sh prometheus (make system) installs it"


def tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is missing: {INSTALL}"
    return found


def dashboard_queries() -> list[str]:
    dashboard = json.loads((CONFIG / "grafana-dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def alert_queries() -> dict[str, str]:
    """Each rule's expression without its threshold: what it compares must have data."""
    rules = yaml.safe_load((CONFIG / "alerts.yml").read_text())["groups"][0]["rules"]
    threshold = re.compile(r"\s*(>|<|==|>=|<=)\s*[\d.*\s]+$")
    return {rule["alert"]: threshold.sub("", rule["expr"].strip()) for rule in rules}


def test_the_alert_rules_pass_promtool():
    done = subprocess.run(
        [tool("promtool"), "check", "rules", str(CONFIG / "alerts.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_scrape_config_passes_promtool(tmp_path):
    for name in ("prometheus.yml", "alerts.yml"):
        shutil.copy(CONFIG / name, tmp_path / name)
    done = subprocess.run(
        [tool("promtool"), "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def get(port: int, path: str) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def post(port: int, path: str, body: dict) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        data = json.dumps(body).encode()
        connection.request("POST", path, body=data, headers={"content-type": "application/json"})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def query(port: int, expr: str) -> list:
    answer = get(port, "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert answer["status"] == "success", f"{expr}: {answer}"
    return answer["data"]["result"]


@pytest.mark.slow
def test_every_dashboard_and_alert_query_has_data_from_a_real_prometheus(tmp_path):
    split = msgspec.convert({"key": "e", "variants": [{"name": "a"}, {"name": "b"}]}, Experiment)
    banner = msgspec.convert(
        {"slot": "home-banner", "arms": [{"name": "b0"}, {"name": "b1"}]}, Bandit
    )
    bundle = write_small_bundle(tmp_path / "bundle", experiments=[split], bandits=[banner])
    serving, unready = free_port(), free_port()
    nodes = [
        subprocess.Popen(
            [sys.executable, "-m", "edge", "serve", "--bundle", str(path), "--port", str(port)]
            + ["--workers", "2", "--events-dir", str(tmp_path / f"events-{port}")]
            + ["--events-per-second", "0", "--log-level", "warning"]
        )
        for path, port in ((bundle, serving), (tmp_path / "no-bundle", unready))
    ]
    prometheus_port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(CONFIG / "alerts.yml")],
        "scrape_configs": [
            {
                "job_name": "edgeperso",
                "static_configs": [{"targets": [f"127.0.0.1:{serving}", f"127.0.0.1:{unready}"]}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    with (tmp_path / "prometheus.log").open("w") as log:
        prometheus = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prometheus_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        wait_for(serving, "/readyz", nodes[0], seconds=60)
        wait_for(unready, "/readyz", nodes[1], want=(503,), seconds=60)
        wait_for(prometheus_port, "/-/ready", prometheus, seconds=60)
        dwell = {"type": "view", "item_id": "i02", "dwell_ms": 200_000}
        deadline = time.monotonic() + 8
        n = 0
        while time.monotonic() < deadline:  # what a shop's pages send, for a few scrapes
            session = {"events": [dwell, {"type": "add_to_cart", "item_id": f"i0{n % 5}"}]}
            body = {"k": 3, "session_id": f"s{n}", "session": session, "slots": ["home-banner"]}
            assert post(serving, "/v1/recommend", body) == 200
            assert post(serving, "/v1/recommend", {"k": 3, "user_id": "u-loyal"}) == 200
            assert post(serving, "/v1/recommend", {"k": 0}) == 422
            assert post(unready, "/v1/recommend", {"k": 3}) == 200  # fallback content
            event = {"type": "view", "item_id": "i01", "session_id": f"s{n}"}
            assert post(serving, "/v1/events", {"events": [event]}) == 200
            n += 1
            time.sleep(0.05)
        queries = dashboard_queries() + list(alert_queries().values())
        empty: list[str] = []
        for _ in range(20):  # rate() needs two scrapes of a series
            empty = [expr for expr in queries if not query(prometheus_port, expr)]
            if not empty:
                break
            time.sleep(1)
        assert empty == [], f"no data for: {empty}"
        targets = query(prometheus_port, 'up{job="edgeperso"}')
        assert sorted(float(t["value"][1]) for t in targets) == [1.0, 1.0]
        rules = get(prometheus_port, "/api/v1/rules")["data"]["groups"][0]["rules"]
        assert {r["name"] for r in rules} == set(alert_queries())
        assert {r["health"] for r in rules} == {"ok"}, [r for r in rules if r["health"] != "ok"]
        assert answers(serving, "/metrics") == 200
    finally:
        for process in (prometheus, *nodes):
            process.send_signal(signal.SIGTERM)
        for process in (prometheus, *nodes):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
