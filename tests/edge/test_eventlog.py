"""The events directory: its size cap and its disk's reserve refuse a batch whole (503 with
Retry-After, never a silent drop or half a batch), a disk that fills for real is answered the
same way, retention deletes only what it is asked to, and a directory that cannot be used does
not stop the server and recovers without a restart."""

import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

import edge.eventlog
from edge.app import create_app
from edge.config import Settings
from edge.eventlog import EventLog, delete_old_segments
from edge.sink import LogFull
from tests.servers import free_port, get_json, start_edge_app

JSON = {"content-type": "application/json"}


def batch(name: str, n: int = 10) -> list[dict]:
    return [
        {"type": "view", "item_id": "i00", "session_id": name, "event_id": f"{name}-{i}"}
        for i in range(n)
    ]


def logged_ids(directory: Path) -> list[str]:
    return [
        json.loads(line)["event_id"]
        for path in sorted(directory.glob("*.jsonl*"))
        for line in path.read_text().splitlines()
    ]


def size_of(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def fill(client, prefix: str, until_refused: int = 3, limit: int = 5_000):
    """Send batches of 10 until `until_refused` are refused; the acknowledged ids (by batch)
    and the refusals."""
    acknowledged, refusals = [], []
    for n in range(limit):
        events = batch(f"{prefix}{n}")
        response = client.post("/v1/events", content=json.dumps({"events": events}), headers=JSON)
        if response.status_code == 200:
            assert not refusals, "a batch was taken after a refusal, with nothing freed"
            acknowledged.append([e["event_id"] for e in events])
        else:
            refusals.append(response)
            if len(refusals) == until_refused:
                break
    return acknowledged, refusals


def settings(bundle_dir, events_dir, **overrides) -> Settings:
    given = {"events_per_second": 0.0, "reload_seconds": 0, **overrides}
    return Settings(bundle_dir=str(bundle_dir), events_dir=str(events_dir), **given)


def test_a_batch_past_the_cap_gets_503_with_retry_after_and_nothing_of_it_is_kept(
    small_bundle_dir, tmp_path
):
    events_dir = tmp_path / "events"
    app = create_app(settings(small_bundle_dir, events_dir, events_max_bytes=50_000))
    with TestClient(app) as client:
        assert client.get("/readyz").json()["events"] == {"status": "ok"}
        acknowledged, refusals = fill(client, "b")
        for refused in refusals:
            assert refused.status_code == 503 and refused.headers["retry-after"] == "60"
            error = refused.json()["error"]
            assert error["code"] == "event_log_full"
            assert (
                "would pass its cap of 50,000 bytes (EDGEPERSO_EVENTS_MAX_BYTES" in error["message"]
            )
            assert "nothing of this batch was kept: send it again in 60 s" in error["message"]
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["events"]["status"] == "full"
        assert "EDGEPERSO_EVENTS_MAX_BYTES" in ready.json()["events"]["reason"]
        answer = client.post("/v1/recommend", content=b'{"k": 2}', headers=JSON)
        assert answer.status_code == 200 and len(answer.json()["items"]) == 2
    ids = logged_ids(events_dir)
    assert ids == [i for b in acknowledged for i in b]  # every acknowledged event, no other
    assert len(acknowledged) >= 10
    assert 45_000 < size_of(events_dir) <= 50_000  # full to a batch's size, never past


def test_the_disk_reserve_refuses_before_the_disk_fills(small_bundle_dir, tmp_path):
    disk = os.statvfs(tmp_path)
    reserve = disk.f_bavail * disk.f_frsize + 1024**3  # more than the disk has free
    app = create_app(settings(small_bundle_dir, tmp_path / "e", events_min_free_bytes=reserve))
    with TestClient(app) as client:
        acknowledged, [refused] = fill(client, "r", until_refused=1)
        assert acknowledged == [] and refused.status_code == 503
        assert refused.json()["error"]["code"] == "event_log_full"
        assert "EDGEPERSO_EVENTS_MIN_FREE_BYTES" in refused.json()["error"]["message"]
        assert client.get("/readyz").json()["events"]["status"] == "full"


def test_the_space_is_read_at_most_once_a_second_and_counts_every_worker(tmp_path):
    clock = [0.0]
    log = EventLog(tmp_path, max_bytes=10_000, min_free_bytes=0)
    log.space._clock = lambda: clock[0]
    log.space.reserve(1_000)
    (tmp_path / "events-other-worker.jsonl").write_bytes(b"x" * 8_000)
    log.space.reserve(1_000)  # within the second: the other worker's file is not seen yet
    clock[0] += 1.0
    with pytest.raises(LogFull, match="holds 8,000 bytes, and a batch of 3,000 bytes"):
        log.space.reserve(3_000)  # 8,000 on disk (this one's reserved bytes were never written)


def old(path: Path, days: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"n": 1}\n')
    stamp = time.time() - days * 86400
    os.utime(path, (stamp, stamp))
    return path


def test_retention_deletes_only_closed_segments_older_than_asked_and_is_off_by_default(
    tmp_path, caplog
):
    stale = [old(tmp_path / "events-a.jsonl", 10), old(tmp_path / "exposures" / "x.jsonl", 10)]
    kept = [
        old(tmp_path / "events-b.jsonl", 2),  # younger than the retention
        old(tmp_path / "events-c-1-0001.jsonl.open", 10),  # open: still being written
        old(tmp_path / "notes.txt", 10),  # not a segment
    ]
    log = EventLog(tmp_path)
    assert log.upkeep() == []  # no retention set: nothing is ever deleted
    log.close()
    assert all(p.exists() for p in stale + kept)
    with caplog.at_level("WARNING", logger="edgeperso.eventlog"):
        deleted = delete_old_segments(tmp_path, retention_days=7, now=time.time())
    assert sorted(deleted) == sorted(stale)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)
    assert "deleted" in caplog.text and "EDGEPERSO_EVENTS_RETENTION_DAYS=7" in caplog.text
    assert Settings.from_env({"EDGEPERSO_EVENTS_RETENTION_DAYS": "7"}).events_retention_days == 7
    with pytest.raises(ValueError, match="EDGEPERSO_EVENTS_RETENTION_DAYS must be positive"):
        Settings.from_env({"EDGEPERSO_EVENTS_RETENTION_DAYS": "0"})


