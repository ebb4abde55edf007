"""`edgeperso export --engine spark` builds the same bundle as the one-machine build: the same
lineage and evaluation, and every file byte for byte; and without PySpark or Java, it says
what to install."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import SAMPLE, UCI_CONFIG

pytestmark = [
    pytest.mark.slow,  # a Spark session (a JVM) and two builds
    # py4j, PySpark's bridge to the JVM, leaves its sockets to the garbage collector.
    pytest.mark.filterwarnings("ignore:unclosed <socket:ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


def test_the_spark_engine_builds_the_same_bundle_with_the_same_evaluation(
    spark, shop_files, tmp_path, monkeypatch
):
    """The simulated shop's bundle (catalog, users, evaluation against the baselines), built on
    this machine and on Spark (its events given by URL), with both kinds of split: the
    evaluation (and the baselines' tuning) on a random share of each customer's items, the
    ranker's labels on a time window.
    The same lineage, the same evaluation figures, every model and table byte for byte, so the
    same answers. The Spark build never brings the log to the driver, nor a part of it."""
    import msgspec

    from export.config import BuildConfig
    from export.pipeline import export_bundle
    from export.spark import dataset
    from tests.conftest import SEED

    config = msgspec.convert(
        {"seed": SEED, "evaluation": {"protocol": "random"}, "ranker": {"labels": "window"}},
        BuildConfig,
    )
    inputs = {
        "catalog_path": shop_files["catalog"],
        "users_path": shop_files["users"],
        "quiet": True,
        "report": False,
    }
    local_dir, spark_dir = tmp_path / "local", tmp_path / "on-spark"
    export_bundle([shop_files["events"]], local_dir, config, **inputs)
    collected = []
    collect = dataset.collected

    def counted(events, universe):
        frame = collect(events, universe)
        collected.append(len(frame))
        return frame

    monkeypatch.setattr(dataset, "collected", counted)
    # Given by URL, as a cluster reads its log: Spark reads the file where it is.
    events_url = f"file://{shop_files['events'].resolve()}"
    export_bundle([events_url], spark_dir, config, **inputs, spark_master="local[2]")
    local, on_spark = (
        json.loads((d / "manifest.json").read_text()) for d in (local_dir, spark_dir)
    )
    assert on_spark["lineage"] == local["lineage"]
    assert _without_times(on_spark["metrics"]) == _without_times(local["metrics"])
    evaluation = local["metrics"]["evaluation"]
    assert evaluation["split"]["split"] == "random" and evaluation["cases"] > 100
    assert local["models"]["ranker"]["training"]["labels"] == "time"
    assert on_spark["models"] == local["models"]
    assert on_spark["files"] == local["files"]
    events = local["lineage"]["rows_kept"]
    # No part of the log reaches the driver: at most a sample of sessions' events (none here,
    # where the window asks `users` questions).
    assert max(collected, default=0) < events / 20
    assert (
        spark.sparkContext._jsc is not None
    )  # the build used the running session, left it running


def _without_times(metrics: dict) -> dict:
    """The evaluation's figures but the time each model took to answer (this machine's load)."""
    table = metrics["evaluation"]["table"]
    untimed = {
        model: {k: v for k, v in row.items() if not k.startswith("ms_")}
        for model, row in table.items()
    }
    return metrics | {"evaluation": metrics["evaluation"] | {"table": untimed}}


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


def test_a_local_masters_jvm_gets_a_share_of_this_machines_memory(spark):
    """Its executors run in the driver's JVM: Spark's default heap of 1 GB ran out collecting
    the last days of ten million events."""
    from export.spark.session import LOCAL_DRIVER_MEMORY_SHARE

    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    heap = spark.sparkContext._jvm.java.lang.Runtime.getRuntime().maxMemory()
    assert heap > max(1.5 * 2**30, 0.8 * LOCAL_DRIVER_MEMORY_SHARE * total)
    # What one job may bring to the driver: half of it, where Spark's 1 GB stopped a build of
    # 50 million events at its interaction matrix.
    cap = spark.sparkContext.getConf().get("spark.driver.maxResultSize")
    assert cap.endswith("m") and int(cap[:-1]) * 2**20 >= 0.45 * heap


def test_a_result_past_sparks_cap_is_an_error_that_names_the_setting():
    """Spark's own error is a Java stack trace; the build's names what to raise."""
    from export.errors import ConfigError
    from export.spark.session import _limits_explained

    spark_said = (  # as Spark 4.1 words it, from a session capped at 2 MiB
        "org.apache.spark.SparkException: Job aborted due to stage failure: Total size of "
        "serialized results of 2 tasks (2.2 MiB) is bigger than spark.driver.maxResultSize "
        "(2.0 MiB)"
    )
    with (
        pytest.raises(ConfigError, match=r"bring 2.2 MiB .*maxResultSize \(2.0 MiB\).* raise"),
        _limits_explained(),
    ):
        raise RuntimeError(spark_said)
    with pytest.raises(KeyError), _limits_explained():
        raise KeyError("anything else is left as it is")
