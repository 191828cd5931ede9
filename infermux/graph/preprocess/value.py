"""The graph a chain builds (:class:`_Builder`) and the handle to a tensor in it (:class:`Value`),
which is what each step, and a user's ``custom`` step, receives and returns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from infermux.graph.layout import Layout
from infermux.graph.model import Graph, Node
from infermux.graph.preprocess.options import NEEDS_OPSET, ColorFormat, PreprocessError
from infermux.graph.shape import PartialShape
from infermux.graph.types import Type


class _Builder:
    """Collects the nodes and weights of one chain, with names unique in the model's graph."""

    def __init__(self, graph: Graph, prefix: str, opset: int):
        self.prefix, self.opset = prefix, max(opset, NEEDS_OPSET)
        self.model_opset = opset
        self.nodes: list[Node] = []
        self.initializers: dict[str, np.ndarray] = {}
        self.needs_opset = 0
        self._taken = (set(graph.initializers) | {v.name for v in graph.inputs + graph.outputs}
                       | {o for n in graph.nodes for o in n.outputs} | {n.name for n in graph.nodes})

    def name(self, hint: str) -> str:
        base = f"{self.prefix}/{hint}"
        name, k = base, 1
        while name in self._taken:
            k += 1
            name = f"{base}_{k}"
        self._taken.add(name)
        return name

    def const(self, value: Any, dtype: Any = None, hint: str = "const") -> str:
        name = self.name(hint)
        self.initializers[name] = np.asarray(value, dtype=dtype)
        return name

    def op(self, op_type: str, inputs: Sequence[str], hint: str | None = None, *, needs_opset: int = 0,
           **attrs) -> str:
        self.needs_opset = max(self.needs_opset, needs_opset)
        out = self.name(hint or op_type.lower())
        self.nodes.append(Node(self.name(f"{op_type}"), op_type, list(inputs), [out], dict(attrs)))
        return out


class Value:
    """A tensor in the graph a PrePostProcessor builds: what a ``custom`` step gets and returns.

    It has a ``name`` (the ONNX tensor), ``element_type`` and ``partial_shape``.  Build on it with
    ONNX ops: ``value.apply("Abs")``, ``value.apply("Clip", 0.0, 1.0)`` (extra inputs may be Values,
    NumPy arrays or numbers, which become constants), or with ``+ - * /``.

    >>> ppp.input().preprocess().custom(lambda v: v.apply("Abs") * 2.0)    # doctest: +SKIP
    """

    __slots__ = ("_builder", "name", "element_type", "partial_shape", "layout", "color")

    def __init__(self, builder: _Builder, name: str, element_type: Type, shape: PartialShape,
                 layout: Layout | None = None, color: ColorFormat | None = None):
        self._builder, self.name, self.element_type = builder, name, element_type
        self.partial_shape, self.layout, self.color = shape, layout, color

    def get_element_type(self) -> Type:
        """The element type."""
        return self.element_type

    def get_partial_shape(self) -> PartialShape:
        """The shape, possibly dynamic."""
        return self.partial_shape

    def get_any_name(self) -> str:
        """The tensor's name."""
        return self.name

    def _derive(self, name: str, element_type: Type | None = None, shape: PartialShape | None = None,
                layout: Any = "same", color: Any = "same") -> Value:
        return Value(self._builder, name, element_type or self.element_type,
                     shape if shape is not None else self.partial_shape,
                     self.layout if layout == "same" else layout, self.color if color == "same" else color)

    def apply(self, op_type: str, *inputs: Any, domain: str = "", **attrs) -> Value:
        """Append ``op_type`` reading this value (then ``inputs``); its output as a new Value."""
        names = [self.name] + [self._input_name(i) for i in inputs]
        out = self._builder.op(op_type, names, **attrs)
        node = self._builder.nodes[-1]
        node.domain = domain
        etype, shape = _infer_custom(self._builder, node, self, inputs)
        keep = shape is not None and len(shape) == len(self.partial_shape)
        return self._derive(out, etype, shape if shape is not None else PartialShape([]),
                            layout=self.layout if keep else None)

    def _input_name(self, value: Any) -> str:
        if isinstance(value, Value):
            return value.name
        if value is None:
            return ""
        arr = np.asarray(value)
        if arr.ndim == 0 and isinstance(value, (int, float)) and self.element_type.is_static():
            arr = arr.astype(self.element_type.to_dtype())
        return self._builder.const(arr)

    def __add__(self, other) -> Value:
        return self.apply("Add", other)

    def __sub__(self, other) -> Value:
        return self.apply("Sub", other)

    def __mul__(self, other) -> Value:
        return self.apply("Mul", other)

    def __truediv__(self, other) -> Value:
        return self.apply("Div", other)

    def describe(self) -> str:
        """``([1,?,?,3], [N,H,W,C], u8, BGR)`` as OpenVINO prints a step's input and output."""
        parts = [str(self.partial_shape), str(self.layout) if self.layout else "<no layout>",
                 self.element_type.name]
        if self.color is not None:
            parts.append(self.color.label)
        return "(" + ", ".join(parts) + ")"

    def __repr__(self) -> str:
        return f"<Value '{self.name}' {self.describe()}>"


def _infer_custom(builder: _Builder, node: Node, first: Value, extra) -> tuple[Type, PartialShape | None]:
    """Type and shape of a node added by a custom step, from ONNX's inference of that node alone."""
    import onnx

    from infermux.graph.model import Model, ValueInfo
    from infermux.graph.onnx_writer import to_onnx

    inputs = [ValueInfo(first.name, first.element_type, first.partial_shape)]
    inputs += [ValueInfo(v.name, v.element_type, v.partial_shape) for v in extra if isinstance(v, Value)]
    consts = {n: builder.initializers[n] for n in node.inputs if n in builder.initializers}
    out = ValueInfo(node.outputs[0], Type.dynamic, None)
    graph = Graph("custom", [node], inputs, [out], consts)
    # the opset the model will have: its own, unless a step already needs a newer one
    opsets = {"": builder.opset if builder.needs_opset else builder.model_opset}
    if node.domain:
        opsets[node.domain] = 1
    try:
        proto = to_onnx(Model(graph, opsets))
        inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=not node.domain)
    except Exception as exc:  # noqa: BLE001 - reported with the node
        raise PreprocessError(f"custom step: {node.op_type} cannot apply to {first.describe()}: "
                              f"{str(exc).strip().splitlines()[-1]}") from None
    from infermux.graph.onnx_reader import value_info_from_proto

    info = value_info_from_proto(inferred.graph.output[0])
    return info.element_type, info.shape
