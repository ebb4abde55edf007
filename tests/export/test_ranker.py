"""Parity: onnxruntime on the exported graph gives the probabilities sklearn gives."""

import numpy as np

from edge.ranker import Ranker
from edge.scoring import FEATURES
from export.ranker import fit_trees, ranker_to_onnx


def test_onnx_ranker_matches_sklearn_on_the_same_rows(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(6000, len(FEATURES))).astype(np.float32)
    x[rng.random(x.shape) < 0.02] = np.nan  # missing values must route like sklearn's
    logit = np.nan_to_num(x[:, 0]) * 2 + np.nan_to_num(x[:, 2] * x[:, 5]) - 1
    y = (rng.random(6000) < 1 / (1 + np.exp(-logit))).astype(int)
    model = fit_trees(x, y, max_iter=60, max_leaf_nodes=15, learning_rate=0.1, seed=seed)
    ranker = Ranker(ranker_to_onnx(model), FEATURES)
    rows = rng.normal(size=(500, len(FEATURES))).astype(np.float32)
    rows[::7, 3] = np.nan
    np.testing.assert_allclose(ranker.predict(rows), model.predict_proba(rows)[:, 1], atol=1e-5)


def test_a_column_without_any_value_trains_and_serves(seed):
    """No intent model (or a log of anonymous sessions): a feature that is missing in every
    training row must neither stop the fit nor change what the served graph answers."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3000, len(FEATURES))).astype(np.float32)
    x[:, FEATURES.index("purchase_intent")] = np.nan
    y = (x[:, 0] + rng.normal(size=3000) > 0).astype(int)
    model = fit_trees(x, y, max_iter=20, max_leaf_nodes=15, learning_rate=0.1, seed=seed)
    assert np.isnan(x[:, FEATURES.index("purchase_intent")]).all()  # the caller's rows untouched
    ranker = Ranker(ranker_to_onnx(model), FEATURES)
    rows = x[:200].copy()
    served = ranker.predict(rows)
    rows[:, FEATURES.index("purchase_intent")] = 0.9  # an intent the trees never split on
    np.testing.assert_allclose(ranker.predict(rows), served, atol=1e-6)
