"""Input files that Spark reads by URL (export/spark/files.py), through Hadoop's `file:` file
system, the one every Spark has: listed as a local directory is, peeked at and hashed without
being downloaded, and validated as the one-machine build validates the same files on disk."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from export.config import BuildConfig
from export.errors import InputError
from export.sources import local_inputs
from tests.export.spark.conftest import NOW
from tests.export.spark.test_validate import faulty_log, one_machine

pytestmark = [
    pytest.mark.slow,  # a Spark session (a JVM) on local[2]
    pytest.mark.filterwarnings("ignore:unclosed <socket:ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


def url(path: Path) -> str:
    """A file: URL as Hadoop reads it (`Path.as_uri` would escape the "=" of dt= folders)."""
    return f"file://{path.resolve()}"


def segments_folder(shop, tmp_path: Path) -> Path:
    """A folder as nodes ship their feedback, around the faulty log: a CSV, the JSON-lines
    part cut into segments over two days (its times cut to the day), and what a listing must
    leave out (an exposures
    folder, Spark's _SUCCESS marker and _temporary folder, a .crc file)."""
    (tmp_path / "made").mkdir()
    csv, jsonl = faulty_log(shop, tmp_path / "made")
    root = tmp_path / "feedback"
    (root / "dt=2026-12-05").mkdir(parents=True)
    (root / "dt=2026-12-06").mkdir()
    csv.rename(root / "dt=2026-12-05" / "a-first.csv")
    # Times to the day: the many equal times leave the order of the rows to their places.
    lines = [json.dumps(_to_the_day(json.loads(line))) + "\n" for line in jsonl.open()]
    cuts = [0, 1000, 1900, 2400, len(lines)]
    for n, (start, end) in enumerate(zip(cuts, cuts[1:], strict=False)):
        day = "dt=2026-12-05" if n < 2 else "dt=2026-12-06"
        (root / day / f"segment-{n}.jsonl").write_text("".join(lines[start:end]))
    (root / "exposures").mkdir()
    (root / "exposures" / "x.jsonl").write_text('{"experiment": "e"}\n')
    (root / "_temporary").mkdir()
    (root / "_temporary" / "part-0.parquet").write_bytes(b"half written")
    (root / "_SUCCESS").write_bytes(b"")
    (root / "dt=2026-12-05" / ".a-first.csv.crc").write_bytes(b"crc")
    return root


def _to_the_day(event: dict[str, object]) -> dict[str, object]:
    if isinstance(event["ts"], str) and event["ts"][:2] == "20":
        event["ts"] = event["ts"][:10] + "T00:00:00+00:00"
    return event


def test_a_folder_url_lists_as_the_local_folder(spark, shop, tmp_path):
    """Its table files in name order, each its own input but the JSON-lines ones, which are
    one input together; exposures, underscores and dots left out; earlier days left out."""
    from export.spark.files import UrlInput, url_inputs

    root = segments_folder(shop, tmp_path)
    found = url_inputs(spark, url(root))
    folder = url(root).replace("file:///", "file:/")
    assert [list(i.urls) for i in found] == [
        [f"{folder}/dt=2026-12-05/a-first.csv"],
        [
            f"{folder}/dt=2026-12-05/segment-0.jsonl",
            f"{folder}/dt=2026-12-05/segment-1.jsonl",
            f"{folder}/dt=2026-12-06/segment-2.jsonl",
            f"{folder}/dt=2026-12-06/segment-3.jsonl",
        ],
    ]
    assert found[1].name == f"{url(root)} (4 JSON-lines files)"
    later = url_inputs(spark, url(root), since=pd.Timestamp("2026-12-06").date())
    assert [len(i.urls) for i in later] == [2]
    with_exposures = url_inputs(spark, url(root), exposures=True)
    assert any(u.endswith("exposures/x.jsonl") for i in with_exposures for u in i.urls)
    one = url_inputs(spark, url(root / "dt=2026-12-05" / "a-first.csv"))
    assert one == [UrlInput((f"{folder}/dt=2026-12-05/a-first.csv",), one[0].name)]
    globbed = url_inputs(spark, f"{url(root)}/dt=*/segment-[01].jsonl")
    assert [len(i.urls) for i in globbed] == [2]


def test_urls_that_name_nothing_readable_say_so(spark, tmp_path):
    from export.spark.files import url_inputs

    (tmp_path / "empty").mkdir()
    cases = {
        url(tmp_path / "missing.csv"): "cannot read it",
        url(tmp_path / "empty"): "no table files",
        f"{url(tmp_path)}/*.parquet": "nothing matches this glob",
        "nosuchscheme://bucket/events/": "Spark has no file system for this URL",
    }
    for given, message in cases.items():
        with pytest.raises(InputError, match=message):
            url_inputs(spark, given)


def test_a_folder_url_validates_as_the_local_folder_does(spark, shop, tmp_path):
    """The same drop counts and kept events, row for row, as the one-machine build of the
    folder on disk (whose JSON-lines files it joins into one). Small splits make Spark cut each
    segment into several and pack them out of order, which the rows' places must survive."""
    from export.spark.validate import in_time_order, read_events, validate_events

    root = segments_folder(shop, tmp_path)
    config = BuildConfig()
    with local_inputs([root]) as local:
        expected, expected_report = one_machine(local.local_paths(), config)
    spark.conf.set("spark.sql.files.maxPartitionBytes", "65536")
    try:
        with local_inputs([url(root)], spark=spark) as remote:
            assert [len(getattr(p, "urls", ())) for p in remote.paths] == [1, 4]
            validated = validate_events(read_events(spark, remote.paths), config, NOW)
            got = in_time_order(validated.events)
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    assert validated.report.dropped == expected_report.dropped
    assert validated.report.dropped["duplicate_event_id"] > 0
    assert validated.report.rows_kept == expected_report.rows_kept
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def test_files_given_by_url_validate_as_the_same_files_on_disk(spark, shop, tmp_path):
    """A semicolon CSV (gzipped: its delimiter is told from its first line) and Parquet with
    nanosecond times (found from its footer alone)."""
    from export.spark.files import url_inputs
    from export.spark.validate import in_time_order, read_events, validate_events

    events = shop.events.head(3000).copy()
    csv = tmp_path / "events.csv.gz"
    with gzip.open(csv, "wt") as out:
        events.head(1500).to_csv(out, sep=";", index=False)
    parquet = tmp_path / "events.parquet"
    events.tail(1500).assign(ts=pd.to_datetime(events["ts"].tail(1500), utc=True)).to_parquet(
        parquet
    )
    config = BuildConfig()
    expected, expected_report = one_machine([csv, parquet], config)
    sources = [i for p in (csv, parquet) for i in url_inputs(spark, url(p))]
    validated = validate_events(read_events(spark, sources), config, NOW)
    assert validated.report.dropped == expected_report.dropped
    pd.testing.assert_frame_equal(in_time_order(validated.events), expected, check_dtype=False)


def test_peeking_and_hashing_read_the_files_where_they_are(spark, tmp_path):
    from export.spark.files import combined_sha256, head, parquet_schema, sha256s

    text = tmp_path / "events.csv.gz"
    with gzip.open(text, "wt") as out:
        out.write("user_id;item_id\n" + "u;i\n" * 50_000)
    frame = pd.DataFrame({"ts": pd.date_range("2026-01-01", periods=3, freq="h", tz="UTC")})
    parquet = tmp_path / "events.parquet"
    frame.to_parquet(parquet)
    assert head(spark, url(text)) == "user_id;item_id"
    assert parquet_schema(spark, url(parquet)).equals(pq.read_schema(parquet))
    with pytest.raises(InputError, match="not a Parquet file"):
        parquet_schema(spark, url(text))
    hashes = sha256s(spark, [url(text).replace("file:///", "file:/"), url(parquet)])
    assert list(hashes.values())[0] == hashlib.sha256(text.read_bytes()).hexdigest()
    assert combined_sha256([("a", "1"), ("b", "2")]) == hashlib.sha256(b"1  a\n2  b\n").hexdigest()


def test_the_lineage_names_and_hashes_files_read_by_url(spark, shop, tmp_path):
    """A file's own sha256, rows and URL; a folder's JSON-lines files as one input, hashed as
    the list of theirs."""
    from export.spark.files import combined_sha256
    from export.stages.read import Sources, read_inputs

    root = tmp_path / "log"
    root.mkdir()
    events = shop.events.head(900)
    events.head(300).to_csv(root / "a.csv", index=False)
    for n in range(2):
        part = events.iloc[300 * (n + 1) : 300 * (n + 2)]
        part.to_json(root / f"segment-{n}.jsonl", orient="records", lines=True, date_format="iso")
    with local_inputs([url(root)], spark=spark) as remote:
        data = read_inputs(Sources(tuple(remote.paths)), BuildConfig(), lambda _: None, spark)
    folder = f"file:{root.resolve()}"  # as Hadoop names what it lists
    csv_file, segments = data.lineage.files
    assert (csv_file.name, csv_file.rows) == (f"{folder}/a.csv", 300)
    assert csv_file.sha256 == sha256_of(root / "a.csv")
    assert (segments.name, segments.rows) == (f"{url(root)} (2 JSON-lines files)", 600)
    listed = [(f"{folder}/{p.name}", sha256_of(p)) for p in sorted(root.glob("*.jsonl"))]
    assert segments.sha256 == combined_sha256(listed)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