def test_an_unusable_events_directory_keeps_the_server_up_and_recovers_once_fixed(
    small_bundle_dir, tmp_path, monkeypatch
):
    monkeypatch.setattr(edge.eventlog, "UPKEEP_S", 0.05)
    blocker = tmp_path / "var"
    blocker.write_text("a file where the events directory's parent should be")
    events_dir = blocker / "events"
    with TestClient(create_app(settings(small_bundle_dir, events_dir))) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200  # recommendations do not need the log
        status = ready.json()["events"]
        assert status["status"] == "unavailable" and "cannot be opened" in status["reason"]
        assert "Not a directory" in status["reason"]
        assert client.post("/v1/recommend", content=b"{}", headers=JSON).status_code == 200
        refused = client.post(
            "/v1/events", content=json.dumps({"events": batch("u")}), headers=JSON
        )
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        error = refused.json()["error"]
        assert error["code"] == "event_sink_unavailable"
        assert "the event log cannot be opened" in error["message"]
        assert "nothing of this batch was kept" in error["message"]

        blocker.unlink()  # the operator fixes it; no restart
        deadline = time.monotonic() + 10
        while client.get("/readyz").json()["events"] != {"status": "ok"}:
            assert time.monotonic() < deadline, client.get("/readyz").json()
            time.sleep(0.02)
        body = json.dumps({"events": batch("v")})
        assert client.post("/v1/events", content=body, headers=JSON).status_code == 200
    assert logged_ids(events_dir) == [e["event_id"] for e in batch("v")]


