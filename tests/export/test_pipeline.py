import json

import pytest

from edge.bundle import load_bundle
from edge.recommend import Recommender
from edge.schemas import Context, RecommendRequest
from edge.scoring import FEATURES, CandidateSizes
from export.cases import make_cases
from export.config import BuildConfig, load_config
from export.errors import DataQualityError
from export.interactions import build_universe
from export.pipeline import export_bundle
from export.profiles import build_profiles
from export.ranker import training_rows
from export.stages.ranking import choose_labels
from export.stages.read import Dataset
from export.stages.visitors import fit_segments
from export.validate import QualityReport, normalize_events
from tests.conftest import SAMPLE, UCI_CONFIG


@pytest.mark.slow
def test_the_uci_sample_goes_in_without_preprocessing_and_beats_popularity(tmp_path):
    out = tmp_path / "uci"
    manifest = export_bundle([SAMPLE], out, load_config(UCI_CONFIG), quiet=True, report=False)
    lineage = manifest.lineage
    assert lineage.rows_read == 111_845
    assert lineage.dropped_by_reason["duplicate"] > 0
    assert lineage.files[0].sha256 and lineage.items > 3000
    table = manifest.metrics.evaluation.table
    assert table["edgeperso"]["hr@10"] > 0.3
    bundle = load_bundle(out)
    assert json.loads((out / "manifest.json").read_text())["build_id"] == bundle.build_id
    response = Recommender(bundle).recommend(
        RecommendRequest(context=Context(country="united kingdom"), k=5)
    )
    assert len(response.items) == 5 and response.fallback is None


@pytest.mark.slow
def test_the_simulated_shop_bundle_beats_popularity(tmp_path, seed):
    """On twice the shared shop: its 200-odd evaluation cases tell the two apart, where the
    shared shop's hundred-odd could not (with seed 0, popularity came out ahead on NDCG@10).
    Seeds 0-5 put edgeperso ahead by 0.058-0.097 NDCG@10 (the 95% interval starting at 0.022
    or higher), 0.037-0.131 hit rate@10 and 0.038-0.111 recall@50."""
    from simulator import simulate_shop

    shop = simulate_shop(n_users=1_600, n_items=400, n_events=80_000, seed=seed, days=40)
    files = shop.write(tmp_path / "shop", fmt="parquet")
    out = tmp_path / "bundle"
    export_bundle(
        [files["events"]],
        out,
        BuildConfig(seed=seed),
        catalog_path=files["catalog"],
        users_path=files["users"],
        quiet=True,
        report=False,
    )
    evaluation = load_bundle(out).manifest.metrics.evaluation
    ours, popular = evaluation.table["edgeperso"], evaluation.table["popular"]
    assert evaluation.cases > 150 and evaluation.protocol == "users"
    versus = evaluation.versus["popular"]  # paired NDCG@10 difference, edgeperso - popular
    assert versus.difference > 0.03 and versus.ci95[0] > 0
    assert ours["hr@10"] > popular["hr@10"] + 0.02
    assert ours["recall@50"] > popular["recall@50"] + 0.02
    assert ours["fallbacks"] == 0


def test_the_profile_store_holds_known_users_only(bundle, shop):
    assert len(bundle.profiles) == shop.events["user_id"].nunique()
    some = bundle.profiles.get(shop.events["user_id"].iloc[0])
    assert some is not None and some.recent_items and len(some.recent_items) <= 50


