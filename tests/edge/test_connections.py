"""Slow clients against real servers on 127.0.0.1: uvicorn with the protocol `edge serve` runs
(in a thread, limits from the environment as a worker reads them), and `python -m edge serve`
itself for the flags and the worker processes."""

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time

import pytest
import uvicorn

from edge.app import create_app
from edge.arrival import ArrivalStampingProtocol
from edge.config import Settings
from edge.connections import FD_RESERVE
from tests.servers import edge_app_command, free_port, in_a_thread, wait_for

PARTIAL_HEAD = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # no blank line: the headers go on


async def bare_app(scope, receive, send):
    """Answers 200 once it has the whole body."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    headers = [(b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


@contextlib.contextmanager
def serving(app, monkeypatch, **limits):
    """uvicorn with `edge serve`'s protocol on a free port; `limits` go in the environment
    (EDGEPERSO_<NAME>) before its first connection, where each server process reads them."""
    for name, value in limits.items():
        monkeypatch.setenv(f"EDGEPERSO_{name.upper()}", str(value))
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http=ArrivalStampingProtocol,
        lifespan="on" if app is not bare_app else "off",
        log_level="error",
        ws="none",
    )
    with in_a_thread(config):
        sockets = Sockets(port)
        try:
            yield sockets
        finally:
            sockets.close()


class Sockets:
    """Client sockets to one port, all closed by `close` (before the server stops: uvicorn
    waits for the connections with a request in progress)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.opened: list[socket.socket] = []

    def connect(self) -> socket.socket:
        self.opened.append(socket.create_connection(("127.0.0.1", self.port), timeout=5.0))
        return self.opened[-1]

    def close(self) -> None:
        for sock in self.opened:
            sock.close()


def read_until_closed(sock: socket.socket, seconds: float) -> bytes:
    """Everything the server sends until it closes; fails when it does not within `seconds`."""
    deadline = time.monotonic() + seconds
    data = b""
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        if not (chunk := sock.recv(4096)):
            return data
        data += chunk
        assert time.monotonic() < deadline, f"still open after {seconds} s: {data[:300]!r}"


def still_open(sock: socket.socket) -> bool:
    sock.settimeout(0.2)
    try:
        return sock.recv(1) != b""
    except TimeoutError:
        return True
    except ConnectionError:
        return False


def get(sock: socket.socket) -> bytes:
    """One GET / on a kept-alive connection: the status line."""
    sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return status_of_answer(sock)


def status_of_answer(sock: socket.socket) -> bytes:
    """The status line of an answer, read whole."""
    return read_answer(sock).split(b"\r\n", 1)[0]


def read_answer(sock: socket.socket) -> bytes:
    """One whole answer with a content-length (head and body may come in separate reads)."""
    sock.settimeout(5.0)
    answer = b""
    while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < int(
        answer.lower().split(b"content-length: ")[1].split(b"\r\n")[0]
    ):
        chunk = sock.recv(4096)
        assert chunk, f"closed before the whole answer: {answer!r}"
        answer += chunk
    return answer


def error_of(answer: bytes) -> dict:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer
    assert b"content-type: application/json" in head.lower()
    return json.loads(body)["error"]


def test_headers_trickled_past_the_header_timeout_get_a_json_408_and_the_connection_closed(
    monkeypatch,
):
    with serving(bare_app, monkeypatch, header_timeout_seconds=0.5) as client:
        sock = client.connect()
        started = time.monotonic()
        sock.sendall(PARTIAL_HEAD)
        answer = b""
        while True:  # one header byte every 0.1 s, never the blank line
            assert time.monotonic() - started < 5.0, (
                f"the slow connection was kept: {answer[:300]!r}"
            )
            try:
                sock.sendall(b"X")
            except OSError:
                break
            sock.settimeout(0.1)
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            except ConnectionError:
                break
            if not chunk:
                break
            answer += chunk
        waited = time.monotonic() - started
    assert waited >= 0.45  # not before the timeout, although bytes kept coming
    error = error_of(answer)
    assert error["code"] == "request_timeout" and error["field"] == "headers"
    assert "0.5 s" in error["message"] and "EDGEPERSO_HEADER_TIMEOUT_SECONDS" in error["message"]


