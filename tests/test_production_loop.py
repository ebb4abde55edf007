"""The loop in production, end to end on 127.0.0.1 with a real S3-compatible store (SeaweedFS):
two nodes follow the bundle store and ship their feedback to it; one takes feedback from
several clients and is stopped; every acknowledged event is in the store; a build reads it
from there, is published there, and the other node switches to it while answering, with no
failed request in between."""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import subprocess
import threading
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.bundle.remote import publish_to_store
from edge.bundle.signing import raw_public_key
from edge.objectstore import ObjectStore
from export.config import BuildConfig
from export.pipeline import export_bundle
from tests.edge.small_bundle import write_small_bundle
from tests.servers import edge_app_command, free_port, get_json, wait_for

pytestmark = pytest.mark.slow
KEY = Ed25519PrivateKey.generate()


def request(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        data = None if body is None else json.dumps(body).encode()
        connection.request(method, path, body=data, headers={"content-type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def start_node(tmp_path, name: str, bundles: str, feedback: str, env: dict) -> tuple:
    port = free_port()
    command = edge_app_command(tmp_path / name / "bundle", tmp_path / name / "events", port)
    command += ["--bundle-store", bundles, "--events-store", feedback, "--log-level", "warning"]
    command += ["--public-key", base64.b64encode(raw_public_key(KEY)).decode()]
    node_env = {
        **os.environ,
        **env,
        "EDGEPERSO_EVENTS_PER_SECOND": "0",
        "EDGEPERSO_BUNDLE_POLL_SECONDS": "0.5",
        "EDGEPERSO_RELOAD_SECONDS": "0.2",
    }
    process = subprocess.Popen(command, env=node_env)
    wait_for(port, "/readyz", process, seconds=30)
    return process, port


def test_feedback_goes_through_the_store_into_a_build_that_every_node_switches_to(
    shop, tmp_path, seaweedfs, store_url
):
    bundles, feedback = store_url + "bundles/", store_url + "feedback/"
    first = publish_to_store(write_small_bundle(tmp_path / "first", signing_key=KEY), bundles)
    shop_node, other_node = (
        start_node(tmp_path, name, bundles, feedback, seaweedfs.env) for name in ("a", "b")
    )
    try:
        for _, port in (shop_node, other_node):
            assert get_json(port, "/readyz")[1]["bundle"] == first.build
        # Feedback from four clients: the simulated shop's log, 500 events a batch.
        rows = shop.events.head(20_000).assign(ts=lambda f: f["ts"].map(lambda t: t.isoformat()))
        rows = rows.to_dict("records")
        for i, row in enumerate(rows):
            row["event_id"] = f"e{i}"
        batches = [rows[i : i + 500] for i in range(0, len(rows), 500)]
        acknowledged: list[str] = []

        def client(mine: list[list[dict]]) -> None:
            for batch in mine:
                events = [{k: v for k, v in e.items() if v != ""} for e in batch]
                status, _ = request(shop_node[1], "POST", "/v1/events", {"events": events})
                if status == 200:
                    acknowledged.extend(e["event_id"] for e in batch)

        clients = [threading.Thread(target=client, args=(batches[c::4],)) for c in range(4)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        shop_node[0].send_signal(signal.SIGTERM)
        assert shop_node[0].wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises it
        assert len(acknowledged) == len(rows)
        store = ObjectStore(feedback)
        stored = [
            json.loads(line)["event_id"]
            for o in store.list("events/")
            for line in store.get(o.key).splitlines()
        ]
        assert sorted(stored) == sorted(acknowledged)  # every acknowledged event, once

        # The next build reads the store, and is published there.
        out = tmp_path / "next"
        manifest = export_bundle(
            [feedback], out, BuildConfig(), signing_key=KEY, quiet=True, report=False
        )
        assert manifest.lineage.rows_kept == len(rows)

        # The other node switches to it while answering, with no failed request.
        answers: list[tuple[int, str | None]] = []
        done = threading.Event()

        def hammer() -> None:
            while not done.is_set():
                try:
                    status, body = request(other_node[1], "POST", "/v1/recommend", {"k": 5})
                except OSError as exc:
                    answers.append((0, repr(exc)))
                    continue
                answers.append((status, body.get("bundle")))

        load = threading.Thread(target=hammer)
        load.start()
        try:
            published = publish_to_store(out, bundles, raw_public_key(KEY))
            deadline = time.monotonic() + 60
            while get_json(other_node[1], "/readyz")[1]["bundle"] != published.build:
                assert time.monotonic() < deadline, get_json(other_node[1], "/readyz")[1]
                time.sleep(0.1)
            time.sleep(0.5)
        finally:
            done.set()
            load.join()
        assert {status for status, _ in answers} == {200}
        served = [bundle for _, bundle in answers]
        assert served[0] == first.build and served[-1] == published.build
        switched = served.index(published.build)
        assert set(served[switched:]) == {published.build}  # never back to the old one
    finally:
        for process, _ in (shop_node, other_node):
            if process.poll() is None:
                process.kill()
            process.wait()
