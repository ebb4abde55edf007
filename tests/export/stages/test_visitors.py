"""The visitors stage: segments need known customers, and profiles carry the segment each
customer was fitted in."""

from export.config import BuildConfig
from export.interactions import build_universe
from export.stages.read import Dataset
from export.stages.visitors import fit_segments, fit_visitors
from export.validate import QualityReport, normalize_events


def _data(events):
    events = normalize_events(events, BuildConfig(), QualityReport())
    return Dataset(events, build_universe(events, None))


def test_a_log_of_anonymous_sessions_has_no_segments_but_still_an_intent_model(shop, seed):
    config = BuildConfig(seed=seed)
    data = _data(shop.events.assign(user_id=""))
    assert fit_segments(data, config) is None
    visitors = fit_visitors(data, None, config)
    assert visitors.profiles == {} and visitors.segments is None
    assert visitors.intent is not None and visitors.graph is not None


def test_each_profile_carries_the_segment_its_customer_was_fitted_in(shop, seed):
    config = BuildConfig(seed=seed)
    data = _data(shop.events)
    segments = fit_segments(data, config)
    assert segments is not None and set(segments.fitted) == set(segments.features.index)
    visitors = fit_visitors(data, segments, config)
    assert visitors.segments == segments.description
    assert {u: p.segment for u, p in visitors.profiles.items()} == segments.fitted
    assert (visitors.intent.labels.high, visitors.intent.labels.browsing) == (0.5, 0.1)  # defaults
