"""`python -m edge serve` shipping its feedback to a real S3-compatible store (SeaweedFS on
127.0.0.1): every acknowledged event reaches the store through SIGTERM, kill -9 during an upload
and during rotation, and a store that is down or stalled; recommendations never wait on it."""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from edge.objectstore import ObjectStore
from tests.servers import SeaweedFS, edge_app_command, free_port, get_json, wait_for

pytestmark = pytest.mark.slow


def post(port: int, path: str, body: bytes) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", path, body=body, headers={"content-type": "application/json"})
        response = connection.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return 0  # the server was killed under the request (a cut answer too): not acknowledged
    finally:
        connection.close()


def send_feedback(port: int, client: str, batches: int, size: int = 10) -> list[str]:
    """Batches of views from one client; the event ids the server acknowledged (200)."""
    acknowledged = []
    for n in range(batches):
        ids = [f"{client}-{n}-{i}" for i in range(size)]
        events = [
            {"type": "view", "item_id": "i00", "session_id": client, "event_id": e} for e in ids
        ]
        if post(port, "/v1/events", json.dumps({"events": events}).encode()) == 200:
            acknowledged += ids
    return acknowledged


def stored_ids(store_url: str, env: dict[str, str]) -> list[str]:
    store = ObjectStore(store_url, env)
    store.put("made", b"")  # makes the bucket if need be (the store's admin key may)
    ids = []
    for stored in store.list("events/"):
        ids += [json.loads(line)["event_id"] for line in store.get(stored.key).splitlines()]
    return ids


class Server:
    """The edge app as the container starts it, shipping to `store_url`."""

    def __init__(self, bundle: Path, events: Path, store_url: str, env: dict[str, str], **extra):
        self.port = free_port()
        self.command = edge_app_command(bundle, events, self.port) + ["--events-store", store_url]
        self.env = {
            **os.environ,
            **env,
            "EDGEPERSO_EVENTS_PER_SECOND": "0",
            "EDGEPERSO_EVENTS_ROTATE_SECONDS": "0.5",
            **extra,
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([*self.command, "--log-level", "warning"], env=self.env)
        wait_for(self.port, "/readyz", self.process, seconds=30)

    def shipping(self) -> dict:
        return get_json(self.port, "/readyz")[1]["shipping"]

    def wait_until_shipped(self, seconds: float = 60.0) -> None:
        deadline = time.monotonic() + seconds
        while (status := self.shipping())["waiting_segments"] or status["status"] != "ok":
            assert time.monotonic() < deadline, f"still waiting after {seconds} s: {status}"
            time.sleep(0.2)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        self.process.wait(timeout=30)


@pytest.fixture
def store_env(seaweedfs) -> dict[str, str]:
    return seaweedfs.env


def test_every_acknowledged_event_reaches_the_store_by_sigterm(
    small_bundle_dir, tmp_path, store_url, store_env
):
    server = Server(small_bundle_dir, tmp_path / "events", store_url, store_env)
    server.start()
    results: list[list[str]] = []

    def clients(names: str) -> None:
        threads = [
            threading.Thread(target=lambda c=c: results.append(send_feedback(server.port, c, 15)))
            for c in names
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    try:
        clients("abcd")
        # Closed by age (0.5 s here) and shipped while serving, not only at shutdown.
        deadline = time.monotonic() + 10
        while len(stored_ids(store_url, store_env)) < 4 * 15 * 10:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        clients("efgh")  # then SIGTERM at once: these ship at shutdown
    finally:
        server.stop()
    acknowledged = sorted(e for r in results for e in r)
    assert len(acknowledged) == 8 * 15 * 10
    assert sorted(stored_ids(store_url, store_env)) == acknowledged
    assert not list((tmp_path / "events").glob("*.jsonl*"))  # nothing left behind


def test_kill_9_during_an_upload_loses_nothing(small_bundle_dir, tmp_path):
    """The store stalls (SIGSTOP) while segments wait, so the server is killed with an upload
    in flight; once the store resumes, a new server on the same disk ships everything."""
    store = SeaweedFS(tmp_path / "store")
    store.start()
    store_url = "s3://edgeperso-tests/kill-upload/"
    server = Server(small_bundle_dir, tmp_path / "events", store_url, store.env)
    try:
        server.start()
        acknowledged = send_feedback(server.port, "a", 20)
        server.wait_until_shipped()
        store.process.send_signal(signal.SIGSTOP)
        try:
            acknowledged += send_feedback(server.port, "b", 20)
            time.sleep(1.5)  # segments close and an upload starts, and hangs
            assert server.shipping()["waiting_segments"] > 0
            server.stop(signal.SIGKILL)
        finally:
            store.process.send_signal(signal.SIGCONT)
        server.start()
        server.wait_until_shipped()
        server.stop()
        stored = stored_ids(store_url, store.env)
        assert set(stored) == set(acknowledged)
        assert len(stored) == len(set(stored))  # a segment shipped twice is one object
    finally:
        if server.process and server.process.poll() is None:
            server.process.kill()
        store.stop()


def test_kill_9_at_random_moments_of_rotation_loses_no_acknowledged_event(
    small_bundle_dir, tmp_path, store_url, store_env
):
    """Segments close every 0.1 s while clients post; the server is killed at random moments
    three times and started again on the same disk. Every acknowledged event reaches the store;
    an event in a torn last line was never acknowledged, and is not there."""
    server = Server(
        small_bundle_dir,
        tmp_path / "events",
        store_url,
        store_env,
        EDGEPERSO_EVENTS_ROTATE_SECONDS="0.1",
    )
    rng = random.Random(7)
    acknowledged: list[str] = []
    for round_ in range(3):
        server.start()
        stop = threading.Event()

        def client(name: str) -> None:
            n = 0
            while not stop.is_set():
                acknowledged.extend(send_feedback(server.port, f"{name}{round_}-{n}", 1))
                n += 1

        clients = [threading.Thread(target=client, args=(c,)) for c in ("a", "b")]
        for c in clients:
            c.start()
        time.sleep(rng.uniform(0.5, 1.5))
        server.stop(signal.SIGKILL)
        stop.set()
        for c in clients:
            c.join()
    server.start()
    server.wait_until_shipped()
    server.stop()
    stored = stored_ids(store_url, store_env)
    assert set(acknowledged) <= set(stored)
    assert len(acknowledged) > 100


def test_a_store_that_is_down_costs_recommendations_nothing_and_catches_up(
    small_bundle_dir, tmp_path
):
    store = SeaweedFS(tmp_path / "store")  # not started: down from the first upload
    store_url = "s3://edgeperso-tests/down/"
    server = Server(small_bundle_dir, tmp_path / "events", store_url, store.env)
    try:
        server.start()
        acknowledged = send_feedback(server.port, "a", 10)
        assert len(acknowledged) == 100  # accepted: kept on disk meanwhile
        deadline = time.monotonic() + 20
        while (status := server.shipping())["status"] != "retrying":
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        assert "could not upload" in status["reason"] and status["waiting_segments"] >= 1
        started = time.perf_counter()
        assert post(server.port, "/v1/recommend", b'{"k": 3}') == 200
        assert time.perf_counter() - started < 1.0  # never waits on the store
        assert get_json(server.port, "/readyz")[0] == 200
        store.start()
        server.wait_until_shipped(seconds=90)  # the backoff is at most a minute
        assert sorted(stored_ids(store_url, store.env)) == sorted(acknowledged)
        server.stop()
    finally:
        if server.process and server.process.poll() is None:
            server.process.kill()
        store.stop()
