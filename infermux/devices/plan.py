"""Lower a graph to a flat execution plan and run it (decision 2 of DESIGN.md).

A :class:`Plan` is a list of steps ``(fn, input slots, output slots, slots to free)``.  Running is
one tight loop over the list: no graph walking, no dict lookups by name, and every intermediate is
dropped right after its last reader (liveness), so NumPy's allocator reuses the memory.  Steps of
nodes with subgraphs (If/Loop/Scan) hold sub-plans and receive the outer-scope values they read.
Elementwise activations that follow an op producing a fresh buffer run in place on it (epilogue
fusion).  The plan is written against ``xp`` and so serves the CPU (NumPy) and GPU (CuPy) plugins.
"""

from __future__ import annotations

import functools
import time

from collections.abc import Callable, Sequence
from typing import Any

from infermux.errors import InfermuxError, NodeExecutionError, UnsupportedOpError
from infermux.graph.model import Graph, Node
from infermux.ops.registry import Kernel, lookup
from infermux.ops.state import STATE_DOMAIN, StateFrame

__all__ = ["Plan", "Step"]

# ops whose single output is a Python list (an ONNX sequence), so a returned list is one value
_SEQUENCE_OUTPUT_OPS = {"SequenceConstruct", "SequenceEmpty", "SequenceInsert", "SequenceErase",
                        "SplitToSequence", "Optional", "OptionalGetElement", "Identity"}
_SINGLE, _SEQUENCE, _MULTI = 0, 1, 2
_STATE_SLOT_NAME = "\x00state"  # a slot no tensor can be named: the request's StateFrame
# producers whose output is always a fresh array the step may overwrite
_FRESH_PRODUCERS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Sub", "Mul",
                    "BatchNormalization", "InstanceNormalization", "LayerNormalization"}


def _relu(xp, y):
    return xp.maximum(y, 0, out=y)


_INPLACE_ACTIVATIONS: dict[str, Callable[..., Any]] = {"Relu": _relu}


class Step:
    """One node lowered: a callable and the slots it reads, writes and frees."""

    __slots__ = ("fn", "ins", "outs", "frees", "name", "op_type", "base_op", "single")

    def __init__(self, fn, ins, outs, name, op_type, single):
        self.fn, self.ins, self.outs = fn, tuple(ins), tuple(outs)
        self.frees: tuple[int, ...] = ()
        self.name, self.op_type, self.single = name, op_type, single
        self.base_op = op_type.split("+", 1)[0]

    @property
    def mode(self) -> int:
        """How the runner stores the result: one value, one sequence value, or several."""
        if not self.single:
            return _MULTI
        return _SEQUENCE if self.base_op in _SEQUENCE_OUTPUT_OPS else _SINGLE

    def __repr__(self) -> str:
        return f"Step({self.op_type} '{self.name}' {self.ins}->{self.outs} frees {self.frees})"


