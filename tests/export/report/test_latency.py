import math

from export.report.latency import load_timed, measure_latency, percentile


def test_every_kind_of_request_is_timed_through_the_edge(bundle_dir):
    bundle, load_ms = load_timed(bundle_dir)
    latency = measure_latency(bundle, load_ms, per_kind=7, budget_ms=math.inf)
    assert load_ms > 0 and latency.load_ms == load_ms
    assert {name: len(times) for name, times in latency.answers_ms.items()} == {
        "known customer": 7,
        "anonymous session": 7,
        "context only": 7,
    }
    assert latency.fallbacks == 0  # no budget to run out of: every answer is the model's
    assert all(ms > 0 for ms in latency.all_ms())
    assert percentile([1.0, 2.0, 3.0], 0.5) == 2.0
    assert math.isnan(percentile([], 0.5))
