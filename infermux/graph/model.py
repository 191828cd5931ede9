"""The model IR: ``Node``, ``ValueInfo``, ``Graph`` and the public ``Model``.

The IR stays close to ONNX: a graph is a topologically ordered list of nodes that name their input
and output tensors; weights are ``initializers`` (NumPy arrays); graph attributes of control-flow
nodes hold nested :class:`Graph` objects.  Shapes and element types of every tensor the shape
inference could reach are in ``value_info``.  ``Model`` adds the public, OpenVINO-shaped surface.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Iterator
from typing import Any

import networkx as nx
import numpy as np

from infermux.errors import ShapeMismatchError, TensorNameError
from infermux.graph.layout import Layout, as_layout
from infermux.graph.shape import PartialShape, Shape
from infermux.graph.types import Type

__all__ = ["Node", "ValueInfo", "Graph", "Model", "Output"]


@dataclasses.dataclass
class Node:
    """One op: ``op_type`` from ``domain`` reading ``inputs`` and writing ``outputs`` (tensor names).

    An empty input name is a missing optional input.  ``attrs`` hold decoded attribute values
    (ints, floats, strs, lists, NumPy arrays, or :class:`Graph` for subgraphs).  ``rt_info`` is free
    for users and passes (``rt_info["affinity"] = "CPU"`` pins the node under HETERO).
    """

    name: str
    op_type: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = dataclasses.field(default_factory=dict)
    domain: str = ""
    rt_info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def get_friendly_name(self) -> str:
        """The node's name (OpenVINO spelling)."""
        return self.name

    @property
    def friendly_name(self) -> str:
        """The node's name (OpenVINO spelling)."""
        return self.name

    def get_type_name(self) -> str:
        """The op type, e.g. ``'Conv'``."""
        return self.op_type

    def get_rt_info(self) -> dict[str, Any]:
        """The mutable runtime-info dict."""
        return self.rt_info

    def subgraphs(self) -> Iterator[Graph]:
        """The graphs held in this node's attributes."""
        for value in self.attrs.values():
            if isinstance(value, Graph):
                yield value
            elif isinstance(value, list):
                yield from (v for v in value if isinstance(v, Graph))


@dataclasses.dataclass
class ValueInfo:
    """A named tensor's element type and shape."""

    name: str
    element_type: Type
    shape: PartialShape | None  # None: rank unknown
    kind: str = "tensor"  # or "sequence", "optional"
    layout: Layout | None = None  # set by users on model ports (``port.set_layout``)


@dataclasses.dataclass
class Graph:
    """Nodes in topological order, graph inputs/outputs, weights and known tensor types."""

    name: str
    nodes: list[Node]
    inputs: list[ValueInfo]
    outputs: list[ValueInfo]
    initializers: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    value_info: dict[str, ValueInfo] = dataclasses.field(default_factory=dict)

    def producers(self) -> dict[str, Node]:
        """{tensor name: node writing it}."""
        return {out: n for n in self.nodes for out in n.outputs if out}

    def consumers(self) -> dict[str, list[Node]]:
        """{tensor name: nodes reading it}, subgraph reads (outer-scope names) included."""
        result: dict[str, list[Node]] = {}
        for n in self.nodes:
            names = set(i for i in n.inputs if i)
            for g in n.subgraphs():
                names |= g.free_names()
            for name in names:
                result.setdefault(name, []).append(n)
        return result

    def free_names(self) -> set[str]:
        """Names this graph (and its subgraphs) read but neither define nor take as inputs."""
        defined = {v.name for v in self.inputs} | set(self.initializers)
        free: set[str] = set()
        for n in self.nodes:
            for name in n.inputs:
                if name and name not in defined:
                    free.add(name)
            for g in n.subgraphs():
                free |= g.free_names() - defined
            defined.update(o for o in n.outputs if o)
        for out in self.outputs:
            if out.name not in defined:
                free.add(out.name)
        return free

    def type_of(self, name: str) -> ValueInfo | None:
        """The ValueInfo of a tensor, if known."""
        for vi in itertools.chain(self.inputs, self.outputs):
            if vi.name == name:
                return vi
        if name in self.initializers:
            arr = self.initializers[name]
            return ValueInfo(name, Type.from_numpy(arr.dtype), PartialShape(list(arr.shape)))
        return self.value_info.get(name)

    def to_networkx(self) -> nx.MultiDiGraph:
        """A view for analysis: one vertex per node name, one edge per tensor passed between nodes.

        Edges carry ``tensor`` (the name); vertices carry ``node`` (the :class:`Node`).
        """
        g = nx.MultiDiGraph()
        producers = self.producers()
        for n in self.nodes:
            g.add_node(n.name, node=n)
        for n in self.nodes:
            reads = [i for i in n.inputs if i]
            for sub in n.subgraphs():
                reads += sorted(sub.free_names())
            for name in reads:
                src = producers.get(name)
                if src is not None:
                    g.add_edge(src.name, n.name, tensor=name)
        return g


