"""Write a :class:`Model` (or any :class:`Graph`) back to ONNX.

Used to save models, to ship partitions to other processes (as ONNX bytes, never pickles) and to
drive ONNX's shape inference.  ``weights="shapes-only"`` replaces large weights with typed graph
inputs, which is all shape inference needs and avoids copying the weights.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from infermux.graph.model import Graph, Model, Node, ValueInfo
from infermux.graph.types import Type

__all__ = ["to_onnx", "graph_to_proto", "save_onnx"]

_SMALL = 4096  # elements: weights kept as data in "shapes-only" mode (shape-carrying constants)


def to_onnx(model: Model, *, weights: str = "all") -> onnx.ModelProto:
    """The model as a ``ModelProto``; ``weights`` is ``"all"`` or ``"shapes-only"``."""
    graph = graph_to_proto(model.graph, weights=weights)
    opsets = [helper.make_opsetid(d, v) for d, v in sorted(model.opsets.items())]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name=model.producer or "infermux")
    proto.ir_version = max(model.ir_version or 8, 3)
    for k, v in model.metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    return proto


def save_onnx(model: Model, path: str | os.PathLike) -> None:
    """Write the model to an ``.onnx`` file."""
    onnx.save_model(to_onnx(model), os.fspath(path))


def _tensor(arr: np.ndarray, name: str) -> onnx.TensorProto:
    arr = np.asarray(arr)
    if arr.dtype == object:
        t = helper.make_tensor(name, onnx.TensorProto.STRING, arr.shape,
                               [str(v).encode("utf-8") for v in arr.ravel()])
        return t
    return numpy_helper.from_array(arr, name)


def _value_info(vi: ValueInfo) -> onnx.ValueInfoProto:
    if vi.element_type.is_dynamic() and vi.shape is None and vi.kind == "tensor":
        return helper.make_empty_tensor_value_info(vi.name) if hasattr(
            helper, "make_empty_tensor_value_info") else helper.make_tensor_value_info(vi.name, 0, None)
    shape = None
    if vi.shape is not None:
        shape = [d.get_length() if d.is_static else (d.symbol or None) for d in vi.shape]
    code = vi.element_type.onnx_code if not vi.element_type.is_dynamic() else 0
    tensor_type = helper.make_tensor_type_proto(code, shape)
    if vi.kind == "sequence":
        tensor_type = helper.make_sequence_type_proto(tensor_type)
    elif vi.kind == "optional":
        tensor_type = helper.make_optional_type_proto(tensor_type)
    return helper.make_value_info(vi.name, tensor_type)


def _attr(name: str, value: Any, weights: str) -> onnx.AttributeProto:
    if isinstance(value, Graph):
        return helper.make_attribute(name, graph_to_proto(value, weights=weights))
    if isinstance(value, np.ndarray):
        return helper.make_attribute(name, _tensor(value, ""))
    if isinstance(value, list) and value and isinstance(value[0], Graph):
        return helper.make_attribute(name, [graph_to_proto(v, weights=weights) for v in value])
    if isinstance(value, list) and value and isinstance(value[0], np.ndarray):
        return helper.make_attribute(name, [_tensor(v, "") for v in value])
    if isinstance(value, list) and not value:
        attr = onnx.AttributeProto()
        attr.name, attr.type = name, onnx.AttributeProto.INTS
        return attr
    return helper.make_attribute(name, value)


def _node(n: Node, weights: str) -> onnx.NodeProto:
    proto = helper.make_node(n.op_type, n.inputs, n.outputs, name=n.name, domain=n.domain or None)
    proto.attribute.extend(_attr(k, v, weights) for k, v in n.attrs.items())
    return proto


def graph_to_proto(graph: Graph, *, weights: str = "all") -> onnx.GraphProto:
    """A :class:`Graph` as a ``GraphProto``."""
    inits, extra_inputs = [], []
    for name, arr in graph.initializers.items():
        if weights == "shapes-only" and arr.size > _SMALL and arr.dtype != object:
            extra_inputs.append(ValueInfo(name, Type.from_numpy(arr.dtype), _pshape(arr.shape)))
        else:
            inits.append(_tensor(arr, name))
    inputs = [_value_info(v) for v in graph.inputs + extra_inputs]
    outputs = [_value_info(v) for v in graph.outputs]
    value_info = [_value_info(v) for k, v in graph.value_info.items()]
    return helper.make_graph([_node(n, weights) for n in graph.nodes], graph.name or "graph",
                             inputs, outputs, inits, value_info=value_info)


def _pshape(shape):
    from infermux.graph.shape import PartialShape

    return PartialShape(list(shape))
