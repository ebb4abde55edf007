import msgspec
import numpy as np
import pandas as pd
import pytest

from edge.schemas import SessionEvent
from edge.segments import SEGMENT_FEATURES, SegmentRule, rule_errors, session_segment_features
from edge.signals import session_signals
from edge.visitor import SegmentHead, VisitorModel
from export.config import BuildConfig
from export.errors import CannotTrainError
from export.interactions import ItemUniverse, build_universe
from export.segments import Segmenter, apply_rules, cluster_names, log_transform, user_features
from export.validate import QualityReport, normalize_catalog, normalize_events
from export.visitor import visitor_graph


def log(rows):
    """rows: (day, user, session, item, type, price, dwell_ms, category)"""
    frame = pd.DataFrame(
        rows,
        columns=[
            "day",
            "user_id",
            "session_id",
            "item_id",
            "type",
            "price",
            "dwell_ms",
            "category",
        ],
    )
    frame["ts"] = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(frame.pop("day"), "D")
    frame["qty"], frame["device"], frame["local_hour"] = 1.0, "mobile", 20
    return frame


def test_user_features_are_in_real_units():
    events = log(
        [
            (0, "u1", "s1", "a", "view", 10.0, 30_000, "hats"),
            (0, "u1", "s1", "a", "purchase", 10.0, np.nan, "hats"),
            (14, "u1", "s2", "b", "add_to_cart", 5.0, np.nan, "shoes"),
            (20, "u2", "s3", "c", "view", 7.0, 10_000, "hats"),
            (20, "", "s4", "c", "view", 7.0, 10_000, "hats"),
        ]
    )
    f = user_features(events)
    assert list(f.index) == ["u1", "u2"]  # anonymous rows have no segment
    u1 = f.loc["u1"]
    assert u1["recency_days"] == 6.0 and u1["sessions"] == 2 and u1["monetary"] == 10.0
    assert u1["categories"] == 2 and u1["cart_abandon_share"] == 0.5 and u1["avg_dwell_s"] == 30.0
    assert u1["sessions_per_week"] == pytest.approx(2 / (20 / 7))
    assert f.loc["u2", "sessions_per_week"] == 1.0  # under a week of tenure counts as one
    assert f.loc["u2", "device"] == "mobile" and f.loc["u2", "hour_bucket"] == 3


def test_an_events_own_category_wins_over_its_items_and_ties_go_to_the_first_value():
    events = log(
        [
            (0, "u1", "s1", "a", "view", 10.0, 1_000, ""),  # hats, from the universe
            (1, "u1", "s1", "b", "view", 10.0, 1_000, "hats"),  # its own label, not "shoes"
            (2, "u1", "s2", "unlisted", "view", 1.0, 1_000, ""),  # no category anywhere
            (3, "u2", "s3", "b", "view", 10.0, 1_000, ""),
            (4, "u2", "s3", "a", "view", 10.0, 1_000, "boots"),  # a name the universe lacks
        ]
    )
    events["device"] = ["mobile", "mobile", "desktop", "tablet", "desktop"]
    universe = ItemUniverse(
        ids=["a", "b"],
        category=np.array([0, 1], dtype=np.int32),
        category_names=["hats", "shoes"],
        price=np.array([10.0, 10.0], dtype=np.float32),
        in_stock=np.array([True, True]),
    )
    f = user_features(events, universe)
    assert f.loc["u1", "categories"] == 1 and f.loc["u2", "categories"] == 2
    assert user_features(events).loc["u1", "categories"] == 1  # only its own label: "hats"
    assert f.loc["u1", "device"] == "mobile"
    assert f.loc["u2", "device"] == "desktop"  # one each: the first in value order


@pytest.fixture(scope="module")
def fitted(shop):
    config = BuildConfig()
    events = normalize_events(shop.events, config, QualityReport())
    universe = build_universe(events, normalize_catalog(shop.catalog, config))
    features = user_features(events, universe)
    return features, Segmenter(seed=0).fit(features)


def segment_head_only(segmenter: Segmenter, rules: list[SegmentRule]) -> VisitorModel:
    return VisitorModel(
        visitor_graph(segmenter.to_onnx(), None), SegmentHead(segmenter.names_, rules), None
    )


def test_segments_are_described_stable_and_uniquely_named(fitted):
    features, segmenter = fitted
    assert 3 <= segmenter.k_ <= 10 and segmenter.k_ in segmenter.silhouettes_
    table = segmenter.table_
    assert sum(row["size"] for row in table) == len(features)
    assert len({row["segment"] for row in table}) == len(table)
    assert segmenter.stability_["ari_other_seed"] > 0.8


