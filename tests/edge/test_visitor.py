import numpy as np
import pytest

from edge.errors import BundleError
from edge.intent import INTENT_FEATURES, IntentLabels
from edge.schemas import Intent
from edge.segments import SEGMENT_FEATURES, SegmentRule
from edge.visitor import SegmentHead, VisitorModel, visitor_features
from tests.edge import small_bundle as shop


def test_a_stored_segment_wins_then_rules_then_the_nearest_cluster(small_bundle):
    visitor = small_bundle.visitor
    assert visitor.segments is not None and visitor.labels is not None
    features = dict.fromkeys(SEGMENT_FEATURES, 0.0) | {"sessions": 1.0}
    row = [0.0] * len(INTENT_FEATURES)
    segment, intent = visitor.describe("stored one", features, row)
    assert segment == "stored one"
    assert intent.probability == pytest.approx(shop.intent_probability(0, 0), abs=1e-4)
    assert visitor.describe(None, features, row)[0] == shop.segment_of(0.0) == "browsers"
    spender = features | {"monetary": 150.0}
    assert visitor.describe(None, spender, row)[0] == shop.segment_of(150.0) == "spenders"
    # The bundle's own rule (a cart left without a purchase) wins over the clusters.
    abandoner = spender | {"cart_abandon_share": 1.0}
    assert visitor.describe(None, abandoner, row)[0] == shop.SEGMENT_RULES[0].name
    rule = SegmentRule("one-timers", {"sessions": {"le": 1}})
    with_rule = VisitorModel(
        (small_bundle.directory / "visitor.onnx").read_bytes(),
        SegmentHead(visitor.segments.names, [rule]),
        visitor.labels,
    )
    assert with_rule.describe(None, spender, row)[0] == "one-timers"


def test_both_heads_answer_in_one_call(small_bundle):
    segment_rows = np.zeros((3, len(SEGMENT_FEATURES)), np.float32)
    segment_rows[1, SEGMENT_FEATURES.index("monetary")] = 150.0
    intent_rows = np.zeros((3, len(INTENT_FEATURES)), np.float32)
    intent_rows[2, INTENT_FEATURES.index("cart_adds")] = 2.0
    clusters, probabilities = small_bundle.visitor.run(segment_rows, intent_rows)
    assert clusters.tolist() == [0, 1, 0]
    expected = [shop.intent_probability(0, 0)] * 2 + [shop.intent_probability(2, 0)]
    np.testing.assert_allclose(probabilities, expected, rtol=1e-6)


def test_a_graph_that_disagrees_with_the_manifest_is_refused(small_bundle):
    graph = (small_bundle.directory / "visitor.onnx").read_bytes()
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
