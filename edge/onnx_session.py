"""Every onnxruntime session the edge makes, made one way: from the graph's bytes (a bundle's
file, never a path onnxruntime would open itself), with the serving options, and with
onnxruntime's untyped errors turned into a `BundleError` that names the file."""

from __future__ import annotations

import onnxruntime as ort

from edge.errors import BundleError

PROVIDERS = ["CPUExecutionProvider"]  # an edge node has no accelerator to ask for


def session_options(threads: int = 1) -> ort.SessionOptions:
    # One thread per session: the server scales by processes, and a request scores a few hundred
    # rows, where thread hand-off costs more than it saves.
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def onnx_session(
    model: bytes, file: str, options: ort.SessionOptions | None = None
) -> ort.InferenceSession:
    """A session for the graph `model`, read from `file` (the name errors give). `options`:
    the serving ones unless given (benchmarks profile, the int8 scan adds its rows)."""
    try:
        return ort.InferenceSession(
            model, sess_options=options or session_options(), providers=PROVIDERS
        )
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise BundleError(f"{file} cannot be loaded by onnxruntime: {exc}", file=file) from exc
