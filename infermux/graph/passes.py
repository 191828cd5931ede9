"""Graph passes run by plugins at compile time: constant folding, dead-code removal,
BatchNormalization folded into the Conv before it, per-channel Mul/Add folded into the Conv or
BatchNormalization before them, and two-input Sum spelled as Add.  Each is a function over a
:class:`Graph` that rewrites it in place and returns how much it changed.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from infermux.graph.model import Graph, Node

__all__ = [
    "copy_graph",
    "eliminate_dead_code",
    "fold_affine_into_conv",
    "fold_batchnorm_into_conv",
    "fold_constants",
    "sum_to_add",
]

log = logging.getLogger(__name__)

# ops whose result is not a function of their inputs, or that must stay visible
_NOT_FOLDABLE = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
                 "Bernoulli", "Multinomial", "If", "Loop", "Scan", "SequenceMap",
                 "ReadValue", "Assign"}
_MAX_FOLDED_BYTES = 64 << 20
# ops whose folded value is worth keeping at any size: each run would allocate it anyway (the
# light_* models build their largest weights, up to 400 MB, with ConstantOfShape)
_FOLD_AT_ANY_SIZE = {"ConstantOfShape"}


def copy_graph(graph: Graph) -> Graph:
    """A copy whose node list, nodes, dicts may be rewritten; arrays and subgraphs are shared."""
    return dataclasses.replace(
        graph,
        nodes=[dataclasses.replace(n, inputs=list(n.inputs), outputs=list(n.outputs),
                                   attrs=dict(n.attrs), rt_info=dict(n.rt_info)) for n in graph.nodes],
        inputs=list(graph.inputs), outputs=list(graph.outputs),
        initializers=dict(graph.initializers), value_info=dict(graph.value_info))


def fold_constants(graph: Graph, opsets: dict[str, int]) -> int:
    """Evaluate nodes whose inputs are all constants (and ``Shape``/``Size`` of statically shaped
    tensors) once, with the NumPy kernels; their outputs become initializers."""
    from infermux.ops.registry import lookup_or_none

    consts = graph.initializers
    kept, folded = [], 0
    for node in graph.nodes:
        value = None
        if node.op_type in ("Shape", "Size") and not node.domain:
            value = _static_shape_value(graph, node)
        if value is None and _foldable(node, consts):
            opset = node.rt_info.get("opset", opsets.get(node.domain or "", 1))
            k = lookup_or_none(node.op_type, opset, node.domain)
            if k is not None:
                value = _evaluate(k, node, consts, node.op_type in _FOLD_AT_ANY_SIZE)
        elif value is None and node.op_type == "CastLike" and not node.domain:
            value = _cast_like_value(graph, node, opsets)
        if value is None:
            kept.append(node)
            continue
        for name, arr in zip(node.outputs, value):
            if name:
                consts[name] = arr
        folded += 1
    graph.nodes = kept
    return folded


def _foldable(node: Node, consts) -> bool:
    if node.op_type in _NOT_FOLDABLE or any(True for _ in node.subgraphs()):
        return False
    return all((not i) or i in consts for i in node.inputs)


def _evaluate(k, node: Node, consts, any_size: bool = False) -> list | None:
    args = [consts[i] if i else None for i in node.inputs]
    while args and args[-1] is None:
        args.pop()
    attrs = dict(node.attrs)
    if k.wants_num_outputs:
        attrs["_num_outputs"] = len(node.outputs)
    if k.wants_used_outputs:
        attrs["_used_outputs"] = tuple(bool(o) for o in node.outputs)
    try:
        out = k.fn(np, *args, **attrs)
    except Exception as exc:  # noqa: BLE001 - leave it to run time, where errors name the node
        log.debug("constant folding skipped %s (%s): %s", node.name, node.op_type, exc)
        return None
    outs = list(out) if isinstance(out, tuple) or (isinstance(out, list) and len(node.outputs) > 1) else [out]
    if any(not isinstance(o, np.ndarray) and not np.isscalar(o) for o in outs if o is not None):
        return None  # sequences, optionals: not folded
    outs = [np.asarray(o) if o is not None else None for o in outs]
    if not any_size and sum(o.nbytes for o in outs if o is not None) > _MAX_FOLDED_BYTES:
        return None
    return outs


def _cast_like_value(graph: Graph, node: Node, opsets: dict[str, int]):
    """CastLike of a constant to a tensor whose element type is known: only the type is read
    (ONNX function bodies, Gelu's for one, cast their constants this way)."""
    from infermux.ops.registry import lookup_or_none

    if len(node.inputs) != 2 or node.inputs[0] not in graph.initializers:
        return None
    vi = graph.type_of(node.inputs[1])
    if vi is None or vi.kind != "tensor" or vi.element_type.is_dynamic():
        return None
    try:
        like = np.empty(0, dtype=vi.element_type.to_dtype())
    except TypeError:
        return None
    k = lookup_or_none("CastLike", node.rt_info.get("opset", opsets.get("", 1)))
    if k is None:
        return None
    return _evaluate(k, node, {node.inputs[0]: graph.initializers[node.inputs[0]],
                               node.inputs[1]: like})


def _static_shape_value(graph: Graph, node: Node):
    vi = graph.type_of(node.inputs[0]) if node.inputs and node.inputs[0] else None
    if vi is None or vi.shape is None or vi.shape.is_dynamic or vi.kind != "tensor":
        return None
    dims = [d.get_length() for d in vi.shape]
    if node.op_type == "Size":
        return [np.array(int(np.prod(dims)), dtype=np.int64)]
    rank = len(dims)
    start = node.attrs.get("start", 0)
    end = node.attrs.get("end", rank)
    start = max(0, min(rank, start + rank if start < 0 else start))
    end = max(0, min(rank, end + rank if end < 0 else end))
    return [np.array(dims[start:end], dtype=np.int64)]


def is_sink(node: Node) -> bool:
    """Nodes kept for their effect, not their outputs (state writes)."""
    return node.op_type == "Assign" and node.domain == "infermux"


def eliminate_dead_code(graph: Graph) -> int:
    """Remove nodes none of whose outputs reach a graph output (sinks stay), and unused weights."""
    needed = {o.name for o in graph.outputs}
    kept: list[Node] = []
    for node in reversed(graph.nodes):
        if any(o in needed for o in node.outputs if o) or is_sink(node):
            kept.append(node)
            needed.update(i for i in node.inputs if i)
            for sub in node.subgraphs():
                needed |= sub.free_names()
    removed = len(graph.nodes) - len(kept)
    graph.nodes = kept[::-1]
    for name in [n for n in graph.initializers if n not in needed]:
        del graph.initializers[name]
    return removed


def fold_batchnorm_into_conv(graph: Graph) -> int:
    """Rewrite ``Conv -> BatchNormalization`` (inference, constant params, Conv output used only by
    the BN) into one Conv with scaled weights and a bias."""
    consts = graph.initializers
    consumers = graph.consumers()
    producers = graph.producers()
    graph_outputs = {o.name for o in graph.outputs}
    removed: set[int] = set()
    count = 0
    for bn in graph.nodes:
        if bn.op_type != "BatchNormalization" or bn.domain or len([o for o in bn.outputs if o]) != 1:
            continue
        if bn.attrs.get("training_mode", 0) or len(bn.inputs) < 5:
            continue
        conv = producers.get(bn.inputs[0])
        if conv is None or conv.op_type != "Conv" or conv.domain:
            continue
        if len(consumers.get(conv.outputs[0], [])) != 1 or conv.outputs[0] in graph_outputs:
            continue
        params = bn.inputs[1:5]
        if not all(p in consts for p in params) or conv.inputs[1] not in consts:
            continue
        if len(conv.inputs) > 2 and conv.inputs[2] and conv.inputs[2] not in consts:
            continue
        scale, bias, mean, var = (consts[p].astype(np.float64) for p in params)
        w = consts[conv.inputs[1]]
        if w.dtype.kind != "f" or w.shape[0] != scale.shape[0]:
            continue
        factor = scale / np.sqrt(var + bn.attrs.get("epsilon", 1e-5))
        b0 = consts[conv.inputs[2]].astype(np.float64) if len(conv.inputs) > 2 and conv.inputs[2] else 0.0
        w_name, b_name = f"{conv.name}/bn_folded_w", f"{conv.name}/bn_folded_b"
        consts[w_name] = (w * factor.reshape(-1, *([1] * (w.ndim - 1)))).astype(w.dtype)
        consts[b_name] = ((b0 - mean) * factor + bias).astype(w.dtype)
        conv.inputs = [conv.inputs[0], w_name, b_name]
        conv.outputs = [bn.outputs[0]]
        removed.add(id(bn))
        count += 1
    graph.nodes = [n for n in graph.nodes if id(n) not in removed]
    return count


def _per_channel(value, channels: int, rank: int | None):
    """``value`` as a (channels,) float64 vector if it broadcasts per channel on an (N, C, ...)
    tensor of rank ``rank`` (a scalar always does); else None."""
    if value is None or value.dtype.kind != "f":
        return None
    if value.size == 1:
        return np.full(channels, float(value.reshape(-1)[0]))
    if rank is None or value.size != channels or value.ndim > rank:
        return None
    padded = (1,) * (rank - value.ndim) + value.shape
    if padded[1] != channels or any(d != 1 for i, d in enumerate(padded) if i != 1):
        return None
    return value.reshape(-1).astype(np.float64)


# ops whose output has the rank of their first input
_RANK_KEEPING = {"Relu", "BatchNormalization", "MaxPool", "AveragePool", "Concat", "Add", "Mul",
                 "Sum", "LRN", "Dropout", "Clip", "Identity", "LeakyRelu", "Sigmoid"}


def _rank(graph: Graph, name: str, producers=None, depth: int = 0) -> int | None:
    """The rank of tensor ``name``: from its type if known, else through rank-keeping ops up
    to a Conv (whose output rank is its weight's)."""
    vi = graph.type_of(name)
    if vi is not None and vi.shape is not None:
        return len(vi.shape)
    producers = graph.producers() if producers is None else producers
    node = producers.get(name)
    if node is None or node.domain or depth > 64:
        return None
    if node.op_type == "Conv" and len(node.inputs) > 1 and node.inputs[1] in graph.initializers:
        return graph.initializers[node.inputs[1]].ndim
    if node.op_type in _RANK_KEEPING and node.inputs and node.inputs[0]:
        return _rank(graph, node.inputs[0], producers, depth + 1)
    return None


def _affine_after(graph: Graph, node: Node, channels: int, rank: int | None, consumers,
                  outputs) -> tuple[list[Node], np.ndarray, np.ndarray] | None:
    """The Mul and/or the Add of per-channel constants right after ``node`` (in that order):
    (their nodes, scale, shift), scale and shift as (channels,) float64; None if neither."""
    chain, scale, shift = [], np.ones(channels), np.zeros(channels)
    current = node.outputs[0]
    for op in ("Mul", "Add"):
        readers = consumers.get(current, [])
        nxt = readers[0] if len(readers) == 1 and current not in outputs else None
        if nxt is None or nxt.op_type != op or nxt.domain or len(nxt.inputs) != 2:
            continue
        other = nxt.inputs[1] if nxt.inputs[0] == current else nxt.inputs[0]
        value = _per_channel(graph.initializers.get(other), channels, rank)
        if value is None or current not in nxt.inputs:
            continue
        if op == "Mul":
            scale = value
        else:
            shift = value
        chain.append(nxt)
        current = nxt.outputs[0]
    return (chain, scale, shift) if chain else None


def fold_affine_into_conv(graph: Graph) -> int:
    """Rewrite ``Conv -> Mul(c) -> Add(d)`` (either step optional; c, d per-output-channel
    constants) into one Conv with scaled weights and shifted bias, and likewise fold them into
    the scale and bias of an inference BatchNormalization (exporters spell BN this way)."""
    consumers, producers = graph.consumers(), graph.producers()
    outputs = {o.name for o in graph.outputs}
    removed: set[int] = set()
    count = 0
    for node in graph.nodes:
        if id(node) in removed or node.domain or len([o for o in node.outputs if o]) != 1:
            continue
        if node.op_type == "Conv":
            found = _fold_into_conv(graph, node, consumers, outputs)
        elif node.op_type == "BatchNormalization":
            found = _fold_into_batchnorm(graph, node, consumers, outputs, producers)
        else:
            continue
        if found:
            removed.update(id(n) for n in found)
            count += 1
    graph.nodes = [n for n in graph.nodes if id(n) not in removed]
    return count


def _fold_into_conv(graph: Graph, conv: Node, consumers, outputs) -> list[Node] | None:
    consts = graph.initializers
    w = consts.get(conv.inputs[1]) if len(conv.inputs) > 1 else None
    has_bias = len(conv.inputs) > 2 and conv.inputs[2]
    if w is None or w.dtype.kind != "f" or (has_bias and conv.inputs[2] not in consts):
        return None
    found = _affine_after(graph, conv, w.shape[0], w.ndim, consumers, outputs)
    if found is None:
        return None
    chain, scale, shift = found
    b0 = consts[conv.inputs[2]].astype(np.float64) if has_bias else 0.0
    w_name = _fresh_name(consts, f"{conv.name}/affine_w")
    consts[w_name] = (w * scale.reshape(-1, *([1] * (w.ndim - 1)))).astype(w.dtype)
    b_name = _fresh_name(consts, f"{conv.name}/affine_b")
    consts[b_name] = (b0 * scale + shift).astype(w.dtype)
    conv.inputs = [conv.inputs[0], w_name, b_name]
    conv.outputs = [chain[-1].outputs[0]]
    return chain


def _fold_into_batchnorm(graph: Graph, bn: Node, consumers, outputs,
                         producers) -> list[Node] | None:
    consts = graph.initializers
    if bn.attrs.get("training_mode", 0) or bn.attrs.get("spatial", 1) != 1 or len(bn.inputs) < 5:
        return None
    scale, bias = consts.get(bn.inputs[1]), consts.get(bn.inputs[2])
    if scale is None or bias is None or scale.ndim != 1 or scale.dtype.kind != "f":
        return None
    found = _affine_after(graph, bn, scale.shape[0], _rank(graph, bn.inputs[0], producers),
                          consumers, outputs)
    if found is None:
        return None
    chain, s, t = found
    s_name = _fresh_name(consts, f"{bn.name}/affine_scale")
    consts[s_name] = (scale.astype(np.float64) * s).astype(scale.dtype)
    b_name = _fresh_name(consts, f"{bn.name}/affine_bias")
    consts[b_name] = (bias.astype(np.float64) * s + t).astype(bias.dtype)
    bn.inputs = [bn.inputs[0], s_name, b_name, *bn.inputs[3:]]
    bn.outputs = [chain[-1].outputs[0]]
    return chain


def _fresh_name(consts, base: str) -> str:
    name, i = base, 0
    while name in consts:
        i += 1
        name = f"{base}_{i}"
    return name


def sum_to_add(graph: Graph, opsets: dict[str, int]) -> int:
    """Spell two-input Sum as Add (same result from opset 8, where both broadcast), so the
    plan treats it as the fresh producer it is (a following Relu then runs in place)."""
    count = 0
    if opsets.get("", 1) < 8:
        return 0
    for node in graph.nodes:
        if node.op_type == "Sum" and not node.domain and len(node.inputs) == 2 and all(node.inputs):
            node.op_type = "Add"
            node.rt_info.pop("opset", None)
            count += 1
    return count
