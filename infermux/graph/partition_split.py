"""The memory and cost-model splits of the HETERO partitioner (affinity, concern 1 of
:mod:`infermux.graph.partition`).

- :func:`memory_affinity` (``MODEL_DISTRIBUTION_POLICY=PIPELINE_PARALLEL``): OpenVINO's rule by
  ``DEVICE_TOTAL_MEM_SIZE``, with :data:`WEIGHT_HEADROOM`.
- :func:`balanced_affinity` (``HETERO_PARTITION_MODE=balanced``): contiguous cuts of the
  topological order by dynamic programming over per-node costs and the bytes live across cuts.

Both end as every mode does (``_finish``): nodes sharing a variable get one device, constants
follow their consumers.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from infermux.errors import UnsupportedOpError
from infermux.graph.model import Model
from infermux.graph.partition_data import (
    _Facts, _facts, _finish, _reads, _require_assigned, node_weight_bytes, tensor_bytes)

__all__ = ["WEIGHT_HEADROOM", "memory_affinity", "balanced_affinity"]

WEIGHT_HEADROOM = 1.2  # OpenVINO: a device must hold 1.2x the weights to take the whole model


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
