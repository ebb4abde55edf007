import http.client
import json
import os
import signal
import stat
import threading
import time

import pytest

from edge.sink import JsonlSegmentSink, LogFull, RetryingSink, SinkError, recover_segments
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


def test_a_write_cut_short_by_the_disk_leaves_no_part_of_its_batch(tmp_path):
    """A real short write: past RLIMIT_FSIZE, write(2) takes what fits, then fails (EFBIG), as
    it does on a full disk (ENOSPC) without needing one."""
    import resource

    sink = JsonlSegmentSink(tmp_path)
    sink.write([{"n": 1}])
    [segment] = tmp_path.glob("*.jsonl.open")
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of the signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (segment.stat().st_size + 100, limits[1]))
    try:
        with pytest.raises(SinkError, match="File too large"):
            sink.write([{"n": 2, "pad": "x" * 40} for _ in range(10)])  # 10 lines, 6 KB
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert segment.read_text() == '{"n":1}\n'  # the part that fitted was cut off
    sink.write([{"n": 3}])
    sink.close()
    assert [r["n"] for r in lines(tmp_path)] == [1, 3]


def test_a_full_disk_is_log_full_and_a_refused_reservation_writes_nothing(tmp_path):
    from edge.sink import disk_error

    assert isinstance(disk_error(OSError(28, "No space left on device")), LogFull)
    assert type(disk_error(OSError(5, "Input/output error"))) is SinkError

    def refuse(size: int) -> None:
        if size > 20:
            raise LogFull(f"no room for {size} bytes")

    sink = JsonlSegmentSink(tmp_path, reserve=refuse)
    sink.write([{"n": 1}])
    with pytest.raises(LogFull, match="no room for"):
        sink.write([{"n": 2, "pad": "x" * 40}])
    sink.close()
    assert [r["n"] for r in lines(tmp_path)] == [1]


def test_a_segment_that_cannot_be_made_is_a_sink_error_not_a_crash(tmp_path):
    import shutil

    directory = tmp_path / "events"
    sink = JsonlSegmentSink(directory, max_bytes=10)
    sink.write([{"n": 1, "pad": "over ten bytes"}])
    shutil.rmtree(directory)  # the next batch must rotate, into a directory that is gone
    with pytest.raises(SinkError, match="could not be made"):
        sink.write([{"n": 2}])
    sink.close()


def test_a_sink_whose_directory_cannot_be_used_is_tried_again_until_it_opens(tmp_path):
    blocker = tmp_path / "var"
    blocker.write_text("a file, not a directory")
    clock = [0.0]
    sink = RetryingSink(
        lambda: JsonlSegmentSink(blocker / "events"), "event log", 5.0, lambda: clock[0]
    )
    assert not sink.try_open() and "Not a directory" in (sink.error or "")
    with pytest.raises(SinkError, match="the event log cannot be opened") as refused:
        sink.write([{"n": 1}])
    assert refused.value.retry_after == 5
    blocker.unlink()
    with pytest.raises(SinkError):
        sink.write([{"n": 1}])  # not tried again before 5 s
    clock[0] += 5.0
    sink.write([{"n": 2}])  # tried again, opened
    assert sink.is_open and sink.error is None
    sink.close()
    assert [r["n"] for r in lines(blocker / "events")] == [2]


def test_concurrent_batches_share_fsyncs_and_each_returns_only_once_synced(tmp_path, monkeypatch):
    """Group commit: 8 threads × 20 batches against a slow disk take far fewer fsyncs than
    batches, and when a write returns, its batch lies inside what an fsync began on."""
    sink = JsonlSegmentSink(tmp_path)
    real_fsync, synced = os.fsync, []

    def slow_fsync(fd):
        status = os.fstat(fd)
        if not stat.S_ISDIR(status.st_mode):  # the directory's own fsyncs are not batches'
            synced.append(status.st_size)  # what this fsync will make durable (at least)
            time.sleep(0.005)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    late: list[str] = []

    def client(name: str) -> None:
        for batch in range(20):
            marker = f"{name}-{batch}"
            sink.write([{"id": marker}])
            [segment] = tmp_path.glob("*.jsonl.open")
            quoted = f'"{marker}"'.encode()
            end = segment.read_bytes().index(quoted) + len(quoted)
            if end > max(synced):
                late.append(marker)

    threads = [threading.Thread(target=client, args=(f"c{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sink.close()
    assert late == []
    assert len({r["id"] for r in lines(tmp_path)}) == 160
    assert len(synced) < 160 * 3 / 4  # batches waiting behind an fsync shared the next one


def test_a_failed_fsync_fails_every_batch_waiting_on_it_and_keeps_none(tmp_path, monkeypatch):
    sink = JsonlSegmentSink(tmp_path)
    sink.write([{"n": 0}])
    real_fsync, entered, release = os.fsync, threading.Event(), threading.Event()

    def failing_fsync(fd):
        entered.set()
        release.wait(5)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    outcomes: dict[int, str] = {}

    def client(n: int) -> None:
        try:
            sink.write([{"n": n}])
            outcomes[n] = "stored"
        except SinkError as exc:
            outcomes[n] = str(exc)

    first = threading.Thread(target=client, args=(1,))
    first.start()
    assert entered.wait(5)  # batch 1's fsync is running; 2 and 3 append behind it
    others = [threading.Thread(target=client, args=(n,)) for n in (2, 3)]
    for t in others:
        t.start()
    time.sleep(0.05)
    release.set()
    for t in [first, *others]:
        t.join()
    assert all("could not be written" in outcomes[n] for n in (1, 2, 3)), outcomes
    monkeypatch.setattr(os, "fsync", real_fsync)
    sink.write([{"n": 4}])
    sink.close()
    assert [r["n"] for r in lines(tmp_path)] == [0, 4]


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
def test_a_sigterm_during_a_burst_of_events_loses_no_accepted_event(
    bundle_dir, tmp_path, monkeypatch
):
    """The server is stopped while four clients send batches; every event it acknowledged must
    be in the log afterwards (a test that counts them, by id)."""
    monkeypatch.setenv("EDGEPERSO_EVENTS_PER_SECOND", "0")  # four clients on one address
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
        # Well into the burst; a server that stops acknowledging fails the test, not hangs it.
        deadline = time.monotonic() + 60
        while len(acknowledged) < 1_000 and any(t.is_alive() for t in clients):
            assert time.monotonic() < deadline, f"{len(acknowledged)} events acknowledged in 60 s"
            time.sleep(0.01)
        assert len(acknowledged) >= 1_000, f"the clients stopped at {len(acknowledged)} events"
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
