"""The composite ranker as an onnxruntime session, built once at load time, never per request."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from edge.errors import BundleError


def session_options(threads: int = 1) -> ort.SessionOptions:
    # One thread per session: the server scales by processes, and a request scores a few hundred
    # rows, where thread hand-off costs more than it saves.
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


class Ranker:
    """Scores candidate × context feature rows; the positive-class probability is the score."""

    def __init__(self, onnx_bytes: bytes, feature_names: tuple[str, ...], name: str = "ranker"):
        try:
            self.session = ort.InferenceSession(
                onnx_bytes, sess_options=session_options(), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise BundleError(f"{name}.onnx cannot be loaded by onnxruntime: {exc}", file=name)
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].shape[-1] != len(feature_names):
            raise BundleError(
                f"{name}.onnx expects inputs {[(i.name, i.shape) for i in inputs]}, but the "
                f"manifest lists {len(feature_names)} features",
                file=name,
            )
        self.input_name = inputs[0].name
        self.output_name = self._probability_output()
        self.feature_names = feature_names

    def _probability_output(self) -> str:
        outputs = self.session.get_outputs()
        for output in outputs:
            if output.name in ("probabilities", "output_probability"):
                return output.name
        return outputs[-1].name

    def predict(self, features: np.ndarray) -> np.ndarray:
        (probabilities,) = self.session.run(
            [self.output_name], {self.input_name: features.astype(np.float32, copy=False)}
        )
        return probabilities[:, 1]