class Output:
    """A model input or output port (OpenVINO's ``Output``/``ConstOutput``)."""

    __slots__ = ("_info", "_index", "_owner", "_names")

    def __init__(self, info: ValueInfo, index: int, owner: Any = None, names: set[str] | None = None):
        self._info, self._index, self._owner = info, index, owner
        self._names = names if names is not None else {info.name}

    def get_any_name(self) -> str:
        """The tensor's name."""
        return self._info.name

    @property
    def any_name(self) -> str:
        """The tensor's name."""
        return self._info.name

    def get_names(self) -> set[str]:
        """Every name of the tensor."""
        return set(self._names)

    @property
    def names(self) -> set[str]:
        """Every name of the tensor."""
        return set(self._names)

    def get_index(self) -> int:
        """Position among the model's inputs (or outputs)."""
        return self._index

    @property
    def index(self) -> int:
        """Position among the model's inputs (or outputs)."""
        return self._index

    def get_element_type(self) -> Type:
        """The element type."""
        return self._info.element_type

    @property
    def element_type(self) -> Type:
        """The element type."""
        return self._info.element_type

    def get_partial_shape(self) -> PartialShape:
        """The shape, possibly dynamic."""
        return PartialShape(self._info.shape) if self._info.shape is not None else PartialShape([])

    @property
    def partial_shape(self) -> PartialShape:
        """The shape, possibly dynamic."""
        return self.get_partial_shape()

    def get_shape(self) -> Shape:
        """The static shape; raises if dynamic."""
        return self.get_partial_shape().to_shape()

    @property
    def shape(self) -> Shape:
        """The static shape; raises if dynamic."""
        return self.get_shape()

    def get_node(self) -> Any:
        """The model or compiled model this port belongs to."""
        return self._owner

    def get_layout(self) -> Layout:
        """The port's layout (empty, ``[...]``, unless one was set)."""
        return self._info.layout if self._info.layout is not None else Layout()

    def set_layout(self, layout: Layout | str) -> None:
        """Name the port's dimensions: ``model.input(0).set_layout("NCHW")``.

        OpenVINO spells this ``model.get_parameters()[0].set_layout(...)``; here the parameters
        are the input ports, so both spellings work.  The layout must fit the port's rank.
        """
        new = as_layout(layout)
        shape = self._info.shape
        if shape is not None and not new.empty and not new.fits_rank(len(shape)):
            raise ShapeMismatchError(
                f"Can't set layout for Parameter/Result {self._info.name}: layout {new} is not "
                f"compatible with shape {shape}")
        self._info.layout = None if new.empty else new

    @property
    def layout(self) -> Layout:
        """The port's layout (settable)."""
        return self.get_layout()

    @layout.setter
    def layout(self, value: Layout | str) -> None:
        self.set_layout(value)

    def __eq__(self, other) -> bool:
        return (isinstance(other, Output) and other._owner is self._owner
                and other._index == self._index and other._info.name == self._info.name)

    def __hash__(self) -> int:
        return hash((id(self._owner), self._index, self._info.name))

    def __repr__(self) -> str:
        return (f"<Output: names[{', '.join(sorted(self._names))}] shape{self.get_partial_shape()} "
                f"type: {self._info.element_type.name}>")


