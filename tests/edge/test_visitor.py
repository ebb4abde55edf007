import numpy as np
import pytest

from edge.errors import BundleError
from edge.intent import INTENT_FEATURES, IntentLabels
from edge.schemas import Intent
from edge.segments import SEGMENT_FEATURES, SegmentRule
from edge.visitor import SegmentHead, VisitorModel, visitor_features


def test_a_stored_segment_wins_then_rules_then_the_nearest_cluster(bundle):
    visitor = bundle.visitor
    assert visitor.segments is not None and visitor.labels is not None
    features = dict.fromkeys(SEGMENT_FEATURES, 0.0) | {"sessions": 1.0}
    row = [0.0] * len(INTENT_FEATURES)
    segment, intent = visitor.describe("stored one", features, row)
    assert segment == "stored one" and 0.0 <= intent.probability <= 1.0
    segment, _ = visitor.describe(None, features, row)
    assert segment in visitor.segments.names
    rule = SegmentRule("one-timers", {"sessions": {"le": 1}})
    with_rule = VisitorModel(
        (bundle.directory / "visitor.onnx").read_bytes(),
        SegmentHead(visitor.segments.names, [rule]),
        visitor.labels,
    )
    assert with_rule.describe(None, features, row)[0] == "one-timers"


def test_both_heads_answer_in_one_call(bundle):
    clusters, probabilities = bundle.visitor.run(
        np.zeros((3, len(SEGMENT_FEATURES)), np.float32),
        np.zeros((3, len(INTENT_FEATURES)), np.float32),
    )
    assert clusters.shape == (3,) and probabilities.shape == (3,)
    assert ((0.0 <= probabilities) & (probabilities <= 1.0)).all()


def test_a_graph_that_disagrees_with_the_manifest_is_refused(bundle):
    graph = (bundle.directory / "visitor.onnx").read_bytes()
    with pytest.raises(BundleError, match="but the manifest describes"):
        VisitorModel(graph, None, IntentLabels())  # the graph has a segment head too
    with pytest.raises(BundleError, match="cannot be loaded by onnxruntime"):
        VisitorModel(b"not onnx", None, IntentLabels())


def test_segments_and_intent_reach_the_ranker_as_numbers():
    head = SegmentHead(["a", "b"], [SegmentRule("vip", {"monetary": {"gt": 100}})])
    assert [head.code(s) for s in ("a", "b", "vip")] == [0.0, 1.0, 2.0]
    assert np.isnan(head.code(None)) and np.isnan(head.code("from another bundle"))
    visitor = type("Visitor", (), {"segments": head})()
    assert visitor_features(visitor, "vip", Intent(0.3, "browsing")) == (0.3, 2.0)
    intent, segment = visitor_features(None, None, None)
    assert np.isnan(intent) and np.isnan(segment)
