import http.client
import json
import os
import signal
import threading
import time

import pytest

from edge.sink import JsonlSegmentSink, SinkError, recover_segments
from tests.servers import free_port, start_edge_app


def lines(directory, pattern="*.jsonl"):
    return [
        json.loads(line)
        for p in sorted(directory.glob(pattern))
        for line in p.read_text().splitlines()
    ]


def test_batches_are_appended_and_a_closed_segment_is_renamed(tmp_path):
    sink = JsonlSegmentSink(tmp_path)
    sink.write([{"n": 1}, {"n": 2}])
    sink.write([{"n": 3}])
    [open_segment] = tmp_path.glob("*.jsonl.open")
    assert open_segment.read_text().count("\n") == 3  # on disk before close
    assert not list(tmp_path.glob("*.jsonl"))  # readers take closed segments only
    sink.close()
    assert [r["n"] for r in lines(tmp_path)] == [1, 2, 3]
    assert not list(tmp_path.glob("*.open"))


def test_segments_rotate_by_size(tmp_path):
    sink = JsonlSegmentSink(tmp_path, max_bytes=100)
    for n in range(20):
        sink.write([{"n": n, "pad": "x" * 20}])
    sink.close()
    segments = sorted(tmp_path.glob("*.jsonl"))
    assert len(segments) > 3
    assert [r["n"] for r in lines(tmp_path)] == list(range(20))  # in order, none lost


def test_a_failed_batch_leaves_nothing_behind(tmp_path, monkeypatch):
    sink = JsonlSegmentSink(tmp_path)
    sink.write([{"n": 1}])

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(SinkError, match="No space left on device"):
        sink.write([{"n": 2}, {"n": 3}])
    monkeypatch.undo()
    sink.write([{"n": 4}])
    sink.close()
    assert [r["n"] for r in lines(tmp_path)] == [1, 4]


def test_a_segment_left_open_by_a_dead_process_is_closed_without_its_torn_line(tmp_path):
    dead = tmp_path / f"events-20261127T000000Z-{2**22 + 7}-0001.jsonl.open"
    dead.write_bytes(b'{"n":1}\n{"n":2}\n{"n":')  # the process died mid-write
    live = tmp_path / f"events-20261127T000000Z-{os.getppid()}-0001.jsonl.open"
    live.write_bytes(b'{"n":9}\n')  # a running worker's segment: not touched
    assert recover_segments(tmp_path) == [dead.with_name(dead.name.removesuffix(".open"))]
    assert [r["n"] for r in lines(tmp_path)] == [1, 2]
    assert live.exists()


def post_batch(port: int, body: bytes) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", "/v1/events", body, {"content-type": "application/json"})
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.mark.slow
def test_a_sigterm_during_a_burst_of_events_loses_no_accepted_event(bundle_dir, tmp_path):
    """The server is stopped while four clients send batches; every event it acknowledged must
    be in the log afterwards (a test that counts them, by id)."""
    port, events_dir = free_port(), tmp_path / "events"
    server = start_edge_app(bundle_dir, events_dir, port)
    try:
        acknowledged: list[str] = []
        lock = threading.Lock()

        def client(name: str) -> None:
            for batch in range(400):  # bounded: at most 400 batches of 25 per client
                ids = [f"{name}-{batch}-{i}" for i in range(25)]
                body = json.dumps(
                    {
                        "events": [
                            {"type": "click", "item_id": "x", "session_id": name, "event_id": e}
                            for e in ids
                        ]
                    }
                ).encode()
                try:
                    status = post_batch(port, body)
                except OSError:
                    return  # the server is gone
                if status == 200:
                    with lock:
                        acknowledged.extend(ids)

        clients = [threading.Thread(target=client, args=(f"c{i}",)) for i in range(4)]
        for thread in clients:
            thread.start()
        while len(acknowledged) < 1_000:  # well into the burst
            time.sleep(0.01)
        server.send_signal(signal.SIGTERM)
        for thread in clients:
            thread.join(timeout=60)
        # uvicorn shuts down gracefully, then re-raises the signal: the exit says SIGTERM.
        assert server.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if server.poll() is None:
            server.kill()
    written = [r["event_id"] for r in lines(events_dir)]
    assert not list(events_dir.glob("*.open"))  # closed at shutdown
    assert len(written) == len(set(written))
    assert set(acknowledged) <= set(written)
    assert 1_000 <= len(acknowledged) < 40_000  # the burst was cut short by the signal
