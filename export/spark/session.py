"""The Spark session a build runs in: `local[*]` by default (every core of this machine), or
any cluster by its master URL. Python workers run the driver's interpreter, so the functions
shipped to them (`mapInPandas`) find the same libraries."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from export.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DEFAULT_MASTER = "local[*]"


def spark_session(master: str = DEFAULT_MASTER, app_name: str = "edgeperso export") -> SparkSession:
    """A session on `master`. A local one listens on 127.0.0.1 only and shows no web UI; all
    times are UTC, as the one-machine build keeps them. Without PySpark, or when the session
    cannot start (no Java runtime, a master that does not answer), a ConfigError says so."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise ConfigError(
            f"--engine spark needs PySpark: pip install 'edgeperso[spark]' ({exc})"
        ) from exc

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.showConsoleProgress", "false")
    )
    if master.startswith("local"):
        # Every server the JVM starts (driver, block manager) listens on 127.0.0.1 only.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = (
            builder.config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.ui.enabled", "false")
            # Two shuffle partitions per core, where Spark's 200 made each shuffle start 200
            # tasks, and each step after one 200 Python workers: a build of 100,000 events
            # took minutes. A cluster keeps its own setting.
            .config("spark.sql.shuffle.partitions", str(2 * _local_cores(master)))
            # A local master's executors run in the driver's JVM, which Spark gives 1 GB: too
            # little for the tables of ten million events. A cluster keeps its own setting.
            .config("spark.driver.memory", f"{_local_driver_memory_mb()}m")
            # Spark's 1 GB cap on what one job brings to the driver stopped a build of 50
            # million events at the interaction matrix (38 million user and item pairs, about
            # 45 bytes each); half the heap leaves room to convert what arrives.
            .config("spark.driver.maxResultSize", f"{_local_driver_memory_mb() // 2}m")
        )
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # PySpark's own errors, and a Java that is missing or too old
        raise ConfigError(
            f"Spark could not start a session on {master!r}: {str(exc).strip()[:300]}. It needs a "
            "Java runtime 17 or newer (java on the PATH or JAVA_HOME; make system installs one) "
            "and, for a cluster, a master URL that answers"
        ) from exc
    session.sparkContext.setLogLevel("ERROR")
    logging.getLogger("py4j").setLevel(logging.WARNING)  # not a line per closed connection
    return session


@contextmanager
def running_session(master: str = DEFAULT_MASTER) -> Iterator[SparkSession]:
    """The session already running in this process (`spark-submit`, a notebook), left running
    afterwards; else a new one on `master`, stopped afterwards."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        active = None
    else:
        active = SparkSession.getActiveSession()
    if active is not None:
        with _limits_explained():
            yield active
        return
    session = spark_session(master)
    try:
        with _limits_explained():
            yield session
    finally:
        session.stop()


RESULT_TOO_BIG = re.compile(
    r"Total size of serialized results of \d+ tasks \(([^)]+)\) is bigger than "
    r"spark\.driver\.maxResultSize \(([^)]+)\)"
)


@contextmanager
def _limits_explained() -> Iterator[None]:
    """A Spark limit the build ran into, as a ConfigError that names the setting to raise
    (Spark's own error is a Java stack trace)."""
    try:
        yield
    except Exception as exc:
        found = RESULT_TOO_BIG.search(str(exc))
        if found is None:
            raise
        raise ConfigError(
            f"Spark refused to bring {found[1]} to the driver, past spark.driver.maxResultSize "
            f"({found[2]}). The driver receives one row per customer and item pair (the "
            "interaction matrix, about 45 bytes a pair) and one per customer and item; raise "
            "spark.driver.maxResultSize, and spark.driver.memory with it, in the session's "
            "settings (spark-defaults.conf, or --conf under spark-submit)"
        ) from exc


def _local_cores(master: str) -> int:
    """The cores of local, local[N], local[*], local[N,F] and local[*,F]."""
    inside = master[len("local[") : -1] if master.startswith("local[") else "1"
    cores = inside.split(",")[0].strip()
    if cores == "*":
        return os.cpu_count() or 1
    return max(1, int(cores)) if cores.isdigit() else 1


LOCAL_DRIVER_MEMORY_SHARE = 0.4  # of this machine's memory; the build's own process needs the rest


def _local_driver_memory_mb() -> int:
    """The heap of a local master's JVM: a share of this machine's memory, at least 1 GB."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(1024, int(LOCAL_DRIVER_MEMORY_SHARE * total / 2**20))
