"""Which devices a Ray cluster has: one entry per device of every alive node.

Ray describes each node by its resources and labels (``ray.nodes()``); a node's devices follow
from its resources::

    CPU: 16                       ->  CPU@<node>                    (all cores: one device)
    GPU: 2                        ->  GPU.0@<node>, GPU.1@<node>    (one GPU: GPU@<node>)
    VPU: 1  (a custom resource)   ->  VPU@<node>

plus any other kind the caller names (a custom resource such as ``FGPU`` hosted by a plugin given
to :func:`infermux.cluster.connect`).  As on one machine, a kind with one device is listed by its
bare name and ``KIND.0@node`` means the same device.

**Node names** are stable and readable, never a hex id alone:

1. the node's ``infermux-node`` label (``ray start --labels='{"infermux-node": "gpu-a"}'``, or
   ``labels=`` of ``ray.cluster_utils.Cluster.add_node``) -- set it whenever several nodes share
   a host, so that names never depend on which nodes are up;
2. else the node's hostname, when no other alive node has it (or it is the head node);
3. else ``<hostname>-<first 6 hex digits of the node id>``.

Characters the device-string grammar does not allow in a node name (``[A-Za-z0-9_.-]``) become
``-``.  The functions here are plain: :func:`node_infos` and :func:`devices_of` work on the dicts
``ray.nodes()`` returns, so they are tested without a cluster.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["DEFAULT_KINDS", "NODE_LABEL", "ClusterDevice", "NodeInfo", "devices_of", "discover",
           "list_nodes", "node_infos", "resource_usage"]

log = logging.getLogger(__name__)

NODE_LABEL = "infermux-node"
DEFAULT_KINDS = ("CPU", "GPU", "VPU")
_HEAD_RESOURCE = "node:__internal_head__"
_BAD_CHARS = re.compile(r"[^A-Za-z0-9_.\-]+")


@dataclasses.dataclass(frozen=True)
class NodeInfo:
    """One alive node: its readable name, Ray id, host, resources and labels."""

    node_id: str
    name: str
    hostname: str
    address: str
    is_head: bool
    resources: Mapping[str, float]
    labels: Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class ClusterDevice:
    """A device of one node: ``GPU.1@gpu-a`` is kind ``GPU``, id ``'1'``, node ``gpu-a``."""

    kind: str
    id: str
    node: str
    node_id: str
    memory_bytes: int | None = None

    @property
    def name(self) -> str:
        """The device string: ``KIND[.ID]@node``."""
        return self.kind + (f".{self.id}" if self.id else "") + f"@{self.node}"

    def __str__(self) -> str:
        return self.name


def _clean(text: str) -> str:
    return _BAD_CHARS.sub("-", text).strip("-") or "node"


def node_infos(raw_nodes: Iterable[Mapping[str, Any]]) -> list[NodeInfo]:
    """Alive nodes with their names (see the module docstring), in a stable order (by name)."""
    alive = [n for n in raw_nodes if n.get("Alive", n.get("alive"))]
    host_count = collections.Counter(_clean(str(n.get("NodeManagerHostname") or "node")) for n in alive)
    names: dict[str, str] = {}
    for raw in alive:
        node_id = str(raw["NodeID"])
        labels = dict(raw.get("Labels") or {})
        hostname = _clean(str(raw.get("NodeManagerHostname") or "node"))
        is_head = _HEAD_RESOURCE in (raw.get("Resources") or {})
        if labels.get(NODE_LABEL):
            names[node_id] = _clean(labels[NODE_LABEL])
        elif host_count[hostname] == 1 or is_head:
            names[node_id] = hostname
        else:
            names[node_id] = f"{hostname}-{node_id[:6]}"
    taken = collections.Counter(names.values())
    infos = []
    for raw in alive:
        node_id = str(raw["NodeID"])
        name = names[node_id]
        resources = dict(raw.get("Resources") or {})
        is_head = _HEAD_RESOURCE in resources
        if taken[name] > 1 and not is_head:
            log.warning("two alive nodes are both named %r; set a distinct '%s' label on each "
                        "(node %s is called %s-%s meanwhile)", name, NODE_LABEL, node_id, name, node_id[:6])
            name = f"{name}-{node_id[:6]}"
        infos.append(NodeInfo(node_id=node_id, name=name,
                              hostname=str(raw.get("NodeManagerHostname") or ""),
                              address=str(raw.get("NodeManagerAddress") or ""), is_head=is_head,
                              resources=resources, labels=dict(raw.get("Labels") or {})))
    return sorted(infos, key=lambda n: (not n.is_head, n.name))


def _count(amount: float) -> int:
    """Devices a resource amount stands for (a fraction of one is still one device)."""
    return int(amount) if amount >= 1 else (1 if amount > 0 else 0)


def devices_of(nodes: Sequence[NodeInfo], kinds: Sequence[str] = DEFAULT_KINDS) -> list[ClusterDevice]:
    """Every device of ``nodes`` whose kind is in ``kinds`` (CPU memory = the node's memory)."""
    devices = []
    for node in nodes:
        for kind in kinds:
            count = _count(float(node.resources.get(kind, 0)))
            if kind == "CPU":  # a node's cores are one CPU device (as on one machine)
                count = min(count, 1)
            memory = int(node.resources["memory"]) if kind == "CPU" and "memory" in node.resources else None
            ids = [""] if count == 1 else [str(i) for i in range(count)]
            devices += [ClusterDevice(kind, i, node.name, node.node_id, memory) for i in ids]
    return devices


def list_nodes() -> list[NodeInfo]:
    """The alive nodes of the cluster this process is connected to."""
    import ray

    return node_infos(ray.nodes())


def discover(kinds: Sequence[str] = DEFAULT_KINDS) -> list[ClusterDevice]:
    """The devices of every alive node of the connected cluster."""
    return devices_of(list_nodes(), kinds)


def resource_usage() -> dict[str, dict[str, tuple[float, float]]]:
    """``{node id: {resource: (in use, total)}}`` from the GCS (no dashboard needed)."""
    from ray._private import state

    try:
        available = state.available_resources_per_node()
        total = state.total_resources_per_node()
    except Exception as exc:  # noqa: BLE001 - load is informational
        log.debug("no per-node resource usage: %s", exc)
        return {}
    return {node: {k: (t - available.get(node, {}).get(k, 0.0), t) for k, t in res.items()}
            for node, res in total.items()}
