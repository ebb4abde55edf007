import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from edge.errors import BundleError
from edge.int8_scan import Int8Scan
from edge.intent import IntentLabels
from edge.onnx_session import onnx_session, session_options
from edge.ranker import Ranker
from edge.visitor import VisitorModel


def identity_graph() -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "id", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_a_session_runs_on_one_thread_with_every_graph_optimization():
    session = onnx_session(identity_graph(), "identity.onnx")
    options = session.get_session_options()
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert session.get_providers() == ["CPUExecutionProvider"]
    row = np.array([[1.0, 2.0, 3.0]], np.float32)
    np.testing.assert_array_equal(session.run(["y"], {"x": row})[0], row)
    given = onnx_session(identity_graph(), "identity.onnx", session_options(threads=2))
    assert given.get_session_options().intra_op_num_threads == 2


def test_a_graph_onnxruntime_cannot_load_is_a_bundle_error_naming_the_file():
    with pytest.raises(BundleError, match="^ranker.onnx cannot be loaded by onnxruntime: ") as info:
        onnx_session(b"not onnx", "ranker.onnx")
    assert info.value.file == "ranker.onnx"


@pytest.mark.parametrize(
    ("load", "file"),
    [
        (lambda graph: Ranker(graph, ("a", "b", "c")), "ranker.onnx"),
        (lambda graph: VisitorModel(graph, None, IntentLabels()), "visitor.onnx"),
        (
            lambda graph: Int8Scan(graph, np.ones((4, 3), np.int8), np.ones(4, np.float32)),
            "embeddings.msgpack",  # the int8 scan's graph travels inside it
        ),
    ],
)
def test_every_model_the_edge_loads_names_its_file_when_onnxruntime_refuses_it(load, file):
    with pytest.raises(BundleError, match="cannot be loaded by onnxruntime") as info:
        load(b"\x08\x07garbage")
    assert info.value.file == file
