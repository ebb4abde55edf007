"""The purchase-intent model fitted from the events on Spark (export/spark/sessions.py: the
windows' sessions, the sampled ones' events, the customers' visit history found on Spark) is
the one-machine model: the same rows, so the same evaluation and the same graph."""

from __future__ import annotations

import msgspec
import pytest

from export.intent import fit_intent

pytestmark = [
    pytest.mark.slow,  # a Spark session (a JVM) on local[2]
    # py4j, PySpark's bridge to the JVM, leaves its sockets to the garbage collector.
    pytest.mark.filterwarnings("ignore:unclosed <socket:ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.mark.parametrize("max_sessions", [200_000, 300])  # every session; a sample of them
def test_the_intent_model_is_the_same(shop_events, max_sessions):
    from export.spark.sessions import fit_intent as fit_on_spark

    ic = shop_events.config.intent
    windows = (ic.train_days, ic.eval_days, max_sessions, 7)
    graph, info = fit_intent(shop_events.events, shop_events.universe, *windows)
    got_graph, got_info = fit_on_spark(shop_events.on_spark, shop_events.universe, *windows)
    assert info is not None and info.evaluation is not None
    assert info.evaluation.train_sessions > 200
    assert msgspec.to_builtins(got_info) == msgspec.to_builtins(info)
    assert got_graph == graph
