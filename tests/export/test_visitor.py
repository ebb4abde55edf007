import numpy as np
import onnx
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from edge.intent import INTENT_FEATURES, IntentLabels
from edge.segments import SEGMENT_FEATURES
from edge.visitor import SegmentHead, VisitorModel
from export.ranker import classifier_to_onnx
from export.segments import Segmenter, log_transform
from export.visitor import visitor_graph


@pytest.fixture(scope="module")
def heads(seed):
    rng = np.random.default_rng(seed)
    customers = rng.gamma(2.0, 3.0, size=(400, len(SEGMENT_FEATURES)))
    segmenter = Segmenter(k=4, seed=seed).fit(
        pd.DataFrame(customers, columns=SEGMENT_FEATURES).assign(device="")
    )
    x = rng.normal(size=(2_000, len(INTENT_FEATURES))).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 3] + rng.normal(size=x.shape[0]) > 0).astype(np.int8)
    classifier = HistGradientBoostingClassifier(max_iter=20, random_state=seed).fit(x, y)
    return segmenter, classifier, customers.astype(np.float32), x


def test_one_graph_answers_as_both_fitted_models(heads):
    """Parity of the merged graph with scikit-learn, head by head."""
    segmenter, classifier, customers, sessions = heads
    graph = visitor_graph(
        segmenter.to_onnx(), classifier_to_onnx(classifier, INTENT_FEATURES, "intent")
    )
    visitor = VisitorModel(graph, SegmentHead(segmenter.names_, []), IntentLabels())
    n = 300
    clusters, probabilities = visitor.run(customers[:n], sessions[:n])
    expected = segmenter.kmeans_.predict(segmenter.scaler_.transform(log_transform(customers)))
    assert (clusters == expected[:n]).mean() > 0.99
    np.testing.assert_allclose(
        probabilities, classifier.predict_proba(sessions[:n])[:, 1], atol=1e-5
    )


def test_either_head_alone_or_none(heads):
    segmenter, classifier, _, _ = heads
    only_segments = onnx.load_from_string(visitor_graph(segmenter.to_onnx(), None))
    assert [i.name for i in only_segments.graph.input] == ["segment_features"]
    only_intent = visitor_graph(None, classifier_to_onnx(classifier, INTENT_FEATURES, "t"))
    assert [o.name for o in onnx.load_from_string(only_intent).graph.output] == [
        "intent_probabilities"
    ]
    assert visitor_graph(None, None) is None


def test_a_head_with_other_names_is_refused(heads):
    segmenter, _, _, _ = heads
    with pytest.raises(ValueError, match="the intent graph has no output 'intent_probabilities'"):
        # A segment graph passed as intent: right input name, wrong output.
        visitor_graph(None, segmenter.to_onnx())