# ---------------------------------------------------------------- a disk that fills for real
@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "4m"):
    """A tmpfs of `size` at `path`; skips the test where mounting is not permitted."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8); the byte cap test covers 503s")
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"mount -t tmpfs is not permitted here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill_disk(path: Path) -> int:
    """Write a file until the disk has no room left; its size."""
    written, chunk = 0, b"x" * 4096
    with path.open("wb", buffering=0) as filler:
        with contextlib.suppress(OSError):
            while True:
                written += filler.write(chunk)
    return written


def test_a_disk_that_fills_for_real_gets_503s_and_every_acknowledged_event_stays(
    small_bundle_dir, tmp_path
):
    """Another process fills the disk after the log last read its free space: the log's
    write(2) itself gets ENOSPC, and the failed batch is cut off and answered 503."""
    with small_tmpfs(tmp_path / "disk") as disk:
        events_dir = disk / "events"
        app = create_app(settings(small_bundle_dir, events_dir, events_min_free_bytes=0))
        with TestClient(app) as client:
            client.app.state.event_log.space.refresh_s = float("inf")  # never reads it again
            acknowledged, none = fill(client, "a", limit=5)
            assert len(acknowledged) == 5 and none == []
            fill_disk(disk / "filler")
            more, refusals = fill(client, "f")
            acknowledged += more
            for refused in refusals:
                assert refused.status_code == 503 and refused.headers["retry-after"] == "60"
                error = refused.json()["error"]
                assert error["code"] == "event_log_full"
                assert "its disk is full" in error["message"]
                assert "No space left on device" in error["message"]
                assert "nothing of this batch was kept" in error["message"]
            assert client.post("/v1/recommend", content=b"{}", headers=JSON).status_code == 200
            assert client.get("/readyz").status_code == 200
            on_disk = logged_ids(events_dir)  # read while full: no half batch at the end
            assert on_disk == [i for b in acknowledged for i in b]
            # Room again (what moving files away gives): taken, without a restart.
            (disk / "filler").unlink()
            body = json.dumps({"events": batch("after")})
            assert client.post("/v1/events", content=body, headers=JSON).status_code == 200
        expected = [i for b in acknowledged for i in b] + [e["event_id"] for e in batch("after")]
        assert logged_ids(events_dir) == expected
        assert not list(events_dir.glob("*.open"))  # closed at shutdown


def post(port: int, path: str, body: bytes) -> tuple[int, dict, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", path, body, JSON)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        connection.close()


def test_the_server_on_a_full_disk_refuses_whole_batches_and_loses_no_acknowledged_one(
    small_bundle_dir, tmp_path, monkeypatch
):
    """`python -m edge serve` as the container runs it, its events directory on a 4 MiB disk,
    with no reserve: batches of 20 until the disk is full, then what it answers, then SIGTERM.
    Prints the figures docs/serving.md quotes."""
    monkeypatch.setenv("EDGEPERSO_EVENTS_MIN_FREE_BYTES", "0")
    monkeypatch.setenv("EDGEPERSO_EVENTS_PER_SECOND", "0")
    with small_tmpfs(tmp_path / "disk") as disk:
        events_dir, port = disk / "events", free_port()
        server = start_edge_app(small_bundle_dir, events_dir, port)
        try:
            acknowledged: list[str] = []
            refusals: list[tuple[int, dict, dict]] = []
            for n in range(5_000):
                events = batch(f"s{n}", 20)
                reply = post(port, "/v1/events", json.dumps({"events": events}).encode())
                if reply[0] == 200:
                    assert not refusals, "a batch was taken after a refusal, with nothing freed"
                    acknowledged += [e["event_id"] for e in events]
                else:
                    refusals.append(reply)
                    if len(refusals) == 5:
                        break
            ready = get_json(port, "/readyz")
            answer = post(port, "/v1/recommend", b'{"k": 3}')
            server.send_signal(signal.SIGTERM)
            assert server.wait(timeout=30) in (0, -signal.SIGTERM)
        finally:
            if server.poll() is None:
                server.kill()
        statuses = {(s, h.get("retry-after"), b["error"]["code"]) for s, h, b in refusals}
        assert statuses == {(503, "60", "event_log_full")}
        assert ready[0] == 200 and answer[0] == 200 and len(answer[2]["items"]) == 3
        written = logged_ids(events_dir)
        assert written == acknowledged  # every acknowledged event, in order, and no other
        print(
            f"\n4 MiB tmpfs: {len(acknowledged) // 20} batches of 20 accepted "
            f"({len(acknowledged)} events, {size_of(events_dir):,} bytes), then "
            f"{[s for s, _, _ in refusals]}; first refusal: "
            f"{refusals[0][2]['error']['message']!r}; /readyz {ready[0]} {ready[1]['events']}; "
            f"/v1/recommend {answer[0]}; after SIGTERM {len(written)} events in the log"
        )
