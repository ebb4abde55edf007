from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def spark():
    """A local Spark session on two cores (the JVM behind it lives as long as the process)."""
    from export.spark.session import spark_session

    session = spark_session("local[2]")
    yield session
    session.stop()
