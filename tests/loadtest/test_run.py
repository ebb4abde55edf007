"""The load test in the box: loadtest/run.py serves a bundle on 127.0.0.1, runs Locust against
it and summarizes; a run over its p99 budget fails naming the budget. Locust runs only as a
subprocess (importing it monkey-patches the standard library with gevent)."""

import json
import os
import subprocess
import sys

import pytest

from loadtest.run import bottleneck
from tests.conftest import ROOT
from tests.servers import free_port, start_edge_app

RUN = ROOT / "loadtest" / "run.py"
LOCUSTFILE = ROOT / "loadtest" / "locustfile.py"


def run(bundle_dir, out, *options: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(RUN), "--bundle", str(bundle_dir), "--out", str(out)]
    return subprocess.run(
        [*command, "--users", "4", *options], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


@pytest.mark.slow
def test_a_short_run_loads_both_endpoints_and_malformed_requests_get_their_4xx(
    bundle_dir, tmp_path
):
    # A generous budget: this checks the traffic, not the speed of a shared test machine.
    result = run(bundle_dir, tmp_path, "--seconds", "4", "--p99-budget-ms", "5000")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    rows = {row["name"]: row for row in summary["endpoints"]}
    assert rows["/v1/recommend"]["requests"] > 0 and rows["/v1/events"]["requests"] > 0
    # The malformed rows count as failures only when the status was not the expected 4xx.
    malformed = [row for name, row in rows.items() if name.endswith(("400]", "422]"))]
    assert sum(row["requests"] for row in malformed) > 0
    assert all(row["failures"] == 0 for row in malformed)
    assert summary["aggregated"]["failures"] == 0 and summary["failures"] == []
    assert summary["exceptions"] == [] and summary["ok"]
    assert summary["cpu"]["server_cores"] > 0 and summary["cpu"]["locust_cores"] > 0
    assert (tmp_path / "report.html").exists()
    assert "bottleneck:" in result.stdout and "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_run_over_its_p99_budget_fails_naming_the_budget(bundle_dir, tmp_path):
    # Long enough for Locust to start its users on a busy machine (1 s once made no request).
    result = run(bundle_dir, tmp_path, "--seconds", "3", "--p99-budget-ms", "0.001")
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-3000:]
    assert "over the budget of 0.001 ms (--p99-budget-ms)" in result.stderr
    assert not json.loads((tmp_path / "summary.json").read_text())["ok"]


def locust(cwd, *options: str) -> subprocess.CompletedProcess:
    """Locust as a shop's load tester runs it, with no LOCUST_* settings of ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", "2"]
    return subprocess.run(
        [*command, "--only-summary", *options],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=env,
    )


@pytest.mark.slow
def test_the_locustfile_takes_id_files_and_a_host(bundle_dir, bundle, tmp_path):
    (tmp_path / "items.txt").write_text("\n".join(bundle.model.items.ids[:50]) + "\n")
    (tmp_path / "users.txt").write_text("\n".join(list(bundle.profiles.user_ids())[:20]))
    port = free_port()
    server = start_edge_app(bundle_dir, tmp_path / "events", port)
    try:
        result = locust(
            tmp_path,
            *("-r", "2", "-t", "4s", "--host", f"http://127.0.0.1:{port}"),
            *("--item-ids", "items.txt", "--user-ids", "users.txt", "--csv", "locust"),
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "50 items, 20 known customers" in result.stderr
    stats = (tmp_path / "locust_stats.csv").read_text()
    assert ",/v1/recommend," in stats and ",/v1/events," in stats


def test_the_locustfile_refuses_to_run_without_item_ids(tmp_path):
    # Port 9 (discard) on 127.0.0.1: it exits before any request.
    result = locust(tmp_path, "-t", "1s", "--host", "http://127.0.0.1:9")
    assert result.returncode == 2
    assert "sessions need item ids: give --bundle DIR" in result.stderr


def cpu(server: float, locust: float, other: float = 0.0, processes: int = 1) -> dict:
    return {
        "server_cores": server,
        "locust_cores": locust,
        "other_cores": other,
        "locust_processes": processes,
        "machine_cores": 2,
    }


@pytest.mark.parametrize(
    ("measured", "expected"),
    [
        (cpu(0.98, 0.40), "server"),
        (cpu(0.60, 0.95), "locust"),
        (cpu(0.70, 1.90, processes=2), "locust"),  # two workers, each near a full core
        (cpu(0.50, 0.30, other=1.0), "machine"),  # other work took the cores
        (cpu(0.30, 0.20), "none"),
    ],
)
def test_the_bottleneck_is_the_side_near_a_full_core(measured, expected):
    name, why = bottleneck(measured)
    assert name == expected and why
