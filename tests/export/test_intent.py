import math

import numpy as np
import pandas as pd
import pytest

from edge.intent import INTENT_FEATURES, IntentLabels
from edge.visitor import VisitorModel
from export.config import BuildConfig
from export.intent import (
    LEARNING_RATE,
    MAX_LEAF_NODES,
    MAX_TREES,
    SessionLog,
    calibration_table,
    fit_intent,
)
from export.interactions import build_universe
from export.ranker import classifier_to_onnx, fit_trees
from export.validate import QualityReport, normalize_events
from export.visitor import visitor_graph


def log(rows):
    """rows: (minute, user, session, item, type)"""
    frame = pd.DataFrame(rows, columns=["minute", "user_id", "session_id", "item_id", "type"])
    frame["ts"] = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(frame.pop("minute"), "min")
    frame["dwell_ms"], frame["device"], frame["local_hour"] = 5_000.0, "mobile", 20
    frame["price"], frame["qty"], frame["category"] = 1.0, 1.0, "hats"
    return frame


def column(x, name):
    return x[:, INTENT_FEATURES.index(name)]


def test_rows_stop_before_the_first_purchase_and_know_the_visit_history():
    events = log(
        [
            (0, "u", "s1", "a", "view"),
            (1, "u", "s1", "a", "purchase"),
            (600, "u", "s2", "b", "view"),
            (601, "u", "s2", "b", "add_to_cart"),
            (602, "u", "s2", "b", "purchase"),
            (900, "", "s3", "c", "purchase"),  # nothing seen before buying: no row
        ]
    )
    universe = build_universe(events, None)
    x, y, ids = SessionLog(events, universe).rows(pd.Index(["s1", "s2", "s3"]), seed=0)
    assert y.tolist() == [1, 1] and ids == ["s1", "s2"]
    assert column(x, "events").tolist()[0] == 1.0  # s1: the view only
    assert column(x, "events")[1] in (1.0, 2.0)  # s2: cut before its purchase
    assert math.isnan(column(x, "hours_since_last_visit")[0])
    assert column(x, "hours_since_last_visit")[1] == pytest.approx((600 - 1) / 60)
    assert column(x, "past_purchases").tolist() == [0.0, 1.0]
    assert column(x, "returning").tolist() == [1.0, 1.0] and column(x, "mobile").tolist() == [1, 1]


@pytest.fixture(scope="module")
def shop_events(shop):
    return normalize_events(shop.events, BuildConfig(), QualityReport())


def test_intent_is_learned_and_evaluated_on_the_following_window(shop_events):
    universe = build_universe(shop_events, None)
    onnx_bytes, info = fit_intent(shop_events, universe, 21, 7, 20_000, seed=0)
    evaluation = info.evaluation
    assert evaluation.train_window[1] == evaluation.eval_window[0]
    assert evaluation.auc > 0.6
    assert evaluation.log_loss < evaluation.log_loss_of_base_rate
    assert sum(row.sessions for row in evaluation.calibration) == evaluation.eval_sessions
    model = VisitorModel(visitor_graph(None, onnx_bytes), None, IntentLabels())
    segment, intent = model.describe(None, {}, [1.0] * len(INTENT_FEATURES))
    assert segment is None and 0.0 <= intent.probability <= 1.0
    assert intent.label in ("high intent", "browsing", "lurker")


def test_the_onnx_classifier_gives_sklearns_probabilities(shop_events, seed):
    universe = build_universe(shop_events, None)
    sessions = pd.Index(shop_events["session_id"].unique())
    x, y, _ = SessionLog(shop_events, universe).rows(sessions, seed)
    model = fit_trees(x, y, MAX_TREES, MAX_LEAF_NODES, LEARNING_RATE, seed)
    graph = visitor_graph(None, classifier_to_onnx(model, INTENT_FEATURES, "t"))
    _, got = VisitorModel(graph, None, IntentLabels()).run(None, x[:500])
    np.testing.assert_allclose(got, model.predict_proba(x[:500])[:, 1], atol=1e-5)


def test_labels_follow_the_thresholds_and_calibration_bins_add_up():
    labels = IntentLabels(high=0.6, browsing=0.2)
    assert [labels.label(p) for p in (0.05, 0.2, 0.59, 0.6)] == [
        "lurker",
        "browsing",
        "browsing",
        "high intent",
    ]
    table = calibration_table(np.array([0.05, 0.07, 0.95, 1.0]), np.array([0, 1, 1, 1]))
    assert [(r.low, r.sessions, r.observed) for r in table] == [
        (0.0, 2, 0.5),
        (0.9, 2, 1.0),
    ]


def test_thresholds_out_of_order_stop_the_build(tmp_path):
    from export.config import ConfigError, load_config

    path = tmp_path / "config.toml"
    path.write_text("[intent]\nhigh = 0.2\nbrowsing = 0.4\n")
    with pytest.raises(ConfigError, match="intent.browsing .* is over intent.high"):
        load_config(path)


def test_on_a_simulated_shop_the_model_is_measured_against_the_true_intent(shop, shop_events):
    universe = build_universe(shop_events, None)
    truth = shop.sessions.set_index("session_id")["true_intent"]
    _, info = fit_intent(shop_events, universe, 21, 7, 20_000, seed=0, truth=truth)
    measured = info.evaluation.against_truth
    assert measured.sessions == info.evaluation.eval_sessions
    assert measured.auc_of_model == info.evaluation.auc
    # Purchases are draws from the true intent: it ranks them better than any model can.
    assert measured.auc_of_true_intent > measured.auc_of_model > 0.6
    assert measured.spearman_with_true_intent > 0.3
