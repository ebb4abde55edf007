"""`edgeperso export --engine spark` builds from the same validated events as the one-machine
build: the same lineage, and the same tables that follow from the events alone."""

from __future__ import annotations

import json

import pytest

from export.cli import main
from tests.conftest import SAMPLE, UCI_CONFIG

pytestmark = [
    pytest.mark.slow,  # a Spark session (a JVM) and two builds
    # py4j, PySpark's bridge to the JVM, leaves its sockets to the garbage collector.
    pytest.mark.filterwarnings("ignore:unclosed <socket:ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]
# What follows from the events alone (no random start, no thread order): equal bytes.
DETERMINED = ("items.msgpack", "popularity.msgpack", "covisitation.msgpack", "fallback.json")


def test_the_spark_engine_builds_from_the_same_events(tmp_path, capsys):
    common = ["--events", str(SAMPLE), "--config", str(UCI_CONFIG), "--no-evaluate", "--quiet"]
    assert main(["export", *common, "--out", str(tmp_path / "local"), "--no-report"]) == 0
    spark = ["--engine", "spark", "--spark-master", "local[2]", "--no-report"]
    assert main(["export", *common, "--out", str(tmp_path / "spark"), *spark]) == 0
    local, on_spark = (
        json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("local", "spark")
    )
    assert on_spark["lineage"] == local["lineage"]
    for name in DETERMINED:
        assert on_spark["files"][name] == local["files"][name], name
