"""ONNX graph rewrite: compute the LM head only at the positions a caller asks for.

Optimum's causal-LM export returns logits for every position ([batch, seq, vocab]). Scoring needs
one position per prompt and decoding one per step, and with a 128k vocabulary the full tensor
dominates both time and memory. The rewrite adds an int64 input `logits_index` [batch, k] and
gathers the final hidden states at those positions before the LM-head MatMul, so `logits` becomes
[batch, k, vocab]. Everything else in the graph is untouched (checked numerically in the tests).
"""

from __future__ import annotations

from pathlib import Path

LOGITS_INDEX = "logits_index"
_PASS_THROUGH = {"Cast", "Identity"}


class GraphRewriteError(RuntimeError):
    pass


def add_logits_index(model_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(model_path), load_external_data=False)
    graph = model.graph
    if any(value.name == LOGITS_INDEX for value in graph.input):
        return
    producers = {output: node for node in graph.node for output in node.output}
    node = producers.get("logits")
    while node is not None and node.op_type in _PASS_THROUGH:
        node = producers.get(node.input[0])
    if node is None or node.op_type != "MatMul":
        raise GraphRewriteError(f"{model_path}: no LM-head MatMul found before the `logits` output")
    hidden = node.input[0]
    prefix = "medgate_logits_index"
    new_nodes = [
        helper.make_node("Unsqueeze", [LOGITS_INDEX, f"{prefix}/axis_last"], [f"{prefix}/idx3"]),
        helper.make_node("Shape", [LOGITS_INDEX], [f"{prefix}/idx_shape"]),
        helper.make_node("Shape", [hidden], [f"{prefix}/hidden_shape"]),
        helper.make_node("Slice", [f"{prefix}/hidden_shape", f"{prefix}/two", f"{prefix}/three"],
                         [f"{prefix}/hidden_width"]),
        helper.make_node("Concat", [f"{prefix}/idx_shape", f"{prefix}/hidden_width"],
                         [f"{prefix}/gather_shape"], axis=0),
        helper.make_node("Expand", [f"{prefix}/idx3", f"{prefix}/gather_shape"], [f"{prefix}/idx_expanded"]),
        helper.make_node("GatherElements", [hidden, f"{prefix}/idx_expanded"], [f"{prefix}/hidden_at"], axis=1),
    ]
    graph.initializer.extend([
        helper.make_tensor(f"{prefix}/axis_last", TensorProto.INT64, [1], [-1]),
        helper.make_tensor(f"{prefix}/two", TensorProto.INT64, [1], [2]),
        helper.make_tensor(f"{prefix}/three", TensorProto.INT64, [1], [3]),
    ])
    position = list(graph.node).index(node)
    for offset, new_node in enumerate(new_nodes):
        graph.node.insert(position + offset, new_node)
    node.input[0] = f"{prefix}/hidden_at"
    graph.input.append(helper.make_tensor_value_info(LOGITS_INDEX, TensorProto.INT64, ["batch_size", "k"]))
    for output in graph.output:
        if output.name == "logits":
            output.type.tensor_type.shape.dim[1].dim_param = "k"
    # Loaded without external data, large initializers keep pointing at the existing data file.
    onnx.save(model, str(model_path))
