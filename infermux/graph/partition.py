"""The HETERO partitioner: who runs each node, how nodes group, and how the model is cut.

Three concerns, kept apart; each is a plain function over plain data and knows nothing of
devices beyond their names:

1. **Affinity** -- ``{node name: device}``.

   - :func:`manual_affinity`: ``node.rt_info["affinity"]`` set by the user.  If any node has one,
     every node must (OpenVINO's rule); the value may name any device string.
   - :func:`greedy_affinity` (``HETERO_PARTITION_MODE=greedy``, the default, OpenVINO's): the
     devices, in priority order, each claim the still-unclaimed nodes they support (their
     ``query_model`` answer); the last device is the fallback, and nodes no device supports are
     an error naming them.
   - :func:`memory_affinity` (greedy mode with ``MODEL_DISTRIBUTION_POLICY=PIPELINE_PARALLEL``):
     OpenVINO's rule.  The weights need 1.2x their bytes; the whole model goes to the first
     device whose ``DEVICE_TOTAL_MEM_SIZE`` is at least that (a device without the property
     counts as unlimited).  Otherwise the nodes are dealt out in topological order, each device
     taking weights up to ``memory / 1.2``, the last device the rest.
   - :func:`balanced_affinity` (``HETERO_PARTITION_MODE=balanced``, beyond OpenVINO): given each
     node's cost on each device (seconds, measured by HETERO) and the tensor sizes, it picks
     contiguous cuts of the topological order -- device ``k`` of the list runs segment ``k``,
     possibly empty -- by dynamic programming.  First it minimises the slowest stage, a stage's
     time being its nodes' cost plus the time to receive the tensors live across its entry cut
     (``transfer_s_per_byte``); then, among the splits whose slowest stage is within ``slack`` of
     that optimum, it takes the one moving the fewest bytes across cuts.

   In every mode a ``Constant`` node follows its consumers (it is copied, as a weight, into each
   partition that reads it; initializers are not nodes and go to every sub-model reading them),
   and a variable's ``ReadValue``, ``Assign`` and every node on a path between them share one
   device and one partition, so the variable lives where it is read and written.

2. **Grouping** -- :func:`group_nodes` merges same-device regions of the networkx graph
   (:meth:`Model.to_networkx`) without ever creating a cycle between partitions: a node joins a
   predecessor's partition only when the partition quotient graph stays a DAG, and same-device
   partitions are then merged pairwise under the same test.  Same input, same groups, same order.

3. **Cutting** -- :func:`cut_model` turns each group into a sub-:class:`Model` (inputs: the graph
   inputs it reads in model order, then tensors crossing in by first use; outputs: tensors read
   by later stages or that are graph outputs, in production order; only the weights it reads;
   opsets copied; names read by subgraphs count as reads) and returns a :class:`PartitionPlan`:
   ordered stages, their devices and sub-models, and where every stage input and model output
   comes from.

The memory and balanced splits live in :mod:`infermux.graph.partition_split`, the plain data and
the graph facts every concern shares in :mod:`infermux.graph.partition_data`, the Graphviz writer
in :mod:`infermux.graph.partition_dot`; every public name is importable from here.

>>> plan = partition(model, greedy_affinity(model, [("GPU", gpu_nodes), ("CPU", cpu_nodes)]))  # doctest: +SKIP
>>> [s.device for s in plan.stages]                                                             # doctest: +SKIP
['GPU', 'CPU', 'GPU']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import networkx as nx

from infermux.errors import InfermuxError
from infermux.graph.model import Graph, Model, Node, ValueInfo
from infermux.graph.partition_data import (
    CONSTANT, MODEL_INPUT, Group, PartitionPlan, Source, Stage, _constant_value, _facts, _Facts,
    _finish, _reads, _require_assigned, forced_groups, node_weight_bytes, tensor_bytes)
from infermux.graph.partition_dot import affinity_dot, plan_dot
from infermux.graph.partition_split import WEIGHT_HEADROOM, balanced_affinity, memory_affinity
from infermux.graph.types import Type

__all__ = [
    "PARTITION_MODES", "MODEL_INPUT", "CONSTANT", "Source", "Stage", "PartitionPlan", "Group",
    "manual_affinity", "greedy_affinity", "memory_affinity", "balanced_affinity",
    "forced_groups", "node_weight_bytes", "tensor_bytes", "group_nodes", "cut_model", "partition",
    "affinity_dot", "plan_dot", "WEIGHT_HEADROOM",
]

PARTITION_MODES = ("greedy", "balanced")


# -- 1. affinity ----------------------------------------------------------------------------------

def manual_affinity(model: Model) -> dict[str, str] | None:
    """``{node: rt_info["affinity"]}``, or None when no node has one.

    Every node must have one once any has (``Constant`` nodes may omit it: they follow their
    consumers).  Otherwise raises OpenVINO's error, naming the nodes without one.
    """
    facts = _facts(model)
    given = {n: str(facts.nodes[n].rt_info["affinity"]) for n in facts.nodes
             if facts.nodes[n].rt_info.get("affinity")}
    if not given:
        return None
    missing = [n for n in facts.order if n not in given]
    if missing:
        listing = ", ".join(f"'{n}' ({facts.nodes[n].op_type})" for n in missing[:20])
        more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
        raise InfermuxError(
            f"Nodes {listing}{more} were not assigned to any device. It might happen if you assigned "
            f"layers manually and missed some layers: set node.get_rt_info()['affinity'] on every "
            f"node, or on none of them to let HETERO ask the devices")
    return _finish(facts, given, None)


def greedy_affinity(model: Model, supported: Sequence[tuple[str, Any]]) -> dict[str, str]:
    """Devices in priority order claim the unclaimed nodes they support; the last is the fallback.

    ``supported`` is ``[(device, nodes it supports), ...]`` (a ``query_model`` answer works as the
    node collection).  Nodes no device supports raise :class:`UnsupportedOpError` naming them.
    """
    facts = _facts(model)
    affinity: dict[str, str] = {}
    for device, nodes in supported:
        nodes = set(nodes)
        for n in facts.order:
            if n not in affinity and n in nodes:
                affinity[n] = device
    _require_assigned(facts, affinity, [d for d, _ in supported])
    return _finish(facts, affinity, supported)


# -- 2. grouping ----------------------------------------------------------------------------------

def group_nodes(model: Model, affinity: Mapping[str, str]) -> list[Group]:
    """Merge same-device regions into groups whose quotient graph is a DAG; stable order.

    Nodes are visited in (lexicographic) topological order; a node joins a same-device
    predecessor's group unless that group reaches another of the node's predecessor groups (the
    merge would close a cycle).  Then same-device groups with no path of length >= 2 between them
    are merged.  Groups come out in topological order, ties broken by their first node.
    """
    facts = _facts(model)
    unassigned = [n for n in facts.order if n not in affinity]
    if unassigned:
        raise InfermuxError(f"no affinity for node(s) {', '.join(unassigned[:20])}")
    atom_of = {n: i for i, atom in enumerate(facts.atoms) for n in atom}
    device = [affinity[atom[0]] for atom in facts.atoms]
    for atom in facts.atoms:
        if len({affinity[n] for n in atom}) > 1:
            raise InfermuxError(f"nodes {', '.join(atom)} must share a device (they share a variable)")
    atoms = nx.DiGraph()
    atoms.add_nodes_from(range(len(facts.atoms)))
    for u, v in facts.graph.edges():
        if u in atom_of and v in atom_of and atom_of[u] != atom_of[v]:
            atoms.add_edge(atom_of[u], atom_of[v])
    members, cdev, quotient = _grow_groups(atoms, device)
    _merge_groups(members, cdev, quotient)
    first = {c: min(facts.index[n] for a in members[c] for n in facts.atoms[a]) for c in quotient}
    groups = []
    for c in nx.lexicographical_topological_sort(quotient, key=first.get):
        nodes = sorted((n for a in members[c] for n in facts.atoms[a]), key=facts.index.get)
        groups.append(Group(cdev[c], tuple(nodes)))
    return groups


def _grow_groups(atoms: nx.DiGraph, device: list[str]):
    """Pass 1: each atom joins a same-device predecessor group when no cycle can result."""
    group_of: dict[int, int] = {}
    members: dict[int, list[int]] = {}
    cdev: dict[int, str] = {}
    quotient = nx.DiGraph()
    for a in nx.lexicographical_topological_sort(atoms):
        preds = sorted({group_of[p] for p in atoms.predecessors(a)})
        chosen = next((c for c in preds if cdev[c] == device[a] and
                       not any(nx.has_path(quotient, c, p) for p in preds if p != c)), None)
        if chosen is None:
            chosen = len(members)
            members[chosen], cdev[chosen] = [], device[a]
            quotient.add_node(chosen)
        members[chosen].append(a)
        group_of[a] = chosen
        quotient.add_edges_from((p, chosen) for p in preds if p != chosen)
    return members, cdev, quotient


def _merge_groups(members: dict[int, list[int]], cdev: dict[int, str], quotient: nx.DiGraph) -> None:
    """Pass 2: merge same-device groups joined by no path of length >= 2 (in place).

    Reachability is kept as one bitset (a Python int) per group, rebuilt after each merge.
    """
    while True:
        far = _far_masks(quotient)  # far[x] bit y: a path x -> s -> ... -> y through another group
        same = {}
        for c in quotient:
            same[cdev[c]] = same.get(cdev[c], 0) | (1 << c)
        pair = None
        for x in sorted(quotient):
            candidates = same[cdev[x]] & ~far[x] & ~((2 << x) - 1)  # same device, above x, no long path
            while candidates and pair is None:
                y = (candidates & -candidates).bit_length() - 1
                candidates &= candidates - 1
                if not far[y] >> x & 1:
                    pair = (x, y)
            if pair is not None:
                break
        if pair is None:
            return
        x, y = pair
        members[x] += members.pop(y)
        quotient.add_edges_from([(p, x) for p in quotient.predecessors(y) if p != x])
        quotient.add_edges_from([(x, s) for s in quotient.successors(y) if s != x])
        quotient.remove_node(y)


def _far_masks(quotient: nx.DiGraph) -> dict[int, int]:
    reach: dict[int, int] = {}   # reach[c]: every group reachable from c (c excluded)
    far: dict[int, int] = {}
    for c in reversed(list(nx.topological_sort(quotient))):
        below = 0
        for s in quotient.successors(c):
            below |= reach[s]
        far[c] = below
        for s in quotient.successors(c):
            below |= 1 << s
        reach[c] = below
    return far


# -- 3. cutting -----------------------------------------------------------------------------------

def cut_model(model: Model, groups: Sequence[Group], affinity: Mapping[str, str] | None = None) -> PartitionPlan:
    """Each group becomes a sub-model; returns the plan with the boundary routing."""
    facts = _facts(model)
    graph = model.graph
    stage_of = {n: s for s, g in enumerate(groups) for n in g.nodes}
    producer = {t: stage_of[n] for n in facts.order for t in facts.nodes[n].outputs if t}
    floating_out = {facts.nodes[c].outputs[0]: c for c in facts.floating}
    model_inputs = {v.name: i for i, v in enumerate(graph.inputs)}
    graph_outputs = [v.name for v in graph.outputs]
    reads = [list(dict.fromkeys(t for n in g.nodes for t in _reads(facts.nodes[n]))) for g in groups]
    crossing: set[str] = set()
    inputs_of = []
    for s, names in enumerate(reads):
        outside = [t for t in names if _read_from_outside(t, s, producer, model_inputs, graph.initializers,
                                                          floating_out)]
        outside.sort(key=lambda t: (t not in model_inputs, model_inputs.get(t, 0)))  # stable
        inputs_of.append(outside)
        crossing.update(t for t in outside if t in producer)
    wanted = crossing | set(graph_outputs)
    outputs_of = [list(dict.fromkeys(t for n in g.nodes for t in facts.nodes[n].outputs if t in wanted))
                  for g in groups]

    def source(t: str) -> Source:
        if t in model_inputs:
            return Source(MODEL_INPUT, model_inputs[t], t)
        return Source(producer[t], outputs_of[producer[t]].index(t), t)

    stages = []
    for s, g in enumerate(groups):
        sub = _sub_model(model, facts, s, g.nodes, reads[s], inputs_of[s], outputs_of[s], floating_out)
        feeds = tuple(source(t) for t in inputs_of[s])
        assert all(f.stage < s for f in feeds), "stages must only read earlier stages"
        stages.append(Stage(g.device, sub, g.nodes, feeds))
    constants, outputs = [], []
    for t in graph_outputs:
        if t in model_inputs or t in producer:
            outputs.append(source(t))
        elif t in graph.initializers:
            outputs.append(Source(CONSTANT, len(constants), t))
            constants.append(graph.initializers[t])
        else:
            raise InfermuxError(f"model output '{t}' is produced by no node")
    if affinity is None:
        affinity = {n: g.device for g in groups for n in g.nodes}
    return PartitionPlan(tuple(stages), tuple(outputs), dict(affinity), tuple(constants))


def _read_from_outside(t: str, s: int, producer: Mapping[str, int], model_inputs: Mapping[str, int],
                       weights: Mapping[str, Any], floating_out: Mapping[str, str]) -> bool:
    """True if stage ``s`` must receive tensor ``t`` as an input."""
    if t in producer:
        return producer[t] != s
    if t in model_inputs:
        return True
    if t in weights or t in floating_out:
        return False
    raise InfermuxError(f"tensor '{t}' is read but produced nowhere in the model")


def _sub_model(model: Model, facts: _Facts, s: int, members: Sequence[str], reads: list[str],
               inputs: list[str], outputs: list[str], floating_out: Mapping[str, str]) -> Model:
    graph = model.graph
    weights = {t: graph.initializers[t] for t in reads if t in graph.initializers}
    const_nodes = []
    for t in reads:
        if t in floating_out:
            node = facts.nodes[floating_out[t]]
            value = _constant_value(node)
            if value is not None:
                weights[t] = value
            else:
                const_nodes.append(_copy_node(node))
    nodes = const_nodes + [_copy_node(facts.nodes[n]) for n in members]
    known = set(reads) | {t for n in nodes for t in n.outputs}
    value_info = {t: vi for t, vi in graph.value_info.items() if t in known}
    sub_graph = Graph(f"{graph.name}_{s}", nodes, [_info(graph, t) for t in inputs],
                      [_info(graph, t) for t in outputs], weights, value_info)
    return Model(sub_graph, dict(model.opsets), name=f"{model.friendly_name}_{s}",
                 ir_version=model.ir_version, producer=model.producer, metadata=dict(model.metadata))


def _copy_node(node: Node) -> Node:
    return dataclasses.replace(node, inputs=list(node.inputs), outputs=list(node.outputs),
                               attrs=dict(node.attrs), rt_info=dict(node.rt_info))


def _info(graph: Graph, name: str) -> ValueInfo:
    vi = graph.type_of(name)
    return dataclasses.replace(vi, name=name) if vi is not None else ValueInfo(name, Type.dynamic, None)


def partition(model: Model, affinity: Mapping[str, str]) -> PartitionPlan:
    """Group (:func:`group_nodes`) then cut (:func:`cut_model`)."""
    return cut_model(model, group_nodes(model, affinity), affinity)