def test_a_connection_that_sends_nothing_is_closed_without_an_answer_after_the_timeout(
    monkeypatch,
):
    with serving(bare_app, monkeypatch, header_timeout_seconds=0.5) as client:
        sock = client.connect()
        started = time.monotonic()
        assert read_until_closed(sock, 5.0) == b""
        assert time.monotonic() - started >= 0.45


def test_a_kept_alive_connection_s_deadline_counts_from_its_last_answer(monkeypatch):
    with serving(bare_app, monkeypatch, header_timeout_seconds=0.5) as client:
        sock = client.connect()
        for _ in range(4):  # 1.2 s in all, longer than the timeout: each answer restarts it
            assert get(sock) == b"HTTP/1.1 200 OK"
            time.sleep(0.3)
        sock.sendall(PARTIAL_HEAD)
        error = error_of(read_until_closed(sock, 5.0))
        assert error["code"] == "request_timeout"


def test_at_the_cap_new_connections_are_served_evicting_the_longest_waiting_slow_ones(
    monkeypatch,
):
    with serving(bare_app, monkeypatch, max_connections=5, header_timeout_seconds=60) as client:
        slow = []
        for _ in range(5):
            slow.append(client.connect())
            slow[-1].sendall(PARTIAL_HEAD)
            time.sleep(0.05)  # so that they begin waiting in this order
        normal = []
        for _ in range(3):  # each kept alive after its answer: the newest waiting, so kept
            normal.append(client.connect())
            assert get(normal[-1]) == b"HTTP/1.1 200 OK"
        assert [read_until_closed(s, 5.0) for s in slow[:3]] == [b""] * 3  # the oldest three
        assert still_open(slow[3]) and still_open(slow[4])
        assert all(get(s) == b"HTTP/1.1 200 OK" for s in normal)


def test_at_the_cap_with_every_request_in_progress_a_new_connection_is_refused(
    monkeypatch,
):
    """Requests in progress are never evicted; once one is answered, its kept-alive connection
    may be, and new connections are served again."""
    head = b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-length: 10\r\n\r\n"
    with serving(bare_app, monkeypatch, max_connections=3, header_timeout_seconds=60) as client:
        busy = [client.connect() for _ in range(3)]
        for sock in busy:
            sock.sendall(head + b"12345")  # half the body: in progress
        time.sleep(0.2)
        refused = client.connect()
        with contextlib.suppress(ConnectionError):  # closed, or reset: either way refused
            assert read_until_closed(refused, 2.0) == b""
        assert all(still_open(sock) for sock in busy)
        busy[0].sendall(b"67890")
        busy[0].settimeout(5.0)
        assert status_of_answer(busy[0]) == b"HTTP/1.1 200 OK"
        assert get(client.connect()) == b"HTTP/1.1 200 OK"  # evicts busy[0], now only waiting
        assert read_until_closed(busy[0], 5.0) == b""
        assert still_open(busy[1]) and still_open(busy[2])


def test_a_body_slower_than_the_body_timeout_gets_a_json_408_naming_the_limit(monkeypatch):
    app = create_app(Settings(body_timeout_seconds=0.5, reload_seconds=0))
    head = (
        b"POST /v1/recommend HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"content-type: application/json\r\ncontent-length: 100\r\n\r\n"
    )
    with serving(app, monkeypatch) as client:
        sock = client.connect()
        started = time.monotonic()
        sock.sendall(head + b'{"user_id":')
        answer = read_answer(sock)
        assert time.monotonic() - started >= 0.45
    error = error_of(answer)
    assert error["code"] == "request_timeout" and error["field"] == "body"
    assert "0.5 s" in error["message"] and "EDGEPERSO_BODY_TIMEOUT_SECONDS" in error["message"]
    assert "11 bytes came" in error["message"]


