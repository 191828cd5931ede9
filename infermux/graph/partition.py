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

>>> plan = partition(model, greedy_affinity(model, [("GPU", gpu_nodes), ("CPU", cpu_nodes)]))  # doctest: +SKIP
>>> [s.device for s in plan.stages]                                                             # doctest: +SKIP
['GPU', 'CPU', 'GPU']
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import networkx as nx
import numpy as np

from infermux.errors import InfermuxError, UnsupportedOpError
from infermux.graph.model import Graph, Model, Node, ValueInfo
from infermux.graph.types import Type
from infermux.ops.state import STATE_DOMAIN

__all__ = [
    "PARTITION_MODES", "MODEL_INPUT", "CONSTANT", "Source", "Stage", "PartitionPlan", "Group",
    "manual_affinity", "greedy_affinity", "memory_affinity", "balanced_affinity",
    "forced_groups", "node_weight_bytes", "tensor_bytes", "group_nodes", "cut_model", "partition",
    "affinity_dot", "plan_dot", "WEIGHT_HEADROOM",
]

PARTITION_MODES = ("greedy", "balanced")
MODEL_INPUT = -1      # Source.stage of a model input
CONSTANT = -2         # Source.stage of a model output that is a weight (PartitionPlan.constants)
WEIGHT_HEADROOM = 1.2  # OpenVINO: a device must hold 1.2x the weights to take the whole model


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


def memory_affinity(model: Model, memory: Sequence[tuple[str, int | None]],
                    supported: Sequence[tuple[str, Any]] | None = None) -> dict[str, str]:
    """OpenVINO's ``PIPELINE_PARALLEL`` split by device memory (see the module docstring).

    ``memory`` is ``[(device, DEVICE_TOTAL_MEM_SIZE or None), ...]`` in priority order.  A node
    the chosen device does not support goes to the next device that does (else any that does).
    """
    facts = _facts(model)
    weights = node_weight_bytes(model)
    need = WEIGHT_HEADROOM * sum(weights.values())
    devices = [d for d, _ in memory]
    sup = {d: set(nodes) for d, nodes in supported} if supported is not None else None
    whole = next((d for d, mem in memory if mem is None or mem >= need), None)
    if whole is not None:
        wanted = {n: whole for n in facts.order}
    else:
        wanted, k, used = {}, 0, 0
        budgets = [mem / WEIGHT_HEADROOM for _, mem in memory]
        for n in facts.order:
            w = weights.get(n, 0)
            while k < len(devices) - 1 and used + w > budgets[k]:
                k, used = k + 1, 0
            wanted[n] = devices[k]
            used += w
    affinity = {}
    for n in facts.order:
        affinity[n] = _supporting(wanted[n], devices, sup, n)
    _require_assigned(facts, affinity, devices)
    return _finish(facts, affinity, supported)


def _supporting(device: str, devices: list[str], sup: dict[str, set] | None, node: str) -> str | None:
    if sup is None or node in sup.get(device, ()):
        return device
    k = devices.index(device)
    for d in devices[k + 1:] + devices[:k]:
        if node in sup[d]:
            return d
    return None


def balanced_affinity(model: Model, devices: Sequence[str], costs: Mapping[str, Mapping[str, float]],
                      *, supported: Sequence[tuple[str, Any]] | None = None,
                      memory: Sequence[int | None] | None = None,
                      sizes: Mapping[str, int] | None = None,
                      transfer_s_per_byte: float = 1e-10, slack: float = 0.05) -> dict[str, str]:
    """Contiguous topological cuts balancing stage times, then minimising bytes crossing.

    ``costs[device][node]`` is the node's time on the device in seconds (missing: 0);
    ``supported`` limits where nodes may go; ``memory[k]`` (bytes or None) caps device ``k``'s
    weights at ``memory / 1.2``; ``sizes`` gives tensor bytes (default :func:`tensor_bytes`).
    Device ``k`` runs segment ``k``; a device may get no nodes.
    """
    facts = _facts(model)
    tables = _SplitTables.build(model, facts, devices, costs, supported, memory,
                                tensor_bytes(model) if sizes is None else sizes, transfer_s_per_byte)
    slowest = tables.min_slowest_stage()
    if not np.isfinite(slowest):
        raise UnsupportedOpError(
            f"HETERO balanced mode found no split of the model over {', '.join(devices)}: some node "
            f"is supported by none of them, or the weights do not fit their memory")
    cuts = tables.fewest_bytes_split(slowest * (1.0 + slack) + 1e-12)
    affinity = {name: devices[k] for k, (i, j) in enumerate(itertools.pairwise(cuts))
                for name in facts.order[i:j]}
    return _finish(facts, affinity, supported)


