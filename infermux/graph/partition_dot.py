"""Graphviz DOT text for HETERO's dumps: the affinity of each node, and the partitions."""

from __future__ import annotations

from collections.abc import Mapping

from infermux.graph.model import Model
from infermux.graph.partition_data import MODEL_INPUT, PartitionPlan, Source, _reads

__all__ = ["affinity_dot", "plan_dot"]

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
