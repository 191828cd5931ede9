"""Graph passes run by plugins at compile time: constant folding, dead-code removal and
BatchNormalization folded into the Conv before it.  Each is a function over a :class:`Graph`
that rewrites it in place and returns how much it changed.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from infermux.graph.model import Graph, Node

__all__ = ["copy_graph", "fold_constants", "eliminate_dead_code", "fold_batchnorm_into_conv"]

log = logging.getLogger(__name__)

# ops whose result is not a function of their inputs, or that must stay visible
_NOT_FOLDABLE = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
                 "Bernoulli", "Multinomial", "If", "Loop", "Scan", "SequenceMap",
                 "ReadValue", "Assign"}
_MAX_FOLDED_BYTES = 64 << 20


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
                value = _evaluate(k, node, consts)
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


def _evaluate(k, node: Node, consts) -> list | None:
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
    if sum(o.nbytes for o in outs if o is not None) > _MAX_FOLDED_BYTES:
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