@dataclasses.dataclass(frozen=True)
class _SplitTables:
    """Prefix sums over the topological order, so any segment [i, j) is priced in O(1)."""

    cost: list[np.ndarray]    # per device: seconds of nodes [0, j)
    bad: list[np.ndarray]     # per device: nodes in [0, j) it does not support
    weight: np.ndarray        # weight bytes of nodes [0, j)
    budget: list[float]       # per device: weight bytes it may hold
    cut: np.ndarray           # bytes live across a cut before position j
    valid: np.ndarray         # a cut before position j splits nothing that must stay together
    transfer_s_per_byte: float

    @classmethod
    def build(cls, model, facts, devices, costs, supported, memory, sizes, transfer_s_per_byte):
        sup = {d: set(nodes) for d, nodes in supported} if supported is not None else None
        weights = node_weight_bytes(model)
        return cls(
            cost=[_prefix([float(costs.get(d, {}).get(n, 0.0)) for n in facts.order]) for d in devices],
            bad=[_prefix([sup is not None and n not in sup.get(d, ()) for n in facts.order]) for d in devices],
            weight=_prefix([float(weights.get(n, 0)) for n in facts.order]),
            budget=[np.inf if m is None else m / WEIGHT_HEADROOM for m in (memory or [None] * len(devices))],
            cut=_cut_bytes(model, facts, sizes), valid=_valid_cuts(facts),
            transfer_s_per_byte=transfer_s_per_byte)

    def segments(self, k: int, j: int) -> tuple[np.ndarray, np.ndarray]:
        """(time, feasible) of segment [i, j) on device ``k`` for every start i <= j (i == j: empty)."""
        i = np.arange(j + 1)
        receive = np.where(i > 0, self.transfer_s_per_byte * self.cut[:j + 1], 0.0)
        time = np.where(i == j, 0.0, self.cost[k][j] - self.cost[k][:j + 1] + receive)
        ok = ((self.bad[k][j] == self.bad[k][:j + 1]) & self.valid[:j + 1]
              & (self.weight[j] - self.weight[:j + 1] <= self.budget[k]))
        return time, ok | (i == j)

    def _ends(self):
        n = len(self.valid) - 1
        return n, [j for j in range(n + 1) if self.valid[j] or j == n]

    def min_slowest_stage(self) -> float:
        """The smallest achievable time of the slowest stage (inf: no feasible split)."""
        n, ends = self._ends()
        best = np.full(n + 1, np.inf)
        best[0] = 0.0
        for k in range(len(self.cost)):
            nxt = np.full(n + 1, np.inf)
            for j in ends:
                time, ok = self.segments(k, j)
                nxt[j] = np.min(np.where(ok, np.maximum(best[:j + 1], time), np.inf))
            best = nxt
        return float(best[n])

    def fewest_bytes_split(self, limit_s: float) -> list[int]:
        """Cut positions [0, ..., n] moving the fewest bytes with every stage within ``limit_s``;
        among those, the one with the fastest slowest stage (then the earliest cuts)."""
        n, ends = self._ends()
        moved, slowest = np.full(n + 1, np.inf), np.full(n + 1, np.inf)
        moved[0] = slowest[0] = 0.0
        back = np.zeros((len(self.cost), n + 1), dtype=np.int64)
        for k in range(len(self.cost)):
            nxt_moved, nxt_slowest = np.full(n + 1, np.inf), np.full(n + 1, np.inf)
            for j in ends:
                time, ok = self.segments(k, j)
                i = np.arange(j + 1)
                total = np.where(ok & (time <= limit_s),
                                 moved[:j + 1] + np.where((i > 0) & (i < j), self.cut[:j + 1], 0.0), np.inf)
                ties = np.flatnonzero(total <= total.min() + 0.5)  # bytes are whole numbers
                pick = int(ties[np.argmin(np.maximum(slowest[:j + 1], time)[ties])])
                back[k, j] = pick
                nxt_moved[j], nxt_slowest[j] = total[pick], max(slowest[pick], time[pick])
            moved, slowest = nxt_moved, nxt_slowest
        cuts = [n]
        for k in reversed(range(len(self.cost))):
            cuts.append(int(back[k, cuts[-1]]))
        return cuts[::-1]


def _prefix(values) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.asarray(values, dtype=np.float64))])


