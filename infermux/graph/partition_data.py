"""The partitioner's plain data and the facts about a model that its stages share.

- The plan's value types: :class:`Source`, :class:`Stage`, :class:`PartitionPlan`, :class:`Group`.
- Facts about a model (``_facts``): node order, the ``Constant`` nodes that follow their
  consumers, and the nodes that must share a partition (:func:`forced_groups`: a variable's
  ``ReadValue``, ``Assign`` and everything between them).
- The rules every affinity mode obeys (``_require_assigned``, ``_finish``) and the byte counts
  the memory and balanced splits price with (:func:`node_weight_bytes`, :func:`tensor_bytes`).

The ``_private`` names are shared with the sibling ``partition*`` modules only;
:mod:`infermux.graph.partition` re-exports the public ones.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import networkx as nx
import numpy as np

from infermux.errors import InfermuxError, UnsupportedOpError
from infermux.graph.model import Model, Node
from infermux.ops.state import STATE_DOMAIN

__all__ = [
    "MODEL_INPUT", "CONSTANT", "Source", "Stage", "PartitionPlan", "Group", "forced_groups",
    "node_weight_bytes", "tensor_bytes",
]

MODEL_INPUT = -1      # Source.stage of a model input
CONSTANT = -2         # Source.stage of a model output that is a weight (PartitionPlan.constants)


# -- plain data -----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Source:
    """Where a value comes from: output ``index`` of stage ``stage`` (or a model input/constant)."""

    stage: int
    index: int
    tensor: str


@dataclasses.dataclass(frozen=True, eq=False)
class Stage:
    """One partition: its device, its sub-model, its nodes, and a :class:`Source` per input."""

    device: str
    model: Model
    nodes: tuple[str, ...]
    feeds: tuple[Source, ...]

    @property
    def input_names(self) -> tuple[str, ...]:
        """The sub-model's input tensors, in order."""
        return tuple(v.name for v in self.model.graph.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        """The sub-model's output tensors, in order."""
        return tuple(v.name for v in self.model.graph.outputs)


@dataclasses.dataclass(frozen=True, eq=False)
class PartitionPlan:
    """Ordered stages and the routing of boundary tensors (each stage reads only earlier ones)."""

    stages: tuple[Stage, ...]
    outputs: tuple[Source, ...]          # one per model output
    affinity: Mapping[str, str]
    constants: tuple[np.ndarray, ...] = ()

    @property
    def devices(self) -> tuple[str, ...]:
        """The stages' devices, in stage order."""
        return tuple(s.device for s in self.stages)

    def signature(self) -> tuple:
        """Everything that defines the split, as nested tuples (equal plans, equal signatures)."""
        return (tuple((s.device, s.nodes, s.input_names, s.output_names,
                       tuple((f.stage, f.index) for f in s.feeds)) for s in self.stages),
                tuple((o.stage, o.index) for o in self.outputs))


@dataclasses.dataclass(frozen=True)
class Group:
    """Nodes (in model order) that run together on ``device``."""

    device: str
    nodes: tuple[str, ...]


# -- facts about the graph ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Facts:
    nodes: dict[str, Node]            # model order
    index: dict[str, int]
    graph: nx.MultiDiGraph            # Model.to_networkx()
    floating: frozenset[str]          # Constant nodes that follow their consumers
    order: tuple[str, ...]            # the other nodes, model order
    atoms: tuple[tuple[str, ...], ...]  # nodes that must share a partition, by first index


def _facts(model: Model) -> _Facts:
    names = [n.name for n in model.graph.nodes]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise InfermuxError(f"HETERO needs unique node names; these repeat: {', '.join(dup[:10])}. "
                            f"Rename the nodes (node.name) before compiling")
    nodes = {n.name: n for n in model.graph.nodes}
    graph = model.to_networkx()
    outputs = {v.name for v in model.graph.outputs}
    floating = frozenset(n for n, node in nodes.items() if node.op_type == "Constant" and not node.domain
                         and graph.out_degree(n) > 0 and not outputs.intersection(node.outputs))
    index = {n: i for i, n in enumerate(nodes)}
    order = tuple(n for n in nodes if n not in floating)
    forced = forced_groups(model, graph)
    in_forced = {n for g in forced for n in g}
    atoms = [tuple(sorted(g, key=index.get)) for g in forced]
    atoms += [(n,) for n in order if n not in in_forced]
    atoms.sort(key=lambda a: index[a[0]])
    return _Facts(nodes, index, graph, floating, order, tuple(atoms))


def forced_groups(model: Model, graph: nx.MultiDiGraph | None = None) -> list[frozenset[str]]:
    """Node sets that must share a partition: per variable, its ``ReadValue`` and ``Assign`` nodes
    and every node on a path between them (the convex hull); overlapping sets are merged."""
    graph = model.to_networkx() if graph is None else graph
    by_var: dict[str, set[str]] = {}
    for node in model.graph.nodes:
        if node.domain == STATE_DOMAIN and node.op_type in ("ReadValue", "Assign"):
            by_var.setdefault(str(node.attrs.get("variable_id", node.name)), set()).add(node.name)
    groups = [_hull(graph, s) for s in by_var.values()]
    merged = True
    while merged:
        merged = False
        for a, b in itertools.combinations(range(len(groups)), 2):
            if groups[a] & groups[b]:
                groups[a] = _hull(graph, groups[a] | groups[b])
                del groups[b]
                merged = True
                break
    return [frozenset(g) for g in groups if len(g) > 1]


def _hull(graph: nx.MultiDiGraph, members: set[str]) -> set[str]:
    below = set().union(*(nx.descendants(graph, n) for n in members))
    above = set().union(*(nx.ancestors(graph, n) for n in members))
    return set(members) | (below & above)


def _reads(node: Node) -> list[str]:
    """Tensor names a node reads: its inputs, then names its subgraphs read from outside."""
    names = [i for i in node.inputs if i]
    for sub in node.subgraphs():
        names += sorted(sub.free_names())
    return list(dict.fromkeys(names))


def _constant_value(node: Node) -> np.ndarray | None:
    """A Constant node's value as an array, for the attribute forms that are plain arrays."""
    value = node.attrs.get("value")
    if isinstance(value, np.ndarray) and value.dtype != object:
        return value
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if node.attrs.get(key) is not None:
            return np.array(node.attrs[key], dtype=dtype)
    return None


# -- rules every affinity mode obeys --------------------------------------------------------------

def _require_assigned(facts: _Facts, affinity: Mapping[str, str | None], devices: Sequence[str]) -> None:
    missing = [n for n in facts.order if affinity.get(n) is None]
    if missing:
        listing = ", ".join(f"'{n}' ({facts.nodes[n].op_type})" for n in missing[:20])
        raise UnsupportedOpError(
            f"HETERO: node(s) {listing} are supported by none of the devices {', '.join(devices)} "
            f"(the last device, {devices[-1] if devices else '-'}, is the fallback). Add a device that "
            f"supports them to the list, or assign affinities manually")


def _finish(facts: _Facts, affinity: dict[str, str], supported: Sequence[tuple[str, Any]] | None) -> dict[str, str]:
    """Force nodes that must share a partition onto one device; constants follow consumers."""
    sup = {d: set(nodes) for d, nodes in supported} if supported is not None else None
    for atom in facts.atoms:
        chosen = {affinity[n] for n in atom}
        if len(chosen) == 1:
            continue
        listing = ", ".join(f"'{n}'" for n in atom)
        if sup is None:
            raise InfermuxError(
                f"HETERO: nodes {listing} share a variable (ReadValue ... Assign) and must run on one "
                f"device, but their affinities are {', '.join(sorted(chosen))}: give them one affinity")
        first = affinity[atom[0]]
        candidates = [first] + [d for d, _ in supported if d != first]
        device = next((d for d in candidates if all(n in sup[d] for n in atom)), None)
        if device is None:
            raise UnsupportedOpError(f"HETERO: nodes {listing} share a variable and must run on one "
                                     f"device, but no device supports all of them")
        for n in atom:
            affinity[n] = device
    result = {n: affinity[n] for n in facts.order}
    for c in facts.floating:
        first = min(facts.graph.successors(c), key=facts.index.get)
        result[c] = affinity[first]
    return {n: result[n] for n in facts.nodes}


# -- bytes ----------------------------------------------------------------------------------------

def node_weight_bytes(model: Model) -> dict[str, int]:
    """{node: bytes of weights it is first to read} (initializers and Constant values)."""
    facts = _facts(model)
    const_bytes = {}
    for c in facts.floating:
        value = _constant_value(facts.nodes[c])
        const_bytes[facts.nodes[c].outputs[0]] = 0 if value is None else value.nbytes
    inits = model.graph.initializers
    seen: set[str] = set()
    result = {}
    for n in facts.order:
        total = 0
        for t in _reads(facts.nodes[n]):
            if t not in seen and (t in inits or t in const_bytes):
                seen.add(t)
                total += int(inits[t].nbytes) if t in inits else const_bytes[t]
        result[n] = total
    return result


def tensor_bytes(model: Model) -> dict[str, int]:
    """{tensor: bytes} for every tensor whose shape and type are static (others are left out)."""
    graph = model.graph
    result = {}
    for vi in itertools.chain(graph.value_info.values(), graph.inputs, graph.outputs):
        if vi.shape is None or vi.shape.is_dynamic or vi.element_type.is_dynamic():
            continue
        try:
            itemsize = vi.element_type.to_dtype().itemsize
        except Exception:  # noqa: BLE001 - sub-byte or string types: no fixed size
            continue
        result[vi.name] = itemsize * int(np.prod([d.get_length() for d in vi.shape], dtype=np.int64))
    return result