def test_a_bad_log_stops_the_build_with_the_reason(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(
        "ts,user_id,item_id,type\nyesterday,u1,a,view\nsoon,u2,b,view\n"
        "2026-01-01T00:00:00,u3,c,view\n"
    )
    with pytest.raises(
        DataQualityError, match="66.7% of the event rows were dropped.*bad_timestamp"
    ):
        export_bundle([path], tmp_path / "out", BuildConfig(), quiet=True, report=False)
    assert not (tmp_path / "out").exists()


def test_users_file_attributes_ride_along_in_profiles(bundle, shop):
    row = shop.users.iloc[0]
    profile = bundle.profiles.get(row["user_id"])
    if profile is None:  # a user without events has no profile
        pytest.skip("first simulated user has no events")
    assert profile.attributes["loyalty_tier"] == str(row["loyalty_tier"]).lower()
    assert bundle.manifest.lineage.users_with_attributes == len(shop.users)


def test_a_ranker_trained_without_context_ignores_the_context_features(shop, seed):
    import msgspec
    import numpy as np

    from edge.ranker import Ranker
    from edge.scoring import CONTEXT_FEATURES, FEATURES
    from export.interactions import build_universe
    from export.pipeline import train

    config = msgspec.convert({"seed": seed, "ranker": {"context_features": False}}, BuildConfig)
    events = normalize_events(shop.events, config, QualityReport())
    data = Dataset(events, build_universe(events, None))
    trained = train(data, config, choose_labels(data, config))
    ranker = Ranker(trained.ranker_onnx, FEATURES)
    rows = np.random.default_rng(seed).random((200, len(FEATURES))).astype(np.float32)
    shifted = rows.copy()
    shifted[:, [FEATURES.index(f) for f in CONTEXT_FEATURES]] *= 7.0
    np.testing.assert_array_equal(ranker.predict(rows), ranker.predict(shifted))


def test_intent_can_be_switched_on_as_a_ranker_feature(shop, seed):
    import msgspec

    from export.interactions import build_universe
    from export.pipeline import train

    config = msgspec.convert({"seed": seed, "ranker": {"intent_feature": True}}, BuildConfig)
    events = normalize_events(shop.events, config, QualityReport())
    data = Dataset(events, build_universe(events, None))
    trained = train(data, config, choose_labels(data, config))
    assert trained.ranker_training.features_switched_off == []
    assert trained.intent is not None and trained.segments is not None


def test_the_ranker_is_trained_with_the_visitors_segment_and_intent(bundle, shop):
    """Segment and intent reach the ranker's training rows the way the edge computes them,
    with segments of each customer's history before the label window."""
    training = bundle.manifest.models.ranker.training
    assert training.features_switched_off == ["purchase_intent"]  # off by default
    events = normalize_events(shop.events, BuildConfig(), QualityReport())
    cut = events["ts"].quantile(0.8)
    history, window = events[events["ts"] < cut], events[events["ts"] >= cut]
    segments = fit_segments(Dataset(events, build_universe(events, None)), BuildConfig())
    before = segments.of(history)
    assert set(before) <= set(history["user_id"]) and set(before.values()) <= set(
        segments.segmenter.names_
    )
    profiles = build_profiles(history, BuildConfig().events.weights)
    cases = make_cases("sessions", window, profiles, ["purchase", "add_to_cart"], 200, 0)
    x = training_rows(bundle.model, profiles, cases, 5, 0, CandidateSizes(), bundle.visitor).x
    intent, segment = x[:, FEATURES.index("purchase_intent")], x[:, FEATURES.index("segment")]
    assert ((intent > 0) & (intent < 1)).all() and len(set(intent.tolist())) > 5
    assert set(segment.tolist()) <= set(range(len(bundle.visitor.segments.names)))


def test_the_feedback_log_is_input_to_the_next_build(shop, tmp_path):
    """The loop closes: what POST /v1/events stores is read by export as it is."""
    from datetime import UTC, datetime

    import msgspec

    from edge.feedback import feedback_records
    from edge.schemas import FEEDBACK_TYPES, FeedbackBatch, ResolvedContext
    from edge.sink import JsonlSegmentSink

    rows = shop.events.head(20_000).to_dict("records")
    sink = JsonlSegmentSink(tmp_path / "log", max_bytes=1_000_000)
    context = ResolvedContext("", "", 0, "night")
    for start in range(0, len(rows), 900):
        events = [
            {k: (v.to_pydatetime() if k == "ts" else v) for k, v in row.items() if v != ""}
            for row in rows[start : start + 900]
        ]
        shown = [
            {
                "type": "impression",
                "item_id": e["item_id"],
                "ts": e["ts"],
                "session_id": e["session_id"],
                "slot": "home",
            }
            for e in events[:100]
        ]
        batch = msgspec.convert({"events": events + shown}, FeedbackBatch)
        sink.write(feedback_records(batch, FEEDBACK_TYPES, context, datetime.now(UTC), None))
    sink.close()
    segments = sorted((tmp_path / "log").glob("*.jsonl"))
    assert len(segments) > 1
    manifest = export_bundle(
        segments, tmp_path / "bundle", BuildConfig(), quiet=True, report=False, evaluate=False
    )
    lineage = manifest.lineage
    assert lineage.rows_read == 20_000 + 23 * 100
    assert lineage.rows_kept == lineage.rows_read  # impressions kept, with weight 0
    assert load_bundle(tmp_path / "bundle").build_id == manifest.build_id


def test_experiments_in_the_config_travel_in_the_bundle(shop, tmp_path):
    config_path = tmp_path / "config.toml"
    config_path.write_text(
        '[[experiments]]\nkey = "strip"\nunit = "session"\n'
        'variants = [{ name = "control", ranker = "popularity" }, '
        '{ name = "new", weight = 3, content = { banner = "spring" } }]\n'
    )
    events = tmp_path / "events.csv"
    shop.events.head(5_000).to_csv(events, index=False)
    manifest = export_bundle(
        [events], tmp_path / "b", load_config(config_path), quiet=True, report=False, evaluate=False
    )
    assert manifest.models.experiments.keys == ["strip"]
    bundle = load_bundle(tmp_path / "b")
    [experiment] = bundle.experiments
    assert [v.name for v in experiment.variants] == ["control", "new"]
    answer = Recommender(bundle).recommend(RecommendRequest(session_id="s-1", k=3))
    assert answer.variants["strip"] in ("control", "new")