class Model:
    """A model read from a file (``core.read_model``): the graph, its opsets and its ports.

    >>> import infermux as im
    >>> model = im.Core().read_model("model.onnx")          # doctest: +SKIP
    >>> [i.any_name for i in model.inputs]                   # doctest: +SKIP
    ['data']
    """

    def __init__(self, graph: Graph, opsets: dict[str, int] | None = None, *,
                 name: str | None = None, ir_version: int = 8, producer: str = "infermux",
                 metadata: dict[str, str] | None = None, source: str | None = None):
        self.graph = graph
        self.opsets = dict(opsets or {"": 17})
        self._friendly_name = name or graph.name or "model"
        self.ir_version = ir_version
        self.producer = producer
        self.metadata = dict(metadata or {})
        self.source = source  # the file it came from, if any
        self._rt_info: dict[str, Any] = {}

    # -- ports ------------------------------------------------------------------------------
    @property
    def inputs(self) -> list[Output]:
        """The input ports, in order."""
        return [Output(v, i, self) for i, v in enumerate(self.graph.inputs)]

    @property
    def outputs(self) -> list[Output]:
        """The output ports, in order."""
        return [Output(v, i, self) for i, v in enumerate(self.graph.outputs)]

    def input(self, key: int | str | None = None) -> Output:
        """One input port by index or tensor name (no key: the only input)."""
        return _select_port(self.inputs, key, "input")

    def output(self, key: int | str | None = None) -> Output:
        """One output port by index or tensor name (no key: the only output)."""
        return _select_port(self.outputs, key, "output")

    # -- nodes ------------------------------------------------------------------------------
    def get_ops(self) -> list[Node]:
        """Every op node, in topological order."""
        return list(self.graph.nodes)

    get_ordered_ops = get_ops

    def get_parameters(self) -> list[Output]:
        """The input ports (OpenVINO's Parameters)."""
        return self.inputs

    def get_results(self) -> list[Output]:
        """The output ports (OpenVINO's Results)."""
        return self.outputs

    def reshape(self, shapes: Any) -> None:
        """Give inputs new (possibly dynamic) shapes and infer every other shape again, in place.

        ``shapes`` is one shape for a single-input model (a list such as ``[2, 3, 224, 224]``, a
        string ``"?,3,1..16,8..32"``, a :class:`PartialShape`), or ``{name | index | port: shape}``.
        Dimensions may be ints, ``-1``/``"?"``, ``Dimension(lo, hi)``, ``(lo, hi)`` or ``"lo..hi"``.
        An inconsistent shape raises :class:`~infermux.ShapeMismatchError` naming the op, and
        leaves the model as it was.  See :mod:`infermux.graph.reshape`.

        >>> model.reshape({"data": "?,3,224,224"})            # doctest: +SKIP
        """
        from infermux.graph.reshape import reshape_model

        reshape_model(self, shapes)

    def is_dynamic(self) -> bool:
        """True if any input or output has a dynamic dimension or unknown rank."""
        return any(v.shape is None or v.shape.is_dynamic
                   for v in itertools.chain(self.graph.inputs, self.graph.outputs))

    @property
    def friendly_name(self) -> str:
        """The model's name."""
        return self._friendly_name

    @friendly_name.setter
    def friendly_name(self, value: str) -> None:
        self._friendly_name = value

    def get_friendly_name(self) -> str:
        """The model's name."""
        return self._friendly_name

    def set_friendly_name(self, name: str) -> None:
        """Rename the model."""
        self._friendly_name = name

    get_name = get_friendly_name

    def get_rt_info(self) -> dict[str, Any]:
        """Model-level runtime info (free-form)."""
        return self._rt_info

    def opset(self, domain: str = "") -> int:
        """The opset version the model imports for ``domain``."""
        return self.opsets.get(domain, self.opsets.get("ai.onnx", 1) if domain == "" else 1)

    def to_networkx(self) -> nx.MultiDiGraph:
        """The graph as a networkx multigraph (see :meth:`Graph.to_networkx`)."""
        return self.graph.to_networkx()

    def clone(self) -> Model:
        """A deep copy (weights shared: they are never written in place)."""
        memo = {id(a): a for a in self.graph.initializers.values()}
        twin = copy.deepcopy(self, memo)
        return twin

    def __repr__(self) -> str:
        ins = ", ".join(f"{v.name}{v.shape}" for v in self.graph.inputs)
        outs = ", ".join(f"{v.name}{v.shape}" for v in self.graph.outputs)
        return f"<Model: '{self._friendly_name}'\ninputs[{ins}]\noutputs[{outs}]>"


def _select_port(ports: list[Output], key, kind: str) -> Output:
    if key is None:
        if len(ports) != 1:
            raise TensorNameError(
                f"the model has {len(ports)} {kind}s; name one by index or tensor name "
                f"({', '.join(p.any_name for p in ports)})")
        return ports[0]
    if isinstance(key, Output):
        key = key.any_name
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        if not 0 <= key < len(ports):
            raise TensorNameError(f"{kind} index {key} is out of range: the model has {len(ports)} {kind}s")
        return ports[key]
    for p in ports:
        if key in p.names:
            return p
    raise TensorNameError(
        f"Port for tensor name {key} was not found. The model's {kind}s are: "
        f"{', '.join(p.any_name for p in ports)}")
