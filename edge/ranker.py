"""The composite ranker as an onnxruntime session, built once at load time, never per request."""

from __future__ import annotations

import numpy as np

from edge.errors import BundleError
from edge.onnx_session import onnx_session


class Ranker:
    """Scores candidate × context feature rows; the positive-class probability is the score."""

    def __init__(
        self,
        onnx_bytes: bytes,
        feature_names: tuple[str, ...],
        name: str = "ranker",
        columns: list[int] | None = None,
    ):
        """`columns`: where its features are in the rows it is given, when not all of them in
        order (a bundle trained before a feature was added)."""
        self.session = onnx_session(onnx_bytes, f"{name}.onnx")
        self.columns = None if columns is None else np.asarray(columns, dtype=np.intp)
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].shape[-1] != len(feature_names):
            raise BundleError(
                f"{name}.onnx expects inputs {[(i.name, i.shape) for i in inputs]}, but the "
                f"manifest lists {len(feature_names)} features",
                file=f"{name}.onnx",
            )
        self.input_name = inputs[0].name
        self.output_name = self._probability_output()
        self.feature_names = feature_names

    def _probability_output(self) -> str:
        names: list[str] = [output.name for output in self.session.get_outputs()]
        for name in names:
            if name in ("probabilities", "output_probability"):
                return name
        return names[-1]

    def predict(self, features: np.ndarray) -> np.ndarray:
        if self.columns is not None:
            features = features[:, self.columns]
        probabilities: np.ndarray
        (probabilities,) = self.session.run(
            [self.output_name], {self.input_name: features.astype(np.float32, copy=False)}
        )
        return probabilities[:, 1]