class Plan:
    """A graph compiled to steps for one array module.

    ``opsets`` are the model's opset imports; ``kernel_for(node, opset)`` picks the kernel (the CPU
    plugin prefers NumPy fast paths); ``outer_names`` are names the graph reads from an enclosing
    graph (subgraphs only).
    """

    def __init__(self, graph: Graph, opsets: dict[str, int], xp, *,
                 kernel_for: Callable[[Node, int], Kernel] | None = None,
                 outer_names: Sequence[str] = (), fuse: bool = True):
        self.xp = xp
        self.opsets = opsets
        self._kernel_for = kernel_for or (lambda node, opset: lookup(
            node.op_type, opset, node.domain, node_name=node.name))
        self.input_names = [v.name for v in graph.inputs]
        self.output_names = [v.name for v in graph.outputs]
        self.outer_names = list(outer_names)
        slot_of: dict[str, int] = {"": 0}
        self.variables: dict[str, Node] = {}  # variable id -> its ReadValue/Assign node

        def slot(name: str) -> int:
            if name not in slot_of:
                slot_of[name] = len(slot_of)
            return slot_of[name]

        base_values: dict[int, Any] = {}
        for name, value in graph.initializers.items():
            base_values[slot(name)] = xp.asarray(value) if value.dtype != object else value
        self.state_slot = slot(_STATE_SLOT_NAME)
        self.input_slots = [slot(n) for n in self.input_names]
        self.outer_slots = [slot(n) for n in self.outer_names]
        self.steps = self._lower(graph, slot, fuse)
        self.output_slots = [slot(n) for n in self.output_names]
        self._base = [None] * len(slot_of)
        for i, v in base_values.items():
            self._base[i] = v
        self._assign_frees(set(base_values) | set(self.output_slots) | {self.state_slot})
        self._compact = [(st.fn, st.ins, st.outs[0] if st.single else st.outs, st.frees, st.mode)
                         for st in self.steps]
        self.slot_names = {i: n for n, i in slot_of.items()}
        self._slot_of_name = slot_of
        missing = [n for n in self.output_names if not self._is_defined(n, graph)]
        if missing:
            raise InfermuxError(f"graph '{graph.name}' outputs {missing}, which no node, input or "
                                f"weight defines")

    def _is_defined(self, name: str, graph: Graph) -> bool:
        return (name in self.input_names or name in graph.initializers or name in self.outer_names
                or any(name in s_outs for s_outs in self._defined))

    # -- lowering ---------------------------------------------------------------------------
    def _lower(self, graph: Graph, slot, fuse: bool) -> list[Step]:
        consumers = graph.consumers()
        graph_outputs = {o.name for o in graph.outputs}
        steps: list[Step] = []
        self._defined: list[set[str]] = []
        skip: set[int] = set()
        nodes = graph.nodes
        for idx, node in enumerate(nodes):
            if idx in skip:
                continue
            fn, ins = self._bind(node, slot)
            outs_names = list(node.outputs)
            epilogue = None
            if fuse and node.op_type in _FRESH_PRODUCERS and not node.domain and len(outs_names) == 1:
                nxt = nodes[idx + 1] if idx + 1 < len(nodes) else None
                out = outs_names[0]
                if (nxt is not None and nxt.op_type in _INPLACE_ACTIVATIONS and not nxt.domain
                        and nxt.inputs[:1] == [out] and len(consumers.get(out, [])) == 1
                        and out not in graph_outputs):
                    epilogue = _INPLACE_ACTIVATIONS[nxt.op_type]
                    outs_names = list(nxt.outputs)
                    skip.add(idx + 1)
            if epilogue is not None:
                fn = _with_epilogue(fn, epilogue, self.xp)
            single = len(outs_names) == 1
            step = Step(fn, ins, [slot(o) if o else 0 for o in outs_names],
                        node.name, node.op_type + ("+" + nodes[idx + 1].op_type if epilogue else ""),
                        single)
            steps.append(step)
            self._defined.append({o for o in outs_names if o})
        return steps

    def _bind(self, node: Node, slot) -> tuple[Callable[..., Any], list[int]]:
        opset = node.rt_info.get("opset", self.opsets.get(node.domain or "", 1))
        k = self._kernel_for(node, opset)
        static = {}
        graphs = {}
        for name, value in node.attrs.items():
            if isinstance(value, Graph):
                graphs[name] = value
            else:
                static[name] = value
        if k.attribute_names is not None:
            unknown = set(static) - k.attribute_names
            if unknown:
                raise UnsupportedOpError(
                    f"{node.op_type} node '{node.name}': attribute(s) {sorted(unknown)} are not "
                    f"supported (the kernel accepts {sorted(k.attribute_names)})")
        if k.wants_num_outputs:
            static["_num_outputs"] = len(node.outputs)
        if k.wants_used_outputs:
            static["_used_outputs"] = tuple(bool(o) for o in node.outputs)
        ins = list(node.inputs)
        while ins and not ins[-1]:
            ins.pop()
        in_slots = [slot(i) for i in ins]
        if node.domain == STATE_DOMAIN and node.op_type in ("ReadValue", "Assign"):
            in_slots = [slot(_STATE_SLOT_NAME)] + in_slots
            var_id = node.attrs.get("variable_id", "")
            if node.op_type == "ReadValue" or var_id not in self.variables:
                self.variables[var_id] = node
        base = functools.partial(k.fn, self.xp, **static)
        if not graphs:
            return base, in_slots
        outer = sorted(set().union(*(g.free_names() for g in graphs.values())))
        subplans = {name: Plan(g, self.opsets, self.xp, kernel_for=self._kernel_for,
                               outer_names=outer) for name, g in graphs.items()}
        n_formal = len(in_slots)

        def with_subgraphs(*args):
            outer_values = args[n_formal:]
            bodies = {name: p.bind(outer_values) for name, p in subplans.items()}
            return base(*args[:n_formal], **bodies)

        return with_subgraphs, in_slots + [slot(o) for o in outer]

    def _assign_frees(self, keep: set[int]) -> None:
        last_use: dict[int, int] = {}
        for i, step in enumerate(self.steps):
            for s in step.ins:
                last_use[s] = i
        frees: dict[int, list[int]] = {}
        for s, i in last_use.items():
            if s not in keep and s != 0:
                frees.setdefault(i, []).append(s)
        # outputs nobody reads die right after their step
        read = set(last_use)
        for i, step in enumerate(self.steps):
            for s in step.outs:
                if s not in read and s not in keep and s != 0:
                    frees.setdefault(i, []).append(s)
            step.frees = tuple(frees.get(i, ()))

    # -- running ----------------------------------------------------------------------------
    def bind(self, outer_values: Sequence[Any]) -> Callable[..., list]:
        """A callable running this (sub)plan with the enclosing graph's values bound."""
        def body(*inputs):
            return self.run(inputs, outer_values)

        return body

    def initial_value(self, variable_id: str) -> Any:
        """A variable's value before its first write (None when it is computed at run time)."""
        node = self.variables.get(variable_id)
        if node is None:
            raise KeyError(variable_id)
        frame = StateFrame()
        init = None
        if node.op_type == "ReadValue" and node.inputs and node.inputs[0]:
            init = self._base[self._slot_of_name.get(node.inputs[0], 0)]
            if init is None:
                return None
        from infermux.ops.state import read_value

        try:
            return read_value(self.xp, frame, init, **node.attrs)
        except ValueError:
            return None

    @property
    def is_stateful(self) -> bool:
        """True if the graph reads or writes variables."""
        return bool(self.variables)

    def run(self, inputs: Sequence[Any], outer_values: Sequence[Any] = (),
            state: StateFrame | None = None) -> list:
        """Run the plan on ``inputs`` (in graph-input order); returns the outputs in order.

        ``state`` is the request's variable frame (stateful models); its writes are committed
        only if the whole inference succeeds.
        """
        slots = self._base.copy()
        if state is not None:
            slots[self.state_slot] = state
        elif self.variables:
            slots[self.state_slot] = StateFrame()
        for s, v in zip(self.input_slots, inputs):
            slots[s] = v
        for s, v in zip(self.outer_slots, outer_values):
            slots[s] = v
        index = 0
        try:
            # the hot loop: plain tuples, one call per step (see _compact)
            for fn, ins, out, frees, mode in self._compact:
                result = fn(*[slots[i] for i in ins])
                if mode == _SINGLE:
                    slots[out] = result[0] if result.__class__ is tuple or result.__class__ is list else result
                elif mode == _MULTI:
                    for s, v in zip(out, result):
                        slots[s] = v
                else:  # _SEQUENCE: a list is one value
                    slots[out] = result[0] if result.__class__ is tuple else result
                for s in frees:
                    slots[s] = None
                index += 1
        except Exception as exc:  # noqa: BLE001 - re-raised naming the node
            raise _node_error(self.steps[index], exc) from exc
        if state is not None:
            state.commit()
        return [slots[s] for s in self.output_slots]

    def run_profiled(self, inputs: Sequence[Any], sync: Callable[[], None] | None = None,
                     state: StateFrame | None = None) -> tuple[list, list[tuple[str, str, float]]]:
        """Like :meth:`run`, also timing every step: ``(outputs, [(node, op, seconds)])``."""
        result = self._run_profiled(inputs, sync, state)
        if state is not None:
            state.commit()
        return result

    def _run_profiled(self, inputs, sync, state):
        timings = []
        slots = self._base.copy()
        slots[self.state_slot] = state if state is not None else StateFrame()
        for s, v in zip(self.input_slots, inputs):
            slots[s] = v
        for step in self.steps:
            t0 = time.perf_counter()
            try:
                result = step.fn(*[slots[i] for i in step.ins])
                if sync is not None:
                    sync()
            except Exception as exc:  # noqa: BLE001
                raise _node_error(step, exc) from exc
            timings.append((step.name, step.op_type, time.perf_counter() - t0))
            if step.single:
                if type(result) is tuple or (type(result) is list and step.base_op not in _SEQUENCE_OUTPUT_OPS):
                    result = result[0]
                slots[step.outs[0]] = result
            else:
                for s, v in zip(step.outs, result):
                    slots[s] = v
            for s in step.frees:
                slots[s] = None
        return [slots[s] for s in self.output_slots], timings


def _with_epilogue(fn, epilogue, xp):
    def fused(*args):
        return epilogue(xp, fn(*args))

    return fused


def _node_error(step: Step, exc: Exception) -> Exception:
    where = f"{step.op_type} node '{step.name}'"
    msg = str(exc)
    if msg.startswith(where):
        return exc
    text = f"{where} failed: {type(exc).__name__}: {msg}" if not isinstance(exc, InfermuxError) \
        else f"{where}: {msg}"
    if isinstance(exc, InfermuxError):
        try:
            return type(exc)(text)
        except Exception:  # noqa: BLE001
            pass
    return NodeExecutionError(text)
