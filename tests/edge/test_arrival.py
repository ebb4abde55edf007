import asyncio
import http.client
import socket
import time

import uvicorn

from edge.arrival import RECEIVED, ArrivalStampingProtocol, no_delay, queued_ms
from tests.servers import free_port, in_a_thread


def test_queued_ms_is_the_time_since_the_stamp_and_zero_without_one():
    assert queued_ms({}) == 0.0
    assert queued_ms({RECEIVED: "not a time"}) == 0.0
    waited = queued_ms({RECEIVED: time.perf_counter() - 0.25})
    assert 250.0 <= waited < 2_000.0
    assert queued_ms({RECEIVED: time.perf_counter() + 10.0}) == 0.0  # never negative


def test_the_protocol_stamps_every_request_before_the_app_runs():
    """A real uvicorn server on 127.0.0.1 with the protocol `edge serve` uses: the app sees
    the stamp, taken before it was called, on each request of a kept-alive connection."""
    seen = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        seen.append((scope.get(RECEIVED), time.perf_counter()))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http=ArrivalStampingProtocol,
        lifespan="off",
        log_level="warning",
        ws="none",
    )
    with in_a_thread(config):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        for _ in range(3):
            connection.request("GET", "/")
            assert connection.getresponse().read() == b"ok"
        connection.close()
    assert len(seen) == 3
    for stamp, called in seen:
        assert isinstance(stamp, float) and stamp <= called


def test_connections_accepted_on_the_socket_uvicorn_makes_for_workers_send_without_delay():
    """`--workers N` listens on a socket uvicorn makes itself (protocol number 0), on which
    asyncio leaves Nagle's algorithm on: a kept-alive client then waited about 40 ms for each
    answer. The protocol turns it off."""
    listening = uvicorn.Config(app=None, host="127.0.0.1", port=0).bind_socket()
    options = []

    class Probe(asyncio.Protocol):
        def connection_made(self, transport):
            sock = transport.get_extra_info("socket")
            options.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            no_delay(transport)
            options.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    async def main():
        server = await asyncio.get_running_loop().create_server(Probe, sock=listening)
        _, writer = await asyncio.open_connection(*listening.getsockname()[:2])
        while not options:
            await asyncio.sleep(0.01)
        writer.close()
        server.close()

    asyncio.run(main())
    assert options[0] == 0  # what asyncio left: the delay this guards against
    assert options[1] != 0
