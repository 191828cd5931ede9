"""Putting planned chains into the graph: splice them in front of inputs and behind outputs, and
convert an older model to the opset the steps' ops need."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from infermux.errors import UnsupportedOpError
from infermux.graph.model import Graph, Node
from infermux.graph.preprocess.options import PreprocessError
from infermux.graph.preprocess.planning import PortPlan

log = logging.getLogger(__name__)


def splice(graph: Graph, inputs: Sequence[PortPlan], outputs: Sequence[PortPlan]) -> None:
    """Insert planned chains into ``graph`` (in place): inputs first, outputs last."""
    prefix: list[Node] = []
    for plan in sorted(inputs, key=lambda p: p.index, reverse=True):
        chain = plan.chain
        if chain.changed:
            if any(o.name == plan.port for o in graph.outputs):
                raise PreprocessError(f"input '{plan.port}' is also a model output; pre-processing it "
                                      f"is not supported")
            _rename_reads(graph, plan.port, chain.result.name)
            prefix[:0] = chain.builder.nodes
            graph.initializers.update(chain.builder.initializers)
        graph.inputs[plan.index:plan.index + 1] = plan.ports
    graph.nodes[:0] = prefix
    for plan in outputs:
        chain = plan.chain
        if chain.changed:
            start = chain.start[0].name
            _rename_tensor(graph, plan.port, start)
            last = chain.builder.nodes
            for node in last:
                node.outputs = [plan.port if o == chain.result.name else o for o in node.outputs]
            graph.nodes.extend(last)
            graph.initializers.update(chain.builder.initializers)
        graph.outputs[plan.index] = plan.ports[0]


def _rename_reads(graph: Graph, old: str, new: str) -> None:
    """Every read of tensor ``old`` (in subgraphs too, unless they define their own) reads ``new``."""
    for node in graph.nodes:
        node.inputs = [new if i == old else i for i in node.inputs]
        for sub in node.subgraphs():
            defined = {v.name for v in sub.inputs} | set(sub.initializers) | {o for n in sub.nodes for o in n.outputs}
            if old not in defined:
                _rename_reads(sub, old, new)
                for out in sub.outputs:
                    if out.name == old:
                        raise PreprocessError(f"a subgraph returns '{old}' unchanged; cannot rename it")


def _rename_tensor(graph: Graph, old: str, new: str) -> None:
    """The node writing ``old`` writes ``new``, and every reader follows."""
    producers = [n for n in graph.nodes if old in n.outputs]
    if not producers:
        raise PreprocessError(f"output '{old}' is a model input or a weight, not computed by a node; "
                              f"post-processing it is not supported")
    for node in producers:
        node.outputs = [new if o == old else o for o in node.outputs]
    _rename_reads(graph, old, new)


def upgrade_opset(model, opset: int) -> None:
    """Convert ``model`` (in place) to ``opset`` with ``onnx.version_converter``, keeping its weights,
    port layouts and node ``rt_info``."""
    from onnx import version_converter

    from infermux.graph.onnx_reader import graph_from_proto
    from infermux.graph.onnx_writer import to_onnx
    from infermux.graph.shape_infer import infer_model_shapes

    old = model.graph
    proto = to_onnx(model, weights="shapes-only")
    try:
        converted = version_converter.convert_version(proto, opset)
    except Exception as exc:  # noqa: BLE001 - reported with what to do
        raise UnsupportedOpError(
            f"these pre-processing steps need opset >= {opset} ops (Resize with sizes, Slice, Pad); "
            f"converting the opset-{model.opset()} model failed: {exc}") from None
    graph = graph_from_proto(converted.graph)
    inputs = {v.name for v in old.inputs}
    graph.inputs = [v for v in graph.inputs if v.name in inputs]
    for name, arr in old.initializers.items():
        graph.initializers.setdefault(name, arr)
    for mine, theirs in zip(graph.inputs + graph.outputs, old.inputs + old.outputs):
        mine.layout = theirs.layout
    rt = {n.name: n.rt_info for n in old.nodes}
    for node in graph.nodes:
        node.rt_info.update(rt.get(node.name, {}))
    log.info("PrePostProcessor: model '%s' converted from opset %d to %d for its pre-processing ops",
             model.friendly_name, model.opset(), opset)
    model.graph = graph
    model.opsets.pop("ai.onnx", None)
    model.opsets[""] = opset
    infer_model_shapes(model)
