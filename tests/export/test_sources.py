"""Input tables from directories of log segments and from an object-store prefix (a real
S3-compatible store, SeaweedFS on 127.0.0.1): what nodes ship is what the next build reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import msgspec
import pandas as pd
import pytest

from edge.bundle import load_bundle
from edge.feedback import feedback_records
from edge.objectstore import ObjectStore
from edge.schemas import FEEDBACK_TYPES, FeedbackBatch, ResolvedContext
from edge.shipping import Shipper
from edge.sink import JsonlSegmentSink
from export.config import BuildConfig
from export.errors import InputError
from export.experiment_report import read_log
from export.pipeline import export_bundle
from export.sources import local_inputs


def _segment_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_directory_of_segments_is_read_as_one_file_without_its_exposures(tmp_path):
    (tmp_path / "log" / "exposures").mkdir(parents=True)
    (tmp_path / "log" / "events-1.jsonl").write_text('{"a": 1}\n')
    (tmp_path / "log" / "events-2.jsonl").write_text('{"a": 2}')  # no final newline
    (tmp_path / "log" / "events-3.jsonl.open").write_text('{"a": 3}\n')  # still written to
    (tmp_path / "log" / "exposures" / "events-4.jsonl").write_text('{"a": 4}\n')
    with local_inputs([tmp_path / "log"]) as inputs:
        (joined,) = inputs.paths
        assert _segment_lines(joined) == [{"a": 1}, {"a": 2}]
        assert inputs.names[joined].endswith("log/ (2 JSON-lines files)")
    assert not joined.exists()  # the scratch copy is gone after reading
    with local_inputs([tmp_path / "log"], exposures=True) as inputs:
        assert [r["a"] for r in _segment_lines(inputs.paths[0])] == [1, 2, 4]


def test_an_empty_directory_or_prefix_says_what_it_expected(tmp_path, store_url):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no table files"), local_inputs([tmp_path / "empty"]):
        pass
    ObjectStore(store_url).put("elsewhere/x.jsonl", b"{}\n")  # the bucket exists
    with pytest.raises(InputError, match="events-store"), local_inputs([store_url + "none/"]):
        pass


def test_urls_only_spark_reads_are_refused_here_with_what_is_read(tmp_path):
    for given in (tmp_path.as_uri(), "hdfs://namenode/events/", "s3a://bucket/events/"):
        with (
            pytest.raises(InputError, match="only a build on Spark .* reads URLs like this one"),
            local_inputs([given]),
        ):
            pass


def test_on_a_cluster_what_the_driver_downloads_or_joins_is_refused(tmp_path):
    """A cluster's executors would look for the driver's scratch files on their own disks; the
    error says what to give instead."""
    from export.sources import LocalInputs, _from_directory, is_cluster

    assert not any(map(is_cluster, ["local", "local[2]", "local[*]", "local[*,4]"]))
    assert all(map(is_cluster, ["spark://10.0.0.1:7077", "yarn", "k8s://https://k:6443"]))
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "a.parquet").write_bytes(b"")
    inputs = LocalInputs()
    _from_directory(tmp_path / "log", False, None, tmp_path, inputs, on_cluster=True)
    assert inputs.paths == [tmp_path / "log" / "a.parquet"]  # read where it is: no joining
    (tmp_path / "log" / "segment.jsonl").write_text("{}\n")
    with pytest.raises(InputError, match="executors cannot read .* URLs Spark reads itself"):
        _from_directory(tmp_path / "log", False, None, tmp_path, LocalInputs(), on_cluster=True)


def test_a_store_that_cannot_be_read_is_an_input_error(monkeypatch):
    from edge.ports import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    with pytest.raises(InputError, match="could not list"), local_inputs(["s3://bucket/p/"]):
        pass


def _ship_feedback(shop, tmp_path, store_url, retried: int) -> int:
    """The shop's first 20,000 events posted as feedback (no `ts`: the node stamps arrival),
    the last `retried` of them posted again, as a client does after a timeout; written as the
    node writes them and shipped as it ships them. Returns the number of records shipped."""
    rows = shop.events.head(20_000).drop(columns=["ts"]).to_dict("records")
    for i, row in enumerate(rows):
        row["event_id"] = f"e{i}"
    sink = JsonlSegmentSink(tmp_path / "events", max_bytes=300_000)
    context = ResolvedContext("", "", 0, "night")
    batches = [rows[start : start + 900] for start in range(0, len(rows), 900)]
    batches.append(rows[-retried:])
    for batch in batches:
        events = [{k: v for k, v in row.items() if v != ""} for row in batch]
        parsed = msgspec.convert({"events": events}, FeedbackBatch)
        sink.write(feedback_records(parsed, FEEDBACK_TYPES, context, datetime.now(UTC), None))
    sink.close()
    Shipper(tmp_path / "events", ObjectStore(store_url), "node-1").ship_once()
    return len(rows) + retried


@pytest.mark.slow
def test_export_from_the_store_reads_what_nodes_shipped_and_drops_retried_events(
    shop, tmp_path, store_url
):
    shipped = _ship_feedback(shop, tmp_path, store_url, retried=300)
    assert not list((tmp_path / "events").glob("*.jsonl"))  # all of it is in the store now
    manifest = export_bundle(
        [store_url], tmp_path / "bundle", BuildConfig(), quiet=True, report=False, evaluate=False
    )
    lineage = manifest.lineage
    assert lineage.rows_read == shipped
    assert lineage.dropped_by_reason["duplicate_event_id"] == 300
    assert lineage.rows_kept == 20_000
    [source] = lineage.files
    assert source.name.startswith(store_url) and "JSON-lines objects" in source.name
    assert load_bundle(tmp_path / "bundle").build_id == manifest.build_id


@pytest.mark.slow
def test_the_store_and_the_same_segments_on_disk_build_the_same_models(shop, tmp_path, store_url):
    _ship_feedback(shop, tmp_path, store_url, retried=1)
    local = tmp_path / "copy"
    store = ObjectStore(store_url)
    for stored in store.list():
        (local / stored.key).parent.mkdir(parents=True, exist_ok=True)
        (local / stored.key).write_bytes(store.get(stored.key))
    built = {}
    for name, source in (("store", store_url), ("disk", str(local))):
        export_bundle(
            [source], tmp_path / name, BuildConfig(), quiet=True, report=False, evaluate=False
        )
        manifest = load_bundle(tmp_path / name).manifest
        built[name] = {n: f.sha256 for n, f in manifest.files.items() if n.endswith(".onnx")}
    assert built["store"] == built["disk"] and built["store"]


def test_the_experiment_report_reads_the_store_with_its_exposures(tmp_path, store_url):
    store = ObjectStore(store_url)
    store.put(
        "events/dt=2026-12-07/n/events-a.jsonl", b'{"ts": "2026-12-07T00:00:00Z", "type": "view"}\n'
    )
    store.put(
        "exposures/dt=2026-12-07/n/events-b.jsonl",
        b'{"ts": "2026-12-07T00:00:00Z", "type": "exposure"}\n',
    )
    log = read_log([store_url])
    assert sorted(log["type"]) == ["exposure", "view"]
    assert isinstance(log, pd.DataFrame)