def _cut_bytes(model: Model, facts: _Facts, sizes: Mapping[str, int]) -> np.ndarray:
    """Bytes of tensors produced before each cut position and read at or after it."""
    pos = {name: i for i, name in enumerate(facts.order)}
    produced = {t: pos[n] for n in facts.order for t in facts.nodes[n].outputs if t}
    last: dict[str, int] = {}
    for n in facts.order:
        for t in _reads(facts.nodes[n]):
            if t in produced:
                last[t] = max(last.get(t, -1), pos[n])
    diff = np.zeros(len(facts.order) + 2)
    for t, q in last.items():
        p = produced[t]
        if q > p:
            diff[p + 1] += sizes.get(t, 0)
            diff[q + 1] -= sizes.get(t, 0)
    return np.cumsum(diff)[:len(facts.order) + 1]


def _valid_cuts(facts: _Facts) -> np.ndarray:
    """valid[j]: a cut before position j splits no group of nodes that must stay together."""
    pos = {name: i for i, name in enumerate(facts.order)}
    valid = np.ones(len(facts.order) + 1, dtype=bool)
    for atom in facts.atoms:
        if len(atom) > 1:
            span = [pos[n] for n in atom]
            valid[min(span) + 1:max(span) + 1] = False
    return valid


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


# -- Graphviz ----------------------------------------------------------------------------------------

_PALETTE = ("#8dd3c7", "#fdb462", "#bebada", "#fb8072", "#80b1d3", "#b3de69", "#fccde5", "#d9d9d9")


def _esc(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace('"', '\\"')


def _q(text: str) -> str:
    return '"' + _esc(text) + '"'


def _colours(devices) -> dict[str, str]:
    return {d: _PALETTE[i % len(_PALETTE)] for i, d in enumerate(dict.fromkeys(devices))}


def affinity_dot(model: Model, affinity: Mapping[str, str]) -> str:
    """The model's graph as Graphviz DOT text, each node filled with its device's colour."""
    colour = _colours(affinity[n.name] for n in model.graph.nodes if n.name in affinity)
    lines = [f"digraph {_q('hetero_affinity_' + model.friendly_name)} {{", "  node [shape=box, style=filled];"]
    for d, c in colour.items():
        lines.append(f"  {_q('device ' + d)} [shape=note, fillcolor={_q(c)}];")
    for node in model.graph.nodes:
        dev = affinity.get(node.name, "?")
        label = '"' + "\\n".join(_esc(t) for t in (node.name, node.op_type, dev)) + '"'  # DOT line breaks
        lines.append(f"  {_q(node.name)} [label={label}, fillcolor={_q(colour.get(dev, '#ffffff'))}];")
    for u, v, data in model.to_networkx().edges(data=True):
        lines.append(f"  {_q(u)} -> {_q(v)} [label={_q(data.get('tensor', ''))}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def plan_dot(plan: PartitionPlan, name: str = "model") -> str:
    """The partitions as DOT clusters of their nodes; boundary tensors are bold edges between them."""
    colour = _colours(plan.devices)
    lines = [f"digraph {_q('hetero_subgraphs_' + name)} {{", "  node [shape=box, style=filled];",
             f"  {_q('inputs')} [shape=invhouse];", f"  {_q('outputs')} [shape=house];"]
    where: list[tuple[dict[str, str], dict[str, list[str]]]] = []  # per stage: producer, readers
    for s, stage in enumerate(plan.stages):
        graph = stage.model.graph
        lines += [f"  subgraph {_q(f'cluster_{s}')} {{",
                  f"    label={_q(f'{s}: {stage.device} ({stage.model.friendly_name})')};"]
        for node in graph.nodes:
            lines.append(f"    {_q(f'{s}/{node.name}')} [label={_q(node.name)}, fillcolor={_q(colour[stage.device])}];")
        lines.append("  }")
        for u, v, data in stage.model.to_networkx().edges(data=True):
            lines.append(f"  {_q(f'{s}/{u}')} -> {_q(f'{s}/{v}')} [label={_q(data.get('tensor', ''))}];")
        readers: dict[str, list[str]] = {}
        for node in graph.nodes:
            for t in _reads(node):
                readers.setdefault(t, []).append(f"{s}/{node.name}")
        where.append(({t: f"{s}/{n.name}" for n in graph.nodes for t in n.outputs if t}, readers))

    def origin(src: Source) -> str:
        if src.stage == MODEL_INPUT:
            return "inputs"
        return where[src.stage][0].get(src.tensor, "inputs") if src.stage >= 0 else "outputs"

    for s, stage in enumerate(plan.stages):
        for f in stage.feeds:
            for reader in where[s][1].get(f.tensor, []):
                lines.append(f"  {_q(origin(f))} -> {_q(reader)} [label={_q(f.tensor)}, style=bold, color=red];")
    for o in plan.outputs:
        lines.append(f"  {_q(origin(o))} -> {_q('outputs')} [label={_q(o.tensor)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"
