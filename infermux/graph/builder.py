"""The graph builder the IR and Paddle front ends translate into.

:class:`GraphBuilder` collects ONNX-style nodes and weights; a node whose inputs are all small
constants is folded to a constant at read time (through the kernel registry), so shape
arithmetic in the source model does not reach the runtime.

>>> from infermux.graph.builder import GraphBuilder
>>> b = GraphBuilder()
>>> b.op("Add", b.const([1, 2], "a"), b.const([3, 4], "b"))   # folded: both inputs are constants
'Add/Add'
>>> b.value("Add/Add").tolist()
[4, 6]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from infermux.graph.model import Node, ValueInfo

__all__ = ["INT64_MAX", "INT64_MIN", "GraphBuilder"]

# open ends for ONNX Slice
INT64_MAX = np.iinfo(np.int64).max
INT64_MIN = np.iinfo(np.int64).min
_SMALL = 4096  # elements: results of constant-only helper ops up to this size are folded

# Cheap ops whose results are folded at read time when every input is a constant.
_FOLDABLE = frozenset({
    "Cast", "Reshape", "Concat", "Unsqueeze", "Squeeze", "Gather", "Add", "Sub", "Mul", "Div", "Neg",
    "Slice", "Identity", "Range", "Where", "Equal", "Not", "Less", "Greater", "ReduceProd",
    "ReduceSum", "Max", "Min", "Mod", "Floor", "Ceil", "Transpose", "Expand", "Abs", "Shape", "Size",
    "ConstantOfShape"})


class GraphBuilder:
    """Collects ONNX-style nodes and weights while a front end translates a model.

    ``op`` adds a node (or folds it to a constant when every input is a small constant);
    ``begin``/``end`` bracket the nodes of one source layer: they are named after it and get
    its ``rt_info``.
    """

    def __init__(self, opset: int = 18):
        self.opset = opset
        self.nodes: list[Node] = []
        self.initializers: dict[str, np.ndarray] = {}
        self.value_info: dict[str, ValueInfo] = {}
        self._tensor_names: set[str] = set()
        self._node_names: set[str] = set()
        self._producers: dict[str, Node] = {}
        self._scope, self._scope_rt, self._scope_nodes = "", {}, []

    def fresh(self, hint: str) -> str:
        """A tensor name not used yet (``hint``, or ``hint_1``, ``hint_2``...)."""
        name, i = hint or "t", 0
        while name in self._tensor_names:
            i += 1
            name = f"{hint}_{i}"
        self._tensor_names.add(name)
        return name

    def const(self, value: Any, hint: str = "const", dtype: Any = None) -> str:
        """Add a weight; returns its tensor name."""
        name = self.fresh(hint)
        self.initializers[name] = np.asarray(value, dtype=dtype)
        return name

    def set_const(self, name: str, value: np.ndarray) -> None:
        """Store a weight under a name already reserved with :meth:`fresh`."""
        self.initializers[name] = value

    def value(self, name: str) -> np.ndarray | None:
        """The constant value of a tensor, if it is a weight (folded results are weights too)."""
        return self.initializers.get(name) if name else None

    def produced(self, name: str) -> bool:
        """Whether ``name`` is a weight or the output of a node added so far."""
        return name in self.initializers or name in self._producers

    def op(self, op_type: str, *inputs: str | None, out: str | list[str] | None = None,
           n_out: int = 1, fold: bool = True, **attrs: Any) -> Any:
        """Add ``op_type`` reading ``inputs`` (None: a missing optional input).

        Returns the output name, or a list of names when ``n_out > 1`` or ``out`` is a list.
        ``fold=False`` keeps the node even when its inputs are constants.
        """
        names = [out] if isinstance(out, str) else list(out) if out else []
        if not names:
            names = [self.fresh(f"{self._scope or op_type}/{op_type}") for _ in range(n_out)]
        else:
            for n in names:
                self._tensor_names.add(n)
        ins = [i or "" for i in inputs]
        while ins and not ins[-1]:
            ins.pop()
        attrs = {k: v for k, v in attrs.items() if v is not None}
        if not (fold and len(names) == 1 and self._fold(op_type, ins, names[0], attrs)):
            base = f"{self._scope}/{op_type}" if self._scope else op_type
            node = Node(self._node_name(base), op_type, ins, names, attrs, rt_info=dict(self._scope_rt))
            self.nodes.append(node)
            self._scope_nodes.append(node)
            for n in names:
                self._producers[n] = node
        return names if (isinstance(out, list) or n_out > 1) else names[0]

    def _fold(self, op_type: str, ins: list[str], out: str, attrs: dict) -> bool:
        if op_type not in _FOLDABLE or not ins:
            return False
        args = [self.value(i) if i else None for i in ins]
        if any(a is None for a, i in zip(args, ins) if i):
            return False
        if any(a is not None and a.size > _SMALL for a in args):
            return False
        from infermux.ops.registry import lookup

        try:
            result = lookup(op_type, self.opset).fn(np, *args, **attrs)
        except Exception:  # noqa: BLE001 - leave it to run time, where the error names the node
            return False
        result = np.asarray(result[0] if isinstance(result, (tuple, list)) else result)
        if result.size > _SMALL:
            return False
        self.initializers[out] = result
        return True

    def _node_name(self, base: str) -> str:
        name, i = base, 0
        while name in self._node_names:
            i += 1
            name = f"{base}_{i}"
        self._node_names.add(name)
        return name

    def begin(self, scope: str, rt_info: dict[str, Any] | None = None) -> None:
        """Start the nodes of one source layer/op: they are named after ``scope``."""
        self._scope, self._scope_rt, self._scope_nodes = scope, dict(rt_info or {}), []

    def end(self, main_output: str | None) -> None:
        """Give the node writing ``main_output`` the scope's own name, if that name is free."""
        node = self._producers.get(main_output) if main_output else None
        if node is not None and node in self._scope_nodes and self._scope not in self._node_names:
            self._node_names.discard(node.name)
            node.name = self._scope
            self._node_names.add(node.name)
        self._scope, self._scope_rt, self._scope_nodes = "", {}, []
