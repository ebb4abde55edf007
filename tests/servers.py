"""Real servers for tests, on 127.0.0.1 only: the edge app under uvicorn, started as the
container starts it, and helpers to wait for them."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from edge.ports import free_port

__all__ = [
    "answers",
    "in_a_thread",
    "edge_app_command",
    "free_port",
    "get_json",
    "start_edge_app",
    "wait_for",
]


def answers(port: int, path: str, timeout: float = 1.0) -> int | None:
    """The status of GET `path`, or None when nothing answers."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


def get_json(port: int, path: str) -> tuple[int, dict]:
    """GET `path` on a new connection (with several workers, any may answer): status and JSON."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def wait_for(port: int, path: str, process: subprocess.Popen, want=(200,), seconds=60.0) -> None:
    """Until GET `path` answers one of `want`; fails early when the process has exited."""
    deadline = time.monotonic() + seconds
    while answers(port, path) not in want:
        assert process.poll() is None, f"{process.args[:4]} exited with {process.returncode}"
        assert time.monotonic() < deadline, f"nothing answered {path} on {port} in {seconds} s"
        time.sleep(0.1)


def edge_app_command(bundle_dir: Path, events_dir: Path, port: int) -> list[str]:
    """The container's start command (Dockerfile CMD), on 127.0.0.1 (tests/test_container.py
    checks the two have the same flags)."""
    command = [sys.executable, "-m", "edge", "serve", "--bundle", str(bundle_dir)]
    return command + ["--host", "127.0.0.1", "--port", str(port), "--events-dir", str(events_dir)]


def start_edge_app(bundle_dir: Path, events_dir: Path, port: int) -> subprocess.Popen:
    """The edge app as the container runs it, ready once /readyz is green."""
    command = edge_app_command(bundle_dir, events_dir, port)
    server = subprocess.Popen([*command, "--log-level", "warning"])
    try:
        wait_for(port, "/readyz", server, seconds=30)
    except BaseException:
        server.kill()
        raise
    return server


@contextlib.contextmanager
def in_a_thread(config: uvicorn.Config) -> Iterator[uvicorn.Server]:
    """A uvicorn server run by `config` in a thread of this process, started; stopped after."""
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10.0
        while not server.started:
            assert time.monotonic() < deadline, "the test server did not start"
            time.sleep(0.01)
        yield server
    finally:
        server.should_exit = True
        thread.join(10.0)
