"""Shipping closed event segments to a real S3-compatible store (SeaweedFS on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import time

import pytest

from edge.eventlog import EventLog
from edge.objectstore import ObjectStore
from edge.ports import free_port
from edge.shipping import Shipper, check_node_id, new_node_id
from edge.sink import JsonlSegmentSink


def _records(n: int, start: int = 0) -> list[dict[str, object]]:
    return [
        {"type": "view", "item_id": f"i{i}", "event_id": f"e{i}"} for i in range(start, start + n)
    ]


def _stored_event_ids(store: ObjectStore, kind: str = "events") -> list[str]:
    ids = []
    for stored in store.list(f"{kind}/"):
        ids += [json.loads(line)["event_id"] for line in store.get(stored.key).splitlines()]
    return ids


def test_closed_segments_are_shipped_then_deleted_and_the_open_one_waits(tmp_path, store_url):
    store = ObjectStore(store_url)
    sink = JsonlSegmentSink(tmp_path, max_bytes=200)  # a few records per segment
    for i in range(10):
        sink.write(_records(3, 3 * i))
    shipper = Shipper(tmp_path, store, "node-a")
    closed = shipper.waiting()
    assert len(closed) >= 2
    assert shipper.ship_once() == len(closed)
    assert shipper.waiting() == [] and not list(tmp_path.glob("*.jsonl"))
    assert len(list(tmp_path.glob("*.jsonl.open"))) == 1  # still written to: not shipped
    sink.close()
    assert shipper.ship_once() == 1
    assert sorted(_stored_event_ids(store)) == sorted(f"e{i}" for i in range(30))
    keys = [o.key for o in store.list()]
    assert all(k.startswith("events/dt=") and "/node-a/events-" in k for k in keys)


def test_shipping_a_segment_again_writes_the_same_object(tmp_path, store_url):
    """A crash between the upload and the delete ships the segment again: same bytes, same
    key, so the store holds it once."""
    store = ObjectStore(store_url)
    sink = JsonlSegmentSink(tmp_path)
    sink.write(_records(5))
    sink.close()
    (segment,) = tmp_path.glob("*.jsonl")
    kept = segment.read_bytes()
    shipper = Shipper(tmp_path, store, "node-a")
    shipper.ship_once()
    segment.write_bytes(kept)  # as if the delete never happened
    shipper.ship_once()
    assert len(list(store.list())) == 1
    assert sorted(_stored_event_ids(store)) == [f"e{i}" for i in range(5)]


def test_exposures_go_under_their_own_kind(tmp_path, store_url):
    store = ObjectStore(store_url)
    log = EventLog(tmp_path)
    log.open()
    log.feedback.write(_records(2))
    log.exposures.write([{"type": "exposure", "event_id": "x1"}])
    log.close()
    Shipper(tmp_path, store, "n1").ship_once()
    assert sorted(_stored_event_ids(store, "events")) == ["e0", "e1"]
    assert _stored_event_ids(store, "exposures") == ["x1"]


def test_an_idle_segment_past_its_age_is_closed_so_it_can_ship(tmp_path):
    log = EventLog(tmp_path, rotate_s=0.05)
    log.open()
    log.feedback.write(_records(2))
    log.close_due_segments()
    assert not list(tmp_path.glob("*.jsonl"))  # not old yet
    time.sleep(0.1)
    log.close_due_segments()
    assert len(list(tmp_path.glob("*.jsonl"))) == 1
    log.close_due_segments()  # nothing open: nothing to do, no empty segment made
    log.feedback.write(_records(1, 2))  # the next batch opens a new segment
    log.close()
    assert len(list(tmp_path.glob("*.jsonl"))) == 2


def test_a_store_that_is_down_keeps_segments_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    sink = JsonlSegmentSink(tmp_path)
    sink.write(_records(3))
    sink.close()
    now = [100.0]
    shipper = Shipper(tmp_path, ObjectStore("s3://bucket/p/"), "n1", clock=lambda: now[0])
    assert shipper.ship_once() == 0
    assert len(shipper.waiting()) == 1
    status = shipper.status()
    assert status.status == "retrying" and "could not upload" in status.reason
    assert status.waiting_segments == 1 and status.waiting_bytes > 0
    # Backoff doubles: a round is not tried again before it is due.
    assert shipper._next_round == pytest.approx(101.0)
    shipper.ship_once()
    assert shipper._next_round == pytest.approx(102.0)


def test_one_worker_ships_at_a_time(tmp_path, store_url):
    store = ObjectStore(store_url)
    sink = JsonlSegmentSink(tmp_path)
    sink.write(_records(1))
    sink.close()
    holder, other = Shipper(tmp_path, store, "n1"), Shipper(tmp_path, store, "n1")
    with holder._lock(wait_until=None) as held:
        assert held
        assert other.ship_once() == 0  # the lock is taken: it only reports
        assert len(other.waiting()) == 1
    assert other.ship_once() == 1


def test_drain_ships_what_is_left_within_the_grace_period(tmp_path, store_url):
    store = ObjectStore(store_url)
    sink = JsonlSegmentSink(tmp_path, max_bytes=100)
    for i in range(5):
        sink.write(_records(2, 2 * i))
    sink.close()
    Shipper(tmp_path, store, "n1").drain(grace_s=10.0)
    assert not list(tmp_path.glob("*.jsonl"))
    assert len(_stored_event_ids(store)) == 10


def test_node_ids_are_safe_for_a_key():
    assert check_node_id(new_node_id())
    for bad in ("", "../x", "a/b", "-x", "x" * 65):
        with pytest.raises(ValueError, match="EDGEPERSO_NODE_ID"):
            check_node_id(bad)


def test_foreign_files_in_the_directory_are_left_alone(tmp_path, store_url):
    (tmp_path / "notes.jsonl").write_text("{}\n")
    (tmp_path / "events-x.jsonl.open").write_text("{}\n")
    assert Shipper(tmp_path, ObjectStore(store_url), "n1").waiting() == []
    assert os.path.exists(tmp_path / "notes.jsonl")


def test_the_node_id_is_kept_in_the_events_directory(tmp_path):
    from edge.shipping import node_id_of

    first = node_id_of(tmp_path)
    assert node_id_of(tmp_path) == first  # a server started again on the disk keeps it
    assert (tmp_path / ".node-id").read_text() == first
