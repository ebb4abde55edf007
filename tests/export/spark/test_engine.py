"""`edgeperso export --engine spark` builds the same bundle as the one-machine build: the
same lineage, and every file byte for byte."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from export.cli import main
from tests.conftest import SAMPLE, UCI_CONFIG

pytestmark = [
    pytest.mark.slow,  # a Spark session (a JVM) and two builds
    # py4j, PySpark's bridge to the JVM, leaves its sockets to the garbage collector.
    pytest.mark.filterwarnings("ignore:unclosed <socket:ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


def test_the_spark_engine_builds_from_the_same_events(tmp_path, capsys):
    common = ["--events", str(SAMPLE), "--config", str(UCI_CONFIG), "--no-evaluate", "--quiet"]
    assert main(["export", *common, "--out", str(tmp_path / "local"), "--no-report"]) == 0
    spark = ["--engine", "spark", "--spark-master", "local[2]", "--no-report"]
    assert main(["export", *common, "--out", str(tmp_path / "spark"), *spark]) == 0
    local, on_spark = (
        json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("local", "spark")
    )
    assert on_spark["lineage"] == local["lineage"]
    # Every model and table, byte for byte: the same tables give the same fits.
    assert on_spark["files"] == local["files"]
    assert on_spark["models"] == local["models"]


def test_a_session_that_cannot_start_is_a_clear_error(tmp_path):
    """No Java runtime: one line that says what is missing, exit 2 (a process of its own: a
    JVM started by an earlier test would still answer in this one)."""
    env = os.environ | {"JAVA_HOME": str(tmp_path / "no-java"), "PATH": str(tmp_path)}
    args = ["export", "--events", str(SAMPLE), "--config", str(UCI_CONFIG), "--no-evaluate"]
    done = subprocess.run(
        [sys.executable, "-m", "export.cli", *args, "--out", str(tmp_path / "b"),
         "--engine", "spark", "--quiet"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "needs a Java runtime 17 or newer" in done.stderr
    assert "Traceback" not in done.stderr


def test_without_pyspark_the_error_says_which_extra_to_install(tmp_path):
    code = (
        "import sys; sys.modules['pyspark'] = None\n"  # as if the extra were not installed
        "from export.cli import main\n"
        f"sys.exit(main(['export', '--events', {str(SAMPLE)!r}, '--out', {str(tmp_path / 'b')!r},"
        " '--no-evaluate', '--quiet', '--engine', 'spark']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert "pip install 'edgeperso[spark]'" in done.stderr and "Traceback" not in done.stderr
