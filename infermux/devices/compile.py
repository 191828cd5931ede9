"""The compile pipeline shared by the array-module plugins (CPU on NumPy, GPU on CuPy, VPU):
copy the graph, expand ONNX functions, fold constants and BatchNormalization, remove dead code,
then lower to a :class:`~infermux.devices.plan.Plan`.  With the CPU's fast kernels, lowering
also fuses transformer subgraphs (:mod:`infermux.graph.fusion`) and compiles the numba kernels
the plan will call, so the first inference does not pay for either."""

from __future__ import annotations

import logging

from infermux.devices.plan import Plan
from infermux.errors import UnsupportedOpError
from infermux.graph import fusion, passes
from infermux.graph.functions import expand_functions
from infermux.graph.model import Model, Node
from infermux.ops.registry import Kernel, lookup, lookup_or_none

__all__ = ["kernel_chooser", "lower_model", "lower_optimized", "optimize_model", "supported_nodes"]

log = logging.getLogger(__name__)


def kernel_chooser(fast: bool):
    """A ``kernel_for(node, opset)`` picking fast paths when ``fast``."""
    def kernel_for(node: Node, opset: int) -> Kernel:
        return lookup(node.op_type, opset, node.domain, node_name=node.name, fast=fast)

    return kernel_for


def _has_kernel(node: Node, opset: int) -> bool:
    return lookup_or_none(node.op_type, opset, node.domain) is not None


def optimize_model(model: Model) -> Model:
    """A copy of ``model`` after the device-independent passes (function expansion, constant
    folding, BatchNormalization folded into Conv, dead-code removal): what a plugin lowers to a
    plan and what a cache blob stores, so that importing skips the passes."""
    graph = passes.copy_graph(model.graph)
    expanded = expand_functions(graph, model.opsets, _has_kernel)
    _expand_subgraphs(graph, model.opsets)
    folded = passes.fold_constants(graph, model.opsets)
    bn = passes.fold_batchnorm_into_conv(graph)
    dead = passes.eliminate_dead_code(graph)
    log.debug("optimize %s: %d functions expanded, %d nodes folded, %d BN folded, %d dead",
              model.friendly_name, expanded, folded, bn, dead)
    return Model(graph, model.opsets, name=model.friendly_name, ir_version=model.ir_version,
                 producer=model.producer, metadata=model.metadata, source=model.source)


def lower_model(model: Model, xp, *, fast: bool = False) -> Plan:
    """The whole pipeline in one call: :func:`optimize_model`, then :func:`lower_optimized`."""
    return lower_optimized(optimize_model(model), xp, fast=fast)


def lower_optimized(model: Model, xp, *, fast: bool = False) -> Plan:
    """Lower a model the compile passes already ran on (:func:`optimize_model`, or a cache
    blob's) to a plan; with ``fast``, fuse on a copy of its graph and warm the numba kernels."""
    graph = model.graph
    if fast:
        graph = passes.copy_graph(graph)
        _fuse(graph, model)
    return _plan(graph, model, xp, fast, fuse=True)


def _fuse(graph, model: Model) -> None:
    """The CPU's rewrites: Sum as Add, per-channel affine ops folded into Conv/BN, fusions."""
    counts = {"sum_to_add": passes.sum_to_add(graph, model.opsets),
              "fold_affine_into_conv": passes.fold_affine_into_conv(graph)}
    counts.update(fusion.fuse_all(graph, model.opsets))
    if any(counts.values()):
        passes.eliminate_dead_code(graph)  # weights the rewrites replaced
    log.debug("fusions in %s: %s", model.friendly_name, counts)


def _plan(graph, model: Model, xp, fast: bool, fuse: bool) -> Plan:
    plan = Plan(graph, model.opsets, xp, kernel_for=kernel_chooser(fast), fuse=fuse)
    if fast:
        from infermux.ops import _numba

        _numba.warm_up(_op_types(graph))
    return plan


def _op_types(graph) -> set[str]:
    types = set()
    for node in graph.nodes:
        types.add(node.op_type)
        for sub in node.subgraphs():
            types |= _op_types(sub)
    return types


def _expand_subgraphs(graph, opsets) -> None:
    for node in graph.nodes:
        for sub in node.subgraphs():
            expand_functions(sub, opsets, _has_kernel)
            _expand_subgraphs(sub, opsets)


def supported_nodes(model: Model) -> dict[str, bool]:
    """{node name: whether a kernel or an ONNX function body covers it}."""
    from infermux.graph.functions import function_body

    result = {}
    for node in model.graph.nodes:
        opset = node.rt_info.get("opset", model.opsets.get(node.domain or "", 1))
        ok = _has_kernel(node, opset)
        if not ok:
            ok = function_body(node, opset, model.graph) is not None
        result[node.name] = ok
    return result


def require_supported(model: Model) -> None:
    """Raise :class:`UnsupportedOpError` naming every unsupported node."""
    bad = [n for n, ok in supported_nodes(model).items() if not ok]
    if bad:
        nodes = {n.name: n for n in model.graph.nodes}
        listing = ", ".join(f"'{b}' ({nodes[b].op_type})" for b in bad[:10])
        raise UnsupportedOpError(f"{len(bad)} node(s) have no kernel: {listing}")
