"""The per-customer splits on Spark (export/spark/holdout.py) cut what the one-machine splits
(export.cases) cut: the same training and test events, row for row, from a split that keeps
both parts on Spark."""

from __future__ import annotations

import msgspec
import pandas as pd
import pytest

from export.config import BuildConfig
from export.stages.split import holdout

pytestmark = [
    pytest.mark.slow,  # a Spark session (a JVM) on local[2]
    # py4j, PySpark's bridge to the JVM, leaves its sockets to the garbage collector.
    pytest.mark.filterwarnings("ignore:unclosed <socket:ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.mark.parametrize("protocol", ["random", "leave_last_out", "next_new_item"])
def test_a_per_customer_split_cuts_the_same_events_on_spark(both, protocol):
    local, on_spark = both
    targets = ["add_to_cart", "purchase"]
    config = msgspec.convert({"evaluation": {"target_types": targets}}, BuildConfig)
    expected = holdout(local, config, protocol, days=0)
    got = holdout(on_spark, config, protocol, days=0)
    assert got.train.held is None and got.test.held is None  # both parts still on Spark
    assert got.description == expected.description
    for part in ("train", "test"):
        # The type's categories are those present where the part is collected, all of them
        # where the one-machine part is cut from the whole log.
        pd.testing.assert_frame_equal(
            getattr(got, part).events.astype({"type": object}),
            getattr(expected, part).events.reset_index(drop=True).astype({"type": object}),
            check_dtype=False,
        )
    test = expected.test.events
    assert test["user_id"].nunique() > 20 and set(test["type"]) <= set(targets)