def test_serve_carries_the_limits_to_every_worker_process(small_bundle_dir, tmp_path):
    port = free_port()
    command = edge_app_command(small_bundle_dir, tmp_path / "events", port)
    command += ["--workers", "2", "--header-timeout", "0.5", "--log-level", "warning"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEPERSO_")}
    server = subprocess.Popen(command, env=env)
    client = Sockets(port)
    try:
        wait_for(port, "/readyz", server, seconds=60)
        silent = [client.connect() for _ in range(8)]  # accepted by the workers, not the parent
        started = time.monotonic()
        assert [read_until_closed(s, 5.0) for s in silent] == [b""] * 8  # not the default 10 s
        assert time.monotonic() - started < 4.0
    finally:
        client.close()
        server.terminate()
        server.wait(15)


def test_serve_refuses_a_limit_that_is_not_positive_naming_it(small_bundle_dir, tmp_path):
    command = edge_app_command(small_bundle_dir, tmp_path / "events", free_port())
    done = subprocess.run(
        [*command, "--max-connections", "0"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "EDGEPERSO_MAX_CONNECTIONS must be positive" in done.stderr


LIMITS_UNDER = """
import resource
resource.setrlimit(resource.RLIMIT_NOFILE, (300, {hard}))
from edge.config import Settings
from edge.connections import Limits
for cap in (2000, 100):
    held = Limits.from_settings(Settings(max_connections=cap), backlog=100).max_connections
    print(held, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


def fd_limits(hard: int) -> tuple[list[str], str]:
    """What Limits makes of a cap of 2,000 and one of 100 (with an accept backlog of 100) in a
    process whose soft fd limit is 300: the cap held and the soft limit after each, and the
    log."""
    done = subprocess.run(
        [sys.executable, "-c", LIMITS_UNDER.format(hard=hard)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.splitlines(), done.stderr


def test_the_soft_fd_limit_is_raised_to_hold_the_cap_and_an_accept_burst():
    lines, _ = fd_limits(hard=10_000)
    assert lines == [f"2000 {2000 + 100 + FD_RESERVE}", f"100 {2000 + 100 + FD_RESERVE}"]


def test_under_a_low_hard_fd_limit_the_cap_is_lowered_under_it_and_says_so():
    lines, log = fd_limits(hard=300)
    assert lines == [f"{300 - FD_RESERVE} 300", "100 300"]
    assert "raise `ulimit -n`" in log


def server_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.slow
def test_a_slow_crowd_past_the_cap_is_closed_while_normal_requests_are_answered(
    small_bundle_dir, tmp_path
):
    """600 slowloris connections against a cap of 200: every normal recommendation is
    answered, the server never holds more than its cap, and every slow one is closed."""
    cap, crowd = 200, 600
    port = free_port()
    command = edge_app_command(small_bundle_dir, tmp_path / "events", port)
    command += ["--max-connections", str(cap), "--header-timeout", "2", "--log-level", "error"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEPERSO_")}
    server = subprocess.Popen(command, env=env)
    body = b'{"k": 5}'
    request = (
        b"POST /v1/recommend HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )

    async def slow_one(closed: list[bool], stop: asyncio.Event) -> None:
        """A header byte every 0.5 s until the server closes the connection; after `stop`,
        silent, waiting up to 10 s for the close."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(PARTIAL_HEAD)
        give_up = float("inf")
        try:
            while time.monotonic() < give_up:
                if stop.is_set():
                    give_up = min(give_up, time.monotonic() + 10.0)
                else:
                    writer.write(b"X")
                with contextlib.suppress(TimeoutError):
                    if not await asyncio.wait_for(reader.read(4096), 0.5):
                        closed.append(True)  # evicted, or timed out after its 408
                        break
        except ConnectionError:
            closed.append(True)
        writer.close()

    async def run() -> tuple[list[int], list[bool], int]:
        closed: list[bool] = []
        stop = asyncio.Event()
        slow = []
        for _ in range(crowd):
            slow.append(asyncio.create_task(slow_one(closed, stop)))
            await asyncio.sleep(0.005)
        statuses, most_fds = [], 0
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(60):  # 3 s of normal requests inside the crowd
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10.0)
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            statuses.append(int(head.split(b" ")[1]))
            most_fds = max(most_fds, server_fds(server.pid))
            await asyncio.sleep(0.05)
        writer.close()
        stop.set()  # the crowd stops sending; the header timeout closes what is left
        await asyncio.wait_for(asyncio.gather(*slow), 30.0)
        return statuses, closed, most_fds

    try:
        wait_for(port, "/readyz", server, seconds=60)
        idle_fds = server_fds(server.pid)
        statuses, closed, most_fds = asyncio.run(run())
        assert server.poll() is None, "the server died"
    finally:
        server.terminate()
        server.wait(15)
    assert statuses == [200] * 60
    assert most_fds <= idle_fds + cap + 8  # + a log segment or two the answers may open
    assert len(closed) == crowd  # each slow connection was closed by the server
