"""Type and shape inference, delegated to ONNX's own ``onnx.shape_inference``.

ONNX's inference knows every standard op at every opset, which is exactly the set of ops our
kernels implement; we feed it the model with large weights replaced by typed inputs (no copies)
and read back the inferred ``value_info`` and output shapes.  In strict mode an inconsistency
raises a :class:`ShapeMismatchError` carrying ONNX's message, which names the op and node.
"""

from __future__ import annotations

import onnx

from infermux.errors import ShapeMismatchError
from infermux.graph.model import Graph, Model

__all__ = ["infer_model_shapes"]


def infer_model_shapes(model: Model, *, strict: bool = False) -> Model:
    """Fill ``model.graph.value_info`` and refine output shapes in place; returns the model."""
    from infermux.graph.onnx_reader import value_info_from_proto
    from infermux.graph.onnx_writer import to_onnx

    proto = to_onnx(model, weights="shapes-only")
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, check_type=strict, strict_mode=strict,
                                                     data_prop=True)
    except Exception as exc:  # noqa: BLE001 - onnx raises InferenceError and others
        if strict:
            raise ShapeMismatchError(str(exc).strip()) from None
        return model
    _merge(model.graph, inferred.graph, value_info_from_proto)
    return model


def _merge(graph: Graph, proto: onnx.GraphProto, convert) -> None:
    known = {v.name: convert(v) for v in proto.value_info}
    graph.value_info.update({k: v for k, v in known.items() if k not in graph.initializers})
    for i, out in enumerate(proto.output):
        inferred = convert(out)
        current = graph.outputs[i]
        if current.shape is None or (inferred.shape is not None and _more_static(inferred, current)):
            graph.outputs[i] = inferred
        elif current.element_type.is_dynamic() and not inferred.element_type.is_dynamic():
            current.element_type = inferred.element_type
    nodes = {n.name: n for n in proto.node}
    for node in graph.nodes:
        p = nodes.get(node.name)
        if p is None:
            continue
        subs = [a for a in p.attribute if a.HasField("g")]
        for attr in subs:
            sub = node.attrs.get(attr.name)
            if isinstance(sub, Graph):
                _merge(sub, attr.g, convert)


def _more_static(a, b) -> bool:
    if b.shape is None:
        return True
    if a.shape is None or len(a.shape) != len(b.shape):
        return False
    return sum(d.is_static for d in a.shape) > sum(d.is_static for d in b.shape)