def test_the_onnx_graph_assigns_the_clusters_sklearn_does(fitted):
    """Parity: log, scaling and K-Means in one graph, real units in."""
    features, segmenter = fitted
    visitor = segment_head_only(segmenter, [])
    x = features[list(SEGMENT_FEATURES)].to_numpy(np.float32)
    expected = segmenter.kmeans_.predict(segmenter.scaler_.transform(log_transform(x)))
    clusters, _ = visitor.run(x, None)
    assert (clusters == expected).mean() > 0.999  # float32 ties at most
    row = dict(zip(SEGMENT_FEATURES, x[0].tolist()))
    assert visitor.describe(None, row, []) == (segmenter.names_[expected[0]], None)


def test_rules_take_precedence_over_clusters(fitted):
    features, segmenter = fitted
    busy = SegmentRule("busy explorers", {"sessions_per_week": {"gt": 2}, "categories": {"ge": 3}})
    clusters = [segmenter.names_[c] for c in segmenter.labels_]
    segments = apply_rules(features, [busy], clusters)
    matched = (features["sessions_per_week"] > 2) & (features["categories"] >= 3)
    assert matched.any() and not matched.all()
    assert all((s == "busy explorers") == m for s, m in zip(segments, matched))
    visitor = segment_head_only(segmenter, [busy])
    row = features[matched].iloc[0]
    segment, _ = visitor.describe(None, {f: row[f] for f in SEGMENT_FEATURES}, [])
    assert segment == "busy explorers"


def test_rule_errors_name_the_rule_field_and_what_is_allowed():
    errors = rule_errors("vip", {"visits": {"gt": 5}, "monetary": {"above": 1}})
    assert "segment rule 'vip': unknown feature 'visits'; allowed: recency_days" in errors[0]
    assert "segment rule 'vip', monetary: unknown operator 'above'; allowed: gt, ge" in errors[1]
    assert rule_errors("x", {}) == ["segment rule 'x' has no conditions"]


def test_names_say_what_the_centre_says():
    index = {f: i for i, f in enumerate(SEGMENT_FEATURES)}
    centres = np.zeros((3, len(SEGMENT_FEATURES)))
    centres[0, [index["monetary"], index["sessions"]]] = 2.0
    centres[0, index["recency_days"]] = -1.0
    centres[1, index["cart_abandon_share"]] = 2.0
    names = cluster_names(centres)
    assert names[0] == "high-value loyal" and "cart abandoners" in names[1]
    assert names[2] == "average"


def test_a_live_session_has_features_too():
    events = [
        SessionEvent("view", "a", dwell_ms=20_000),
        SessionEvent("view", "b", dwell_ms=40_000),
        SessionEvent("add_to_cart", "b"),
    ]
    categories, prices = {"a": 0, "b": 1}, {"b": 9.0}
    signals = session_signals(
        events,
        lambda ids: [categories[i] for i in ids],
        lambda ids: [prices.get(i) for i in ids],
    )
    features = session_segment_features(signals)
    assert features["categories"] == 2 and features["avg_dwell_s"] == 30.0
    assert features["cart_abandon_share"] == 1.0 and features["monetary"] == 0.0
    assert set(features) == set(SEGMENT_FEATURES)
    msgspec.json.encode(features)  # plain numbers


def test_a_bad_segment_rule_stops_the_build_naming_it(tmp_path):
    from export.config import ConfigError, load_config

    path = tmp_path / "config.toml"
    path.write_text('[[segments.rules]]\nname = "vip"\nwhen = { visits = { gt = 5 } }\n')
    with pytest.raises(ConfigError, match="segment rule 'vip': unknown feature 'visits'"):
        load_config(path)


def test_the_bundle_describes_its_segments(bundle):
    info = bundle.manifest.models.segments
    assert info.k == len(info.clusters) == len(info.table)
    assert set(info.stability) == {"ari_other_seed", "ari_half_of_customers"}
    segments = {p.segment for p in bundle.profiles.as_dict().values()}
    assert segments <= set(info.clusters) and len(segments) > 1


def test_dbscan_segments_travel_as_one_graph_too(fitted):
    """The DBSCAN option: clusters by density plus a noise segment; the graph assigns the
    nearest core point's cluster within eps, as scikit-learn labels the fitted customers."""
    features, _ = fitted
    segmenter = Segmenter(seed=0, method="dbscan", eps=0.8, min_samples=5).fit(features)
    assert segmenter.names_[-1] == "other customers" and segmenter.k_ >= 1
    assert sum(row["size"] for row in segmenter.table_) == len(features)
    visitor = segment_head_only(segmenter, [])
    x = features[list(SEGMENT_FEATURES)].to_numpy(np.float32)
    clusters, _ = visitor.run(x, None)
    assert (clusters == segmenter.assign(x)).mean() > 0.99  # float32 ties at most
    # Core and noise points exactly; border points may sit near two clusters.
    assert (clusters == segmenter.labels_).mean() > 0.97
    assert "ari_half_of_customers" in segmenter.stability_


def test_dbscan_that_finds_nothing_says_what_to_change(fitted):
    features, _ = fitted
    with pytest.raises(CannotTrainError, match="raise segments.eps or lower segments.min_samples"):
        Segmenter(method="dbscan", eps=1e-4, min_samples=50).fit(features)
