"""Type and shape inference, delegated to ONNX's own ``onnx.shape_inference``.

ONNX's inference knows every standard op at every opset, which is exactly the set of ops our
kernels implement; we feed it the model with large weights replaced by typed inputs (no copies)
and read back the inferred ``value_info`` and output shapes.

Two things ONNX does not do are added here:

- **Bounds.**  ONNX dimensions are a number or a name, never a range.  Each dynamic input
  dimension goes to ONNX under a private name; wherever inference carries that name through (the
  batch of a CNN, a sequence length), the dimension gets the input's bounds back, so a ``1..8``
  batch stays ``1..8`` at the outputs.  Dimensions ONNX computes (a convolution of a ``1..16``
  height) come back unbounded (``?``).
- **Checks ONNX leaves to run time.**  In strict mode, Conv/ConvTranspose channel counts and the
  element counts of static Reshapes are checked too, so an inconsistent ``model.reshape`` fails at
  once.  Every strict-mode error is a :class:`ShapeMismatchError` naming the op type and node:
  ``Conv node 'conv1': Data batch channel count (5) does not match filter input channel count (3)``.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import onnx

from infermux.errors import ShapeMismatchError
from infermux.graph.model import Graph, Model, Node, ValueInfo
from infermux.graph.shape import Dimension, PartialShape

__all__ = ["infer_model_shapes"]

_BOUND_PREFIX = "__infermux_bound_"
_ONNX_ERROR = re.compile(r"\(op_type:([^,]*), node name: ([^)]*)\): (?:\[\w+\] )?(.*)")


def infer_model_shapes(model: Model, *, strict: bool = False, checked: bool = False) -> Model:
    """Fill ``model.graph.value_info`` and refine output shapes in place; returns the model.

    ``strict``: ONNX's strict mode, and our own consistency checks (Conv channels, Reshape
    element counts); ``checked``: only our checks (for models ONNX's strict mode rejects as read).
    """
    from infermux.graph.onnx_writer import to_onnx

    proto = to_onnx(model, weights="shapes-only")
    bounds = _name_dynamic_input_dims(model.graph, proto.graph)
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, check_type=strict, strict_mode=strict,
                                                     data_prop=True)
    except Exception as exc:  # noqa: BLE001 - onnx raises InferenceError and others
        if strict:
            raise ShapeMismatchError(_first_problem(model.graph, proto, bounds, str(exc))) from None
        return model
    _merge(model.graph, inferred.graph, _converter(bounds))
    if strict or checked:
        problem = _check_graph(model.graph)
        if problem:
            raise ShapeMismatchError(problem[1])
    return model


def _converter(bounds):
    from infermux.graph.onnx_reader import value_info_from_proto

    return lambda vi: _with_bounds(value_info_from_proto(vi), bounds)


def _first_problem(graph: Graph, proto: onnx.ModelProto, bounds, onnx_text: str) -> str:
    """The earliest inconsistency: ONNX's first error or one of our checks on what ONNX could infer.

    ONNX infers a Reshape to a baked-in shape without checking its element count, so the node it
    fails at may come after the real culprit.
    """
    found = _ONNX_ERROR.findall(onnx_text)
    found = [f for f in found if "expected to have type but instead is null" not in f[2]] or found
    if not found:
        return onnx_text.strip()
    op, name, msg = found[0]
    message = f"{op} node '{name}': {msg.strip()}"
    try:
        partial = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except Exception:  # noqa: BLE001 - keep ONNX's own message
        return message
    trial = dataclasses.replace(graph, value_info={}, outputs=[dataclasses.replace(o) for o in graph.outputs])
    _merge(trial, partial.graph, _converter(bounds), subgraphs=False)
    ours = _check_graph(trial)
    order = {n.name: i for i, n in enumerate(graph.nodes)}
    if ours is not None and ours[0] <= order.get(name, len(order)):
        return ours[1]
    return message


# -- bounds -------------------------------------------------------------------------------------

def _name_dynamic_input_dims(graph: Graph, proto: onnx.GraphProto) -> dict[str, Dimension]:
    """Give each nameless dynamic input dimension a private name ONNX will propagate."""
    bounds: dict[str, Dimension] = {}
    by_name = {v.name: v for v in graph.inputs}
    for vi in proto.input:
        info = by_name.get(vi.name)
        if info is None or info.shape is None or not vi.type.HasField("tensor_type"):
            continue
        for axis, (dim, pdim) in enumerate(zip(info.shape, vi.type.tensor_type.shape.dim)):
            if dim.is_dynamic and not dim.symbol:
                name = f"{_BOUND_PREFIX}{len(bounds)}"
                pdim.dim_param = name
                bounds[name] = dim
    return bounds


def _with_bounds(info: ValueInfo, bounds: dict[str, Dimension]) -> ValueInfo:
    if info.shape is None or not any(d.symbol and d.symbol.startswith(_BOUND_PREFIX) for d in info.shape):
        return info
    dims = []
    for d in info.shape:
        if d.symbol and d.symbol.startswith(_BOUND_PREFIX):
            b = bounds.get(d.symbol)
            d = Dimension(b.min_length, b.max_length) if b is not None else Dimension()
        dims.append(d)
    info.shape = PartialShape(dims)
    return info


# -- merging ONNX's answer ------------------------------------------------------------------------

def _merge(graph: Graph, proto: onnx.GraphProto, convert, subgraphs: bool = True) -> None:
    known = {v.name: convert(v) for v in proto.value_info}
    graph.value_info.update({k: v for k, v in known.items() if k not in graph.initializers})
    for i, out in enumerate(proto.output):
        inferred = convert(out)
        current = graph.outputs[i]
        if current.shape is None or (inferred.shape is not None and _more_static(inferred, current)):
            inferred.layout = current.layout
            graph.outputs[i] = inferred
        elif current.element_type.is_dynamic() and not inferred.element_type.is_dynamic():
            current.element_type = inferred.element_type
    nodes = {n.name: n for n in proto.node} if subgraphs else {}
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


# -- checks ONNX's inference leaves out ----------------------------------------------------------

def _check_graph(graph: Graph) -> tuple[int, str] | None:
    """(node index, message) of the first node failing a check, or None."""
    consts = None
    for index, node in enumerate(graph.nodes):
        check = _CHECKS.get(node.op_type) if not node.domain else None
        if check is None:
            continue
        if consts is None:
            consts = _constants(graph)
        problem = check(graph, node, consts)
        if problem:
            return index, f"{node.op_type} node '{node.name}': {problem}"
    return None


def _shape(graph: Graph, name: str) -> PartialShape | None:
    vi = graph.type_of(name) if name else None
    return vi.shape if vi is not None and vi.kind == "tensor" else None


def _check_conv(graph: Graph, node: Node, consts: dict[str, np.ndarray]) -> str | None:
    x, w = _shape(graph, node.inputs[0]), _shape(graph, node.inputs[1]) if len(node.inputs) > 1 else None
    if x is None or w is None:
        return None
    if len(x) != len(w):
        return (f"Data batch and filters rank do not match (data batch shape: {x}, filters shape: "
                f"{w}).")
    if len(x) < 3 or x[1].is_dynamic or w[0].is_dynamic or w[1].is_dynamic:
        return None
    group = int(node.attrs.get("group", 1))
    channels = x[1].get_length()
    if node.op_type == "Conv":
        expected = w[1].get_length() * group
        if channels != expected:
            what = "filter input channel count" + (f" times group ({group})" if group != 1 else "")
            return f"Data batch channel count ({channels}) does not match {what} ({expected})."
    elif channels != w[0].get_length():
        return (f"Data batch channel count ({channels}) does not match filter input channel count "
                f"({w[0].get_length()}).")
    return None


def _check_reshape(graph: Graph, node: Node, consts: dict[str, np.ndarray]) -> str | None:
    x = _shape(graph, node.inputs[0])
    out = _shape(graph, node.outputs[0])
    if x is None or x.is_dynamic:
        return None
    target = consts.get(node.inputs[1]) if len(node.inputs) > 1 else None
    if target is None and "shape" in node.attrs:
        target = np.asarray(node.attrs["shape"])
    if target is None:
        return None
    dims = [int(d) for d in target.ravel()]
    size = int(np.prod([d.get_length() for d in x], dtype=np.int64))
    allow_zero = node.attrs.get("allowzero", 0)
    known = [x[i].get_length() if d == 0 and not allow_zero and i < len(x) else d for i, d in enumerate(dims)]
    if -1 in known:
        rest = int(np.prod([d for d in known if d != -1], dtype=np.int64))
        ok = (rest != 0 and size % rest == 0) or (rest == 0 and size == 0)
    else:
        ok = int(np.prod(known, dtype=np.int64)) == size
    if ok and out is not None and out.is_static:
        ok = int(np.prod([d.get_length() for d in out], dtype=np.int64)) == size
    if ok:
        return None
    return f"Requested output shape {dims} is incompatible with input shape {x}"


def _constants(graph: Graph) -> dict[str, np.ndarray]:
    """Weights and the values of ``Constant`` nodes, by tensor name."""
    consts = dict(graph.initializers)
    for n in graph.nodes:
        if n.op_type == "Constant" and not n.domain and n.outputs:
            value = n.attrs.get("value")
            if isinstance(value, np.ndarray):
                consts[n.outputs[0]] = value
            elif "value_ints" in n.attrs:
                consts[n.outputs[0]] = np.asarray(n.attrs["value_ints"], dtype=np.int64)
    return consts


_CHECKS = {"Conv": _check_conv, "ConvTranspose": _check_conv, "Reshape": _check_reshape}
