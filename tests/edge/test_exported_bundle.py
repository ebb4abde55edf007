"""Integration tests: the edge on the bundle a full export writes from the simulated shop
(tests/conftest.py's `bundle_dir` and `bundle`, whose first use pays for the build). They check
what only a real build has: its lineage and evaluation, int8 embeddings with their scan graph,
and candidates drawn from a catalogue larger than the candidate lists. Everything else the edge
does is tested on the small hand-written bundle (`tests.edge.small_bundle`)."""

import math
import shutil

import numpy as np
import pytest

from edge.bundle import EMBEDDINGS, BundleError, load_bundle
from edge.recommend import Recommender


def test_an_exported_manifest_carries_lineage_and_metrics(bundle):
    lineage = bundle.manifest.lineage
    assert lineage.rows_read >= lineage.rows_kept > 0
    assert lineage.files[0].sha256
    evaluation = bundle.manifest.metrics.evaluation
    assert set(evaluation.table) == {"edgeperso", "popular"}


def test_an_exported_intent_model_carries_its_evaluation(bundle):
    assert 0.0 <= bundle.manifest.models.intent.evaluation.auc <= 1.0


def test_warm_up_waits_for_the_int8_scan_being_built(bundle_dir, monkeypatch):
    # Without the scan, a long warm-up search would dequantize every row of the item matrix.
    import time

    from edge import model

    real = model.Int8Scan

    def slow_scan(*args):
        time.sleep(0.3)
        return real(*args)

    monkeypatch.setattr(model, "Int8Scan", slow_scan)
    bundle = load_bundle(bundle_dir)
    assert bundle.model.embeddings.scan is None  # still being built
    Recommender(bundle, budget_ms=math.inf).warm_up()
    assert bundle.model.embeddings.scan is not None


def test_nothing_is_decoded_and_no_int8_scan_is_built_from_embeddings_that_failed_their_checksum(
    bundle_dir, tmp_path, monkeypatch
):
    from edge import model

    copy = shutil.copytree(bundle_dir, tmp_path / "bundle")
    built = []
    monkeypatch.setattr(model, "Int8Scan", lambda *args: built.append(args))
    path = copy / EMBEDDINGS
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    decoded = []
    real = load_bundle.__globals__["_decode"]
    monkeypatch.setitem(
        load_bundle.__globals__, "_decode", lambda *args: decoded.append(real(*args))
    )
    with pytest.raises(BundleError, match="embeddings.msgpack has sha256"):
        load_bundle(copy)
    assert decoded == [] and built == []


def test_an_exported_bundles_candidates_are_many_and_carry_every_feature(bundle):
    from edge.schemas import ResolvedContext
    from edge.scoring import FEATURES, CandidateSizes, build_user_state, candidate_features, fold_in

    profiles = bundle.profiles.as_dict()
    user = max(profiles, key=lambda u: len(profiles[u].recent_items))
    state = build_user_state(bundle.model, profiles[user])
    context = ResolvedContext("mobile", "de", 21, "evening")
    candidates = candidate_features(bundle.model, state, context, purchase_intent=0.25, segment=2)
    assert candidates.features.shape == (candidates.items.size, len(FEATURES))
    assert candidates.items.size > 50 and np.isfinite(candidates.features).all()
    assert not np.isin(candidates.items, state.blocked).any()
    assert bundle.model.items.in_stock[candidates.items].all()
    # The user vector's best allowed item is a candidate, with its reciprocal rank.
    top, _ = bundle.model.embeddings.top(fold_in(bundle.model, state), CandidateSizes().als)
    allowed = [
        (rank, item)
        for rank, item in enumerate(top.tolist())
        if item not in set(state.blocked.tolist()) and bundle.model.items.in_stock[item]
    ]
    rank, item = allowed[0]
    row = candidates.items.tolist().index(item)
    assert candidates.features[row, FEATURES.index("als_rr")] == np.float32(1 / (rank + 1))
