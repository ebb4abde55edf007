"""`visitor.onnx`: the segment graph and the intent classifier merged into one graph with two
heads, so the edge answers "who is this, and will they buy" with one onnxruntime call."""

from __future__ import annotations

import onnx
from onnx import compose

from edge.visitor import INTENT_INPUT, INTENT_OUTPUT, SEGMENT_INPUT, SEGMENT_OUTPUT

# Each head's names get a prefix, which turns their own input and output names into the ones
# the edge reads: features -> segment_features, probabilities -> intent_probabilities.
HEADS = {
    "segment_": (SEGMENT_INPUT, SEGMENT_OUTPUT),
    "intent_": (INTENT_INPUT, INTENT_OUTPUT),
}


def _head(onnx_bytes: bytes, prefix: str) -> onnx.ModelProto:
    model = compose.add_prefix(onnx.load_from_string(onnx_bytes), prefix)
    wanted_input, wanted_output = HEADS[prefix]
    inputs = [i.name for i in model.graph.input]
    if inputs != [wanted_input]:
        raise ValueError(f"the {prefix[:-1]} graph takes {inputs}; expected [{wanted_input!r}]")
    outputs = [o for o in model.graph.output if o.name == wanted_output]
    if not outputs:
        raise ValueError(f"the {prefix[:-1]} graph has no output {wanted_output!r}")
    # Only the output the edge reads (an intent classifier also has a label output).
    del model.graph.output[:]
    model.graph.output.extend(outputs)
    return model


def visitor_graph(segments_onnx: bytes | None, intent_onnx: bytes | None) -> bytes | None:
    """The heads that were learned, as one graph; None when neither was."""
    heads = [
        _head(content, prefix)
        for content, prefix in ((segments_onnx, "segment_"), (intent_onnx, "intent_"))
        if content
    ]
    if not heads:
        return None
    model = heads[0]
    for other in heads[1:]:
        # The heads were built for different IR versions; the newer one can hold both.
        version = max(model.ir_version, other.ir_version)
        model.ir_version = other.ir_version = version
        model = compose.merge_models(model, other, io_map=[])
    model.doc_string = "edgeperso visitor: " + "; ".join(h.doc_string for h in heads)
    onnx.checker.check_model(model)
    serialized: bytes = model.SerializeToString()
    return serialized
