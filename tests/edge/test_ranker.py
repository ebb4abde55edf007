"""The ranker: an onnxruntime session over candidate × context rows whose score is the positive
class's probability. Its graphs here are tiny and written out, so each score is known."""

import numpy as np
import pytest
from onnx import TensorProto, helper

from edge.errors import BundleError
from edge.ranker import Ranker


def classifier(width: int, outputs: list[str], name: str = "features") -> bytes:
    """A graph whose every output is [1 - x0, x0] of its input's first column, except that an
    output named "decoy" is [x0, 1 - x0]: which output is read shows in the scores."""
    first = helper.make_tensor("first", TensorProto.INT64, [1], [0])
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    nodes = [
        helper.make_node("Gather", [name, "first"], ["x0"], axis=1),
        helper.make_node("Sub", ["one", "x0"], ["rest"]),
        helper.make_node("Concat", ["rest", "x0"], ["positive_last"], axis=1),
        helper.make_node("Concat", ["x0", "rest"], ["positive_first"], axis=1),
    ]
    for output in outputs:
        source = "positive_first" if output == "decoy" else "positive_last"
        nodes.append(helper.make_node("Identity", [source], [output]))
    graph = helper.make_graph(
        nodes,
        "classifier",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, width])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, [None, 2]) for o in outputs],
        [first, one],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString()


ROWS = np.array([[0.9, 5.0, 5.0], [0.2, 5.0, 5.0], [0.6, -1.0, 0.0]])


@pytest.mark.parametrize(
    "outputs",
    [
        ["decoy", "probabilities"],  # skl2onnx's name, wherever it is
        ["output_probability", "decoy"],  # another converter's name
        ["decoy", "whatever"],  # neither: the last output
    ],
)
def test_the_score_is_the_positive_class_probability_of_the_probability_output(outputs):
    ranker = Ranker(classifier(3, outputs), ("a", "b", "c"))
    scores = ranker.predict(ROWS)  # float64 rows: cast to the graph's float32
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores, [0.9, 0.2, 0.6], rtol=1e-6)


def test_a_graph_of_another_width_than_the_manifests_features_is_refused_naming_the_file():
    expected = "^ranker.onnx expects inputs .* but the manifest lists 2 features"
    with pytest.raises(BundleError, match=expected) as info:
        Ranker(classifier(3, ["probabilities"]), ("a", "b"))
    assert info.value.file == "ranker.onnx"
    with pytest.raises(BundleError, match="^second.onnx expects inputs") as info:
        Ranker(classifier(3, ["probabilities"]), ("a", "b"), name="second")
    assert info.value.file == "second.onnx"


def test_a_graph_with_more_than_one_input_is_refused():
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 3]) for n in "ab"]
    output = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 3])
    node = helper.make_node("Add", ["a", "b"], ["probabilities"])
    graph = helper.make_graph([node], "two_inputs", inputs, [output])
    two = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(BundleError, match="expects inputs \\[\\('a', \\[None, 3\\]\\), \\('b'"):
        Ranker(two.SerializeToString(), ("x", "y", "z"))


def test_the_input_is_fed_by_the_graphs_own_name():
    ranker = Ranker(classifier(3, ["probabilities"], name="float_input"), ("a", "b", "c"))
    assert ranker.input_name == "float_input" and ranker.feature_names == ("a", "b", "c")
    np.testing.assert_allclose(ranker.predict(ROWS[:1]), [0.9], rtol=1e-6)


def test_a_ranker_trained_on_fewer_features_reads_its_own_columns():
    """A bundle trained before a feature was added: its ranker reads the columns its
    manifest names, wherever the edge computes them."""
    from edge.bundle.load import _feature_columns
    from edge.scoring import FEATURES

    older = tuple(name for name in FEATURES if name != "als_score")
    columns = _feature_columns(list(older))
    assert columns is not None and len(columns) == len(FEATURES) - 1
    assert _feature_columns(list(FEATURES)) is None  # today's bundles: no copy
    ranker = Ranker(classifier(len(older), ["probabilities"]), older, columns=columns)
    rows = np.zeros((2, len(FEATURES)), dtype=np.float32)
    rows[:, FEATURES.index(older[0])] = [0.25, 0.75]  # the older ranker's first column
    rows[:, 0] = 0.5
    assert ranker.predict(rows).tolist() == [0.25, 0.75]
    with pytest.raises(BundleError, match="names \\['no_such_feature'\\]"):
        _feature_columns([*older, "no_such_feature"])
