"""ONNX graph rewrites made once at export time; each leaves every computed value unchanged.

1. The LM head only at the positions a caller asks for. Optimum's causal-LM export returns logits
   for every position ([batch, seq, vocab]). Scoring needs one position per prompt and decoding one
   per step, and with a 128k vocabulary the full tensor dominates both time and memory. The rewrite
   adds an int64 input `logits_index` [batch, k] and gathers the final hidden states at those
   positions before the LM-head MatMul, so `logits` becomes [batch, k, vocab].
2. Grouped-query attention without copies. The eager export repeats each key/value head for the
   query heads that share it (transformers' `repeat_kv`: Unsqueeze, Expand, Reshape), materialising
   [batch, heads, past + seq, dim] per layer for keys and values alike: with a long shared prefix
   as the past, that copy was a tenth of a pass (SmolLM2, 47 rows after 538 tokens). The rewrite
   reshapes the queries instead, [batch, heads, seq, dim] -> [batch, kv_heads, group * seq, dim],
   so one MatMul per key/value head serves its whole group, and reshapes the result back. Every
   dot product is the same one over the same values, so outputs are bit for bit what they were
   (checked in the tests against the unrewritten export).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOGITS_INDEX = "logits_index"
_PASS_THROUGH = {"Cast", "Identity"}
_GQA = "medgate_gqa"


class GraphRewriteError(RuntimeError):
    pass


@dataclass(frozen=True)
class GraphRewrites:
    """What `prepare_graph` changed beyond the logits index, which every export gets (recorded in the
    export's marker)."""

    grouped_attention_matmuls: int  # two per layer where the model shares key/value heads


def prepare_graph(model_path: Path, heads: int, kv_heads: int) -> GraphRewrites:
    """Both rewrites on `model_path`, loaded and saved once (large initializers stay where they are)."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    added = add_logits_index(model.graph, model_path)
    grouped = group_query_heads(model.graph, heads, kv_heads) if kv_heads < heads else 0
    if added or grouped:
        # Loaded without external data, large initializers keep pointing at the existing data file.
        onnx.save(model, str(model_path))
    return GraphRewrites(grouped_attention_matmuls=grouped)


def add_logits_index(graph: Any, model_path: Path) -> bool:
    """Rewrite 1 (see the module docstring); False if the graph already has it."""
    from onnx import TensorProto, helper

    if any(value.name == LOGITS_INDEX for value in graph.input):
        return False
    producers = _producers(graph)
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
    return True


def group_query_heads(graph: Any, heads: int, kv_heads: int) -> int:
    """Rewrite 2 (see the module docstring): the number of attention MatMuls rewritten.

    A MatMul qualifies when its second input is a repeated key/value tensor (Reshape of Expand of
    an Unsqueeze on axis 2, possibly transposed to [.., dim, seq]) that nothing else reads except
    Shape nodes (its dims 0, 2 and 3 equal the unrepeated tensor's; only dim 1 differs, and those
    readers take the sequence length). Anything else is left as it was: slower, never wrong."""
    import numpy as np
    from onnx import helper, numpy_helper

    if heads % kv_heads:
        raise GraphRewriteError(f"{heads} attention heads are not a multiple of {kv_heads} key/value heads")
    producers = _producers(graph)
    readers: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            readers[name].append(node)
    initializers = {init.name: init for init in graph.initializer}

    def constant(name: str) -> Any:
        if name in initializers:
            return numpy_helper.to_array(initializers[name])
        node = producers.get(name)
        if node is not None and node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            return numpy_helper.to_array(node.attribute[0].t)
        return None

    def unrepeated(name: str) -> str | None:
        reshape = producers.get(name)
        expand = producers.get(reshape.input[0]) if reshape is not None and reshape.op_type == "Reshape" else None
        unsqueeze = producers.get(expand.input[0]) if expand is not None and expand.op_type == "Expand" else None
        if unsqueeze is None or unsqueeze.op_type != "Unsqueeze":
            return None
        if len(unsqueeze.input) > 1:
            axes = constant(unsqueeze.input[1])
        else:  # opset < 13 keeps the axes in an attribute
            axes = next((list(a.ints) for a in unsqueeze.attribute if a.name == "axes"), None)
        if axes is None or np.asarray(axes).reshape(-1).tolist() != [2]:
            return None
        return str(unsqueeze.input[0])

    to_groups, to_heads = f"{_GQA}/to_groups", f"{_GQA}/to_heads"
    replacements: dict[int, list[Any]] = {}
    for node in graph.node:
        if node.op_type != "MatMul":
            continue
        transpose: Any = producers.get(node.input[1])
        if transpose is None or transpose.op_type != "Transpose" or \
                [list(a.ints) for a in transpose.attribute if a.name == "perm"] != [[0, 1, 3, 2]]:
            transpose = None
        transposed = transpose is not None
        repeated = transpose.input[0] if transposed else node.input[1]
        source = unrepeated(repeated)
        if source is None:
            continue
        direct_reader = transpose if transposed else node
        if transposed and len(readers[transpose.output[0]]) != 1:
            continue
        others = [reader for reader in readers[repeated] if reader is not direct_reader]
        if any(reader.op_type != "Shape" for reader in others):
            continue
        name = node.name or f"{_GQA}/matmul{len(replacements)}"
        grouped_a, right = f"{name}/{_GQA}/a", source
        new = [helper.make_node("Reshape", [node.input[0], to_groups], [grouped_a])]
        if transposed:
            right = f"{name}/{_GQA}/transposed"
            new.append(helper.make_node("Transpose", [source], [right], perm=[0, 1, 3, 2]))
        new.append(helper.make_node("MatMul", [grouped_a, right], [f"{name}/{_GQA}/out"]))
        result = f"{name}/{_GQA}/out"
        output = node.output[0]
        followers = readers[output]
        scale = followers[0] if len(followers) == 1 and followers[0].op_type == "Mul" else None
        if scale is not None and output not in {o.name for o in graph.output}:
            factor = [value for value in scale.input if value != output]
            value = constant(factor[0]) if len(factor) == 1 else None
            if value is not None and value.size == 1:
                # The score scale stays next to its MatMul, where ONNX Runtime fuses both (FusedMatMul):
                # after the reshape it was a pass of its own over the scores.
                new.append(helper.make_node("Mul", [result, factor[0]], [f"{name}/{_GQA}/scaled"]))
                result, output = f"{name}/{_GQA}/scaled", scale.output[0]
                replacements[id(scale)] = []
        new.append(helper.make_node("Reshape", [result, to_heads], [output]))
        replacements[id(node)] = new
        for reader in others:
            reader.input[0] = source
    if not replacements:
        return 0
    graph.initializer.extend([
        numpy_helper.from_array(np.array([0, kv_heads, -1, 0], dtype=np.int64), to_groups),
        numpy_helper.from_array(np.array([0, heads, -1, 0], dtype=np.int64), to_heads),
    ])
    nodes = [new for node in graph.node for new in replacements.get(id(node), [node])]
    _drop_unread(graph, nodes)
    return sum(1 for node in graph.node if node.op_type == "MatMul" and _GQA in node.output[0])


def _producers(graph: Any) -> dict[str, Any]:
    return {output: node for node in graph.node for output in node.output}


def _drop_unread(graph: Any, nodes: list[Any]) -> None:
    """Replace the graph's nodes with `nodes` less those no node or graph output reads (the repeats)."""
    wanted = {output.name for output in graph.output}
    while True:
        read = {name for node in nodes for name in node.input} | wanted
        kept = [node for node in nodes if any(output in read for output in node.output)]
        if len(kept) == len(nodes):
            break
        nodes = kept
    del graph.node[:]
    graph.node.extend(nodes)
